"""The testbed: two network namespaces joined by an impaired link.

Layout (nothing on the host changes)::

    lab-<id>-c                      engine process                 lab-<id>-s
    client 198.18.0.1  --lab0 (TUN)--  impairment  --(TUN) lab0--  server 198.18.0.2

Each namespace has loopback and one TUN device, addresses from the benchmarking range
198.18.0.0/15 (RFC 2544), IPv6 off (no router solicitations on the link), and the TCP
congestion control pinned. A state file under ``/run/protolab`` names everything a
testbed owns so ``lab cleanup`` can remove leftovers of a killed run, and only those.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lab._signals import held_signals
from lab.errors import Interrupted, PrivilegeError, TestbedError
from lab.impairment.engine import EngineHandle, start_engine
from lab.impairment.netem import netem_available, netem_commands
from lab.impairment.spec import Direction, ImpairmentSpec
from lab.scenario import EPHEMERAL_PORT_START
from lab.testbed import _netns, _tun

CLIENT_ADDRESS = "198.18.0.1"
SERVER_ADDRESS = "198.18.0.2"
LINK_INTERFACE = "lab0"
#: TUN transmit queue: generous, so bursts wait for the engine instead of being dropped.
LINK_TXQUEUELEN = 10_000
STATE_DIR = Path("/run/protolab")

Role = Literal["client", "server"]

__all__ = [
    "CLIENT_ADDRESS",
    "SERVER_ADDRESS",
    "Host",
    "Testbed",
    "choose_backend",
    "cleanup_leftovers",
    "new_run_id",
    "open_testbed",
    "open_veth_testbed",
    "require_root",
]


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
            _destroy(self.run_id)
            self._closed = True
            self.teardown_s = time.perf_counter() - started


def ground_truth_path(run_id: str) -> Path:
    """Where a run's engine writes its record: the lab's state folder (root's only),
    never a results folder someone else may own. The name carries the process that
    will read it, so ``lab cleanup`` removes it only once that process is gone (a run
    reads it after its testbed, and the testbed's state file, are gone)."""
    return STATE_DIR / f"{run_id}-{os.getpid()}-ground-truth.npz"


def new_run_id() -> str:
    """Short, unique, and valid inside namespace names."""
    return secrets.token_hex(4)


def namespace_names(run_id: str) -> tuple[str, str]:
    return f"{_netns.PREFIX}{run_id}-c", f"{_netns.PREFIX}{run_id}-s"


def require_root(doing: str = "building a testbed") -> None:
    """Refuse early, before anything is written: namespaces need root."""
    if os.geteuid() != 0:
        raise PrivilegeError(
            f"{doing} needs root (network namespaces): run it as `sudo .venv/bin/lab ...`"
        )


def _state_path(run_id: str) -> Path:
    return STATE_DIR / f"{run_id}.json"


def _write_state(state_id: str, **fields: object) -> None:
    """Add ``fields`` to a testbed's state file, whole or not at all (signals held)."""
    with held_signals():
        STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = _state_path(state_id)
        state: dict[str, object] = json.loads(path.read_text()) if path.exists() else {}
        state.update(fields)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)


def read_states() -> list[dict[str, object]]:
    """State files of testbeds that exist (or were left behind)."""
    if not STATE_DIR.exists():
        return []
    states = []
    for path in sorted(STATE_DIR.glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            states.append(json.loads(path.read_text()))
    return states


#: Bytes of incomplete IP datagrams a testbed namespace holds for reassembly (4 MiB default).
IPFRAG_HIGH_THRESH = 256 * 1024 * 1024


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
    client_ns, server_ns = namespace_names(run_id)
    client = Host("client", client_ns, LINK_INTERFACE, CLIENT_ADDRESS, SERVER_ADDRESS)
    server = Host("server", server_ns, LINK_INTERFACE, SERVER_ADDRESS, CLIENT_ADDRESS)
    _write_state(
        run_id,
        run_id=run_id,
        namespaces=[client_ns, server_ns],
        owner_pid=os.getpid(),
        persistent=persistent,
        created=time.time(),
    )
    return Testbed(run_id, client, server, congestion_control, backend)


def _build(
    *,
    run_id: str,
    impairment: ImpairmentSpec,
    seed: int,
    congestion_control: str,
    ground_truth_path: Path,
    persistent: bool,
) -> Testbed:
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
        _write_state(run_id, ground_truth=str(ground_truth_path))
        testbed.engine = start_engine(
            fds[0],
            fds[1],
            impairment,
            seed,
            ground_truth_path,
            run_id=run_id,
            die_with_parent=not persistent,
            on_spawn=lambda pid: _write_state(run_id, engine_pid=pid),
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
    _write_state(
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


def _destroy(run_id: str) -> None:
    """Kill what the testbed started and remove its namespaces and state file."""
    state_path = _state_path(run_id)
    state: dict[str, object] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(state_path.read_text())
    _remove_hosts_files(run_id)
    engine_pid = state.get("engine_pid")
    if isinstance(engine_pid, int) and _is_engine_of(engine_pid, run_id):
        _terminate(engine_pid)
    for name in namespace_names(run_id):
        for pid in _netns.pids_in(name):
            _terminate(pid)
        _netns.remove(name)
    remaining = [n for n in namespace_names(run_id) if n in _netns.list_all()]
    if remaining:
        raise TestbedError(f"could not remove namespaces {', '.join(remaining)}")
    with contextlib.suppress(FileNotFoundError):
        state_path.unlink()


def _is_engine_of(pid: int, run_id: str) -> bool:
    """Is ``pid`` still this testbed's engine? (PIDs are reused: never kill a stranger.)"""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"lab.impairment.forwarder" in argv and run_id.encode() in argv


def _terminate(pid: int) -> None:
    """SIGTERM, then SIGKILL after a short wait; only if it is still ours to kill."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


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
    require_root()
    started = time.perf_counter()
    testbed: Testbed | None = None
    try:
        with held_signals():
            testbed = _build(
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
    require_root()
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


def build_persistent(impairment: ImpairmentSpec, seed: int, congestion_control: str) -> Testbed:
    """A testbed that outlives the command (``lab testbed up``).

    Signals are held until it is whole: then it is either complete and recorded, or
    torn down, never an engine nobody knows about.
    """
    require_root()
    testbed: Testbed | None = None
    try:
        with held_signals():  # a signal meanwhile acts when the testbed is whole, in hand
            run_id = new_run_id()
            testbed = _build(
                run_id=run_id,
                impairment=impairment,
                seed=seed,
                congestion_control=congestion_control,
                ground_truth_path=ground_truth_path(run_id),
                persistent=True,
            )
            _write_hosts_files(testbed.run_id)
            _write_state(testbed.run_id, ready=True)
    except KeyboardInterrupt as error:
        _discard(testbed)
        raise Interrupted("no testbed was kept") from error
    except BaseException:
        _discard(testbed)
        raise
    return testbed


def _discard(testbed: Testbed | None) -> None:
    """Tear down a testbed nobody will use, its engine's record included."""
    if testbed is not None:
        testbed.close()
        if testbed.ground_truth_path is not None:
            testbed.ground_truth_path.unlink(missing_ok=True)


def destroy(run_id: str) -> None:
    """Remove a testbed by id (``lab testbed down``)."""
    require_root()
    _destroy(run_id)


#: ``ip netns exec`` bind-mounts ``/etc/netns/<ns>/hosts`` over /etc/hosts: names for the hosts.
ETC_NETNS = Path("/etc/netns")


def _write_hosts_files(run_id: str) -> None:
    """Let ``lab exec`` users type ``server`` / ``client`` instead of addresses."""
    text = f"127.0.0.1 localhost\n{CLIENT_ADDRESS} client\n{SERVER_ADDRESS} server\n"
    for name in namespace_names(run_id):
        folder = ETC_NETNS / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hosts").write_text(text)


def _remove_hosts_files(run_id: str) -> None:
    for name in namespace_names(run_id):
        folder = ETC_NETNS / name
        with contextlib.suppress(FileNotFoundError):
            (folder / "hosts").unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
    with contextlib.suppress(OSError):
        ETC_NETNS.rmdir()  # only when empty: leave no trace of the lab behind


def persistent_testbeds() -> list[dict[str, object]]:
    """State of testbeds started with ``lab testbed up`` that still exist."""
    present = set(_netns.list_all())
    found = []
    for state in read_states():
        namespaces = state.get("namespaces")
        names = {str(name) for name in namespaces} if isinstance(namespaces, list) else set()
        if state.get("persistent") and state.get("ready") and names and names <= present:
            found.append(state)
    return found


def exec_argv(run_id: str, role: Role, command: list[str]) -> list[str]:
    """The argv that runs ``command`` inside a testbed host (``lab exec``)."""
    client_ns, server_ns = namespace_names(run_id)
    return ["ip", "netns", "exec", client_ns if role == "client" else server_ns, *command]


def cleanup_leftovers(run_ids: Sequence[str] = (), *, everything: bool = False) -> list[str]:
    """Remove what runs and testbeds left behind; return what was removed.

    By default only what belongs to dead processes: testbeds of runs whose ``lab``
    process is gone, persistent testbeds (``lab testbed up``) whose engine is gone,
    lab namespaces no state file claims, and stray files in the state folder (a state
    file half-written, a ground-truth record nobody will read). A live testbed goes
    only when named in ``run_ids``, or with ``everything``. Only names matching
    ``lab-<id>-c|s`` are touched.
    """
    require_root()
    removed: list[str] = []
    states = read_states()
    known = {str(s["run_id"]) for s in states}
    unknown_ids = sorted(set(run_ids) - known - _namespace_ids())
    if unknown_ids:
        raise TestbedError(f"no testbed {', '.join(unknown_ids)} (see `lab testbed down`)")
    doomed = {str(s["run_id"]) for s in states if everything or _owner_gone(s)}
    doomed |= set(run_ids)
    doomed |= _namespace_ids() - known  # namespaces nobody claims
    for run_id in sorted(doomed):
        present = [n for n in namespace_names(run_id) if n in _netns.list_all()]
        state = next((s for s in states if s.get("run_id") == run_id), {})
        _destroy(run_id)
        _remove_ground_truth(state)
        removed.extend(present or [f"testbed {run_id} (state only)"])
    live = {str(s["run_id"]) for s in read_states()}
    removed.extend(_remove_strays(live))
    return removed


def _namespace_ids() -> set[str]:
    return {
        name[len(_netns.PREFIX) : -2] for name in _netns.list_all() if _netns.is_lab_namespace(name)
    }


def _remove_ground_truth(state: dict[str, object]) -> None:
    path = state.get("ground_truth")
    if isinstance(path, str) and Path(path).parent == STATE_DIR:
        Path(path).unlink(missing_ok=True)


def _remove_strays(live: set[str]) -> list[str]:
    """Files in the state folder of no live testbed: half-written state, old records."""
    if not STATE_DIR.is_dir():
        return []
    removed = []
    for path in sorted(STATE_DIR.iterdir()):
        if path.suffix == ".json" or not path.is_file():
            continue  # a state file is removed with its testbed
        run_id, _, rest = path.name.partition("-")
        reader = rest.split("-", 1)[0]
        if run_id.split(".", 1)[0] in live or (reader.isdigit() and _alive(int(reader))):
            continue
        path.unlink(missing_ok=True)
        removed.append(f"{path} (stray)")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_gone(state: dict[str, object]) -> bool:
    """Has the process that keeps this testbed alive died?

    A run's testbed lives as long as its ``lab`` process; a persistent one, once built
    (``ready``), as long as its engine (the command that built it has returned); one
    still being built, as long as the command building it.
    """
    if state.get("persistent") and state.get("ready"):
        engine = state.get("engine_pid")
        return not (isinstance(engine, int) and _is_engine_of(engine, str(state.get("run_id"))))
    owner = state.get("owner_pid")
    if not isinstance(owner, int):
        return True
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return True
    return False
