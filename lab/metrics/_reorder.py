"""Packet reordering metrics of RFC 4737 and RFC 5236.

Every function takes ``arrivals``: the sequence numbers of the packets in the
order they reached the receiver. The RFC 4737 functions expect first copies only
(drop duplicates first); the RFC 5236 ones discard duplicates themselves, as
their algorithms do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lab.metrics._arrays import ArrayIn, BoolArray, IntArray, as_int


def reordered(arrivals: ArrayIn) -> BoolArray:
    """Flag each arrival that is Type-P-Reordered.

    RFC 4737 §3.3: with NextExp = 1 + the highest sequence number seen so far,
    a packet is reordered when its sequence number is below NextExp.
    """
    seqs = as_int(arrivals)
    flags = np.zeros(seqs.size, dtype=np.bool_)
    if seqs.size > 1:
        highest = np.maximum.accumulate(seqs)[:-1]
        flags[1:] = seqs[1:] <= highest
    return flags


def reordered_count(arrivals: ArrayIn) -> int:
    """Number of reordered arrivals (RFC 4737 §3.3 singletons summed)."""
    return int(reordered(arrivals).sum())


def reordered_ratio(arrivals: ArrayIn) -> float:
    """Reordered arrivals over all arrivals; NaN when nothing arrived.

    RFC 4737 §3.4 (Type-P-Reordered-Ratio-Stream): R = reordered / received.
    """
    flags = reordered(arrivals)
    return float(flags.mean()) if flags.size else float("nan")


def reordering_extent(arrivals: ArrayIn) -> IntArray:
    """Reordering extent of each arrival, 0 for arrivals that are not reordered.

    RFC 4737 §4.2: for a reordered packet with receive index i, e = i - j where
    j is the earliest receive index of a packet with a larger sequence number.
    """
    seqs = as_int(arrivals)
    flags = reordered(seqs)
    extent = np.zeros(seqs.size, dtype=np.int64)
    if flags.any():
        highest = np.maximum.accumulate(seqs)
        late = np.flatnonzero(flags)
        first_larger = np.searchsorted(highest, seqs[late], side="right")
        extent[late] = late - first_larger
    return extent


def n_reordering(arrivals: ArrayIn) -> IntArray:
    """Largest n for which each arrival is n-reordered, 0 if not reordered.

    RFC 4737 §5.1: a reordered packet with receive index i is n-reordered when
    the n packets received just before it, i-1 .. i-n, all have larger
    sequence numbers (n duplicate ACKs in TCP terms).
    """
    seqs = as_int(arrivals).tolist()
    result = np.zeros(len(seqs), dtype=np.int64)
    stack: list[int] = []  # receive indices with increasing sequence numbers
    for i, s in enumerate(seqs):
        while stack and seqs[stack[-1]] > s:
            stack.pop()
        result[i] = i - stack[-1] - 1 if stack else i
        stack.append(i)
    return result


def n_reordering_ratio(arrivals: ArrayIn, n: int) -> float:
    """Fraction of arrivals that are n-reordered (RFC 4737 §5); NaN if none."""
    if n < 1:
        raise ValueError("n must be >= 1 (RFC 4737 §5: n-reordering counts from 1)")
    counts = n_reordering(arrivals)
    return float((counts >= n).mean()) if counts.size else float("nan")


def _unique_stream(arrivals: ArrayIn) -> list[int]:
    """Arrivals as a Python list (the RFC 5236 loops are sequential)."""
    return [int(v) for v in as_int(arrivals)]


def reorder_displacements(arrivals: ArrayIn, threshold: int = 3) -> IntArray:
    """Displacement D = RI - S of each arrival counted by the RD algorithm.

    RFC 5236 §3.3 (D = RI - S: D > 0 late, D < 0 early) computed with the
    Stay-back algorithm of §7.1, ``threshold`` being the displacement threshold
    DT: the receive index RI (§3.1) skips a sequence number that is in neither
    the window of the next DT+1 arrivals nor the buffer of early arrivals, so a
    lost packet displaces nothing (§8 Table 5). Arrivals displaced by more than
    DT (§6: late beyond DT is lost), duplicates and arrivals below RI get no RI
    and are left out, so the result may be shorter than ``arrivals``. RI starts
    at the lowest number that arrived (the RFC numbers packets from 1).
    Two cases §7.1 leaves open are closed here: a copy of an arrival that was
    discarded is a duplicate too, and should every pending number fall below
    RI the oldest is dropped (the §7.1 loop would not end).
    """
    if threshold < 0:
        raise ValueError("threshold must be >= 0")
    stream = _unique_stream(arrivals)
    pos = 0
    seen: set[int] = set()

    def next_arrival(ri: int, window: list[int], buffer: set[int]) -> int | None:
        nonlocal pos
        while pos < len(stream):
            s = stream[pos]
            pos += 1
            if s >= ri and s not in buffer and s not in window and s not in seen:
                return s
        return None

    window: list[int] = []
    buffer: set[int] = set()
    ri = min(stream) if stream else 0
    while len(window) < threshold + 1:
        s = next_arrival(ri, window, buffer)
        if s is None:
            break
        window.append(s)
    out: list[int] = []
    while window:
        if ri in buffer or ri in window:
            s = window.pop(0)
            seen.add(s)
            d = ri - s
            if abs(d) <= threshold:
                out.append(d)
                buffer.discard(ri)
                if d < 0:
                    buffer.add(s)
                ri += 1
            new = next_arrival(ri, window, buffer)
            if new is not None:
                window.append(new)
        else:
            pending = window + list(buffer)
            lowest = min(pending)
            if ri < lowest:
                ri = lowest
            elif max(pending) < ri:
                # every pending number is below RI: nothing can match any more;
                # drop the head so the loop ends (the published algorithm leaves this case open)
                seen.add(window.pop(0))
            else:
                ri += 1
    return np.asarray(out, dtype=np.int64)


def reorder_density(arrivals: ArrayIn, threshold: int = 3) -> pd.Series:
    """Reorder Density RD[k] for displacements k = -DT..DT, summing to 1.

    RFC 5236 §3.5-§3.6: the displacement frequencies FD[k] of
    :func:`reorder_displacements` over N' = sum(FD), the arrivals that are
    neither lost nor duplicates; all zero when nothing was counted.
    """
    disp = reorder_displacements(arrivals, threshold)
    index = pd.RangeIndex(-threshold, threshold + 1, name="displacement")
    counts = np.bincount(disp + threshold, minlength=2 * threshold + 1).astype(np.float64)
    total = counts.sum()
    return pd.Series(counts / total if total else counts, index=index, name="rd")


def buffer_occupancies(arrivals: ArrayIn, threshold: int = 3) -> IntArray:
    """Occupancy B of the hypothetical resequencing buffer after each counted arrival.

    RFC 5236 §3.8 with the algorithm of §7.2, ``threshold`` being the
    buffer-occupancy threshold BT. E, the next expected number (§3.7), starts at
    the lowest number that arrived (the RFC numbers packets from 1). An arrival
    S == E releases the buffered packets that are now in sequence; S > E waits
    in the buffer. A missing packet is declared lost only when an early arrival
    finds the buffer full (B == BT, §6): E then jumps to the lowest buffered
    number or S and the packets in sequence from there are released. So, unlike
    RD, the buffer fills while a lost packet is awaited (§8 Table 6).
    Duplicates and arrivals below E (late beyond the loss declaration) are
    discarded and get no entry, so the result may be shorter than ``arrivals``.
    One departure from the §7.2 pseudo-code: if the packets released after a
    loss do not reach S, S stays in the buffer (§3.8 counts "the newly arrived
    packet"); the pseudo-code would drop it and count a later copy of it.
    """
    if threshold < 0:
        raise ValueError("threshold must be >= 0")
    stream = _unique_stream(arrivals)
    out: list[int] = []
    if not stream:
        return np.asarray(out, dtype=np.int64)
    expected = min(stream)
    buffer: set[int] = set()
    for s in stream:
        if s in buffer or s < expected:
            continue  # §7.2 case a: duplicate or excessively delayed
        if s == expected:  # case b
            expected += 1
        elif len(buffer) < threshold:  # case c, room in the buffer: S waits
            buffer.add(s)
        else:  # case c, buffer full: the packets still missing below it are lost
            # "Repeat E = E + 1 Until (in_buffer(E) || E == S)" in one step
            expected = min(buffer | {s})
            buffer.add(s)  # released at once by the loop below
        while expected in buffer:  # free what is now in sequence
            buffer.discard(expected)
            expected += 1
        out.append(len(buffer))
    return np.asarray(out, dtype=np.int64)


def reorder_buffer_density(arrivals: ArrayIn, threshold: int = 3) -> pd.Series:
    """Reorder Buffer-occupancy Density RBD[k] for occupancies k = 0..BT.

    RFC 5236 §3.10-§3.11 and §7.2 step 3: the frequencies FB[k] of
    :func:`buffer_occupancies` over N' = sum(FB), the arrivals that are neither
    duplicates nor deemed lost; all zero when nothing was counted.
    """
    occ = buffer_occupancies(arrivals, threshold)
    index = pd.RangeIndex(0, threshold + 1, name="occupancy")
    counts = np.bincount(occ, minlength=threshold + 1).astype(np.float64)
    total = counts.sum()
    return pd.Series(counts / total if total else counts, index=index, name="rbd")
