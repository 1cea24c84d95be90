"""A light per-flow tally for the live view: fixed-offset struct reads, no dissection.

The capture child calls :meth:`FlowTable.observe` on every packet it writes when a live
summary is asked for; the table keys packets by (family, protocol, source, source
port, destination, destination port) read at fixed offsets, and :meth:`snapshot`
turns it into printable :class:`LiveCounters` pieces every refresh.
"""

from __future__ import annotations

import heapq
import ipaddress
import struct
from dataclasses import dataclass

from lab.pcap import LINKTYPE_RAW

#: More distinct flows than this are tallied per protocol only (bounded memory).
MAX_FLOWS = 50_000

_IP_PROTO_NAMES = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
_ETHERTYPE_NAMES = {0x0806: "ARP", 0x8035: "RARP", 0x88CC: "LLDP", 0x8100: "VLAN"}
_PORTED = frozenset((6, 17, 132, 136))  # TCP, UDP, SCTP, UDP-Lite
_U16 = struct.Struct("!H")
_PORTS = struct.Struct("!HH")

Key = tuple[int, int, bytes, int, bytes, int]  # family, proto, src, sport, dst, dport
_UNKNOWN: Key = (0, -1, b"", -1, b"", -1)


@dataclass(frozen=True)
class FlowCount:
    """One flow's tally. Ports are None for port-less protocols."""

    protocol: str
    src: str
    sport: int | None
    dst: str
    dport: int | None
    packets: int
    bytes: int

    def label(self) -> str:
        src = _endpoint(self.src, self.sport)
        dst = _endpoint(self.dst, self.dport)
        return f"{src} > {dst}" if src or dst else "(other flows)"


@dataclass(frozen=True)
class LiveCounters:
    """What the capture child reports every refresh (and once at the end)."""

    elapsed_s: float
    packets: int
    bytes: int
    kernel_packets: int
    kernel_drops: int
    protocols: tuple[tuple[str, int, int], ...]  # (name, packets, bytes), most packets first
    flows: tuple[FlowCount, ...]  # top flows by packets
    flows_seen: int


def _endpoint(addr: str, port: int | None) -> str:
    if not addr:
        return ""
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _ip_key(data: bytes, off: int) -> Key:
    n = len(data)
    if n <= off:
        return _UNKNOWN
    version = data[off] >> 4
    if version == 4 and n >= off + 20:
        ihl = (data[off] & 15) * 4
        proto = data[off + 9]
        sport = dport = -1
        if (
            proto in _PORTED
            and not _U16.unpack_from(data, off + 6)[0] & 0x1FFF
            and n >= off + ihl + 4
        ):
            sport, dport = _PORTS.unpack_from(data, off + ihl)
        return (4, proto, data[off + 12 : off + 16], sport, data[off + 16 : off + 20], dport)
    if version == 6 and n >= off + 40:
        proto = data[off + 6]
        sport = dport = -1
        if proto in _PORTED and n >= off + 44:
            sport, dport = _PORTS.unpack_from(data, off + 40)
        return (6, proto, data[off + 8 : off + 24], sport, data[off + 24 : off + 40], dport)
    return _UNKNOWN


def packet_key(data: bytes, linktype: int) -> Key:
    """The flow key of one captured packet (raw IP or Ethernet)."""
    if linktype == LINKTYPE_RAW:
        return _ip_key(data, 0)
    if len(data) < 14:
        return _UNKNOWN
    ethertype = _U16.unpack_from(data, 12)[0]
    off = 14
    if ethertype in (0x8100, 0x88A8) and len(data) >= 18:
        ethertype = _U16.unpack_from(data, 16)[0]
        off = 18
    if ethertype in (0x0800, 0x86DD):
        return _ip_key(data, off)
    return (0, ethertype, b"", -1, b"", -1)


def _protocol_name(family: int, proto: int) -> str:
    if family in (4, 6):
        return _IP_PROTO_NAMES.get(proto, f"IP proto {proto}")
    if proto < 0:
        return "other"
    return _ETHERTYPE_NAMES.get(proto, f"ethertype 0x{proto:04x}")


def _address(raw: bytes) -> str:
    if len(raw) in (4, 16):
        return str(ipaddress.ip_address(raw))
    return ""


class FlowTable:
    """Per-flow packet / byte tally, bounded to :data:`MAX_FLOWS` distinct flows."""

    def __init__(self, linktype: int, max_flows: int = MAX_FLOWS) -> None:
        self.linktype = linktype
        self.max_flows = max_flows
        self.flows: dict[Key, list[int]] = {}

    def observe(self, data: bytes, length: int) -> None:
        key = packet_key(data, self.linktype)
        tally = self.flows.get(key)
        if tally is None:
            if len(self.flows) >= self.max_flows:
                key = (key[0], key[1], b"", -1, b"", -1)  # overflow: per protocol only
                tally = self.flows.get(key)
            if tally is None:
                tally = self.flows[key] = [0, 0]
        tally[0] += 1
        tally[1] += length

    def snapshot(
        self, top: int
    ) -> tuple[tuple[tuple[str, int, int], ...], tuple[FlowCount, ...], int]:
        """``(protocols, top flows, distinct flows)`` as :class:`LiveCounters` holds them."""
        protocols: dict[str, list[int]] = {}
        for (family, proto, *_rest), (pkts, nbytes) in self.flows.items():
            tally = protocols.setdefault(_protocol_name(family, proto), [0, 0])
            tally[0] += pkts
            tally[1] += nbytes
        proto_rows = tuple(
            sorted(((k, v[0], v[1]) for k, v in protocols.items()), key=lambda r: -r[1])
        )
        best = heapq.nlargest(top, self.flows.items(), key=lambda item: item[1][0])
        flows = tuple(
            FlowCount(
                protocol=_protocol_name(family, proto),
                src=_address(src),
                sport=sport if sport >= 0 else None,
                dst=_address(dst),
                dport=dport if dport >= 0 else None,
                packets=pkts,
                bytes=nbytes,
            )
            for (family, proto, src, sport, dst, dport), (pkts, nbytes) in best
        )
        return proto_rows, flows, len(self.flows)
