"""The TCP throughput models of the sweep page against published or hand-computed values."""

from __future__ import annotations

import math

import pytest

from lab.analysis.tcp_models import (
    CUBIC_REGION,
    RENO_FRIENDLY_REGION,
    cubic_bps,
    cubic_region,
    cubic_window,
    linux_rto_ms,
    mathis_bps,
    pftk_bps,
    pftk_packets_per_s,
    reno_friendly_window,
)

# RFC 9438 §5.1, Tables 1 (RTT = 0.1 s) and 2 (RTT = 0.01 s), column "CUBIC (C=0.4)":
# average window in segments at loss rate p. The RFC computes them as Eq. 6 (AVG_W_cubic)
# "and the CUBIC Reno-friendly region", i.e. the larger of the two.
RFC9438_C04 = {
    0.1: {1e-2: 12, 1e-3: 38, 1e-4: 187, 1e-5: 1054, 1e-6: 5926, 1e-7: 33325, 1e-8: 187400},
    0.01: {1e-2: 12, 1e-3: 38, 1e-4: 120, 1e-5: 379, 1e-6: 1200, 1e-7: 5926, 1e-8: 33325},
}


@pytest.mark.parametrize(
    ("rtt_s", "p", "expected"),
    [(rtt, p, w) for rtt, column in RFC9438_C04.items() for p, w in column.items()],
)
def test_cubic_window_matches_rfc9438_tables(rtt_s: float, p: float, expected: int) -> None:
    cubic, reno = cubic_window(rtt_s, p), reno_friendly_window(p)
    if cubic > reno:
        # the cubic region: Eq. 6 exactly, to the RFC's rounding
        assert round(cubic) == expected
    else:
        # the Reno-friendly region: the tables take Reno's window from RFC 3649 as
        # 1.2 / sqrt(p); ours is the AIMD average sqrt(3 / 2p) = 1.2247 / sqrt(p), 2.06 % more
        assert reno == pytest.approx(expected, rel=0.025)
        assert reno == pytest.approx(math.sqrt(1.5 / p), rel=1e-12)


def test_cubic_constants_and_regions() -> None:
    # §5.1: with C = 0.4 and beta = 0.7, (C * 3.7 / 1.2)^(1/4) = 1.2333^(1/4) = 1.054
    assert cubic_window(0.05, 0.05) == pytest.approx(1.054, abs=5e-4)  # RTT^¾ / p^¾ = 1
    # §4.3: alpha_cubic = 3 * 0.3 / 1.7 = 0.5294; AIMD average sqrt(a * 1.7 / (2 * 0.3 * p))
    # = sqrt(0.9 / (0.6 p)) = sqrt(1.5 / p): at p = 1 % that is sqrt(150) = 12.247
    assert reno_friendly_window(0.01) == pytest.approx(12.2474, abs=1e-4)
    # the lab's loss sweep (20 ms, >= 0.5 %) is Reno-friendly: CUBIC's model equals Mathis
    assert cubic_region(20, 0.005) == RENO_FRIENDLY_REGION
    assert cubic_bps(1448, 20, 0.01) == pytest.approx(mathis_bps(1448, 20, 0.01), rel=1e-12)
    # RTT 100 ms, p = 1e-5: AVG_W = 1.05383 * 0.1^0.75 / 1e-5^0.75 = 1.05383 * 0.177828
    # * 5623.41 = 1053.83 segments (> 387.3 Reno); rate = 1053.83 * 1448 * 8 / 0.1 s
    assert cubic_region(100, 1e-5) == CUBIC_REGION
    assert cubic_bps(1448, 100, 1e-5) == pytest.approx(122.08e6, rel=1e-4)
    assert cubic_bps(1448, 100, 1e-5) > 1.5 * mathis_bps(1448, 100, 1e-5)


