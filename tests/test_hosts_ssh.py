"""Two "hosts" over real SSH: sshd in a testbed's two namespaces (see tests/sshd_hosts.py).

First, without root: the wire format refuses what a far end must not send, and the
agent answers over plain pipes. Then, as root, login and the far end's checks (version, capabilities), every one-line refusal, the UDP
and TCP exchanges with both endpoints over SSH against the same settings run locally,
Ctrl-C / SIGTERM / SIGKILL of the controller mid-run (nothing left on either host),
the clock offset over the control channel, and fetching a file back.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lab._version import __version__
from lab.errors import HostError
from lab.exchanges import _ENDPOINTS, _expect, _result, build_messages
from lab.exchanges._endpoint import EndpointResult, EndpointSettings, spawn
from lab.hosts._wire import WireError, decode, encode, loads_line
from lab.hosts.agent import HostInfo
from lab.hosts.remote import RemoteControl, fetch_file, spawn_remote
from lab.hosts.ssh import RemoteHost, SSHOptions, connect, offset_between
from lab.scenario import Protocol
from tests.sshd_hosts import SshdHost, SshdHosts, agent_pids, require_sshd, sshd_hosts

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdHosts]:
    """One clean testbed with sshd in both namespaces, for the whole module."""
    from lab.impairment.spec import ImpairmentSpec
    from lab.testbed import open_testbed

    require_sshd()
    folder = tmp_path_factory.mktemp("sshd")
    with (
        open_testbed(ImpairmentSpec(), 11, "cubic", folder / "gt.npz") as testbed,
        sshd_hosts(testbed, folder / "ssh") as made,
    ):
        yield made


@pytest.fixture(scope="module")
def logged_in(hosts: SshdHosts) -> Iterator[tuple[RemoteHost, RemoteHost]]:
    """Both hosts logged in once (each test opens its own agents on them)."""
    with (
        connect(hosts.client.spec, hosts.options) as client,
        connect(hosts.server.spec, hosts.options) as server,
    ):
        yield client, server


def _wait_until_only(host: SshdHost, kept: set[int], within_s: float = 8.0) -> list[int]:
    """Processes in the host's namespace besides sshd and ``kept`` (sessions that were
    already there, e.g. the module's own logins), once they had time to go."""
    deadline = time.monotonic() + within_s
    left = [pid for pid in agent_pids(host) if pid not in kept]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [pid for pid in agent_pids(host) if pid not in kept]
    return left


def _describe(pids: list[int]) -> list[str]:
    described = []
    for pid in pids:
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            described.append(f"{pid}: {argv.decode(errors='replace')}")
    return described


# without root: the wire format and the agent over pipes


def test_results_and_settings_cross_the_wire_unchanged() -> None:
    result = EndpointResult(
        role="client-1",
        t_send_ns=[1, -1, 3],
        arrivals=[(0, 10, True), (2, 30, False)],
        counters={"Udp.InDatagrams": 2},
        tcp_info=[(5, bytes(range(256)))],
        probes=[("udp", 0, 1, 2)],
        error=None,
    )
    back = decode(EndpointResult, json.loads(json.dumps(encode(result))))
    assert back == result and isinstance(back.arrivals[0], tuple)
    settings = replace(_settings(Protocol.TCP, 1), rate=math.inf, duration_s=1.5)
    assert decode(EndpointSettings, json.loads(json.dumps(encode(settings)))) == settings


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"count": "300"}, "expected an integer"),
        ({"count": True}, "expected an integer"),
        ({"echo": 1}, "expected a boolean"),
        ({"rate": None}, "expected a number"),
        ({"evil": "__import__('os')"}, "unknown field"),
        ({"port": None, "seed": [1]}, "expected an integer"),
    ],
)
def test_the_wire_refuses_what_does_not_match_the_fields(
    change: dict[str, object], complaint: str
) -> None:
    data = encode(_settings(Protocol.UDP, 1)) | change
    with pytest.raises(WireError, match=complaint):
        decode(EndpointSettings, data)


