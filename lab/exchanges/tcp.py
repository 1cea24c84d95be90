"""The workload over TCP: reliable and ordered, one connection, length-prefixed messages.

The socket calls follow the classic flow on purpose, so a reader recognises them:
server ``socket -> setsockopt(SO_REUSEADDR) -> setsockopt(TCP_CONGESTION) -> bind ->
listen -> accept -> setsockopt(TCP_CONGESTION, TCP_NODELAY) -> recv -> sendall -> close``;
client ``socket -> setsockopt(TCP_CONGESTION) -> settimeout -> connect ->
setsockopt(TCP_NODELAY) -> sendall -> recv -> close``. In a reverse flow (iperf3 -R)
the roles of the data swap, not of the connection: the client still connects, then
reads (``recv``) what the server sends (``sendall``).

``TCP_NODELAY`` is on at both ends unless the scenario says ``nagle = true``: with
Nagle's algorithm (RFC 896) a small write waits while an earlier segment is unacked,
and the peer delays its ACK (RFC 1122 §4.2.3.2, up to 40 ms on Linux), so an echo
server would coalesce replies and every round trip would carry that wait.
"""

from __future__ import annotations

import socket
import threading
import time
from multiprocessing.connection import Connection

from lab.exchanges._endpoint import (
    POLL_INTERVAL_S,
    EndpointResult,
    EndpointSettings,
    paced,
    sender_done_deadline,
    wait_for_go,
)
from lab.exchanges._framing import MessageBuilder, StreamReassembler, filler, parse_header
from lab.exchanges._tcpinfo import TcpInfoSampler

RECV_BYTES = 256 * 1024


def pin_congestion_control(sock: socket.socket, name: str) -> str:
    """Use ``name`` for this socket whatever the host default is; return what the kernel says.

    This kernel defaults to BBR, which barely reacts to random loss; the lab pins the
    scenario's algorithm (CUBIC by default) so loss shows as it does on most hosts.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()


def set_nagle(sock: socket.socket, nagle: bool) -> None:
    """Nagle's algorithm on (TCP_NODELAY 0) or off (TCP_NODELAY 1: each write leaves now)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0 if nagle else 1)


def serve(settings: EndpointSettings, control: Connection, result: EndpointResult) -> None:
    """Accept one connection; read messages until the client closes or time runs out
    (reverse: send them, once the lab says the client is ready)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        pin_congestion_control(server, settings.congestion_control)
        server.bind((settings.server_address, settings.port))
        server.listen(1)
        control.send(("ready",))
        server.settimeout(settings.connect_timeout_s + settings.run_timeout_s)
        connection, (_, peer_port) = server.accept()
        result.local_port, result.peer_port = settings.port, peer_port
        with connection:
            result.congestion_control = pin_congestion_control(
                connection, settings.congestion_control
            )
            set_nagle(connection, settings.nagle)  # echoes leave at once, as requests do
            if settings.reverse:
                wait_for_go(control, settings)
                _send_messages(connection, settings, result)
            else:
                _receive_messages(connection, settings, control, result)


def run_client(settings: EndpointSettings, control: Connection, result: EndpointResult) -> None:
    """Connect, send every message paced, then close and wait for the server to finish
    (reverse: say so when connected, then read what the server sends)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
        result.congestion_control = pin_congestion_control(client, settings.congestion_control)
        client.settimeout(settings.connect_timeout_s)
        client.connect((settings.server_address, settings.port))
        # Each message leaves when sent; Nagle would hold small ones back and blur the delay.
        set_nagle(client, settings.nagle)
        result.local_port, result.peer_port = client.getsockname()[1], settings.port
        if settings.reverse:
            control.send(("ready", result.local_port))
            _receive_messages(client, settings, control, result)
        else:
            _send_messages(client, settings, result)


def _receive_messages(
    connection: socket.socket,
    settings: EndpointSettings,
    control: Connection,
    result: EndpointResult,
) -> None:
    """Read messages (echoing each one in echo mode) until the peer closes its side or the
    drain deadline after the last send passes."""
    expected_filler = filler(settings.seed, settings.size)
    connection.settimeout(POLL_INTERVAL_S)
    stream = StreamReassembler()
    deadline: int | None = None
    while deadline is None or time.time_ns() < deadline:
        deadline = deadline or sender_done_deadline(control)
        try:
            chunk = connection.recv(RECV_BYTES)
        except TimeoutError:
            continue
        if not chunk:
            break  # the sender closed its side: every byte it sent has arrived
        now = time.time_ns()
        for message in stream.feed(chunk):
            seq = parse_header(message)[0]
            result.arrivals.append((seq, now, message[16:] == expected_filler))
            if settings.echo:
                connection.sendall(message)


def _send_messages(
    connection: socket.socket, settings: EndpointSettings, result: EndpointResult
) -> None:
    """Send every message paced, close the sending side (FIN), wait for the peer to close
    (or, in echo mode, for the echoes)."""
    builder = MessageBuilder(settings.size, settings.seed)
    result.t_send_ns = [-1] * settings.count
    connection.settimeout(settings.run_timeout_s)  # sendall blocks while the window is shut
    echoes = _EchoReader(connection, settings) if settings.echo else None
    sampler = (
        TcpInfoSampler(connection, settings.sample_tcp_info_s)
        if settings.sample_tcp_info_s
        else None
    )
    try:
        for seq in paced(settings.count, settings.rate, settings.duration_s):
            now = time.time_ns()
            connection.sendall(builder.build(seq, now))
            result.t_send_ns[seq] = now
        connection.shutdown(socket.SHUT_WR)  # FIN: "no more messages"
        if echoes is not None:
            result.arrivals = echoes.join(settings)
        else:
            _wait_for_close(connection, settings)
    finally:
        if sampler is not None:  # the sender's view until every byte was acknowledged
            result.tcp_info = sampler.stop()


def _wait_for_close(client: socket.socket, settings: EndpointSettings) -> None:
    """Block until the server closes (it has read everything) or the drain time ends."""
    deadline = time.monotonic() + settings.run_timeout_s
    client.settimeout(POLL_INTERVAL_S)
    while time.monotonic() < deadline:
        try:
            if not client.recv(RECV_BYTES):
                return
        except TimeoutError:
            continue


class _EchoReader:
    """Reads the echoed messages on the client while the main thread keeps sending."""

    def __init__(self, client: socket.socket, settings: EndpointSettings) -> None:
        self._client = client
        self._arrivals: list[tuple[int, int, bool]] = []
        self._expected = filler(settings.seed, settings.size)
        self._count = settings.count
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop_at = float("inf")
        self._thread.start()

    def _run(self) -> None:
        stream = StreamReassembler()
        while len(self._arrivals) < self._count and time.monotonic() < self._stop_at:
            try:
                chunk = self._client.recv(RECV_BYTES)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            now = time.time_ns()
            for message in stream.feed(chunk):
                self._arrivals.append(
                    (parse_header(message)[0], now, message[16:] == self._expected)
                )

    def join(self, settings: EndpointSettings) -> list[tuple[int, int, bool]]:
        self._stop_at = time.monotonic() + settings.run_timeout_s
        self._thread.join(settings.run_timeout_s + 1)
        return self._arrivals