def test_pftk_by_hand() -> None:
    # RTT = 0.1 s, p = 0.01, T0 = 0.3 s, b = 1, Wmax unlimited:
    #   RTT * sqrt(2bp/3)            = 0.1 * sqrt(0.0066667) = 0.1 * 0.0816497 = 0.00816497
    #   min(1, 3 * sqrt(3bp/8))      = 3 * sqrt(0.00375) = 3 * 0.0612372      = 0.183712
    #   T0 * 0.183712 * p * (1 + 32p²) = 0.3 * 0.183712 * 0.01 * 1.0032       = 0.00055290
    #   B = 1 / (0.00816497 + 0.00055290) = 1 / 0.00871787                  = 114.707 pkt/s
    assert pftk_packets_per_s(0.1, 0.01, 0.3) == pytest.approx(114.707, abs=1e-3)
    # b = 2: 0.1 * sqrt(0.0133333) = 0.0115470; 3 * sqrt(0.0075) = 0.259808;
    #   0.3 * 0.259808 * 0.01 * 1.0032 = 0.00078192; B = 1 / 0.0123289 = 81.110 pkt/s
    assert pftk_packets_per_s(0.1, 0.01, 0.3, b=2) == pytest.approx(81.110, abs=1e-3)
    # p = 0.3: 3 * sqrt(0.1125) = 1.006 > 1, so the timeout factor is 1:
    #   0.1 * sqrt(0.2) = 0.0447214; 0.3 * 1 * 0.3 * (1 + 2.88) = 0.3492; B = 1 / 0.3939214
    assert pftk_packets_per_s(0.1, 0.3, 0.3) == pytest.approx(2.538578, abs=1e-6)
    # the receiver window caps it: Wmax / RTT = 10 / 0.1 = 100 < 114.707
    assert pftk_packets_per_s(0.1, 0.01, 0.3, wmax_segments=10) == pytest.approx(100.0)
    # no timeout cost and b = 1: 1 / (RTT * sqrt(2p/3)) = sqrt(3/2) / (RTT * sqrt(p)), Mathis
    rate = pftk_packets_per_s(0.02, 0.01, 0.0) * 1448 * 8
    assert rate == pytest.approx(mathis_bps(1448, 20, 0.01), rel=1e-12)
    # bit/s with Linux's T0 = RTT + 200 ms = 300 ms: the first case, 114.707 * 1448 * 8
    assert linux_rto_ms(100) == 300
    assert pftk_bps(1448, 100, 0.01) == pytest.approx(114.707 * 11584, rel=1e-5)
    assert pftk_bps(1448, 100, 0.01, rto_ms=300) == pftk_bps(1448, 100, 0.01)
    # timeouts put PFTK below Mathis, more so at high loss (20 ms, T0 = 220 ms)
    low, high = (pftk_bps(1448, 20, p) / mathis_bps(1448, 20, p) for p in (0.005, 0.05))
    assert high < low < 1


@pytest.mark.parametrize(
    ("mss", "rtt_ms", "p"),
    [
        (1448, 20, 0.0),  # loss 0: no limit
        (1448, 20, -0.01),
        (1448, 20, 1.0),
        (1448, 20, math.nan),
        (1448, 0, 0.01),  # no delay configured
        (1448, math.nan, 0.01),  # no RTT in the results
        (0, 20, 0.01),
        (math.nan, 20, 0.01),
    ],
)
def test_models_are_nan_where_undefined(mss: float, rtt_ms: float, p: float) -> None:
    for value in (mathis_bps(mss, rtt_ms, p), cubic_bps(mss, rtt_ms, p), pftk_bps(mss, rtt_ms, p)):
        assert math.isnan(value)
    if math.isnan(mss) or mss <= 0:  # only the MSS is wrong: the window and region are known
        assert cubic_region(rtt_ms, p) == RENO_FRIENDLY_REGION
    else:
        assert cubic_region(rtt_ms, p) == ""


def test_pftk_bad_timeout_or_window_is_nan() -> None:
    assert math.isnan(pftk_bps(1448, 20, 0.01, rto_ms=-1))
    assert math.isnan(pftk_bps(1448, 20, 0.01, rto_ms=math.nan))
    assert math.isnan(pftk_packets_per_s(0.02, 0.01, 0.22, wmax_segments=0))
    assert math.isnan(linux_rto_ms(0))
    assert cubic_region(0, 0.01) == ""
