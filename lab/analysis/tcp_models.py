"""Steady-state TCP throughput models: what a bulk TCP flow should get at loss rate p.

Pure functions of the segment size, the round-trip time and the loss fraction p; every
model returns NaN where it is undefined (p <= 0 or p >= 1, RTT or MSS not > 0, any input
NaN) instead of raising, so a table with a loss-0 cell or no RTT still renders.
Units: MSS in bytes, RTT and RTO in milliseconds, results in bit/s (payload bits: one
segment counts as ``8 * mss_bytes``), except the window and packet-rate helpers, which
take seconds and return segments or segments/s as their sources state them.

* **Mathis** et al. (1997), "The macroscopic behavior of the TCP congestion avoidance
  algorithm", CCR 27(3): ``rate = (MSS / RTT) * C / sqrt(p)`` with ``C = sqrt(3/2)``
  (periodic loss, an ACK per segment).
* **CUBIC**, RFC 9438 (2023). §5 gives CUBIC's average window in congestion avoidance
  under a deterministic loss model (one loss every 1/p packets)::

      AVG_W_cubic = (C * (3 + beta_cubic) / (4 * (1 - beta_cubic)))^(1/4) * RTT^(3/4) / p^(3/4)

  in segments with RTT in seconds; with C = 0.4 (§5.1: "C SHOULD be set to 0.4") and
  beta_cubic = 0.7 (§4.6) the factor is 1.054 (§5.1). Where the cubic curve would grow
  more slowly than Reno, CUBIC follows its Reno-friendly estimate W_est (§4.3), an AIMD
  window with alpha_cubic = 3 * (1 - beta_cubic) / (1 + beta_cubic) per RTT and decrease
  factor beta_cubic. An AIMD(alpha, beta) window under the same loss model averages
  ``sqrt(alpha * (1 + beta) / (2 * (1 - beta) * p))``; with alpha_cubic this is
  ``sqrt(3 / (2 * p))``, the Reno (Mathis) window, which is why §4.3 chose that alpha.
  The model implemented here is ``max(AVG_W_cubic, sqrt(3 / (2 * p))) * MSS / RTT``, the
  rule by which RFC 9438 §5.1 computes the CUBIC columns of its Tables 1 and 2 ("Eq. 6
  and the CUBIC Reno-friendly region"; the tables take Reno's window as 1.2 / sqrt(p)
  from RFC 3649, 2 % below sqrt(3/2) / sqrt(p)).
* **PFTK**: Padhye, Firoiu, Towsley and Kurose (1998), "Modeling TCP throughput: a
  simple model and its empirical validation", ACM SIGCOMM '98: the approximate full model
  with fast retransmit, timeouts (exponential back-off) and a window limit, in packets/s::

      B(p) = min(Wmax / RTT,
                 1 / (RTT * sqrt(2*b*p/3) + T0 * min(1, 3*sqrt(3*b*p/8)) * p * (1 + 32*p^2)))

  b is the number of packets acknowledged per ACK: the window grows by 1/b segment per RTT,
  which sets its size and so the share of losses that end in a timeout. We use b = 1:
  Linux grows cwnd per segment acknowledged, not per ACK (``tcp_cong_avoid_ai(tp, w,
  acked)``; CUBIC's W_est also counts ``segments_acked``, RFC 9438 §4.3), so delayed ACKs
  do not slow its growth. b = 1 is also what TFRC recommends for the same equation (RFC
  3448 §3.1), and it makes PFTK with T0 = 0 equal to Mathis; b = 2 would make the RTT
  term √2 larger. T0 is the retransmission timeout: a measured one when the results have
  it, otherwise Linux's, ``RTT + 200 ms`` (Linux sets RTO = SRTT + max(4 * RTTVAR,
  TCP_RTO_MIN = 200 ms); with a steady RTT the floor wins). Wmax (the receiver's window,
  in segments) is unlimited unless given.
"""

from __future__ import annotations

import math

#: Mathis et al. (1997): sqrt(3/2) ≈ 1.22 for periodic loss and an ACK per segment.
MATHIS_C = math.sqrt(3 / 2)
#: RFC 9438 §5.1: C SHOULD be 0.4 (segments / s³).
CUBIC_C = 0.4
#: RFC 9438 §4.6: the multiplicative decrease factor beta_cubic.
CUBIC_BETA = 0.7
#: Packets acknowledged per ACK in the PFTK model: 1, see the module docstring.
PFTK_B = 1.0
#: Linux's TCP_RTO_MIN (include/net/tcp.h: HZ / 5).
LINUX_RTO_MIN_MS = 200.0

CUBIC_REGION = "cubic"
RENO_FRIENDLY_REGION = "Reno-friendly"