def test_the_wire_refuses_malformed_results_and_lines() -> None:
    good = encode(EndpointResult(role="server"))
    for bad, complaint in [
        (good | {"arrivals": [[1, 2]]}, "expected 3 items"),
        (good | {"tcp_info": [[1, "not base64!"]]}, "not base64"),
        (good | {"counters": {"x": 1.5}}, "expected an integer"),
        ({k: v for k, v in good.items() if k != "role"}, "'role' is missing"),
    ]:
        with pytest.raises(WireError, match=complaint):
            decode(EndpointResult, bad)
    for line in (b"[1, 2]\n", b'{"op": 3}\n', b"\xff\n", b"[" * 100_000 + b"\n"):
        with pytest.raises(WireError):
            loads_line(line)


def test_the_agent_answers_hello_and_clock_over_pipes() -> None:
    requests = (
        b'{"op": "hello"}\n{"op": "clock"}\n{"op": "run", "protocol": "smtp", "role": "server"}\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "lab.hosts.agent"],
        input=requests,
        capture_output=True,
        cwd=PROJECT_ROOT,
        timeout=30,
        check=False,
    )
    replies = [loads_line(line) for line in done.stdout.splitlines(keepends=True)]
    assert [r["op"] for r in replies] == ["hello", "clock", "error"]
    assert decode(HostInfo, replies[0]["info"]).version == __version__
    assert replies[1]["t2"] <= replies[1]["t3"]
    assert "bad protocol" in replies[2]["error"] and done.returncode == 2


class _Recorder:
    """A stand-in agent stream: what RemoteControl sends."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def test_the_drain_deadline_moves_onto_the_far_hosts_clock() -> None:
    host = SimpleNamespace(last_offset=None)
    stream = _Recorder()
    control = RemoteControl(host, "server", stream)  # type: ignore[arg-type]
    control.send(("sender_done", 1_000))
    host.last_offset = SimpleNamespace(offset_ns=250.4)  # its clock is 250 ns ahead of ours
    control.send(("sender_done", 1_000))
    control.send(("stop",))
    assert [m["msg"] for m in stream.sent] == [
        ["sender_done", 1_000],
        ["sender_done", 1_250],
        ["stop"],
    ]
    with pytest.raises(WireError):
        control.send(("result", EndpointResult(role="x")))  # objects never go over the wire


# (a) login and the far end's facts


@pytest.mark.requires_root
def test_login_checks_the_far_ends_version_and_rights(
    hosts: SshdHosts, logged_in: tuple[RemoteHost, RemoteHost]
) -> None:
    client, server = logged_in
    for remote, host in ((client, hosts.client), (server, hosts.server)):
        assert remote.info.version == __version__
        assert remote.info.uid == 0 and remote.info.cap_net_raw
        assert remote.info.kernel.startswith("Linux ")
        assert remote.info.mtu["lab0"] > 0  # the testbed's link, seen from "that host"
        remote.require_capture()
        assert str(remote) == host.spec
    # no CAP_NET_RAW: capture is refused in one line (the host as a non-root would see it)
    client.info, kept = replace(client.info, uid=1000, cap_net_raw=False), client.info
    try:
        with pytest.raises(HostError, match="needs root with CAP_NET_RAW") as refused:
            client.require_capture()
        assert "\n" not in str(refused.value)
    finally:
        client.info = kept


# (b) every refusal is one line


def _wrapper(folder: Path, name: str, body: str) -> str:
    """A stand-in for the far end's Python (a script on "that host")."""
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def _refusal(spec: str, options: SSHOptions, **kwargs: Any) -> str:
    with pytest.raises(HostError) as caught:
        connect(spec, options, **kwargs).close()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(spec), message
    return message


