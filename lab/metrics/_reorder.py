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

    RFC 5236 (Reorder Density), with the RD algorithm as its authors publish it
    (CNRL, Colorado State University, rd_algo.txt): RI is the receive index, the
    sequence number expected next; it skips numbers that are missing from the
    window of the next DT+1 arrivals and from the buffer of early arrivals,
    which is how losses are told from late packets. D > 0 is late, D < 0
    early; arrivals displaced by more than DT, duplicates and arrivals below RI
    are discarded, so the result may be shorter than ``arrivals``.
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

    RFC 5236: the frequencies of the displacements of
    :func:`reorder_displacements`, normalised by their total; all zero when
    nothing was counted.
    """
    disp = reorder_displacements(arrivals, threshold)
    index = pd.RangeIndex(-threshold, threshold + 1, name="displacement")
    counts = np.bincount(disp + threshold, minlength=2 * threshold + 1).astype(np.float64)
    total = counts.sum()
    return pd.Series(counts / total if total else counts, index=index, name="rd")


def buffer_occupancies(arrivals: ArrayIn, threshold: int = 3) -> IntArray:
    """Occupancy of an ideal resequencing buffer after each (non-duplicate) arrival.

    RFC 5236 (RBD), with the RBD algorithm as its authors publish it (CNRL,
    rbd_algo.txt): the next expected number E is the
    smallest in the window of the next DT+1 arrivals (which skips lost
    packets); an arrival other than E waits in the buffer, and E's arrival
    frees every buffered packet that is now in sequence.
    """
    if threshold < 0:
        raise ValueError("threshold must be >= 0")
    stream = _unique_stream(arrivals)
    pos = 0
    window: list[int] = []
    buffer: set[int] = set()
    delivered: int | None = None  # last packet handed on in sequence

    def next_arrival() -> int | None:
        # The published algorithm compares with E = min(window), which would also drop a
        # late packet that arrives after later ones filled the window; compare
        # with the last packet delivered in sequence instead.
        nonlocal pos
        while pos < len(stream):
            s = stream[pos]
            pos += 1
            stale = delivered is not None and s <= delivered
            if not stale and s not in window and s not in buffer:
                return s
        return None

    while len(window) < threshold + 1:
        s = next_arrival()
        if s is None:
            break
        window.append(s)
    out: list[int] = []
    while window:
        expected = min(window)
        s = window.pop(0)
        if s == expected:
            delivered = s
            while buffer:
                smallest = min(buffer | set(window))
                if smallest not in buffer:
                    break
                buffer.discard(smallest)
                delivered = smallest
        else:
            buffer.add(s)
        out.append(len(buffer))
        new = next_arrival()
        if new is not None:
            window.append(new)
    return np.asarray(out, dtype=np.int64)


def reorder_buffer_density(arrivals: ArrayIn, threshold: int = 3) -> pd.Series:
    """Reorder Buffer-occupancy Density RBD[k] for occupancies k = 0..DT.

    RFC 5236: the frequencies of :func:`buffer_occupancies`, normalised by
    their total; occupancies above the threshold are left out.
    """
    occ = buffer_occupancies(arrivals, threshold)
    index = pd.RangeIndex(0, threshold + 1, name="occupancy")
    counts = np.bincount(occ[occ <= threshold], minlength=threshold + 1).astype(np.float64)
    total = counts.sum()
    return pd.Series(counts / total if total else counts, index=index, name="rbd")
