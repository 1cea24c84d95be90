"""The workload over raw IP: one IP packet of protocol 253 per message, no ports at all.

Server ``socket(AF_INET, SOCK_RAW, 253) -> setsockopt(SO_RCVBUF) -> bind(address, 0) ->
recvfrom (-> sendto in echo mode) -> close``; client ``socket -> settimeout -> bind(address,
0) -> sendto -> recvfrom -> close``. 253 is reserved for experimentation (RFC 3692). The
kernel builds the IP header (``IP_HDRINCL`` off) and hands the receiver the *whole* packet,
IP header included, which is stripped here (IHL * 4 bytes).

Below UDP there is nothing the lab does not do itself:

* **No ports.** A raw socket gets a copy of *every* protocol-253 packet that reaches its
  namespace (bound to an address: every one sent to that address), whoever sent it. The
  receiver therefore keeps only packets whose source address is its peer's and counts the
  rest as ``App.RawForeignPackets``. It never sees its own outgoing packets.
* **No checksum.** The IPv4 header checksum covers the header only, and the kernel has no
  transport checksum for protocol 253, so a flipped payload bit arrives as is. The lab adds
  its own (below); a packet that fails it is discarded and counted as
  ``App.RawChecksumErrors`` — what the kernel does for UDP (``Udp.InCsumErrors``): the
  message counts as lost, never as a corrupted delivery.
* **No kernel counters of its own.** ``Raw.Drops`` is the socket's drop count from
  ``/proc/net/raw`` (full receive buffer), the counterpart of ``Udp.RcvbufErrors``.

IP payload of a RAW message (``size`` bytes, exactly what UDP carries, so the two compare
fairly; the seq comes first, where the ground truth and the pcap parser look for it)::

    0   seq        u32  \\
    4   length     u32   > the lab's 16-byte header, as for TCP and UDP
    8   t_send_ns  u64  /
    16  checksum   u32  CRC-32 (zlib/IEEE) of bytes 0-15 followed by bytes 20-end
    20  filler     the UDP filler from byte 4 on: the checksum takes its first 4 bytes

so RAW needs ``size >= 20`` (:func:`check_size`).
"""

from __future__ import annotations

import os
import socket
import struct
import zlib
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from lab._protocols import IPPROTO_LAB_RAW
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
from lab.exchanges._framing import HEADER, HEADER_SIZE, MessageBuilder, filler

#: IP protocol number of the lab's RAW messages (RFC 3692: for experimentation).
CHECKSUM = struct.Struct("!I")
CHECKSUM_OFFSET = HEADER_SIZE
#: Header plus checksum: the smallest RAW message.
RAW_HEADER_SIZE = HEADER_SIZE + CHECKSUM.size
#: A whole IPv4 packet, header included, is what a raw socket returns.
MAX_PACKET = 65_535

Buffer = bytes | bytearray | memoryview


def check_size(size: int) -> None:
    """Refuse message sizes that leave no room for the checksum."""
    if size < RAW_HEADER_SIZE:
        raise ValueError(
            f"raw needs workload.size >= {RAW_HEADER_SIZE} (16-byte header + 4-byte checksum), "
            f"got {size}"
        )


def checksum(payload: Buffer) -> int:
    """CRC-32 of the payload without its checksum field; catches every single-bit flip."""
    view = memoryview(payload)
    return zlib.crc32(view[RAW_HEADER_SIZE:], zlib.crc32(view[:CHECKSUM_OFFSET]))


def seal(message: bytearray) -> bytearray:
    """Write the checksum of ``message`` into it (in place) and return it."""
    CHECKSUM.pack_into(message, CHECKSUM_OFFSET, checksum(message))
    return message


def verify(payload: Buffer) -> int | None:
    """The seq of a well-formed payload; None if short, mislabelled or failing the checksum."""
    if len(payload) < RAW_HEADER_SIZE:
        return None
    seq, length, _ = HEADER.unpack_from(payload)
    if length != len(payload) or CHECKSUM.unpack_from(payload, CHECKSUM_OFFSET)[0] != checksum(
        payload
    ):
        return None
    return int(seq)


def ip_payload(packet: bytes) -> bytes:
    """What follows the IPv4 header of a packet read from a raw socket."""
    return packet[(packet[0] & 0x0F) * 4 :]


class RawMessageBuilder:
    """The lab's message with the checksum sealed in, reusing one buffer."""

    def __init__(self, size: int, seed: int) -> None:
        check_size(size)
        self._builder = MessageBuilder(size, seed)

    def build(self, seq: int, t_send_ns: int) -> bytearray:
        return seal(self._builder.build(seq, t_send_ns))