@pytest.mark.requires_root
def test_refusals_are_one_line_errors(hosts: SshdHosts, tmp_path: Path) -> None:
    import asyncssh

    options, server = hosts.options, hosts.server
    before = set(agent_pids(server))
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    message = _refusal(server.spec, replace(options, known_hosts=empty))
    assert "unknown host key" in message

    # the server's address listed with the client host's key: a changed key
    wrong = tmp_path / "known_hosts_wrong"
    client_key = asyncssh.read_public_key(str(hosts.client.host_key) + ".pub")
    wrong.write_text(f"{server.address} {client_key.export_public_key().decode().strip()}\n")
    assert "host key mismatch" in _refusal(server.spec, replace(options, known_hosts=wrong))

    stranger = tmp_path / "id_stranger"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(stranger))
    stranger.chmod(0o600)
    message = _refusal(server.spec, replace(options, client_keys=(stranger,)))
    assert "login refused" in message

    assert "connection refused" in _refusal(f"root@{server.address}:2222", options)

    # the far end's Python has no protolab
    bare = _wrapper(tmp_path, "bare-python", 'cd /tmp && exec /usr/bin/python3 -I "$@"')
    message = _refusal(server.spec, replace(options, python=bare))
    assert "protolab is not installed" in message
    missing = str(tmp_path / "no-such-python")
    assert "not found there" in _refusal(server.spec, replace(options, python=missing))

    # another protolab version there
    other = _wrapper(
        tmp_path,
        "other-version",
        f"exec {sys.executable} -c \"import lab._version as v; v.__version__ = '0.0.1'; "
        "import runpy; runpy.run_module('lab.hosts.agent', run_name='__main__')\"",
    )
    message = _refusal(server.spec, replace(options, python=other))
    assert f"protolab 0.0.1 there, {__version__} here" in message

    # root without CAP_NET_RAW there: capture refused at login
    no_raw = _wrapper(
        tmp_path, "no-raw", f'exec setpriv --bounding-set=-net_raw {sys.executable} "$@"'
    )
    message = _refusal(server.spec, replace(options, python=no_raw), require_capture=True)
    assert "CAP_NET_RAW" in message
    assert _wait_until_only(server, before) == []


# (c) the exchanges over SSH deliver what the local run delivers


def _settings(protocol: Protocol, port: int) -> EndpointSettings:
    return EndpointSettings(
        server_address="198.18.0.2",
        client_address="198.18.0.1",
        port=port,
        count=300,
        size=200,
        rate=1000.0,
        echo=protocol is Protocol.UDP,
        seed=5,
        connect_timeout_s=5.0,
        run_timeout_s=15.0,
        drain_timeout_s=0.5,
        sample_tcp_info_s=0.02 if protocol is Protocol.TCP else None,
    )


Spawn = Callable[[str], tuple[Any, Any]]


def _run_pair(
    protocol: Protocol, settings: EndpointSettings, spawn_server: Spawn, spawn_client: Spawn
) -> tuple[EndpointResult, EndpointResult]:
    """run_exchange's orchestration for one flow (and its own _expect/_result helpers)."""
    budget_s = settings.count / settings.rate + settings.run_timeout_s
    drain_s = settings.drain_timeout_s
    processes = []
    try:
        server, server_control = spawn_server("server")
        processes.append(server)
        _expect(server_control, "ready", settings.connect_timeout_s, protocol, "server")
        client, client_control = spawn_client("client")
        processes.append(client)
        client_result = _result(client_control, budget_s, protocol, "client")
        with contextlib.suppress(BrokenPipeError):  # a server may be done already
            server_control.send(("sender_done", time.time_ns() + int(drain_s * 1e9)))
        server_result = _result(server_control, drain_s + budget_s, protocol, "server")
    finally:
        for process in processes:
            process.join(2.0)
            if process.is_alive():
                process.kill()
                process.join()
    return client_result, server_result


