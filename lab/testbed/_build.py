"""Building a testbed: namespaces, the link between them, addresses, routes, and TCP.

The link is a TUN pair the userspace engine forwards between (the default: it records
what it did to each packet), or a veth pair, bare or with netem on each end. The
state file is written before anything exists to remove, and a build that fails or is
interrupted is torn down, so nothing is ever left half-made.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lab._signals import held_signals
from lab.errors import TestbedError
from lab.impairment.engine import EngineHandle, start_engine
from lab.impairment.netem import netem_available, netem_commands
from lab.impairment.spec import Direction, ImpairmentSpec
from lab.scenario import EPHEMERAL_PORT_START
from lab.testbed import _netns, _tun
from lab.testbed._cleanup import teardown
from lab.testbed._state import write_state

__all__ = [
    "CLIENT_ADDRESS",
    "IPFRAG_HIGH_THRESH",
    "LINK_INTERFACE",
    "LINK_TXQUEUELEN",
    "SERVER_ADDRESS",
    "Host",
    "Role",
    "Testbed",
    "build",
    "choose_backend",
    "new_run_id",
    "open_testbed",
    "open_veth_testbed",
    "route_congestion_control",
]

CLIENT_ADDRESS = "198.18.0.1"
SERVER_ADDRESS = "198.18.0.2"
LINK_INTERFACE = "lab0"
#: TUN transmit queue: generous, so bursts wait for the engine instead of being dropped.
LINK_TXQUEUELEN = 10_000
#: Bytes of incomplete IP datagrams a testbed namespace holds for reassembly (4 MiB default).
IPFRAG_HIGH_THRESH = 256 * 1024 * 1024

Role = Literal["client", "server"]


@dataclass(frozen=True)
class Host:
    """One end of the link: a namespace, its link interface and its address."""

    role: Role
    netns: str
    interface: str
    address: str
    peer_address: str


@dataclass
class Testbed:
    """A built testbed; tear it down with :meth:`close` (or use :func:`open_testbed`)."""

    run_id: str
    client: Host
    server: Host
    congestion_control: str
    backend: str
    engine: EngineHandle | None = None
    setup_s: float = 0.0
    teardown_s: float = 0.0
    ground_truth_path: Path | None = None
    _closed: bool = field(default=False, repr=False)
    _owner_pid: int = field(default_factory=os.getpid, repr=False)

    def host(self, role: Role) -> Host:
        return self.client if role == "client" else self.server

    def link_stats(self) -> dict[str, dict[str, int]]:
        """Kernel counters of both link interfaces (tx_dropped = engine overload)."""
        stats: dict[str, dict[str, int]] = {}
        for host in (self.client, self.server):
            with _netns.netlink(host.netns) as ipr:
                index = ipr.link_lookup(ifname=host.interface)
                if not index:
                    continue
                link = ipr.get_links(index[0])[0]
                counters = link.get_attr("IFLA_STATS64") or {}
                stats[host.role] = {
                    key: int(counters[key])
                    for key in ("rx_packets", "tx_packets", "rx_dropped", "tx_dropped")
                    if key in counters
                }
        return stats

    def stop_engine(self) -> Path | None:
        """Stop the impairment engine (it writes its ground truth); idempotent."""
        if self.engine is None:
            return None
        path = self.engine.stop()
        self.engine = None
        return path

    def close(self) -> None:
        """Tear everything down; safe to call twice; signals wait until it is done."""
        if self._closed or os.getpid() != self._owner_pid:
            return  # a forked child must never tear down its parent's testbed
        started = time.perf_counter()
        with held_signals():
            self.stop_engine()
            teardown(self.run_id)
            self._closed = True
            self.teardown_s = time.perf_counter() - started


def new_run_id() -> str:
    """Short, unique, and valid inside namespace names."""
    return secrets.token_hex(4)


def _configure_namespace(host: Host, congestion_control: str) -> str:
    """Loopback up, IPv6 off, IANA ephemeral ports, link address and route.

    Every TCP connection over the link uses ``congestion_control``, the lab's endpoints
    and any program under ``lab exec`` alike, without touching the host: the route to
    the peer carries it (``ip route ... congctl cubic``, RTAX_CC_ALGO), which the kernel
    applies to active and passive opens on that route. The namespace's default sysctl
    cannot do it everywhere: a namespace may only default to the host's *allowed*
    algorithms (``net.ipv4.tcp_allowed_congestion_control``), and changing those would
    change the host. A program may still choose another one (``iperf3 -C reno``).
    Returns the namespace's default algorithm, which loopback connections there use.
    """
    for key, value in (
        ("net.ipv6.conf.all.disable_ipv6", "1"),
        ("net.ipv6.conf.default.disable_ipv6", "1"),
        # RFC 6335 dynamic ports, 49152-65535, instead of Linux's 32768-60999
        ("net.ipv4.ip_local_port_range", f"{EPHEMERAL_PORT_START} 65535"),
        # Datagrams whose fragments the link dropped wait for reassembly (ipfrag_time,
        # 30 s). Past the default 4 MiB of such queues the kernel drops every new
        # fragment: large lossy datagrams then lose more than the link took, and the
        # next exchange loses everything. Room for what one run can leave pending.
        ("net.ipv4.ipfrag_high_thresh", str(IPFRAG_HIGH_THRESH)),
    ):
        _netns.write_sysctl(host.netns, key, value)
    with contextlib.suppress(PermissionError):  # EPERM: not an allowed algorithm (see above)
        _netns.write_sysctl(host.netns, "net.ipv4.tcp_congestion_control", congestion_control)
    with _netns.netlink(host.netns) as ipr:
        loopback = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=loopback, state="up")
        index = ipr.link_lookup(ifname=host.interface)[0]
        ipr.link("set", index=index, txqlen=LINK_TXQUEUELEN)
        ipr.addr("add", index=index, address=host.address, prefixlen=32, local=host.address)
        ipr.link("set", index=index, state="up")
        ipr.route(
            "add",
            dst=host.peer_address,
            dst_len=32,
            oif=index,
            scope=253,
            metrics={"RTAX_CC_ALGO": congestion_control},
        )
    return _netns.read_sysctl(host.netns, "net.ipv4.tcp_congestion_control")


def route_congestion_control(host: Host) -> str:
    """The congestion control the route to the peer pins ("" when none): what TCP uses."""
    with _netns.netlink(host.netns) as ipr:
        for route in ipr.get_routes(family=socket.AF_INET, dst=host.peer_address):
            metrics = route.get_attr("RTA_METRICS")
            if metrics is not None:
                value = metrics.get_attr("RTAX_CC_ALGO")
                if value:
                    return str(value)
    return ""


def _register(run_id: str, backend: str, congestion_control: str, *, persistent: bool) -> Testbed:
    """The testbed's hosts, and its state file written before anything exists to remove."""
    client_ns, server_ns = _netns.namespace_names(run_id)
    client = Host("client", client_ns, LINK_INTERFACE, CLIENT_ADDRESS, SERVER_ADDRESS)
    server = Host("server", server_ns, LINK_INTERFACE, SERVER_ADDRESS, CLIENT_ADDRESS)
    write_state(
        run_id,
        run_id=run_id,
        namespaces=[client_ns, server_ns],
        owner_pid=os.getpid(),
        persistent=persistent,
        created=time.time(),
    )
    return Testbed(run_id, client, server, congestion_control, backend)


