"""Runs between two real hosts, over SSH (``[hosts]`` in a scenario).

:mod:`lab.hosts.ssh` logs in (asyncssh, key only) and starts the far agent
(:mod:`lab.hosts.agent`), which runs the same endpoint bodies and sniffer as the namespaces;
:mod:`lab.hosts.remote` makes its endpoints look like local processes and copies files back;
:mod:`lab.hosts.site` is the run's two hosts as the exchanges see them; :mod:`lab.hosts.clock`
estimates the clock offset between them with a bound that provably contains the true one.
"""
