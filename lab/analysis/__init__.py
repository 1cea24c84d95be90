"""Turn what the exchanges and captures recorded into tables.

:mod:`lab.analysis.summary` summarises the per-message table per protocol and
:mod:`lab.analysis.pcap` reads capture files into per-packet tables. Import the
submodules directly; this package imports nothing so that it stays cheap.
"""