def build(
    *,
    run_id: str,
    impairment: ImpairmentSpec,
    seed: int,
    congestion_control: str,
    ground_truth_path: Path,
    persistent: bool,
) -> Testbed:
    """A whole testbed, or, on any error, none: what was made is torn down again.

    The caller holds signals (:func:`lab._signals.held_signals`) around it.
    """
    backend = choose_backend(impairment)
    testbed = _register(run_id, backend, congestion_control, persistent=persistent)
    client, server = testbed.client, testbed.server
    fds: list[int] = []
    try:
        for host in (client, server):
            _netns.create(host.netns)
        if backend == "netem":
            _link_with_veth(client, server)
            _configure_hosts(testbed)
            _apply_netem(client, server, impairment)
            return testbed
        for host in (client, server):
            fds.append(_tun.open_tun(host.netns, host.interface))
        _configure_hosts(testbed)
        write_state(run_id, ground_truth=str(ground_truth_path))
        testbed.engine = start_engine(
            fds[0],
            fds[1],
            impairment,
            seed,
            ground_truth_path,
            run_id=run_id,
            die_with_parent=not persistent,
            on_spawn=lambda pid: write_state(run_id, engine_pid=pid),
        )
        testbed.ground_truth_path = ground_truth_path
    except BaseException:
        testbed.close()
        raise
    finally:
        for fd in fds:
            os.close(fd)  # the engine holds its own copies
    return testbed


def choose_backend(impairment: ImpairmentSpec) -> str:
    """The userspace engine unless netem is asked for by name ("auto" keeps ground truth).

    The engine works on every kernel and records what it did to each packet; netem
    does the same impairments in the kernel but keeps no per-packet record.
    """
    if impairment.backend != "netem":
        return "userspace"
    if not netem_available():
        raise TestbedError(
            "impairment.backend = 'netem', but this kernel has no sch_netem "
            "(tc: 'Specified qdisc kind is unknown'); use backend = 'userspace' or 'auto'"
        )
    return "netem"