@pytest.mark.requires_root
@pytest.mark.parametrize("protocol", [Protocol.UDP, Protocol.TCP])
def test_exchange_over_ssh_delivers_what_the_local_run_delivers(
    hosts: SshdHosts, logged_in: tuple[RemoteHost, RemoteHost], protocol: Protocol
) -> None:
    client_host, server_host = logged_in
    before = {host.role: set(agent_pids(host)) for host in (hosts.client, hosts.server)}
    serve, run_client = _ENDPOINTS[protocol]  # what run_exchange forks locally
    local_settings = _settings(protocol, 50310)
    local = _run_pair(
        protocol,
        local_settings,
        lambda role: spawn(hosts.server.netns, role, partial(serve, local_settings)),
        lambda role: spawn(hosts.client.netns, role, partial(run_client, local_settings)),
    )
    remote_settings = _settings(protocol, 50320)
    remote = _run_pair(
        protocol,
        remote_settings,
        lambda role: spawn_remote(server_host, role, protocol, remote_settings),
        lambda role: spawn_remote(client_host, role, protocol, remote_settings),
    )
    tables = [
        build_messages(protocol, settings, client, server)
        for settings, (client, server) in ((local_settings, local), (remote_settings, remote))
    ]
    delivered = [int(t["t_recv_ns"].notna().sum()) for t in tables]
    assert delivered == [300, 300]  # a clean link: all of them, both ways of running
    for table in tables:
        assert bool(table["intact"].all()) and int(table["copies"].max()) == 1
    if protocol is Protocol.UDP:
        echoed = [int(t["rtt_ns"].notna().sum()) for t in tables]
        assert echoed == [300, 300]
    client, server = remote
    assert (client.role, server.role) == ("client", "server")
    assert client.error is None and server.error is None
    assert server.counters.keys() == local[1].counters.keys()  # the far end's kernel counters
    if protocol is Protocol.TCP:
        assert client.tcp_info and all(isinstance(raw, bytes) for _, raw in client.tcp_info)
        assert client.congestion_control == local[0].congestion_control
    for host in (hosts.client, hosts.server):
        left = _wait_until_only(host, before[host.role])
        assert left == [], _describe(left)


# (d) Ctrl-C, SIGTERM or SIGKILL of the controller mid-run leaves nothing on either host

_CONTROLLER = """
import signal, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from lab._signals import raise_interrupt
from lab.exchanges._endpoint import EndpointSettings
from lab.hosts.remote import spawn_remote
from lab.hosts.ssh import SSHOptions, connect

# as the lab's CLI does, for both: a process started in the background by a
# non-interactive shell (as CI may start the tests) inherits SIGINT ignored
signal.signal(signal.SIGINT, raise_interrupt)
signal.signal(signal.SIGTERM, raise_interrupt)
options = SSHOptions(known_hosts=Path({known_hosts!r}), client_keys=(Path({key!r}),),
                     config=Path({config!r}), use_agent=False, python=sys.executable)
settings = EndpointSettings(server_address="198.18.0.2", client_address="198.18.0.1",
    port={port}, count=100000, size=100, rate=200.0, echo=True, seed=1,
    connect_timeout_s=5.0, run_timeout_s=30.0, drain_timeout_s=0.5)
with connect({server!r}, options) as server, connect({client!r}, options) as client:
    endpoint, control = spawn_remote(server, "server", "udp", settings)
    assert control.poll(20) and control.recv() == ("ready",)
    spawn_remote(client, "client", "udp", settings)
    print("running", flush=True)
    time.sleep(60)
"""

_SIGNALS = {"ctrl-c": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}


def _start_controller(
    hosts: SshdHosts, folder: Path, name: str, port: int
) -> subprocess.Popen[bytes]:
    """A separate ``lab``-like process running a long UDP exchange over SSH."""
    options = hosts.options
    assert options.known_hosts and options.client_keys and options.config
    script = folder / f"controller-{name}.py"
    script.write_text(
        textwrap.dedent(_CONTROLLER).format(
            root=str(PROJECT_ROOT),
            known_hosts=str(options.known_hosts),
            key=str(options.client_keys[0]),
            config=str(options.config),
            port=port,
            server=hosts.server.spec,
            client=hosts.client.spec,
        )
    )
    return subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _running(controller: subprocess.Popen[bytes], within_s: float) -> None:
    """Wait for the controller's "running" (both endpoints up), at most ``within_s``."""
    assert controller.stdout is not None and controller.stderr is not None
    ready, _, _ = select.select([controller.stdout], [], [], within_s)
    line = controller.stdout.readline() if ready else b""
    if line != b"running\n":
        controller.kill()
        pytest.fail(f"controller not running: {controller.stderr.read().decode()[-800:]}")


