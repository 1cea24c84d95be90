"""What every endpoint shares: its settings, its results, pacing, and its process.

Each endpoint runs in its own process, forked from ``lab`` and moved into its
namespace before it opens a socket, so its sockets live in that namespace and it does
not share a GIL with the other end. Results come back over a pipe.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing
import select
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from lab.exchanges import _kernel
from lab.testbed import _netns

#: How often blocking socket calls wake up to look at the control pipe.
POLL_INTERVAL_S = 0.05
#: Receive buffer for datagram servers: room for bursts while the process is busy.
DATAGRAM_RCVBUF = 8 * 1024 * 1024

_PR_SET_PDEATHSIG = 1
_SO_RCVBUFFORCE = 33  # linux/socket.h; not exported by Python 3.11


class EndpointProcess(Protocol):
    """What a run does with an endpoint's process: a forked one here, or a far one
    (:class:`lab.hosts.remote.RemoteEndpoint`)."""

    def join(self, timeout: float | None = None) -> None: ...
    def is_alive(self) -> bool: ...
    def kill(self) -> None: ...


class ControlChannel(Protocol):
    """What a run does with an endpoint's control: a pipe here, or a far one
    (:class:`lab.hosts.remote.RemoteControl`)."""

    def poll(self, timeout: float | None = 0.0) -> bool: ...
    def recv(self) -> Any: ...
    def send(self, obj: tuple[Any, ...]) -> None: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class EndpointSettings:
    """Everything an endpoint needs; the same for every protocol of a run."""

    server_address: str
    client_address: str
    port: int
    count: int
    size: int
    rate: float
    echo: bool
    seed: int
    connect_timeout_s: float
    run_timeout_s: float
    drain_timeout_s: float
    congestion_control: str = "cubic"
    nagle: bool = False  # TCP: TCP_NODELAY off on both ends
    duration_s: float | None = None  # bulk: stop sending after this long (count caps it)
    sample_tcp_info_s: float | None = None  # TCP sender: sample TCP_INFO this often
    reverse: bool = False  # the server sends, the client receives (iperf3 -R)


@dataclass
class EndpointResult:
    """What one endpoint observed. Times are CLOCK_REALTIME ns."""

    role: str
    t_send_ns: list[int] = field(default_factory=list)  # sender: by seq, -1 = not sent
    arrivals: list[tuple[int, int, bool]] = field(default_factory=list)  # (seq, t, intact)
    counters: dict[str, int] = field(default_factory=dict)
    congestion_control: str = ""  # TCP only: what the kernel reports for the socket
    tcp_info: list[tuple[int, bytes]] = field(default_factory=list)  # TCP sender: samples
    probes: list[tuple[str, int, int, int]] = field(default_factory=list)  # (kind, seq, sent, echo)
    local_port: int = 0
    peer_port: int = 0
    started_ns: int = 0
    ended_ns: int = 0
    error: str | None = None


def paced(count: int, rate: float, duration_s: float | None = None) -> Iterator[int]:
    """Yield 0..count-1 on an absolute schedule at ``rate`` per second.

    The schedule is absolute, so a late send is followed by catch-up and the average
    rate holds even when a single sleep overshoots. ``rate`` = inf never waits (bulk:
    the socket's own blocking is the pace); ``duration_s`` stops the schedule early.
    """
    interval_ns = 1e9 / rate
    start = time.perf_counter_ns()
    stop = start + duration_s * 1e9 if duration_s is not None else math.inf
    for seq in range(count):
        due = start + seq * interval_ns
        now = time.perf_counter_ns()
        if now >= stop or due >= stop:
            return
        wait_ns = due - now
        if wait_ns > 20_000:
            time.sleep(wait_ns / 1e9)
        yield seq


def wait_for_go(control: Connection, settings: EndpointSettings) -> int:
    """Reverse flows: block until the parent says the client is ready; its port.

    The client connects (TCP) or binds (UDP, RAW) and reports its port; only then may the
    server send, or its first messages would meet a closed port.
    """
    deadline = time.monotonic() + settings.connect_timeout_s * 2
    while time.monotonic() < deadline:
        if control.poll(POLL_INTERVAL_S):
            message = control.recv()
            if message[0] == "go":
                return int(message[1])
    raise TimeoutError(f"no 'go' from the lab within {settings.connect_timeout_s * 2:g} s")


def send_datagrams_paced(
    sock: socket.socket,
    destination: tuple[str, int],
    build: Callable[[int, int], bytes | bytearray],
    settings: EndpointSettings,
    result: EndpointResult,
) -> None:
    """The datagram senders' loop (UDP, RAW): one message per ``sendto``, on schedule,
    each send time recorded by seq."""
    result.t_send_ns = [-1] * settings.count
    for seq in paced(settings.count, settings.rate, settings.duration_s):
        now = time.time_ns()
        sock.sendto(build(seq, now), destination)
        result.t_send_ns[seq] = now


def sender_done_deadline(control: Connection) -> int | None:
    """The parent's 'sender finished, drain until T' message, when it has arrived."""
    if control.poll():
        message = control.recv()
        if message[0] == "sender_done":
            return int(message[1])
    return None


#: What a datagram receiver makes of one packet: (seq, intact), or None to ignore it.
Parse = Callable[[bytes, Any], "tuple[int, bool] | None"]
Arrival = tuple[int, int, bool]


def enlarge_receive_buffer(sock: socket.socket) -> None:
    """A deep receive queue, past net.core.rmem_max when root (SO_RCVBUFFORCE).

    Datagrams the application has not read yet wait here; a burst that overflows it is
    loss on the receiving host, not on the link, and would blur what the link did.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, DATAGRAM_RCVBUF)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, DATAGRAM_RCVBUF)


def serve_datagrams(
    sock: socket.socket,
    control: Connection,
    count: int,
    max_size: int,
    on_packet: Callable[[bytes, Any, int], int | None],
) -> None:
    """The datagram servers' loop (UDP, RAW): drain the socket as packets come.

    Stops when every seq arrived or the drain deadline the parent sends after the last
    send has passed, so a lost datagram never hangs the run. ``on_packet(data, peer,
    now_ns)`` records one packet and returns its seq (None when it is not the lab's).
    """
    seen: set[int] = set()
    deadline: int | None = None
    watched = [sock.fileno(), control.fileno()]
    sock.setblocking(False)
    while len(seen) < count and (deadline is None or time.time_ns() < deadline):
        ready, _, _ = select.select(watched, [], [], POLL_INTERVAL_S)
        if control.fileno() in ready:
            deadline = deadline or sender_done_deadline(control)
        if sock.fileno() not in ready:
            continue
        while True:
            try:
                data, peer = sock.recvfrom(max_size)
            except BlockingIOError:
                break
            seq = on_packet(data, peer, time.time_ns())
            if seq is not None:
                seen.add(seq)


class EchoCollector:
    """Collects echoed datagrams on a client while its main thread keeps sending."""

    def __init__(self, sock: socket.socket, count: int, max_size: int, parse: Parse) -> None:
        self._sock = sock
        self._count = count
        self._max_size = max_size
        self._parse = parse
        self._arrivals: list[Arrival] = []
        self._seen: set[int] = set()
        self._stop_at = float("inf")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while len(self._seen) < self._count and time.monotonic() < self._stop_at:
            try:
                data, peer = self._sock.recvfrom(self._max_size)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.time_ns()
            parsed = self._parse(data, peer)
            if parsed is None:
                continue
            seq, intact = parsed
            self._seen.add(seq)
            self._arrivals.append((seq, now, intact))

    def join(self, drain_timeout_s: float) -> list[Arrival]:
        """Wait for the last echoes, at most the drain time; return what came back."""
        self._stop_at = time.monotonic() + drain_timeout_s
        self._thread.join(drain_timeout_s + 1)
        return self._arrivals


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _child_main(
    netns: str,
    role: str,
    body: Callable[[Connection, EndpointResult], None],
    control: Connection,
) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a SIGTERM ends us quietly
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    result = EndpointResult(role=role)
    try:
        _netns.enter(netns)
        before = _kernel.read_counters()
        result.started_ns = time.time_ns()
        body(control, result)
        result.ended_ns = time.time_ns()
        counters = _kernel.difference(_kernel.read_counters(), before)
        result.counters = {**counters, **result.counters}  # plus the endpoint's own App.* ones
    except Exception as error:  # reported to the parent, which raises ExchangeError
        result.error = f"{type(error).__name__}: {error}"
        result.error += "\n" + traceback.format_exc(limit=4)
    control.send(("result", result))
    control.close()


def spawn(
    netns: str, role: str, body: Callable[[Connection, EndpointResult], None]
) -> tuple[BaseProcess, Connection]:
    """Start ``body`` in a child process inside ``netns``; return it and its control pipe."""
    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe()
    process = context.Process(
        target=_child_main, args=(netns, role, body, child_end), name=f"lab-{role}", daemon=True
    )
    # blocked across the fork: the child sets its own handlers before either arrives
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    child_end.close()
    return process, parent_end