def _configure_hosts(testbed: Testbed) -> None:
    """Both namespaces configured; what TCP will really use recorded in the state file."""
    defaults = {
        host.role: _configure_namespace(host, testbed.congestion_control)
        for host in (testbed.client, testbed.server)
    }
    write_state(
        testbed.run_id,
        tcp_congestion_control={
            "route": {
                h.role: route_congestion_control(h) for h in (testbed.client, testbed.server)
            },
            "namespace_default": defaults,
        },
    )


def _link_with_veth(client: Host, server: Host) -> None:
    """A veth pair between the two namespaces, both ends configured like the TUN link."""
    with _netns.netlink(client.netns) as ipr:
        ipr.link("add", ifname=client.interface, kind="veth", peer={"ifname": "lab0-peer"})
        peer = ipr.link_lookup(ifname="lab0-peer")[0]
        with _netns.inside(server.netns):
            target = os.open(
                f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net", os.O_RDONLY
            )
        try:
            ipr.link("set", index=peer, net_ns_fd=target)
        finally:
            os.close(target)
    with _netns.netlink(server.netns) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lab0-peer")[0], ifname=server.interface)


def _apply_netem(client: Host, server: Host, impairment: ImpairmentSpec) -> None:
    """netem on each end of the veth link, for the direction leaving that end."""
    for host, direction in (
        (client, Direction.CLIENT_TO_SERVER),
        (server, Direction.SERVER_TO_CLIENT),
    ):
        for argv in netem_commands(host.interface, impairment.for_direction(direction)):
            done = subprocess.run(
                ["ip", "netns", "exec", host.netns, *argv],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise TestbedError(f"{' '.join(argv)}: {done.stderr.strip()}")


@contextlib.contextmanager
def open_testbed(
    impairment: ImpairmentSpec,
    seed: int,
    congestion_control: str,
    ground_truth_path: Path,
    *,
    run_id: str | None = None,
) -> Iterator[Testbed]:
    """Build a testbed for the body and always tear it down (error, SIGINT, SIGTERM).

    A signal during the build is held until the build is whole (well under a second,
    at most the engine's start timeout), so it is never left half-made; it then acts,
    and the testbed, already in hand, is torn down.
    """
    _netns.require_root()
    started = time.perf_counter()
    testbed: Testbed | None = None
    try:
        with held_signals():
            testbed = build(
                run_id=run_id or new_run_id(),
                impairment=impairment,
                seed=seed,
                congestion_control=congestion_control,
                ground_truth_path=ground_truth_path,
                persistent=False,
            )
            testbed.setup_s = time.perf_counter() - started
        yield testbed
    finally:
        if testbed is not None:
            testbed.close()


@contextlib.contextmanager
def open_veth_testbed(
    congestion_control: str = "cubic", *, run_id: str | None = None
) -> Iterator[Testbed]:
    """A testbed whose link is a plain veth pair: no engine, no impairment.

    The unimpaired reference that benchmarks and capture tests measure the engine
    and the sniffer against. Same hosts, addresses and clean-up as any testbed
    (state file, ``lab cleanup`` after a kill), so nothing is left behind.
    """
    _netns.require_root()
    started = time.perf_counter()
    testbed = _register(run_id or new_run_id(), "veth", congestion_control, persistent=False)
    try:
        for host in (testbed.client, testbed.server):
            _netns.create(host.netns)
        _link_with_veth(testbed.client, testbed.server)
        _configure_hosts(testbed)
        testbed.setup_s = time.perf_counter() - started
        yield testbed
    finally:
        testbed.close()


@contextlib.contextmanager
def open_tun_testbed(
    congestion_control: str = "cubic", *, run_id: str | None = None
) -> Iterator[tuple[Testbed, int, int]]:
    """A testbed whose link is the engine's two TUN devices with no engine behind them.

    Yields the testbed and the client's and server's TUN fds (non-blocking, closed on
    exit) for a forwarder of the caller's own: benchmarks measure what the TUN design
    costs before the engine decides anything. Same hosts, addresses and clean-up as any
    testbed; the caller stops its forwarder before the body ends.
    """
    _netns.require_root()
    started = time.perf_counter()
    testbed = _register(run_id or new_run_id(), "tun", congestion_control, persistent=False)
    fds: list[int] = []
    try:
        for host in (testbed.client, testbed.server):
            _netns.create(host.netns)
            fds.append(_tun.open_tun(host.netns, host.interface))
        _configure_hosts(testbed)
        testbed.setup_s = time.perf_counter() - started
        yield testbed, fds[0], fds[1]
    finally:
        for fd in fds:
            os.close(fd)
        testbed.close()
