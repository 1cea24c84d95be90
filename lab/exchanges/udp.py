"""The workload over UDP: one datagram per message, no connection, no guarantees.

Server ``socket -> setsockopt(SO_REUSEADDR) -> bind -> recvfrom (-> sendto in echo
mode) -> close``; client ``socket -> settimeout -> bind (ephemeral port) -> sendto ->
recvfrom -> close``. Loss, duplicates and reordering reach the application untouched;
the server stops once every message arrived or the drain time after the last send ends.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from multiprocessing.connection import Connection

from lab.exchanges._endpoint import (
    DATAGRAM_RCVBUF,
    POLL_INTERVAL_S,
    EndpointResult,
    EndpointSettings,
    paced,
    sender_done_deadline,
)
from lab.exchanges._framing import HEADER, MessageBuilder, filler

MAX_DATAGRAM = 65_535


def serve(settings: EndpointSettings, control: Connection, result: EndpointResult) -> None:
    """Receive datagrams until all arrived or the drain deadline passes."""
    expected_filler = filler(settings.seed, settings.size)
    seen: set[int] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, DATAGRAM_RCVBUF)
        server.bind((settings.server_address, settings.port))
        server.setblocking(False)
        result.local_port = settings.port
        control.send(("ready",))
        deadline: int | None = None
        watched = [server.fileno(), control.fileno()]
        while len(seen) < settings.count and (deadline is None or time.time_ns() < deadline):
            ready, _, _ = select.select(watched, [], [], POLL_INTERVAL_S)
            if control.fileno() in ready:
                deadline = deadline or sender_done_deadline(control)
            if server.fileno() not in ready:
                continue
            while True:
                try:
                    datagram, peer = server.recvfrom(MAX_DATAGRAM)
                except BlockingIOError:
                    break
                now = time.time_ns()
                seq = HEADER.unpack_from(datagram)[0]
                seen.add(seq)
                result.arrivals.append((seq, now, datagram[16:] == expected_filler))
                result.peer_port = peer[1]
                if settings.echo:
                    server.sendto(datagram, peer)


def run_client(settings: EndpointSettings, control: Connection, result: EndpointResult) -> None:
    """Send every message paced; in echo mode collect the echoes until the drain ends."""
    builder = MessageBuilder(settings.size, settings.seed)
    result.t_send_ns = [-1] * settings.count
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(POLL_INTERVAL_S)
        client.bind((settings.client_address, 0))  # port 0: the kernel picks an ephemeral port
        result.local_port, result.peer_port = client.getsockname()[1], settings.port
        destination = (settings.server_address, settings.port)
        echoes = _EchoCollector(client, settings) if settings.echo else None
        for seq in paced(settings.count, settings.rate):
            now = time.time_ns()
            client.sendto(builder.build(seq, now), destination)
            result.t_send_ns[seq] = now
        if echoes is not None:
            result.arrivals = echoes.join(settings)


class _EchoCollector:
    """Collects echoed datagrams on the client while the main thread keeps sending."""

    def __init__(self, client: socket.socket, settings: EndpointSettings) -> None:
        self._client = client
        self._expected = filler(settings.seed, settings.size)
        self._count = settings.count
        self._arrivals: list[tuple[int, int, bool]] = []
        self._seen: set[int] = set()
        self._stop_at = float("inf")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while len(self._seen) < self._count and time.monotonic() < self._stop_at:
            try:
                datagram, _ = self._client.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                return
            seq = HEADER.unpack_from(datagram)[0]
            self._seen.add(seq)
            self._arrivals.append((seq, time.time_ns(), datagram[16:] == self._expected))

    def join(self, settings: EndpointSettings) -> list[tuple[int, int, bool]]:
        self._stop_at = time.monotonic() + settings.drain_timeout_s
        self._thread.join(settings.drain_timeout_s + 1)
        return self._arrivals
