"""The packet table both file formats fill: IP and transport fields gathered with numpy
for all packets of a chunk at once, then the chunks assembled into a :class:`PcapFrame`."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from lab._protocols import IPPROTO_LAB_RAW
from lab.pcap._gather import I64, U8, Mask, u16, u32
from lab.pcap._linktypes import (
    ETH_IPV4,
    ETH_IPV6,
    ETH_VLAN_TAGS,
    IP_ONLY,
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)

#: IP protocol number the lab's RAW exchange uses (RFC 3692 experimentation value).
LAB_RAW_PROTO = IPPROTO_LAB_RAW

_IPV6_EXT_HEADERS = (0, 43, 60)  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_TCP = 6
_UDP = 17

Columns = dict[str, npt.NDArray[np.generic]]


@dataclass(frozen=True)
class PcapStats:
    """What reading the file found besides the packets.

    ``records`` counts packet records met (classic records; pcapng enhanced, simple
    and obsolete packet blocks) = ``packets`` + ``skipped``; ``packets`` rows
    produced and ``skipped`` records that gave no row; ``reasons`` splits
    ``skipped`` by cause: "truncated" (cut short by the end of the file),
    "non_ip", "bad_ip" (no valid IPv4/IPv6 header), "garbage" (an impossible record
    header or block; ``garbage_offset`` is its byte offset, and the rest of the file
    is ignored because record boundaries are lost) and, in pcapng files only,
    "bad_block" (a well-framed packet block that cannot be read: its interface was
    never described, or its captured length overruns the block).
    ``untimed`` counts pcapng simple packet blocks, which carry no timestamp: each
    is given the time of the packet block before it (0 if there is none).
    """

    records: int
    packets: int
    skipped: int
    reasons: Mapping[str, int]
    truncated_tail: bool
    garbage_offset: int | None
    untimed: int = 0


@dataclass(frozen=True)
class PcapFrame:
    """Packets of one capture file and what it took to read them.

    ``packets`` columns: frame (1-based record number, as Wireshark counts),
    ts_ns, caplen, wirelen, ip_version, src, dst (IPv4 as uint32, <NA> for
    IPv6: see :meth:`address_strings`), ip_id, ip_len, proto, ttl, sport, dport,
    tcp_seq, tcp_ack, tcp_flags, tcp_window, udp_len, payload_len, lab_seq.
    Fields a packet does not have, or whose bytes were not captured, are <NA>.
    Read with ``tcp_options=True``, TCP options too (:data:`TCP_OPTION_COLUMNS`):
    tcp_wscale (the window-scale shift, RFC 7323 §2.3, where the option is present),
    tcp_sack_blocks (0-4 SACK blocks, RFC 2018; <NA> off TCP) and the raw 32-bit
    edges tcp_sack1_left, tcp_sack1_right .. tcp_sack4_right of the blocks present.

    ``linktype``, ``nanosecond`` (timestamps finer than a microsecond) and
    ``snaplen`` are the file header's; in a pcapng file, those of its first
    interface (-1, False, 0 when it describes none). ``file_format`` is "pcap"
    or "pcapng".
    """

    packets: pd.DataFrame
    linktype: int
    nanosecond: bool
    snaplen: int
    stats: PcapStats
    ipv6_rows: I64 = field(repr=False)  # row positions of the IPv6 packets
    src6: U8 = field(repr=False)  # (len(ipv6_rows), 16) source addresses
    dst6: U8 = field(repr=False)
    file_format: Literal["pcap", "pcapng"] = "pcap"

    @property
    def skipped(self) -> int:
        """Records that produced no row (truncated, non-IP, malformed)."""
        return self.stats.skipped

    def address_strings(self, column: Literal["src", "dst"]) -> pd.Series:
        """Addresses of ``column`` as text (dotted quad, RFC 5952 IPv6), built on demand."""
        v4 = self.packets[column]
        out = pd.Series(pd.NA, index=self.packets.index, dtype="string", name=column)
        is4 = v4.notna().to_numpy(dtype=np.bool_)
        if is4.any():
            octets = v4[is4].to_numpy(dtype=np.uint32)
            a, b, c, d = (pd.Series(((octets >> s) & 0xFF).astype(str)) for s in (24, 16, 8, 0))
            out.iloc[np.flatnonzero(is4)] = (a + "." + b + "." + c + "." + d).to_numpy()
        if self.ipv6_rows.size:
            raw = self.src6 if column == "src" else self.dst6
            text = [str(ipaddress.IPv6Address(bytes(row))) for row in raw]
            out.iloc[self.ipv6_rows] = text
        return out


def new_reasons(*, pcapng: bool = False) -> dict[str, int]:
    """Zeroed skip counters (see :class:`PcapStats`)."""
    reasons = {"truncated": 0, "non_ip": 0, "bad_ip": 0, "garbage": 0}
    if pcapng:
        reasons["bad_block"] = 0
    return reasons


# --------------------------------------------------------------------------- dissection

#: The SACK blocks' edges, block by block: left (first byte) then right (one past).
TCP_SACK_EDGES = tuple(f"tcp_sack{i}_{edge}" for i in range(1, 5) for edge in ("left", "right"))
#: Columns added by ``tcp_options=True``.
TCP_OPTION_COLUMNS = ("tcp_wscale", "tcp_sack_blocks", *TCP_SACK_EDGES)
#: Option kinds (RFC 9293 §3.2, RFC 7323, RFC 2018) and the bytes TCP options may take.
_OPT_EOL, _OPT_NOP, _OPT_WSCALE, _OPT_SACK = 0, 1, 3, 5
_MAX_OPTION_BYTES = 40

_NULLABLE = (
    "src",
    "dst",
    "ip_id",
    "sport",
    "dport",
    "tcp_seq",
    "tcp_ack",
    "tcp_flags",
    "tcp_window",
    "udp_len",
    "payload_len",
    "lab_seq",
    *TCP_OPTION_COLUMNS,
)


def dissect(
    buf: U8,
    pkt: I64,
    end: I64,
    linktype: int | I64,
    reasons: dict[str, int],
    *,
    tcp_options: bool = False,
) -> tuple[I64, Columns]:
    """Which packets give a row, and their IP and transport fields.

    ``pkt`` / ``end``: each packet's first and one-past-last captured byte in
    ``buf``; ``linktype``: the file's or one per packet. Returns the positions (in
    ``pkt``) of the packets that are IP and the columns from ip_version on, for
    those rows only; nullable columns come with a ``<name>?`` validity mask and
    ``#``-prefixed entries carry the IPv6 addresses. Counts the others into
    ``reasons`` ("non_ip", "bad_ip"). ``tcp_options`` adds :data:`TCP_OPTION_COLUMNS`.
    """
    l3, is_ip = link_layer(buf, pkt, end, linktype)
    reasons["non_ip"] += int(is_ip.size - is_ip.sum())
    keep = np.flatnonzero(is_ip)
    ip = _ip_layer(buf, l3[keep], end[keep])
    reasons["bad_ip"] += int(ip.ok.size - ip.ok.sum())
    rows = keep[ip.ok]
    ip = ip.select(ip.ok)

    is4 = ip.version == 4
    is6 = np.flatnonzero(ip.version == 6)
    l3_6 = ip.l3[is6]
    cols: Columns = {
        "ip_version": ip.version,
        "src": ip.src,
        "src?": is4,
        "dst": ip.dst,
        "dst?": is4,
        "ip_id": ip.ident,
        "ip_id?": is4,
        "ip_len": ip.total_len,
        "proto": ip.proto,
        "ttl": ip.ttl,
        "#v6rows": is6.astype(np.int64),
        "#src6": buf[l3_6[:, None] + np.arange(8, 24)],
        "#dst6": buf[l3_6[:, None] + np.arange(24, 40)],
    }
    cols.update(_transport(buf, ip, end[rows], tcp_options=tcp_options))
    return rows, cols


def empty_part(*, tcp_options: bool = False) -> Columns:
    """The columns of a chunk without packets (a file with none still has them all)."""
    none = np.empty(0, dtype=np.int64)
    _rows, fields = dissect(
        np.empty(0, np.uint8), none, none, 0, new_reasons(), tcp_options=tcp_options
    )
    return {
        "frame": none,
        "ts_ns": none,
        "caplen": np.empty(0, np.uint32),
        "wirelen": np.empty(0, np.uint32),
        **fields,
    }


def assemble(
    parts: list[Columns],
    *,
    linktype: int,
    nanosecond: bool,
    snaplen: int,
    records: int,
    reasons: dict[str, int],
    truncated_tail: bool,
    garbage: int | None,
    untimed: int = 0,
    file_format: Literal["pcap", "pcapng"] = "pcap",
    tcp_options: bool = False,
) -> PcapFrame:
    """Concatenate the chunks column by column, releasing each chunk's piece as it goes.

    Each part has frame, ts_ns, caplen and wirelen, then what :func:`dissect` gave.
    """
    if not parts:
        parts = [empty_part(tcp_options=tcp_options)]
    sizes = np.array([p["frame"].size for p in parts], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    v6rows = np.concatenate([p.pop("#v6rows") + s for p, s in zip(parts, starts, strict=True)])
    src6 = np.concatenate([p.pop("#src6") for p in parts]).reshape(-1, 16)
    dst6 = np.concatenate([p.pop("#dst6") for p in parts]).reshape(-1, 16)
    columns: dict[str, object] = {}
    for name in list(parts[0]):
        if name.endswith("?"):
            continue
        values = np.concatenate([p.pop(name) for p in parts])
        if name in _NULLABLE:
            valid = np.concatenate([p.pop(name + "?") for p in parts])
            columns[name] = pd.arrays.IntegerArray(values, ~valid)
        else:
            columns[name] = values
    packets = pd.DataFrame(columns, copy=False)
    stats = PcapStats(
        records=records,
        packets=len(packets),
        skipped=sum(reasons.values()),
        reasons=reasons,
        truncated_tail=truncated_tail,
        garbage_offset=garbage,
        untimed=untimed,
    )
    return PcapFrame(
        packets=packets,
        linktype=linktype,
        nanosecond=nanosecond,
        snaplen=snaplen,
        stats=stats,
        ipv6_rows=v6rows,
        src6=src6,
        dst6=dst6,
        file_format=file_format,
    )


# --------------------------------------------------------------------------- link layer


def distinct(values: I64) -> list[int]:
    """The distinct values of ``values`` (cheap when they are all the same)."""
    if values.size == 0:
        return []
    if (values == values[0]).all():
        return [int(values[0])]
    return [int(v) for v in np.unique(values)]


def link_layer(buf: U8, pkt: I64, end: I64, linktype: int | I64) -> tuple[I64, Mask]:
    """Offset of the IP header in each packet and whether the packet carries IP.

    ``pkt`` and ``end`` are each packet's first and one-past-last captured byte in
    ``buf``; ``linktype`` is the file's link type or one per packet (pcapng).
    """
    if isinstance(linktype, int):
        return _one_linktype(buf, pkt, end, linktype)
    kinds = distinct(linktype)
    if len(kinds) <= 1:
        return _one_linktype(buf, pkt, end, kinds[0] if kinds else LINKTYPE_RAW)
    l3 = np.empty(pkt.size, dtype=np.int64)
    is_ip = np.empty(pkt.size, dtype=np.bool_)
    for kind in kinds:
        which = np.flatnonzero(linktype == kind)
        l3[which], is_ip[which] = _one_linktype(buf, pkt[which], end[which], int(kind))
    return l3, is_ip


def _one_linktype(buf: U8, pkt: I64, end: I64, linktype: int) -> tuple[I64, Mask]:
    n = pkt.size
    if linktype in IP_ONLY:
        return pkt, np.ones(n, dtype=np.bool_)  # the IP layer judges what is there
    if linktype == LINKTYPE_ETHERNET:
        l3 = pkt + 14
        has = end >= l3
        etype = np.zeros(n, dtype=np.uint16)
        etype[has] = u16(buf, pkt[has] + 12)
        for _ in range(2):  # up to two VLAN tags (802.1Q inside 802.1ad)
            tagged = np.isin(etype, ETH_VLAN_TAGS) & (end >= l3 + 4)
            if not tagged.any():
                break
            etype[tagged] = u16(buf, l3[tagged] + 2)
            l3 = np.where(tagged, l3 + 4, l3)
        return l3, (etype == ETH_IPV4) | (etype == ETH_IPV6)
    if linktype == LINKTYPE_LINUX_SLL:
        return _ethertype_at(buf, pkt, end, 14, 16)
    if linktype == LINKTYPE_LINUX_SLL2:
        return _ethertype_at(buf, pkt, end, 0, 20)
    if linktype == LINKTYPE_NULL:
        l3 = pkt + 4
        has = end >= l3
        family = np.zeros(n, dtype=np.uint32)
        le = u32(buf, pkt[has], "<")
        be = u32(buf, pkt[has], ">")
        family[has] = np.where(le < 0x10000, le, be)  # host byte order of the writer
        return l3, np.isin(family, (2, 24, 28, 30))
    return pkt, np.zeros(n, dtype=np.bool_)  # unknown link type: nothing is IP


def _ethertype_at(buf: U8, pkt: I64, end: I64, at: int, header: int) -> tuple[I64, Mask]:
    l3 = pkt + header
    has = end >= l3
    etype = np.zeros(pkt.size, dtype=np.uint16)
    etype[has] = u16(buf, pkt[has] + at)
    return l3, has & ((etype == ETH_IPV4) | (etype == ETH_IPV6))


# --------------------------------------------------------------------------- IP, transport


@dataclass(frozen=True)
class _Ip:
    """IP header fields of a set of packets (plain numpy, one element per packet)."""

    ok: Mask
    version: npt.NDArray[np.uint8]
    src: npt.NDArray[np.uint32]
    dst: npt.NDArray[np.uint32]
    l3: I64  # offset of the IP header
    ident: npt.NDArray[np.uint16]
    total_len: npt.NDArray[np.uint32]
    proto: npt.NDArray[np.uint8]
    ttl: npt.NDArray[np.uint8]
    l4: I64  # offset of the transport header
    l4_end: I64  # one past the transport payload, by the IP length fields
    first_fragment: Mask  # the transport header is in this packet

    def select(self, which: Mask) -> _Ip:
        return _Ip(**{k: getattr(self, k)[which] for k in self.__dataclass_fields__})


def _ip_layer(buf: U8, l3: I64, end: I64) -> _Ip:
    n = l3.size
    has_byte = end > l3
    version = np.zeros(n, dtype=np.uint8)
    version[has_byte] = buf[l3[has_byte]] >> 4
    is4 = (version == 4) & (end >= l3 + 20)
    is6 = (version == 6) & (end >= l3 + 40)
    ihl = np.zeros(n, dtype=np.int64)
    ihl[is4] = (buf[l3[is4]] & 0x0F).astype(np.int64) * 4
    is4 &= ihl >= 20
    ok = is4 | is6

    src = np.zeros(n, dtype=np.uint32)
    dst = np.zeros(n, dtype=np.uint32)
    ident = np.zeros(n, dtype=np.uint16)
    total = np.zeros(n, dtype=np.uint32)
    proto = np.zeros(n, dtype=np.uint8)
    ttl = np.zeros(n, dtype=np.uint8)
    l4 = np.zeros(n, dtype=np.int64)
    first_frag = np.zeros(n, dtype=np.bool_)

    if is4.any():
        b = l3[is4]
        total[is4] = u16(buf, b + 2)
        ident[is4] = u16(buf, b + 4)
        frag_offset = u16(buf, b + 6) & 0x1FFF
        ttl[is4] = buf[b + 8]
        proto[is4] = buf[b + 9]
        src[is4] = u32(buf, b + 12)
        dst[is4] = u32(buf, b + 16)
        l4[is4] = b + ihl[is4]
        first_frag[is4] = frag_offset == 0
    if is6.any():
        b = l3[is6]
        total[is6] = u16(buf, b + 4).astype(np.uint32) + 40
        ttl[is6] = buf[b + 7]
        nxt, l4_6, first6 = _ipv6_extensions(buf, b, end[is6], buf[b + 6])
        proto[is6] = nxt
        l4[is6] = l4_6
        first_frag[is6] = first6
    l4_end = l3 + total.astype(np.int64)
    return _Ip(
        ok=ok,
        version=version,
        src=src,
        dst=dst,
        l3=l3,
        ident=ident,
        total_len=total,
        proto=proto,
        ttl=ttl,
        l4=l4,
        l4_end=l4_end,
        first_fragment=first_frag & ok,
    )


def _ipv6_extensions(buf: U8, l3: I64, end: I64, next_header: U8) -> tuple[U8, I64, Mask]:
    """Skip IPv6 extension headers (RFC 8200 §4): final next header, its offset, first fragment."""
    nxt = next_header.copy()
    off = l3 + 40
    first = np.ones(l3.size, dtype=np.bool_)
    for _ in range(4):
        ext = np.isin(nxt, _IPV6_EXT_HEADERS) & (end >= off + 8)
        frag = (nxt == _IPV6_FRAGMENT) & (end >= off + 8)
        if not (ext.any() or frag.any()):
            break
        if frag.any():
            first[frag] &= (u16(buf, off[frag] + 2) & 0xFFF8) == 0
        step = np.where(ext, 8, 0).astype(np.int64)
        if ext.any():
            step[ext] += buf[off[ext] + 1].astype(np.int64) * 8
        step[frag] = 8
        moved = ext | frag
        nxt = np.where(moved, buf[np.where(moved, off, 0)], nxt).astype(np.uint8)
        off = off + step
    return nxt, off, first


def _transport(buf: U8, ip: _Ip, end: I64, *, tcp_options: bool = False) -> Columns:
    """TCP / UDP / lab-RAW fields; <NA> where absent or not captured."""
    l4, l4_end = ip.l4, ip.l4_end
    n = l4.size
    first = ip.first_fragment
    tcp = first & (ip.proto == _TCP) & (end >= l4 + 20)
    udp = first & (ip.proto == _UDP) & (end >= l4 + 8)
    raw = first & (ip.proto == LAB_RAW_PROTO)
    ports = tcp | udp

    def gather16(mask: Mask, at: int) -> npt.NDArray[np.uint16]:
        out = np.zeros(n, dtype=np.uint16)
        out[mask] = u16(buf, l4[mask] + at)
        return out

    def gather32(mask: Mask, at: int) -> npt.NDArray[np.uint32]:
        out = np.zeros(n, dtype=np.uint32)
        out[mask] = u32(buf, l4[mask] + at)
        return out

    doff = np.zeros(n, dtype=np.int64)
    doff[tcp] = (buf[l4[tcp] + 12] >> 4).astype(np.int64) * 4
    flags = np.zeros(n, dtype=np.uint16)
    flags[tcp] = u16(buf, l4[tcp] + 12) & 0x01FF  # NS..FIN (RFC 3540 + RFC 9293)
    udp_len = gather16(udp, 4)

    # payload start and length by the headers' own length fields (not the snap length)
    start = np.where(tcp, l4 + doff, np.where(udp, l4 + 8, l4))
    payload = l4_end - start
    payload_ok = (
        (tcp & (doff >= 20)) | udp | raw | (first & ~(ip.proto == _TCP) & ~(ip.proto == _UDP))
    )
    payload_ok &= payload >= 0
    payload = np.where(payload_ok, payload, 0)

    has_seq = (udp | raw) & (payload >= 4) & (end >= start + 4)
    lab_seq = np.zeros(n, dtype=np.uint32)
    lab_seq[has_seq] = u32(buf, start[has_seq])

    sport, dport = gather16(ports, 0), gather16(ports, 2)
    options = _tcp_options(buf, l4, np.minimum(l4 + doff, end), tcp) if tcp_options else {}
    return {
        **options,
        "sport": sport,
        "sport?": ports,
        "dport": dport,
        "dport?": ports,
        "tcp_seq": gather32(tcp, 4),
        "tcp_seq?": tcp,
        "tcp_ack": gather32(tcp, 8),
        "tcp_ack?": tcp,
        "tcp_flags": flags,
        "tcp_flags?": tcp,
        "tcp_window": gather16(tcp, 14),
        "tcp_window?": tcp,
        "udp_len": udp_len,
        "udp_len?": udp,
        "payload_len": payload.astype(np.uint32),
        "payload_len?": payload_ok,
        "lab_seq": lab_seq,
        "lab_seq?": has_seq,
    }


def _tcp_options(buf: U8, l4: I64, limit: I64, tcp: Mask) -> Columns:
    """Window scale and SACK blocks from the TCP options (bytes 20 .. data offset).

    The option list is walked for all packets at once, one option per step (RFC 9293
    §3.2: kind 0 ends the list, kind 1 is one byte of padding, every other kind has a
    length byte). A malformed or truncated option ends that packet's walk; the
    options before it are kept.
    """
    n = l4.size
    wscale = np.zeros(n, dtype=np.uint8)
    has_wscale = np.zeros(n, dtype=np.bool_)
    blocks = np.zeros(n, dtype=np.uint8)
    edges = {name: np.zeros(n, dtype=np.uint32) for name in TCP_SACK_EDGES}
    which = np.flatnonzero(tcp & (limit > l4 + 20))
    pos = l4[which] + 20
    stop = limit[which]
    for _ in range(_MAX_OPTION_BYTES):
        live = np.flatnonzero(pos < stop)
        if live.size == 0:
            break
        at = pos[live]
        kind = buf[at]
        pad = kind == _OPT_NOP
        pos[live[pad]] += 1
        rest = (kind != _OPT_EOL) & ~pad
        has_len = rest & (at + 1 < stop[live])
        length = np.zeros(live.size, dtype=np.int64)
        length[has_len] = buf[at[has_len] + 1]
        good = has_len & (length >= 2) & (at + length <= stop[live])
        pos[live[~pad & ~good]] = stop[live[~pad & ~good]]  # end of list, or malformed
        rows = which[live]
        scale = good & (kind == _OPT_WSCALE) & (length == 3)
        wscale[rows[scale]] = buf[at[scale] + 2]
        has_wscale[rows[scale]] = True
        sack = good & (kind == _OPT_SACK) & (length >= 10) & ((length - 2) % 8 == 0)
        count = np.where(sack, np.minimum((length - 2) // 8, 4), 0)
        blocks[rows[sack]] = count[sack]
        for i in range(4):
            present = count > i
            start = at[present] + 2 + 8 * i
            edges[f"tcp_sack{i + 1}_left"][rows[present]] = u32(buf, start)
            edges[f"tcp_sack{i + 1}_right"][rows[present]] = u32(buf, start + 4)
        pos[live[good]] += length[good]
    columns: Columns = {
        "tcp_wscale": wscale,
        "tcp_wscale?": has_wscale,
        "tcp_sack_blocks": blocks,
        "tcp_sack_blocks?": tcp,
    }
    for i in range(4):
        present = tcp & (blocks > i)
        for edge in ("left", "right"):
            name = f"tcp_sack{i + 1}_{edge}"
            columns[name] = edges[name]
            columns[name + "?"] = present
    return columns
