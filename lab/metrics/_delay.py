"""One-way delay (RFC 7679), its percentiles (RFC 2330), delay variation
(RFC 3393) and the RTP interarrival jitter (RFC 3550)."""

from __future__ import annotations

import numpy as np

from lab.metrics._arrays import (
    ArrayIn,
    FloatArray,
    _int_with_mask,
    as_float,
    as_int,
    difference,
)


def one_way_delay(t_send: ArrayIn, t_recv: ArrayIn) -> FloatArray:
    """Per-packet one-way delay t_recv - t_send; NaN for lost packets.

    RFC 7679 §3.4: the delay is undefined (here NaN) when the packet did not
    arrive. Units are those of the inputs.
    """
    return difference(t_recv, t_send)


def _defined(values: ArrayIn, lost_as_infinite: bool) -> FloatArray:
    arr = as_float(values)
    if lost_as_infinite:
        return np.where(np.isnan(arr), np.inf, arr)
    return arr[~np.isnan(arr)]


def delay_percentile(delays: ArrayIn, percent: float, *, lost_as_infinite: bool = False) -> float:
    """The ``percent`` percentile (0..100) of the delays; NaN if none defined.

    RFC 2330 §11.3: the smallest sample x with EDF(x) >= percent/100, without
    interpolation. RFC 7679 §5.1 counts lost packets (NaN) as infinitely
    large: pass ``lost_as_infinite=True`` for that; by default they are dropped.
    """
    arr = _defined(delays, lost_as_infinite)
    if arr.size == 0:
        return float("nan")
    if percent <= 0:
        return float(arr.min())
    return float(np.percentile(arr, percent, method="inverted_cdf"))


def delay_median(delays: ArrayIn, *, lost_as_infinite: bool = False) -> float:
    """Median of the delays; the mean of the two central values for an even count.

    RFC 7679 §5.2 (Type-P-One-way-Delay-Median); lost packets as in
    :func:`delay_percentile`.
    """
    arr = _defined(delays, lost_as_infinite)
    return float(np.median(arr)) if arr.size else float("nan")


def delay_min(delays: ArrayIn) -> float:
    """Minimum defined delay (RFC 7679 §5.3); NaN if none."""
    arr = _defined(delays, lost_as_infinite=False)
    return float(arr.min()) if arr.size else float("nan")


def delay_max(delays: ArrayIn) -> float:
    """Maximum defined delay; NaN if none."""
    arr = _defined(delays, lost_as_infinite=False)
    return float(arr.max()) if arr.size else float("nan")


def ipdv(delays: ArrayIn) -> FloatArray:
    """IP packet delay variation between consecutive packets, in send order.

    RFC 3393 §2.4 with the consecutive-packet selection function (§2.5, §3.5's
    second example, RFC 5481 §4.1): ipdv[i] = D(i+1) - D(i); undefined (NaN)
    where either packet was lost. The result has one element fewer than
    ``delays``.
    """
    arr = as_float(delays)
    return np.diff(arr) if arr.size > 1 else np.empty(0, dtype=np.float64)


def ipdv_pairs(delays: ArrayIn, first: ArrayIn, second: ArrayIn) -> FloatArray:
    """IPDV of selected packet pairs: D(second[j]) - D(first[j]) for each j.

    RFC 3393 §2.4 (Type-P-One-way-ipdv): the one-way delay of the second packet
    of a pair minus that of the first, undefined (NaN) when either packet was
    lost. ``first`` and ``second`` are the positions in ``delays`` (send order)
    that a selection function F (§2.2, §2.5) picked.
    """
    arr = as_float(delays)
    i = as_int(first)
    k = as_int(second)
    if i.shape != k.shape:
        raise ValueError("first and second must pair up (same length)")
    return arr[k] - arr[i]


def peak_to_peak_ipdv(t_send: ArrayIn, delays: ArrayIn, interval: float) -> FloatArray:
    """Peak-to-peak IPDV of each sub-interval of send times, D(max) - D(min).

    RFC 3393 §4.6 (Type-P-One-way-peak-to-peak-ipdv), with the value §3.5's
    first example gives: the sends are cut into contiguous sub-intervals of
    length ``interval`` from the first send time, and each yields the maximum
    minus the minimum defined ("non-infinite") one-way delay in it, never
    negative. (§4.6 names the maximum-delay packet first, which by §2.4 would
    give the negated value.) NaN for a sub-interval with fewer than two defined
    delays: a singleton needs a pair of packets (§2.5).
    """
    if not interval > 0:
        raise ValueError("interval must be > 0")
    d = as_float(delays)
    t = as_float(t_send)
    if t.shape != d.shape:
        raise ValueError("t_send and delays must have the same length")
    if np.isnan(t).any():
        raise ValueError("t_send contains missing values")
    if t.size == 0:
        return np.empty(0, dtype=np.float64)
    ints = _int_with_mask(t_send)  # integer ns stay exact when offset first
    offsets = (ints[0] - ints[0].min()).astype(np.float64) if ints is not None else t - t.min()
    bins = np.floor(offsets / interval).astype(np.int64)
    defined = ~np.isnan(d)
    size = int(bins.max()) + 1
    high = np.full(size, -np.inf)
    low = np.full(size, np.inf)
    np.maximum.at(high, bins[defined], d[defined])
    np.minimum.at(low, bins[defined], d[defined])
    count = np.bincount(bins[defined], minlength=size)
    return np.where(count >= 2, high - low, np.nan)


def jitter_series(t_send: ArrayIn, t_recv: ArrayIn) -> FloatArray:
    """Running RTP interarrival jitter J after each arrival, in arrival order.

    RFC 3550 §6.4.1 / A.8: with D the difference of the transit times
    (t_recv - t_send) of two consecutive arrivals, J += (|D| - J) / 16.
    J is 0 after the first arrival. Pass received packets only.
    """
    transit = difference(t_recv, t_send).tolist()
    out = np.zeros(len(transit), dtype=np.float64)
    jitter = 0.0
    for i in range(1, len(transit)):
        jitter += (abs(transit[i] - transit[i - 1]) - jitter) / 16.0
        out[i] = jitter
    return out


def interarrival_jitter(t_send: ArrayIn, t_recv: ArrayIn) -> float:
    """Final RTP interarrival jitter J (RFC 3550 §6.4.1); NaN if nothing arrived."""
    series = jitter_series(t_send, t_recv)
    return float(series[-1]) if series.size else float("nan")
