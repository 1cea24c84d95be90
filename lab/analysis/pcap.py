"""Fast classic-pcap reader: one DataFrame row per IP packet, fields gathered with numpy.

Only the walk over record headers is sequential (each header says where the next one
starts); it is a tight ``struct`` loop, skipped entirely when every record has the
same length. Every header field is then read for all packets at once by fancy
indexing into the file's bytes. Bad input never raises anything but
:class:`~lab.errors.AnalysisError`: unreadable files and bad magic numbers raise it,
while truncated or malformed records are skipped and counted in :class:`PcapStats`.

File format: draft-ietf-opsawg-pcap (classic libpcap), both byte orders, micro- and
nanosecond timestamps. Link types: NULL (0), ETHERNET (1, with 802.1Q / 802.1ad
tags), RAW (101, and 12/14 as some systems write it), LINUX_SLL (113),
IPV4 (228), IPV6 (229), LINUX_SLL2 (276).
"""

from __future__ import annotations

import ipaddress
import struct
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from lab.errors import AnalysisError

#: IP protocol number the lab's RAW exchange uses (RFC 3692 experimentation value).
LAB_RAW_PROTO = 253

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
_RAW_ALIASES = frozenset({LINKTYPE_RAW, 12, 14})  # DLT_RAW differs between BSDs

_GLOBAL_HEADER_LEN = 24
# magic bytes as stored -> (byte order, nanosecond timestamps, record header length)
_MAGICS: dict[bytes, tuple[Literal["<", ">"], bool, int]] = {
    bytes.fromhex("d4c3b2a1"): ("<", False, 16),
    bytes.fromhex("a1b2c3d4"): (">", False, 16),
    bytes.fromhex("4d3cb2a1"): ("<", True, 16),
    bytes.fromhex("a1b23c4d"): (">", True, 16),
    bytes.fromhex("34cdb2a1"): ("<", False, 24),  # Kuznetzov's modified pcap
    bytes.fromhex("a1b2cd34"): (">", False, 24),
}
_PCAPNG_MAGIC = bytes.fromhex("0a0d0d0a")
_MAX_CAPLEN = 262_144  # tcpdump's MAXIMUM_SNAPLEN; larger lengths mean a corrupt header

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
_IPV6_EXT_HEADERS = (0, 43, 60)  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_TCP = 6
_UDP = 17

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PcapStats:
    """What reading the file found besides the packets.

    ``records`` counts record headers met (= ``packets`` + ``skipped``),
    ``packets`` rows produced and ``skipped`` records that gave no row;
    ``reasons`` splits ``skipped`` by cause: "truncated" (cut short by the end
    of the file), "non_ip", "bad_ip" (no valid IPv4/IPv6 header) and "garbage"
    (an impossible record header; ``garbage_offset`` is its byte offset, and
    the rest of the file is ignored because record boundaries are lost).
    """

    records: int
    packets: int
    skipped: int
    reasons: Mapping[str, int]
    truncated_tail: bool
    garbage_offset: int | None


@dataclass(frozen=True)
class PcapFrame:
    """Packets of one pcap file and what it took to read them.

    ``packets`` columns: frame (1-based record number, as Wireshark counts),
    ts_ns, caplen, wirelen, ip_version, src, dst (IPv4 as uint32, <NA> for
    IPv6: see :meth:`address_strings`), ip_id, ip_len, proto, ttl, sport, dport,
    tcp_seq, tcp_ack, tcp_flags, tcp_window, udp_len, payload_len, lab_seq.
    Fields a packet does not have, or whose bytes were not captured, are <NA>.
    """

    packets: pd.DataFrame
    linktype: int
    nanosecond: bool
    snaplen: int
    stats: PcapStats
    ipv6_rows: I64 = field(repr=False)  # row positions of the IPv6 packets
    src6: U8 = field(repr=False)  # (len(ipv6_rows), 16) source addresses
    dst6: U8 = field(repr=False)

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