class _Receiver:
    """What the kernel does for UDP, done by the application: demultiplex and checksum."""

    def __init__(self, peer_address: str, settings: EndpointSettings) -> None:
        self.peer_address = peer_address
        self._expected_filler = filler(settings.seed, settings.size)[CHECKSUM.size :]
        self.foreign = 0
        self.checksum_errors = 0

    def accept(self, packet: bytes, source: str) -> tuple[bytes, int, bool] | None:
        """(payload, seq, intact) of a packet from the peer that passes the checksum."""
        if source != self.peer_address:  # no ports: anyone's protocol-253 packet lands here
            self.foreign += 1
            return None
        payload = ip_payload(packet)
        seq = verify(payload)
        if seq is None:
            self.checksum_errors += 1
            return None
        return payload, seq, payload[RAW_HEADER_SIZE:] == self._expected_filler

    def counters(self, sock: socket.socket) -> dict[str, int]:
        return {
            "App.RawChecksumErrors": self.checksum_errors,
            "App.RawForeignPackets": self.foreign,
            "Raw.Drops": socket_drops(sock),
        }


def socket_drops(sock: socket.socket) -> int:
    """Packets the kernel dropped for this raw socket (``drops`` in ``/proc/net/raw``)."""
    inode = str(os.fstat(sock.fileno()).st_ino)
    for line in Path("/proc/net/raw").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[9] == inode:
            return int(fields[-1])
    return 0


def _open() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_LAB_RAW)


def serve(settings: EndpointSettings, control: Connection, result: EndpointResult) -> None:
    """Receive packets until all arrived or the drain deadline passes (reverse: send them
    to the client's address once the lab says the client is ready)."""
    check_size(settings.size)
    with _open() as server:
        enlarge_receive_buffer(server)
        server.bind((settings.server_address, 0))  # an address, no port: 0 is the only value
        control.send(("ready",))
        if settings.reverse:
            wait_for_go(control, settings)
            _send_packets(server, settings.client_address, settings, result)
        else:
            _receive_packets(server, settings.client_address, settings, control, result)


def run_client(settings: EndpointSettings, control: Connection, result: EndpointResult) -> None:
    """Send every message paced; in echo mode collect the echoes until the drain ends
    (reverse: say it is ready, then receive what the server sends)."""
    check_size(settings.size)
    with _open() as client:
        client.settimeout(POLL_INTERVAL_S)
        client.bind((settings.client_address, 0))  # fixes the source address; no port
        if settings.reverse:
            enlarge_receive_buffer(client)
            control.send(("ready", 0))
            _receive_packets(client, settings.server_address, settings, control, result)
        else:
            _send_packets(client, settings.server_address, settings, result)


def _receive_packets(
    sock: socket.socket,
    peer_address: str,
    settings: EndpointSettings,
    control: Connection,
    result: EndpointResult,
) -> None:
    """Keep the peer's packets that pass the checksum (echoing them in echo mode) until
    all arrived or the drain deadline passes."""
    receiver = _Receiver(peer_address, settings)

    def on_packet(packet: bytes, peer: Any, now: int) -> int | None:
        source = peer[0]
        accepted = receiver.accept(packet, source)
        if accepted is None:
            return None
        payload, seq, intact = accepted
        result.arrivals.append((seq, now, intact))
        if settings.echo:
            sock.sendto(payload, (source, 0))
        return seq

    serve_datagrams(sock, control, settings.count, MAX_PACKET, on_packet)
    result.counters.update(receiver.counters(sock))


def _send_packets(
    sock: socket.socket, peer_address: str, settings: EndpointSettings, result: EndpointResult
) -> None:
    """Send every message paced; in echo mode collect the echoes until the drain ends."""
    builder = RawMessageBuilder(settings.size, settings.seed)
    destination = (peer_address, 0)
    echo_receiver = _Receiver(peer_address, settings)
    echoes = None
    if settings.echo:
        echoes = EchoCollector(
            sock,
            settings.count,
            MAX_PACKET,
            lambda data, peer: _seq_intact(echo_receiver, data, peer),
        )
    send_datagrams_paced(sock, destination, builder.build, settings, result)
    if echoes is not None:
        result.arrivals = echoes.join(settings.drain_timeout_s)
        result.counters.update(echo_receiver.counters(sock))


def _seq_intact(receiver: _Receiver, packet: bytes, peer: Any) -> tuple[int, bool] | None:
    accepted = receiver.accept(packet, peer[0])
    return None if accepted is None else (accepted[1], accepted[2])
