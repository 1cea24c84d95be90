"""The fast classic-pcap reader: record headers walked, fields gathered with numpy.

The walk over record headers is a tight ``struct`` loop, skipped entirely when every
record has the same length (the offsets are then computed at once); every header field
is then read for all packets of a chunk at once by fancy indexing into the file's bytes.
"""

from __future__ import annotations

import struct
from array import array
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from lab.pcap._dissect import Columns, PcapFrame, assemble, dissect, new_reasons
from lab.pcap._format import FILE_HEADER_SIZE, ClassicFormat
from lab.pcap._gather import I64, u32


def read(
    fh: BinaryIO, fmt: ClassicFormat, chunk_size: int, *, tcp_options: bool = False
) -> PcapFrame:
    """Walk and parse the records after the file header chunk by chunk; a record cut
    by a chunk end waits for the next chunk."""
    parts: list[Columns] = []
    reasons = new_reasons()
    records = 0
    base = FILE_HEADER_SIZE  # file offset of data[0]
    garbage: int | None = None
    truncated_tail = False
    pending = b""
    while True:
        chunk = fh.read(max(chunk_size, len(pending)))
        data = pending + chunk if pending else chunk
        if not data:
            break
        eof = not chunk
        offsets, stop, bad = _walk(data, fmt)
        caplen = u32(np.frombuffer(data, np.uint8), offsets + 8, fmt.order)
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
                tcp_options=tcp_options,
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
    return assemble(
        parts,
        linktype=fmt.linktype,
        nanosecond=fmt.nanosecond,
        snaplen=fmt.snaplen,
        records=records,
        reasons=reasons,
        truncated_tail=truncated_tail,
        garbage=garbage,
        tcp_options=tcp_options,
    )


def _parse_chunk(
    data: bytes,
    *,
    offsets: I64,
    caplen: npt.NDArray[np.uint32],
    first_frame: int,
    fmt: ClassicFormat,
    reasons: dict[str, int],
    tcp_options: bool = False,
) -> Columns:
    """Columns of the complete records at ``offsets`` (see :func:`dissect`)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    pkt = offsets + fmt.rec_len  # first byte of each packet
    end = pkt + caplen.astype(np.int64)  # one past its last captured byte
    rows, fields = dissect(buf, pkt, end, fmt.linktype, reasons, tcp_options=tcp_options)
    at = offsets[rows]
    ts_sec = u32(buf, at, fmt.order).astype(np.int64)
    ts_frac = u32(buf, at + 4, fmt.order).astype(np.int64)
    return {
        "frame": rows.astype(np.int64) + first_frame + 1,
        "ts_ns": ts_sec * 1_000_000_000 + (ts_frac if fmt.nanosecond else ts_frac * 1000),
        "caplen": caplen[rows],
        "wirelen": u32(buf, at + 12, fmt.order),
        **fields,
    }


def _walk(data: bytes, fmt: ClassicFormat) -> tuple[I64, int, int | None]:
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
        found.frombytes(offsets.tobytes())
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


def _walk_uniform(data: bytes, fmt: ClassicFormat) -> tuple[I64, int, bool] | None:
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
    caps = u32(np.frombuffer(data, dtype=np.uint8), offsets + 8, fmt.order)
    differs = np.flatnonzero(caps != cap)
    if differs.size == 0:
        return offsets, int(offsets[-1]) + stride, True
    if differs[0] < 64:
        return None
    cut = int(differs[0])
    return offsets[:cut], int(offsets[cut]), False
