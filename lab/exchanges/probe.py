"""A light latency probe beside the load: UDP and TCP request/response at a few Hz.

flent's RRUL idea: while bulk flows fill the link, a sparse probe measures the round
trip a user's click or a game packet would see. It runs before the load (idle), during
it and after it, on its own port (``ports.probe``), so the bottleneck queue the load
builds up shows as added round-trip time: bufferbloat made visible.

Server ``socket(UDP) -> setsockopt(SO_REUSEADDR) -> bind -> recvfrom -> sendto`` beside
``socket(TCP) -> setsockopt(SO_REUSEADDR) -> bind -> listen -> accept -> recv -> sendall``;
client ``socket -> settimeout -> connect`` (TCP, with TCP_NODELAY: each probe leaves at
once) and a UDP socket, both sending one 16-byte probe per tick and timing the echo.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from multiprocessing.connection import Connection

from lab.exchanges._endpoint import POLL_INTERVAL_S, EndpointResult, EndpointSettings, paced

__all__ = ["PROBE_BYTES", "run_client", "serve"]

#: One probe: seq, a tag and the send time; as small as a ping.
_PROBE = struct.Struct("!IIQ")
PROBE_BYTES = _PROBE.size
_TAG = 0x50524F42  # "PROB"


def serve(settings: EndpointSettings, control: Connection, result: EndpointResult) -> None:
    """Echo UDP probes and one TCP connection's probes until the parent says stop."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener,
    ):
        for sock in (udp, listener):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((settings.server_address, settings.port))
        listener.listen(1)
        result.local_port = settings.port
        control.send(("ready",))
        connection: socket.socket | None = None
        pending = b""
        while True:
            watched = [udp.fileno(), listener.fileno(), control.fileno()]
            if connection is not None:
                watched.append(connection.fileno())
            ready, _, _ = select.select(watched, [], [], POLL_INTERVAL_S)
            if control.fileno() in ready:
                break  # "stop"
            if udp.fileno() in ready:
                data, peer = udp.recvfrom(2048)
                udp.sendto(data, peer)
            if listener.fileno() in ready and connection is None:
                connection, _ = listener.accept()
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if connection is not None and connection.fileno() in ready:
                chunk = connection.recv(65536)
                if not chunk:
                    connection.close()
                    connection = None
                    continue
                pending += chunk
                whole = len(pending) - len(pending) % PROBE_BYTES
                connection.sendall(pending[:whole])
                pending = pending[whole:]
        if connection is not None:
            connection.close()


def run_client(settings: EndpointSettings, control: Connection, result: EndpointResult) -> None:
    """Send a UDP and a TCP probe every 1/rate s until the parent says stop.

    ``result.probes`` gets one (kind, seq, t_send_ns, t_echo_ns) per probe, t_echo_ns
    -1 when no echo came back before the stop.
    """
    sent: dict[tuple[str, int], int] = {}
    echoed: dict[tuple[str, int], int] = {}
    lock = threading.Lock()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
    ):
        tcp.settimeout(settings.connect_timeout_s)
        tcp.connect((settings.server_address, settings.port))
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        udp.connect((settings.server_address, settings.port))
        result.local_port = udp.getsockname()[1]
        stop = threading.Event()
        reader = threading.Thread(
            target=_read_echoes, args=(udp, tcp, echoed, lock, stop), daemon=True
        )
        reader.start()
        for seq in paced(settings.count, settings.rate):
            if control.poll():
                break
            for kind, sock in (("udp", udp), ("tcp", tcp)):
                now = time.time_ns()
                with lock:
                    sent[(kind, seq)] = now
                sock.send(_PROBE.pack(seq, _TAG, now))
        time.sleep(settings.drain_timeout_s)  # the last echoes, at most a round trip late
        stop.set()
        reader.join(1.0)
    with lock:
        result.probes = [
            (kind, seq, t_send, echoed.get((kind, seq), -1))
            for (kind, seq), t_send in sorted(sent.items(), key=lambda item: item[1])
        ]


def _read_echoes(
    udp: socket.socket,
    tcp: socket.socket,
    echoed: dict[tuple[str, int], int],
    lock: threading.Lock,
    stop: threading.Event,
) -> None:
    pending = b""
    while not stop.is_set():
        ready, _, _ = select.select([udp, tcp], [], [], POLL_INTERVAL_S)
        now = time.time_ns()
        if udp in ready:
            try:
                data = udp.recv(2048)
            except OSError:  # an ICMP error for an earlier probe: that one got no echo
                continue
            if len(data) >= PROBE_BYTES:
                seq, tag, _ = _PROBE.unpack_from(data)
                if tag == _TAG:
                    with lock:
                        echoed.setdefault(("udp", seq), now)
        if tcp in ready:
            chunk = tcp.recv(65536)
            if not chunk:
                return
            pending += chunk
            while len(pending) >= PROBE_BYTES:
                seq, _, _ = _PROBE.unpack_from(pending)
                pending = pending[PROBE_BYTES:]
                with lock:
                    echoed.setdefault(("tcp", seq), now)
