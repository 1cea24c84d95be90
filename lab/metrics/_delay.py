"""One-way delay (RFC 7679), its percentiles (RFC 2330), delay variation
(RFC 3393) and the RTP interarrival jitter (RFC 3550)."""

from __future__ import annotations

import numpy as np

from lab.metrics._arrays import ArrayIn, FloatArray, as_float, difference


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

    RFC 3393 §2-§3 with the consecutive-packet selection function (RFC 5481
    §4.1): ipdv[i] = D(i+1) - D(i); undefined (NaN) where either packet was lost.
    The result has one element fewer than ``delays``.
    """
    arr = as_float(delays)
    return np.diff(arr) if arr.size > 1 else np.empty(0, dtype=np.float64)


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