def read_pcap(path: str | Path) -> PcapFrame:
    """Read a classic pcap file into a :class:`PcapFrame`.

    Raises AnalysisError for an unreadable file, an empty or short one, a pcapng
    file or an unknown magic number; anything wrong inside the file is skipped
    and counted instead. The file is read in chunks, so memory stays near the
    size of the resulting table whatever the packet sizes.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(_GLOBAL_HEADER_LEN)
            fmt = _file_format(path, head)
            return _read_records(fh, fmt)
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read capture: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class _Format:
    order: Literal["<", ">"]
    nanosecond: bool
    rec_len: int
    snaplen: int
    linktype: int

    @property
    def max_caplen(self) -> int:
        """Largest record length taken as genuine; anything above is a corrupt header."""
        return max(_MAX_CAPLEN, min(self.snaplen, 1 << 24))


def _file_format(path: Path, head: bytes) -> _Format:
    if len(head) < _GLOBAL_HEADER_LEN:
        what = "empty" if not head else f"only {len(head)} bytes"
        raise AnalysisError(f"{path}: not a pcap file ({what}; the file header alone is 24)")
    magic = head[:4]
    if magic == _PCAPNG_MAGIC:
        raise AnalysisError(f"{path}: pcapng is not supported; convert with editcap -F pcap")
    if magic not in _MAGICS:
        raise AnalysisError(f"{path}: not a pcap file (magic number {magic.hex()})")
    order, nanosecond, rec_len = _MAGICS[magic]
    snaplen, network = struct.unpack_from(order + "II", head, 16)
    return _Format(order, nanosecond, rec_len, snaplen, network & 0xFFFF)


_CHUNK = 8 << 20


def _read_records(fh: BinaryIO, fmt: _Format) -> PcapFrame:
    """Walk and parse the records chunk by chunk; a record cut by a chunk end waits
    for the next chunk."""
    parts: list[dict[str, npt.NDArray[np.generic]]] = []
    reasons = {"truncated": 0, "non_ip": 0, "bad_ip": 0, "garbage": 0}
    records = 0
    base = _GLOBAL_HEADER_LEN  # file offset of data[0]
    garbage: int | None = None
    truncated_tail = False
    pending = b""
    while True:
        chunk = fh.read(max(_CHUNK, len(pending)))
        data = pending + chunk if pending else chunk
        if not data:
            break
        eof = not chunk
        offsets, stop, bad = _walk(data, fmt)
        caplen = _u32(np.frombuffer(data, np.uint8), offsets + 8, fmt.order)
        complete = offsets + fmt.rec_len + caplen.astype(np.int64) <= len(data)
        n_done = int(complete.sum())  # only the last record can be incomplete
        cut = int(offsets[n_done]) if n_done < offsets.size else stop
        if n_done:
            part = _parse_chunk(
                data,
                offsets=offsets[:n_done],
                caplen=caplen[:n_done],
                first_frame=records,
                fmt=fmt,
                reasons=reasons,
            )
            parts.append(part)
        records += n_done
        if bad is not None:
            garbage = base + bad
            records += 1
            reasons["garbage"] += 1
            break
        if eof:
            leftover = len(data) - cut
            if leftover > 0:
                records += 1
                reasons["truncated"] += 1
                truncated_tail = True
            break
        pending = data[cut:]
        base += cut
    return _assemble(
        parts,
        fmt=fmt,
        records=records,
        reasons=reasons,
        truncated_tail=truncated_tail,
        garbage=garbage,
    )


# --------------------------------------------------------------------------- record walk


def _walk(data: bytes, fmt: _Format) -> tuple[I64, int, int | None]:
    """Offsets of the record headers that lie wholly in ``data``, the offset
    where the walk stopped, and the offset of an impossible header (or None)."""
    rec_len, limit = fmt.rec_len, fmt.max_caplen
    uniform = _walk_uniform(data, fmt)
    found = array("q")
    off = 0
    if uniform is not None:
        offsets, resume, whole = uniform
        if whole:
            return offsets, resume, None
        found.extend(offsets.tolist())
        off = resume
    unpack = struct.Struct(fmt.order + "I").unpack_from
    end = len(data) - rec_len
    garbage: int | None = None
    append = found.append
    while off <= end:
        cap = unpack(data, off + 8)[0]
        if cap > limit:
            garbage = off
            break
        append(off)
        off += rec_len + cap
    return np.frombuffer(found, dtype=np.int64).copy(), off, garbage


def _walk_uniform(data: bytes, fmt: _Format) -> tuple[I64, int, bool] | None:
    """Vectorised walk over a run of equal-length records at the start of ``data``.

    Assumes every record is as long as the first and computes all offsets at
    once; they are exact up to the first record whose length differs, because
    every record before it had the assumed length. Returns those offsets, the
    offset to resume walking at and whether all of ``data`` was covered; None
    when the run is too short to be worth it.
    """
    rec_len = fmt.rec_len
    if rec_len > len(data):
        return np.empty(0, dtype=np.int64), 0, True
    cap: int = struct.unpack_from(fmt.order + "I", data, 8)[0]
    if cap > fmt.max_caplen:
        return None
    stride = rec_len + cap
    count = (len(data) - rec_len) // stride + 1
    offsets = stride * np.arange(count, dtype=np.int64)
    caps = _u32(np.frombuffer(data, dtype=np.uint8), offsets + 8, fmt.order)
    differs = np.flatnonzero(caps != cap)
    if differs.size == 0:
        return offsets, int(offsets[-1]) + stride, True
    if differs[0] < 64:
        return None
    cut = int(differs[0])
    return offsets[:cut], int(offsets[cut]), False


# --------------------------------------------------------------------------- byte gathers


def _u16(buf: U8, idx: I64) -> npt.NDArray[np.uint16]:
    """Big-endian (network order) uint16 at each index."""
    return ((buf[idx].astype(np.uint16) << 8) | buf[idx + 1]).astype(np.uint16, copy=False)


def _u32(buf: U8, idx: I64, order: str = ">") -> npt.NDArray[np.uint32]:
    """uint32 at each index, in byte order ``order``."""
    b = [buf[idx + k].astype(np.uint32) for k in range(4)]
    if order == "<":
        b.reverse()
    return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]).astype(np.uint32, copy=False)


# --------------------------------------------------------------------------- parsing


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
)


def _parse_chunk(
    data: bytes,
    *,
    offsets: I64,
    caplen: npt.NDArray[np.uint32],
    first_frame: int,
    fmt: _Format,
    reasons: dict[str, int],
) -> dict[str, npt.NDArray[np.generic]]:
    """Fields of the complete records at ``offsets``; nullable columns come with a
    ``<name>?`` validity mask. Counts skipped records into ``reasons``."""
    buf = np.frombuffer(data, dtype=np.uint8)
    pkt = offsets + fmt.rec_len  # first byte of each packet
    end = pkt + caplen.astype(np.int64)  # one past its last captured byte
    l3, is_ip = _link_layer(buf, pkt, end, fmt.linktype)
    reasons["non_ip"] += int(is_ip.size - is_ip.sum())
    keep = np.flatnonzero(is_ip)
    ip = _ip_layer(buf, l3[keep], end[keep])
    reasons["bad_ip"] += int(ip.ok.size - ip.ok.sum())
    rows = keep[ip.ok]
    ip = ip.select(ip.ok)

    at = offsets[rows]
    ts_sec = _u32(buf, at, fmt.order).astype(np.int64)
    ts_frac = _u32(buf, at + 4, fmt.order).astype(np.int64)
    is4 = ip.version == 4
    is6 = np.flatnonzero(ip.version == 6)
    l3_6 = ip.l3[is6]
    cols: dict[str, npt.NDArray[np.generic]] = {
        "frame": rows.astype(np.int64) + first_frame + 1,
        "ts_ns": ts_sec * 1_000_000_000 + (ts_frac if fmt.nanosecond else ts_frac * 1000),
        "caplen": caplen[rows],
        "wirelen": _u32(buf, at + 12, fmt.order),
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
    cols.update(_transport(buf, ip, end[rows]))
    return cols


def _assemble(
    parts: list[dict[str, npt.NDArray[np.generic]]],
    *,
    fmt: _Format,
    records: int,
    reasons: dict[str, int],
    truncated_tail: bool,
    garbage: int | None,
) -> PcapFrame:
    """Concatenate the chunks column by column, releasing each chunk's piece as it goes."""
    if not parts:
        empty = np.empty(0, np.int64)
        none = np.empty(0, np.uint32)
        parts = [
            _parse_chunk(b"", offsets=empty, caplen=none, first_frame=0, fmt=fmt, reasons=reasons)
        ]
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
    )
    return PcapFrame(
        packets=packets,
        linktype=fmt.linktype,
        nanosecond=fmt.nanosecond,
        snaplen=fmt.snaplen,
        stats=stats,
        ipv6_rows=v6rows,
        src6=src6,
        dst6=dst6,
    )