def _positive(*values: float) -> bool:
    return all(math.isfinite(v) and v > 0 for v in values)


def _loss_ok(loss_fraction: float) -> bool:
    return math.isfinite(loss_fraction) and 0 < loss_fraction < 1


def mathis_bps(mss_bytes: float, rtt_ms: float, loss_fraction: float) -> float:
    """Mathis et al. (1997): ``8 * MSS / RTT * sqrt(3/2) / sqrt(p)`` bit/s; NaN where undefined."""
    if not (_positive(mss_bytes, rtt_ms) and _loss_ok(loss_fraction)):
        return math.nan
    return 8 * mss_bytes / (rtt_ms / 1000) * MATHIS_C / math.sqrt(loss_fraction)


def cubic_window(
    rtt_s: float, loss_fraction: float, c: float = CUBIC_C, beta: float = CUBIC_BETA
) -> float:
    """RFC 9438 §5: AVG_W_cubic in segments (the cubic curve alone, no Reno-friendly region)."""
    if not (_positive(rtt_s, c) and _loss_ok(loss_fraction) and 0 < beta < 1):
        return math.nan
    factor = math.pow(c * (3 + beta) / (4 * (1 - beta)), 0.25)
    return factor * math.pow(rtt_s, 0.75) / math.pow(loss_fraction, 0.75)


def reno_friendly_window(loss_fraction: float, beta: float = CUBIC_BETA) -> float:
    """Average of RFC 9438 §4.3's W_est in segments: AIMD(alpha_cubic, beta) = sqrt(3 / 2p)."""
    if not (_loss_ok(loss_fraction) and 0 < beta < 1):
        return math.nan
    alpha = 3 * (1 - beta) / (1 + beta)
    return math.sqrt(alpha * (1 + beta) / (2 * (1 - beta) * loss_fraction))


def cubic_region(rtt_ms: float, loss_fraction: float) -> str:
    """Which term of :func:`cubic_bps` wins: ``"cubic"``, ``"Reno-friendly"``, or "" if NaN."""
    cubic = cubic_window(rtt_ms / 1000, loss_fraction)
    reno = reno_friendly_window(loss_fraction)
    if math.isnan(cubic) or math.isnan(reno):
        return ""
    return CUBIC_REGION if cubic > reno else RENO_FRIENDLY_REGION


def cubic_bps(mss_bytes: float, rtt_ms: float, loss_fraction: float) -> float:
    """RFC 9438: ``max(AVG_W_cubic, sqrt(3 / 2p)) * 8 * MSS / RTT`` bit/s; NaN where undefined."""
    if not _positive(mss_bytes, rtt_ms):
        return math.nan
    window = max(cubic_window(rtt_ms / 1000, loss_fraction), reno_friendly_window(loss_fraction))
    return 8 * mss_bytes * window / (rtt_ms / 1000)  # NaN stays NaN: max(nan, nan) is nan


def linux_rto_ms(rtt_ms: float) -> float:
    """The retransmission timeout Linux settles on for a steady RTT: RTT + 200 ms."""
    return rtt_ms + LINUX_RTO_MIN_MS if _positive(rtt_ms) else math.nan


def pftk_packets_per_s(
    rtt_s: float,
    loss_fraction: float,
    t0_s: float,
    b: float = PFTK_B,
    wmax_segments: float = math.inf,
) -> float:
    """Padhye et al. (1998), the approximate model with timeouts: B(p) in packets/s."""
    if not (_positive(rtt_s, b) and _loss_ok(loss_fraction)):
        return math.nan
    if math.isnan(t0_s) or t0_s < 0 or math.isnan(wmax_segments) or wmax_segments <= 0:
        return math.nan
    p = loss_fraction
    fast = rtt_s * math.sqrt(2 * b * p / 3)
    timeouts = t0_s * min(1.0, 3 * math.sqrt(3 * b * p / 8)) * p * (1 + 32 * p**2)
    return min(wmax_segments / rtt_s, 1 / (fast + timeouts))


def pftk_bps(
    mss_bytes: float,
    rtt_ms: float,
    loss_fraction: float,
    *,
    rto_ms: float | None = None,
    b: float = PFTK_B,
    wmax_segments: float = math.inf,
) -> float:
    """:func:`pftk_packets_per_s` in bit/s; T0 = ``rto_ms``, or :func:`linux_rto_ms` if None."""
    if not _positive(mss_bytes, rtt_ms):
        return math.nan
    t0_ms = linux_rto_ms(rtt_ms) if rto_ms is None else rto_ms
    rate = pftk_packets_per_s(rtt_ms / 1000, loss_fraction, t0_ms / 1000, b, wmax_segments)
    return 8 * mss_bytes * rate
