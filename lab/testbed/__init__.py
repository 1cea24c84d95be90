"""The testbed: two network namespaces joined by an impaired link.

Layout (nothing on the host changes)::

    lab-<id>-c                      engine process                 lab-<id>-s
    client 198.18.0.1  --lab0 (TUN)--  impairment  --(TUN) lab0--  server 198.18.0.2

Each namespace has loopback and one TUN device, addresses from the benchmarking range
198.18.0.0/15 (RFC 2544), IPv6 off (no router solicitations on the link), and the TCP
congestion control pinned. A state file under ``/run/protolab`` names everything a
testbed owns so ``lab cleanup`` can remove leftovers of a killed run, and only those.

A run builds its testbed with :func:`open_testbed`, which always tears it down; ``lab
testbed up`` keeps one with :func:`build_persistent` until :func:`destroy`. Benchmarks and
tests measure the engine against :func:`open_veth_testbed` (a plain veth pair) and
:func:`open_tun_testbed` (the same TUN devices with a forwarder of their own). Inside:
``_build`` (hosts, link, routes, congestion control), ``_state`` (the state files),
``_persistent`` (testbeds that outlive the command), ``_cleanup`` (teardown and
leftovers), ``_netns`` and ``_tun`` (namespaces and TUN devices).
"""

from lab.testbed._build import (
    CLIENT_ADDRESS,
    LINK_INTERFACE,
    SERVER_ADDRESS,
    Host,
    Role,
    Testbed,
    choose_backend,
    new_run_id,
    open_testbed,
    open_tun_testbed,
    open_veth_testbed,
    route_congestion_control,
)
from lab.testbed._cleanup import cleanup_leftovers
from lab.testbed._netns import namespace_names, require_root
from lab.testbed._persistent import build_persistent, destroy, exec_argv, persistent_testbeds
from lab.testbed._state import STATE_DIR, ground_truth_path, read_states

__all__ = [
    "CLIENT_ADDRESS",
    "LINK_INTERFACE",
    "SERVER_ADDRESS",
    "STATE_DIR",
    "Host",
    "Role",
    "Testbed",
    "build_persistent",
    "choose_backend",
    "cleanup_leftovers",
    "destroy",
    "exec_argv",
    "ground_truth_path",
    "namespace_names",
    "new_run_id",
    "open_testbed",
    "open_tun_testbed",
    "open_veth_testbed",
    "persistent_testbeds",
    "read_states",
    "require_root",
    "route_congestion_control",
]