def _link_layer(buf: U8, pkt: I64, end: I64, linktype: int) -> tuple[I64, Mask]:
    """Offset of the IP header in each packet and whether the packet carries IP."""
    n = pkt.size
    if linktype in _RAW_ALIASES or linktype in (LINKTYPE_IPV4, LINKTYPE_IPV6):
        return pkt, np.ones(n, dtype=np.bool_)  # the IP layer judges what is there
    if linktype == LINKTYPE_ETHERNET:
        l3 = pkt + 14
        has = end >= l3
        etype = np.zeros(n, dtype=np.uint16)
        etype[has] = _u16(buf, pkt[has] + 12)
        for _ in range(2):  # up to two VLAN tags (802.1Q inside 802.1ad)
            tagged = np.isin(etype, _ETH_VLAN_TAGS) & (end >= l3 + 4)
            if not tagged.any():
                break
            etype[tagged] = _u16(buf, l3[tagged] + 2)
            l3 = np.where(tagged, l3 + 4, l3)
        return l3, (etype == _ETH_IPV4) | (etype == _ETH_IPV6)
    if linktype == LINKTYPE_LINUX_SLL:
        return _ethertype_at(buf, pkt, end, 14, 16)
    if linktype == LINKTYPE_LINUX_SLL2:
        return _ethertype_at(buf, pkt, end, 0, 20)
    if linktype == LINKTYPE_NULL:
        l3 = pkt + 4
        has = end >= l3
        family = np.zeros(n, dtype=np.uint32)
        le = _u32(buf, pkt[has], "<")
        be = _u32(buf, pkt[has], ">")
        family[has] = np.where(le < 0x10000, le, be)  # host byte order of the writer
        return l3, np.isin(family, (2, 24, 28, 30))
    return pkt, np.zeros(n, dtype=np.bool_)  # unknown link type: nothing is IP


