"""pcapng (draft-ietf-opsawg-pcapng), what Wireshark and dumpcap write by default.

Read: section header blocks in either byte order (a file may hold several sections,
each with its own byte order and interfaces), interface description blocks (link
type, snap length, ``if_tsresol`` (default 10^-6 s) and ``if_tsoffset``), enhanced
packet blocks, simple packet blocks and the obsolete packet blocks. Every other block
(name resolution, interface statistics, decryption secrets, custom, journal...) is
skipped by its length.

A simple packet block has no timestamp and belongs to interface 0 of its section: it
gets the time of the packet block before it in the file (0 if there is none) and is
counted in ``PcapStats.untimed``; its captured length is the smallest of its original
length, the interface's snap length and what the block holds.

As for classic pcap, only the walk over block headers is sequential: a tight
``struct`` loop that jumps over runs of equal-length enhanced packet blocks with
numpy. The packet blocks' fields (interface, timestamp, lengths) and the packets
themselves are then read for all blocks of a chunk at once. Damage is skipped and
counted, never raised: a block whose length is impossible or disagrees with its
trailing copy is "garbage" (the rest of the file is ignored), a packet block cut by
the end of the file is "truncated", a well-framed packet block naming an interface
that was never described, or claiming more bytes than it holds, is "bad_block".
Only a first section header that cannot be read raises AnalysisError.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import numpy.typing as npt

from lab.errors import AnalysisError
from lab.pcap._dissect import Columns, PcapFrame, assemble, dissect, distinct, new_reasons
from lab.pcap._gather import I64, U8, Mask

PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_SHB = 0x0A0D0D0A  # the same in both byte orders
_IDB = 1
_PB = 2  # obsolete packet block
_SPB = 3
_EPB = 6
_PACKET_BLOCKS = (_EPB, _SPB, _PB)
_BOM_LE = bytes.fromhex("4d3c2b1a")
_BOM_BE = bytes.fromhex("1a2b3c4d")
_BLOCK_MIN = 12  # type, length, trailing length
_SHB_MIN = 28
_IDB_MIN = 20
_EPB_MIN = 32  # and PB: 28 bytes of fields before the packet, 4 after
_SPB_MIN = 16
_MAX_BLOCK = 1 << 25  # a longer block is a corrupt length (Wireshark: 16 MiB)
_OPT_END = 0
_OPT_TSRESOL = 9
_OPT_TSOFFSET = 14
_UNIFORM_PROBE = 64  # equal-length blocks checked before computing a whole run
_NS = 1_000_000_000

U64 = npt.NDArray[np.uint64]
Order = Literal["<", ">"]


@dataclass(frozen=True)
class Interface:
    """An interface description block: link type, snap length (0: none), timestamp
    resolution (``if_tsresol`` byte: 10^-n s, or 2^-n s with the top bit set) and
    offset (``if_tsoffset``, seconds added to every timestamp)."""

    linktype: int
    snaplen: int
    tsresol: int = 6
    tsoffset: int = 0

    @property
    def nanosecond(self) -> bool:
        """Whether the timestamps are finer than a microsecond."""
        if self.tsresol & 0x80:
            return (self.tsresol & 0x7F) >= 20  # 2^-20 s < 1 µs
        return self.tsresol > 6


@dataclass
class _Walker:
    """What the blocks walked so far said: the current section's byte order, the
    position of its interface 0 in ``interfaces`` (all sections' interfaces)."""

    order: Order = "<"
    base: int = 0
    interfaces: list[Interface] = field(default_factory=list)


@dataclass(frozen=True)
class _Mark:
    """The walker's state from packet block number ``at`` (of a chunk) on."""

    at: int
    big: bool
    base: int
    described: int  # interfaces of the section described so far


def read(
    fh: BinaryIO, head: bytes, path: Path, chunk_size: int, *, tcp_options: bool = False
) -> PcapFrame:
    """Read a pcapng file whose first bytes ``head`` were already read from ``fh``."""
    data = head + fh.read(chunk_size)
    order = _byte_order(data, 0) if len(data) >= 12 else None
    if order is not None:
        need = struct.unpack_from(order + "I", data, 4)[0]
        if len(data) < need <= _MAX_BLOCK:
            data += fh.read(need - len(data))
    _check_first_section(path, data)

    walker = _Walker()
    reader = _Chunks(walker, tcp_options=tcp_options)
    base = 0  # file offset of data[0]
    garbage: int | None = None
    truncated_tail = False
    while True:
        offsets, marks, stop, bad = _walk(data, walker)
        broken = reader.take(data, offsets, marks)
        if broken is None:
            broken = bad  # a packet block that breaks comes before where the walk stopped
        if broken is not None:
            garbage = base + broken
            reader.records += 1
            reader.reasons["garbage"] += 1
            break
        more = fh.read(max(chunk_size, len(data) - stop))
        if not more:
            tail = data[stop:]
            if tail:
                truncated_tail = True
                if _is_packet_block(tail, walker.order):
                    reader.records += 1
                    reader.reasons["truncated"] += 1
            break
        data = data[stop:] + more
        base += stop
    first = walker.interfaces[0] if walker.interfaces else None
    return assemble(
        reader.parts,
        linktype=first.linktype if first else -1,
        nanosecond=first.nanosecond if first else False,
        snaplen=first.snaplen if first else 0,
        records=reader.records,
        reasons=reader.reasons,
        truncated_tail=truncated_tail,
        garbage=garbage,
        untimed=reader.untimed,
        file_format="pcapng",
        tcp_options=tcp_options,
    )


# --------------------------------------------------------------------------- section headers


def _byte_order(data: bytes, off: int) -> Order | None:
    """Byte order of the section header block at ``off`` (its byte-order magic)."""
    bom = data[off + 8 : off + 12]
    if bom == _BOM_LE:
        return "<"
    if bom == _BOM_BE:
        return ">"
    return None


def _bad_length(length: int, minimum: int = _BLOCK_MIN) -> bool:
    return bool(length & 3) or not minimum <= length <= _MAX_BLOCK


def _section_problem(data: bytes, off: int, order: Order, length: int) -> str | None:
    """What is wrong with a complete section header block, or None."""
    if _bad_length(length, _SHB_MIN):
        return f"block length {length}"
    (trailer,) = struct.unpack_from(order + "I", data, off + length - 4)
    if trailer != length:
        return f"block length {length}, trailing copy {trailer}"
    major, minor = struct.unpack_from(order + "HH", data, off + 12)
    if major != 1:
        return f"version {major}.{minor}, only 1.x is read"
    return None


def _check_first_section(path: Path, data: bytes) -> None:
    """AnalysisError unless ``data`` starts with a whole, valid section header block."""
    if len(data) < _SHB_MIN:
        raise AnalysisError(
            f"{path}: not a pcapng file (only {len(data)} bytes; "
            f"a section header block alone is {_SHB_MIN})"
        )
    order = _byte_order(data, 0)
    if order is None:
        raise AnalysisError(f"{path}: not a pcapng file (byte-order magic {data[8:12].hex()})")
    (length,) = struct.unpack_from(order + "I", data, 4)
    if not _bad_length(length, _SHB_MIN) and length > len(data):
        raise AnalysisError(
            f"{path}: pcapng section header cut short ({len(data)} of {length} bytes)"
        )
    problem = _section_problem(data, 0, order, length)
    if problem is not None:
        raise AnalysisError(f"{path}: unreadable pcapng section header ({problem})")


def _interface(data: bytes, off: int, length: int, order: Order) -> Interface:
    """An interface description block; options it cannot read are ignored."""
    linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", data, off + 8)
    tsresol, tsoffset = 6, 0
    at, end = off + 16, off + length - 4
    option = struct.Struct(order + "HH").unpack_from
    while at + 4 <= end:
        code, size = option(data, at)
        at += 4
        if code == _OPT_END or at + size > end:
            break
        if code == _OPT_TSRESOL and size >= 1:
            tsresol = data[at]
        elif code == _OPT_TSOFFSET and size >= 8:
            (tsoffset,) = struct.unpack_from(order + "q", data, at)
        at += (size + 3) & ~3
    return Interface(linktype, snaplen, tsresol, tsoffset)


# --------------------------------------------------------------------------- block walk


def _walk(data: bytes, walker: _Walker) -> tuple[I64, list[_Mark], int, int | None]:
    """Offsets of the packet blocks that lie wholly in ``data``, the walker's state
    along them, the offset where the walk stopped and that of an impossible block
    (or None). Section headers and interface descriptions update ``walker``.

    Packet blocks are only framed here (length within bounds, block complete); their
    alignment, trailing lengths and minimum sizes are checked with numpy in
    :meth:`_Chunks.take`.
    """
    n = len(data)
    found = array("q")
    append = found.append
    marks = [_Mark(0, walker.order == ">", walker.base, len(walker.interfaces) - walker.base)]
    head = struct.Struct(walker.order + "II").unpack_from
    packet_blocks, epb, shortest, longest = _PACKET_BLOCKS, _EPB, _BLOCK_MIN, _MAX_BLOCK
    off = 0
    last = n - 8  # the last offset a block header fits at
    retry = 0  # next offset at which a run of equal blocks is looked for
    bad: int | None = None
    while off <= last:
        kind, length = head(data, off)
        if kind in packet_blocks:
            # the hot path: a length of 0 would loop and a huge one would read the
            # whole file waiting for the block; a misaligned length is caught in take()
            if not shortest <= length <= longest:
                bad = off
                break
            if off + length > n:
                break
            if off >= retry and kind == epb and not off & 3:
                run = _uniform_run(data, off, length, walker.order)
                if run:
                    found.frombytes((off + length * np.arange(run, dtype=np.int64)).tobytes())
                    off += run * length
                    continue
                retry = off + 1024 * length
            append(off)
            off += length
            continue
        if kind == _SHB:
            if off + 12 > n:
                break
            order = _byte_order(data, off)
            if order is None:
                bad = off
                break
            (length,) = struct.unpack_from(order + "I", data, off + 4)
            if _bad_length(length, _SHB_MIN):
                bad = off
                break
            if off + length > n:
                break
            if _section_problem(data, off, order, length) is not None:
                bad = off
                break
            walker.order, walker.base = order, len(walker.interfaces)
            head = struct.Struct(order + "II").unpack_from
            marks.append(_Mark(len(found), order == ">", walker.base, 0))
            off += length
            continue
        if _bad_length(length, _IDB_MIN if kind == _IDB else _BLOCK_MIN):
            bad = off
            break
        if off + length > n:
            break
        if struct.unpack_from(walker.order + "I", data, off + length - 4)[0] != length:
            bad = off
            break
        if kind == _IDB:
            walker.interfaces.append(_interface(data, off, length, walker.order))
            described = len(walker.interfaces) - walker.base
            marks.append(_Mark(len(found), walker.order == ">", walker.base, described))
        off += length  # any other block: skipped
    return np.frombuffer(found, dtype=np.int64).copy(), marks, off, bad


def _uniform_run(data: bytes, off: int, length: int, order: Order) -> int:
    """How many enhanced packet blocks of ``length`` bytes follow one another from
    ``off`` (4-aligned; wholly in ``data``); 0 when fewer than a probe's worth.

    Assumes every block is as long as the first: the offsets computed that way are
    exact up to the first block that differs, because every block before it had the
    assumed length.
    """
    count = (len(data) - off) // length
    if count < _UNIFORM_PROBE:
        return 0
    head = struct.Struct(order + "II").unpack_from
    for k in range(1, 8):  # cheap first look before numpy
        if head(data, off + k * length) != (_EPB, length):
            return 0
    words = _Words(data)

    def same(offsets: I64) -> Mask:
        big = np.full(offsets.size, order == ">")
        same_kind: Mask = words.at(offsets, big) == _EPB
        same_length: Mask = words.at(offsets + 4, big) == length
        return same_kind & same_length

    step = np.arange(_UNIFORM_PROBE, dtype=np.int64) * length
    if not same(off + step).all():
        return 0
    differs = np.flatnonzero(~same(off + length * np.arange(count, dtype=np.int64)))
    return count if differs.size == 0 else int(differs[0])


def _is_packet_block(tail: bytes, order: Order) -> bool:
    """Whether the bytes left at the end of the file start a packet block (or too
    little to tell: a record cut short), as opposed to another kind of block."""
    if len(tail) < 4:
        return True
    return struct.unpack_from(order + "I", tail)[0] in _PACKET_BLOCKS


# --------------------------------------------------------------------------- packet blocks


class _Chunks:
    """Turns the packet blocks of each chunk into table columns, keeping the counts."""

    def __init__(self, walker: _Walker, *, tcp_options: bool = False) -> None:
        self.walker = walker
        self.tcp_options = tcp_options
        self.parts: list[Columns] = []
        self.reasons = new_reasons(pcapng=True)
        self.records = 0
        self.untimed = 0
        self.last_ts = 0  # time of the last timed packet block, for simple packet blocks

    def take(self, data: bytes, offsets: I64, marks: list[_Mark]) -> int | None:
        """Read the packet blocks at ``offsets``; returns the offset of the first one
        whose framing is impossible (the blocks from it on are dropped), else None."""
        misaligned = np.flatnonzero(offsets & 3)
        if misaligned.size:  # after a block whose length is misaligned: flagged below
            offsets = offsets[: misaligned[0]]
        if offsets.size == 0:
            return None
        words = _Words(data)
        seg = np.searchsorted([m.at for m in marks], np.arange(offsets.size), side="right") - 1
        big = np.array([m.big for m in marks], dtype=np.bool_)[seg]
        kind = words.at(offsets, big)
        length = words.at(offsets + 4, big).astype(np.int64)
        aligned = (length & 3) == 0
        trailer = words.at(np.where(aligned, offsets + length - 4, offsets + 4), big)
        minimum = np.where(kind == _SPB, _SPB_MIN, _EPB_MIN)
        broken = np.flatnonzero(~aligned | (trailer != length) | (length < minimum))
        first_broken = None
        if broken.size:
            cut = int(broken[0])
            first_broken = int(offsets[cut])
            offsets, big, kind, length = offsets[:cut], big[:cut], kind[:cut], length[:cut]
            seg = seg[:cut]
        if offsets.size:
            base = np.array([m.base for m in marks], dtype=np.int64)[seg]
            described = np.array([m.described for m in marks], dtype=np.int64)[seg]
            self._packets(
                words, offsets, big=big, kind=kind, length=length, base=base, described=described
            )
        return first_broken

    def _packets(
        self,
        words: _Words,
        offsets: I64,
        *,
        big: Mask,
        kind: npt.NDArray[np.uint32],
        length: I64,
        base: I64,
        described: I64,
    ) -> None:
        n = offsets.size
        simple = kind == _SPB
        timed = np.flatnonzero(~simple)
        untimed = np.flatnonzero(simple)
        at, big_t = offsets[timed], big[timed]

        iface = np.zeros(n, dtype=np.int64)
        iface[timed] = words.at(at + 8, big_t)
        obsolete = timed[kind[timed] == _PB]  # 16-bit interface id, then 16-bit drops
        if obsolete.size:
            word = iface[obsolete]
            iface[obsolete] = np.where(big[obsolete], word >> 16, word & 0xFFFF)
        raw_ts = np.zeros(n, dtype=np.uint64)
        raw_ts[timed] = (words.at(at + 12, big_t).astype(np.uint64) << np.uint64(32)) | (
            words.at(at + 16, big_t)
        )
        caplen = np.zeros(n, dtype=np.int64)
        wirelen = np.zeros(n, dtype=np.int64)
        caplen[timed] = words.at(at + 20, big_t)
        wirelen[timed] = words.at(at + 24, big_t)
        wirelen[untimed] = words.at(offsets[untimed] + 8, big[untimed])
        start = np.where(simple, offsets + 12, offsets + 28)
        room = np.where(simple, length - 16, length - 32)

        interfaces = self.walker.interfaces
        known = iface < described
        which = np.where(known, base + iface, 0)
        if interfaces:
            linktypes = np.array([i.linktype for i in interfaces], dtype=np.int64)[which]
            snaplen = np.array([i.snaplen for i in interfaces], dtype=np.int64)[which]
        else:
            linktypes = snaplen = np.zeros(n, dtype=np.int64)
        caplen[untimed] = np.minimum(wirelen[untimed], room[untimed])
        snapped = untimed[snaplen[untimed] > 0]
        caplen[snapped] = np.minimum(caplen[snapped], snaplen[snapped])
        usable = known & (caplen <= room)

        ts_ns = np.zeros(n, dtype=np.int64)
        has_time = known & ~simple
        timed_ifaces = which[has_time]
        clocks = distinct(timed_ifaces)
        if len(clocks) == 1 and timed_ifaces.size == n:  # all timed, by one interface
            ts_ns = _to_ns(raw_ts, interfaces[clocks[0]])
        else:
            for number in clocks:
                sel = np.flatnonzero(has_time & (which == number))
                ts_ns[sel] = _to_ns(raw_ts[sel], interfaces[number])
        if untimed.size:
            last = np.where(has_time, np.arange(n), -1)
            np.maximum.accumulate(last, out=last)
            earlier = np.where(last >= 0, ts_ns[np.maximum(last, 0)], self.last_ts)
            ts_ns[untimed] = earlier[untimed]
        timed_known = np.flatnonzero(has_time)
        if timed_known.size:
            self.last_ts = int(ts_ns[timed_known[-1]])

        self.reasons["bad_block"] += int(n - usable.sum())
        keep = np.flatnonzero(usable)
        pkt = start[keep]
        rows, fields = dissect(
            words.bytes,
            pkt,
            pkt + caplen[keep],
            linktypes[keep],
            self.reasons,
            tcp_options=self.tcp_options,
        )
        rows = keep[rows]
        self.parts.append(
            {
                "frame": rows + self.records + 1,
                "ts_ns": ts_ns[rows],
                "caplen": caplen[rows].astype(np.uint32),
                "wirelen": wirelen[rows].astype(np.uint32),
                **fields,
            }
        )
        self.records += n
        self.untimed += int(untimed.size)


class _Words:
    """The 32-bit words of a chunk, in either byte order (views, no copies): every
    field of a well-framed block is a whole word, blocks being 4-byte aligned."""

    def __init__(self, data: bytes) -> None:
        self.bytes: U8 = np.frombuffer(data, dtype=np.uint8)
        count = len(data) // 4
        self.little: npt.NDArray[np.uint32] = np.frombuffer(data, dtype="<u4", count=count)
        self.big: npt.NDArray[np.uint32] = np.frombuffer(data, dtype=">u4", count=count)

    def at(self, offsets: I64, big: Mask) -> npt.NDArray[np.uint32]:
        """The word at each (4-aligned) byte offset, big-endian where ``big`` is set."""
        index = offsets >> 2
        words: npt.NDArray[np.uint32]
        if not big.any():
            words = self.little[index].astype(np.uint32)
        elif big.all():
            words = self.big[index].astype(np.uint32)
        else:
            words = np.where(big, self.big[index], self.little[index]).astype(np.uint32)
        return words


def _shift_right(values: U64, bits: int) -> U64:
    if bits >= 64:
        return np.zeros_like(values)
    return values >> np.uint64(bits)


def _to_ns(raw: U64, interface: Interface) -> I64:
    """Timestamps in the interface's units as ns since the epoch (wrapping, never
    raising, for absurd values)."""
    resol = interface.tsresol
    if resol & 0x80:  # 2^-bits s
        bits = resol & 0x7F
        seconds = _shift_right(raw, bits)
        frac = raw & np.uint64((1 << bits) - 1) if bits < 64 else raw
        if bits > 30:  # keep frac * 10^9 within 64 bits
            frac, bits = _shift_right(frac, bits - 30), 30
        ns = seconds * np.uint64(_NS) + ((frac * np.uint64(_NS)) >> np.uint64(bits))
    elif resol <= 9:  # 10^-resol s
        ns = raw * np.uint64(10 ** (9 - resol))
    elif resol - 9 < 20:
        ns = raw // np.uint64(10 ** (resol - 9))
    else:
        ns = np.zeros_like(raw)
    ns = ns + np.uint64((interface.tsoffset * _NS) % (1 << 64))
    return ns.view(np.int64)
