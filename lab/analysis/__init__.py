"""Turn what the exchanges and captures recorded into tables.

:mod:`lab.analysis.summary` summarises the per-message table per protocol; capture
files become per-packet tables with :mod:`lab.pcap`. Import the submodules directly;
this package imports nothing so that it stays cheap.
"""