def _ethertype_at(buf: U8, pkt: I64, end: I64, at: int, header: int) -> tuple[I64, Mask]:
    l3 = pkt + header
    has = end >= l3
    etype = np.zeros(pkt.size, dtype=np.uint16)
    etype[has] = _u16(buf, pkt[has] + at)
    return l3, has & ((etype == _ETH_IPV4) | (etype == _ETH_IPV6))


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
        total[is4] = _u16(buf, b + 2)
        ident[is4] = _u16(buf, b + 4)
        frag_offset = _u16(buf, b + 6) & 0x1FFF
        ttl[is4] = buf[b + 8]
        proto[is4] = buf[b + 9]
        src[is4] = _u32(buf, b + 12)
        dst[is4] = _u32(buf, b + 16)
        l4[is4] = b + ihl[is4]
        first_frag[is4] = frag_offset == 0
    if is6.any():
        b = l3[is6]
        total[is6] = _u16(buf, b + 4).astype(np.uint32) + 40
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
            first[frag] &= (_u16(buf, off[frag] + 2) & 0xFFF8) == 0
        step = np.where(ext, 8, 0).astype(np.int64)
        if ext.any():
            step[ext] += buf[off[ext] + 1].astype(np.int64) * 8
        step[frag] = 8
        moved = ext | frag
        nxt = np.where(moved, buf[np.where(moved, off, 0)], nxt).astype(np.uint8)
        off = off + step
    return nxt, off, first


def _transport(buf: U8, ip: _Ip, end: I64) -> dict[str, npt.NDArray[np.generic]]:
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
        out[mask] = _u16(buf, l4[mask] + at)
        return out

    def gather32(mask: Mask, at: int) -> npt.NDArray[np.uint32]:
        out = np.zeros(n, dtype=np.uint32)
        out[mask] = _u32(buf, l4[mask] + at)
        return out

    doff = np.zeros(n, dtype=np.int64)
    doff[tcp] = (buf[l4[tcp] + 12] >> 4).astype(np.int64) * 4
    flags = np.zeros(n, dtype=np.uint16)
    flags[tcp] = _u16(buf, l4[tcp] + 12) & 0x01FF  # NS..FIN (RFC 3540 + RFC 9293)
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
    lab_seq[has_seq] = _u32(buf, start[has_seq])

    sport, dport = gather16(ports, 0), gather16(ports, 2)
    return {
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
