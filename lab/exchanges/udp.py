"""The workload over UDP: one datagram per message, no connection, no guarantees.

Server ``socket -> setsockopt(SO_REUSEADDR) -> bind -> recvfrom (-> sendto in echo
mode) -> close``; client ``socket -> settimeout -> bind (ephemeral port) -> sendto ->
recvfrom -> close``. Loss, duplicates and reordering reach the application untouched;
the server stops once every message arrived or the drain time after the last send ends.
In a reverse flow the client binds its ephemeral port and the lab tells the server, which
then sends to it (iperf3's client sends a first datagram for the server to learn it; the
lab's control channel does that job, so only the workload crosses the impaired link).
"""

from __future__ import annotations

import socket
from multiprocessing.connection import Connection
from typing import Any

from lab.exchanges._endpoint import (
    POLL_INTERVAL_S,
    EchoCollector,
    EndpointResult,
    EndpointSettings,
    enlarge_receive_buffer,
    send_datagrams_paced,
    serve_datagrams,
    wait_for_go,
)
from lab.exchanges._framing import HEADER, MessageBuilder, filler

MAX_DATAGRAM = 65_535


def serve(settings: EndpointSettings, control: Connection, result: EndpointResult) -> None:
    """Receive datagrams until all arrived or the drain deadline passes (reverse: send
    them to the client's port once the lab says the client is ready)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        enlarge_receive_buffer(server)
        server.bind((settings.server_address, settings.port))
        result.local_port = settings.port
        control.send(("ready",))
        if settings.reverse:
            result.peer_port = wait_for_go(control, settings)
            _send_datagrams(server, (settings.client_address, result.peer_port), settings, result)
        else:
            _receive_datagrams(server, settings, control, result)


def run_client(settings: EndpointSettings, control: Connection, result: EndpointResult) -> None:
    """Send every message paced; in echo mode collect the echoes until the drain ends
    (reverse: report the port, then receive what the server sends)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(POLL_INTERVAL_S)
        client.bind((settings.client_address, 0))  # port 0: the kernel picks an ephemeral port
        result.local_port, result.peer_port = client.getsockname()[1], settings.port
        if settings.reverse:
            enlarge_receive_buffer(client)
            control.send(("ready", result.local_port))
            _receive_datagrams(client, settings, control, result)
        else:
            _send_datagrams(client, (settings.server_address, settings.port), settings, result)


def _receive_datagrams(
    sock: socket.socket, settings: EndpointSettings, control: Connection, result: EndpointResult
) -> None:
    """Record every datagram (echoing it in echo mode) until all arrived or the drain ends."""
    expected_filler = filler(settings.seed, settings.size)

    def on_datagram(datagram: bytes, peer: Any, now: int) -> int:
        seq: int = HEADER.unpack_from(datagram)[0]
        result.arrivals.append((seq, now, datagram[16:] == expected_filler))
        result.peer_port = peer[1]
        if settings.echo:
            sock.sendto(datagram, peer)
        return seq

    serve_datagrams(sock, control, settings.count, MAX_DATAGRAM, on_datagram)


def _send_datagrams(
    sock: socket.socket,
    destination: tuple[str, int],
    settings: EndpointSettings,
    result: EndpointResult,
) -> None:
    """Send every message paced; in echo mode collect the echoes until the drain ends."""
    builder = MessageBuilder(settings.size, settings.seed)
    expected_filler = filler(settings.seed, settings.size)
    echoes = None
    if settings.echo:
        echoes = EchoCollector(
            sock,
            settings.count,
            MAX_DATAGRAM,
            lambda data, _: (HEADER.unpack_from(data)[0], data[16:] == expected_filler),
        )
    send_datagrams_paced(sock, destination, builder.build, settings, result)
    if echoes is not None:
        result.arrivals = echoes.join(settings.drain_timeout_s)