@pytest.mark.requires_root
def test_interrupting_the_controller_leaves_nothing_on_either_host(
    hosts: SshdHosts, tmp_path: Path
) -> None:
    """Ctrl-C, SIGTERM (both through the lab's clean-up) and SIGKILL (none: the far end's
    sshd and the agents' stdin EOF end them), each on its own controller, all at once."""
    both = (hosts.client, hosts.server)
    before = {host.role: set(agent_pids(host)) for host in both}
    controllers = {
        name: _start_controller(hosts, tmp_path, name, 50330 + i) for i, name in enumerate(_SIGNALS)
    }
    try:
        for controller in controllers.values():
            _running(controller, within_s=45.0)
        running = {host.role: set(agent_pids(host)) - before[host.role] for host in both}
        # per controller, on each host: its session and its agent (under timeout)
        assert all(len(pids) >= 2 * len(controllers) for pids in running.values()), running
        for name, controller in controllers.items():
            controller.send_signal(_SIGNALS[name])
        for name, controller in controllers.items():
            status = controller.wait(40)  # bounded clean-up; slow only on a loaded machine
            # a KeyboardInterrupt that went through every clean-up ends Python with SIGINT
            assert status == (-signal.SIGKILL if name == "sigkill" else -signal.SIGINT), name
    finally:
        for controller in controllers.values():
            if controller.poll() is None:
                controller.kill()
                controller.wait()
    for host in both:
        left = _wait_until_only(host, before[host.role])
        assert left == [], f"{host.role}: {_describe(left)}"


# (e) the clock offset over the control channel


@pytest.mark.requires_root
def test_clock_offset_between_the_two_hosts_is_zero_within_its_bound(
    logged_in: tuple[RemoteHost, RemoteHost],
) -> None:
    client, server = logged_in
    estimate = offset_between(client, server, count=16)
    assert abs(estimate.offset_ns) <= estimate.bound_ns  # one kernel, one clock: truly 0
    assert estimate.consistent and estimate.samples == 32
    assert 0 < estimate.bound_ns < 20_000_000  # the control channel's round trip / 2, each
    alone = server.clock_offset(count=8)
    assert abs(alone.offset_ns) <= alone.bound_ns


# (f) fetching a file back never writes through a symlink


@pytest.mark.requires_root
def test_fetch_copies_a_file_and_refuses_a_destination_symlink(
    logged_in: tuple[RemoteHost, RemoteHost], tmp_path: Path
) -> None:
    _, server = logged_in
    source = tmp_path / "far" / "capture.pcap"
    source.parent.mkdir()
    source.write_bytes(os.urandom(300_000))
    here = tmp_path / "here"
    here.mkdir()
    copied = fetch_file(server, str(source), here / "capture.pcap")
    assert copied.read_bytes() == source.read_bytes()
    assert fetch_file(server, str(source), copied) == copied  # replaced in place

    target = tmp_path / "precious"
    target.write_text("keep me")
    link = here / "link.pcap"
    link.symlink_to(target)
    with pytest.raises(HostError, match="symbolic link"):
        fetch_file(server, str(source), link)
    assert target.read_text() == "keep me" and link.is_symlink()
    with pytest.raises(HostError, match="not a regular file"):
        fetch_file(server, "/dev/zero", here / "zero")
    with pytest.raises(HostError, match=r"capture\.missing"):
        fetch_file(server, str(source.with_suffix(".missing")), here / "missing")
    assert sorted(p.name for p in here.iterdir()) == ["capture.pcap", "link.pcap"]
