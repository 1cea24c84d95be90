"""lab.metrics against RFC examples, hand-computed cases and brute-force properties.

Source of each expected value is named next to it. The RFCs' own worked examples
(RFC 5236 §8 tables, RFC 3393) are in tests/test_rfc_examples.py; the cases here are
hand-computed from the definitions, and the comment says so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab import metrics

# ---------------------------------------------------------------- loss (RFC 7680, RFC 3357)


def test_loss_ratio() -> None:
    assert metrics.loss_ratio([False, True, False, True]) == 0.5
    assert metrics.loss_ratio(pd.Series([False] * 3)) == 0.0
    assert math.isnan(metrics.loss_ratio([]))


def test_loss_patterns_hand_computed() -> None:
    # Hand-computed from the RFC 3357 §4 definitions (no worked example retrieved):
    # seq    0 1 2 3 4 5 6 7 8 9
    # lost   . X X . . X . . X X
    lost = [0, 1, 1, 0, 0, 1, 0, 0, 1, 1]
    # lost seqs 1,2,5,8,9 -> distances 0 (first loss, RFC 3357 §5.4.1), 1, 3, 3, 1
    assert metrics.loss_distances(lost).tolist() == [0, 1, 3, 3, 1]
    periods = metrics.loss_periods(lost)
    assert periods.count == 3
    assert periods.starts.tolist() == [1, 5, 8]
    assert periods.lengths.tolist() == [2, 1, 2]
    # RFC 3357 §6.4 inter-loss period lengths: 0 for the first period, then the
    # loss distance last-lost -> next-first-lost: 5 - 2 = 3, 8 - 5 = 3
    assert periods.gaps.tolist() == [0, 3, 3]


def test_loss_pattern_without_or_with_only_losses() -> None:
    none = metrics.loss_periods([False] * 5)
    assert none.count == 0 and none.gaps.size == 0
    assert metrics.loss_distances([False] * 5).size == 0
    every = metrics.loss_periods([True] * 4)
    assert every.count == 1 and every.lengths.tolist() == [4] and every.gaps.tolist() == [0]
    assert metrics.loss_distances([True] * 4).tolist() == [0, 1, 1, 1]


@given(st.lists(st.booleans(), max_size=200))
def test_loss_periods_account_for_every_loss(lost: list[bool]) -> None:
    periods = metrics.loss_periods(lost)
    assert int(periods.lengths.sum()) == sum(lost)
    assert periods.gaps.size == periods.count
    assert periods.gaps[:1].tolist() == ([0] if periods.count else [])
    # two periods are separated by at least one received packet: distance >= 2
    assert all(g >= 2 for g in periods.gaps[1:].tolist())
    assert metrics.loss_distances(lost).size == sum(lost)


# ---------------------------------------------------------------- reordering (RFC 4737)

# An arrival sequence used in public IPPM teaching notes on RFC 4737 (7, 8, 9
# overtake 4, 5, 6). The RFC's own example tables could not be retrieved; the
# expected values below are hand-computed from the RFC 4737 definitions.
RFC4737_ARRIVALS = [1, 2, 3, 7, 8, 9, 4, 5, 6, 10, 11]


def test_rfc4737_reordered_singletons() -> None:
    # §3.3: NextExp after 1,2,3,7,8,9 is 10, so 4, 5, 6 are reordered
    flags = metrics.reordered(RFC4737_ARRIVALS)
    late = [s for s, f in zip(RFC4737_ARRIVALS, flags, strict=True) if f]
    assert late == [4, 5, 6]
    # §3.4: ratio = 3 reordered / 11 received
    assert metrics.reordered_ratio(RFC4737_ARRIVALS) == pytest.approx(3 / 11)


def test_rfc4737_reordering_extent() -> None:
    # §4.2, hand-computed from the definition e = i - j: packet 7 (receive
    # index 4, 1-based) is the earliest with a larger number for 4 (i=7),
    # 5 (i=8) and 6 (i=9), giving extents 3, 4, 5.
    extent = metrics.reordering_extent(RFC4737_ARRIVALS)
    assert extent.tolist() == [0, 0, 0, 0, 0, 0, 3, 4, 5, 0, 0]


def test_rfc4737_n_reordering() -> None:
    # §5, hand-computed: 4 follows 7, 8, 9 -> 3-reordered (a TCP sender would
    # see three duplicate ACKs); 5 and 6 follow a smaller number -> 0.
    n = metrics.n_reordering(RFC4737_ARRIVALS)
    assert n.tolist() == [0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0]
    assert metrics.n_reordering_ratio(RFC4737_ARRIVALS, 3) == pytest.approx(1 / 11)
    assert metrics.n_reordering_ratio(RFC4737_ARRIVALS, 4) == 0.0


def test_exactly_two_reordered_packets() -> None:
    # synthetic: 2 and 3 are overtaken by 4; 6 is lost (no effect on order)
    arrivals = [0, 1, 4, 2, 3, 5, 7]
    assert metrics.reordered_count(arrivals) == 2
    assert metrics.reordering_extent(arrivals).tolist() == [0, 0, 0, 1, 2, 0, 0]
    assert metrics.n_reordering(arrivals).tolist() == [0, 0, 0, 1, 0, 0, 0]


def test_in_order_with_losses_is_not_reordered() -> None:
    arrivals = [0, 2, 3, 7, 9]
    assert metrics.reordered_count(arrivals) == 0
    assert metrics.reordering_extent(arrivals).tolist() == [0] * 5


def test_reordering_of_nothing() -> None:
    assert metrics.reordered([]).size == 0
    assert math.isnan(metrics.reordered_ratio([]))
    assert metrics.n_reordering([]).size == 0


def _brute_reordered(seqs: list[int]) -> list[bool]:
    return [any(p > s for p in seqs[:i]) for i, s in enumerate(seqs)]


def _brute_extent(seqs: list[int]) -> list[int]:
    out = []
    for i, s in enumerate(seqs):
        larger = [j for j in range(i) if seqs[j] > s]
        out.append(i - larger[0] if larger else 0)
    return out


def _brute_n(seqs: list[int]) -> list[int]:
    out = []
    for i, s in enumerate(seqs):
        n = 0
        while n < i and seqs[i - n - 1] > s:
            n += 1
        out.append(n)
    return out


arrival_orders = st.lists(st.integers(0, 60), max_size=60, unique=True)


@given(arrival_orders)
def test_reordering_matches_brute_force(seqs: list[int]) -> None:
    assert metrics.reordered(seqs).tolist() == _brute_reordered(seqs)
    assert metrics.reordering_extent(seqs).tolist() == _brute_extent(seqs)
    assert metrics.n_reordering(seqs).tolist() == _brute_n(seqs)


# ---------------------------------------------------------------- RFC 5236 RD and RBD


def test_rd_single_late_packet() -> None:
    # Hand-computed with RFC 5236 §7.1's RD algorithm: 4 arrives one
    # place early (D = -1), 3 one place late (D = +1), the rest on time.
    disp = metrics.reorder_displacements([1, 2, 4, 3, 5], threshold=3)
    assert disp.tolist() == [0, 0, -1, 1, 0]
    rd = metrics.reorder_density([1, 2, 4, 3, 5], threshold=3)
    assert rd.index.tolist() == [-3, -2, -1, 0, 1, 2, 3]
    assert rd.tolist() == [0, 0, 0.2, 0.6, 0.2, 0, 0]


def test_rd_rfc4737_sequence() -> None:
    # Hand-computed: 7, 8, 9 three places early, 4, 5, 6 three places late
    disp = metrics.reorder_displacements(RFC4737_ARRIVALS, threshold=3)
    assert disp.tolist() == [0, 0, 0, -3, -3, -3, 3, 3, 3, 0, 0]
    rd = metrics.reorder_density(RFC4737_ARRIVALS, threshold=3)
    assert rd[-3] == pytest.approx(3 / 11) and rd[3] == pytest.approx(3 / 11)
    assert rd[0] == pytest.approx(5 / 11)


def test_rd_published_eight_packet_example() -> None:
    # Printed, not computed here: Table 1 ("Example of out-of-order for eight-packet
    # sequence") of the review "Packet Reordering Metrics to Enable Performance
    # Comparison in IP-Networks", J. Computer Networks and Communications 2020,
    # article 8465191, which uses RFC 5236's D = RI - S. Its displacements are all
    # within 4, so every arrival counts with DT = 4.
    arrived = [1, 6, 7, 2, 3, 4, 5, 8]
    printed_displacement = [0, -4, -4, 2, 2, 2, 2, 0]
    assert metrics.reorder_displacements(arrived, threshold=4).tolist() == printed_displacement
    # one threshold lower, 6 and 7 (|D| = 4) fall outside it and count as lost: the
    # six arrivals left are then all on time
    assert metrics.reorder_displacements(arrived, threshold=3).tolist() == [0] * 6


def test_rd_loss_is_not_reordering() -> None:
    # 3 is lost: the receive index skips it, so nothing is displaced
    assert metrics.reorder_displacements([1, 2, 4, 5, 6]).tolist() == [0, 0, 0, 0, 0]


def test_rd_drops_duplicates_and_far_displacements() -> None:
    assert metrics.reorder_displacements([1, 1, 2, 2, 3]).tolist() == [0, 0, 0]
    # 1 arrives 4 places late with DT = 3: too late, it is treated as lost
    assert metrics.reorder_displacements([2, 3, 4, 5, 1], threshold=3).tolist() == [0, 0, 0, 0]


def test_rbd_hand_computed() -> None:
    # RFC 5236 §7.2's RBD algorithm, by hand: 7, 8, 9 wait in the buffer
    # (occupancy 1, 2, 3) until 4, 5, 6 arrive; 6 frees all three.
    occ = metrics.buffer_occupancies(RFC4737_ARRIVALS, threshold=3)
    assert occ.tolist() == [0, 0, 0, 1, 2, 3, 3, 3, 0, 0, 0]
    rbd = metrics.reorder_buffer_density(RFC4737_ARRIVALS, threshold=3)
    assert rbd.index.tolist() == [0, 1, 2, 3]
    assert rbd.tolist() == pytest.approx([6 / 11, 1 / 11, 1 / 11, 3 / 11])


def test_rbd_skips_lost_packets() -> None:
    # 4 is missing, but the buffer never fills to BT = 3, so 4 is not deemed lost
    # (RFC 5236 §6) and 5 stays buffered; with BT = 1, 5 fills it, 2 is declared lost,
    # 3 released
    assert metrics.buffer_occupancies([1, 3, 5, 2]).tolist() == [0, 1, 2, 1]
    assert metrics.buffer_occupancies([1, 3, 5, 2], threshold=1).tolist() == [0, 1, 1]


def test_rd_rbd_of_nothing() -> None:
    assert metrics.reorder_density([]).sum() == 0.0
    assert metrics.reorder_buffer_density([]).sum() == 0.0


streams_with_loss_and_dups = st.lists(st.integers(0, 40), max_size=80)


@given(streams_with_loss_and_dups, st.integers(0, 6))
def test_rd_rbd_always_terminate_and_normalise(seqs: list[int], dt: int) -> None:
    rd = metrics.reorder_density(seqs, threshold=dt)
    rbd = metrics.reorder_buffer_density(seqs, threshold=dt)
    assert rd.sum() == pytest.approx(1.0) or rd.sum() == 0.0
    assert rbd.sum() == pytest.approx(1.0) or rbd.sum() == 0.0
    assert (np.abs(metrics.reorder_displacements(seqs, dt)) <= dt).all()


@given(st.permutations(list(range(30))))
def test_rd_without_loss_sums_displacements_to_zero(seqs: list[int]) -> None:
    # every displacement is kept when DT exceeds the sequence length
    disp = metrics.reorder_displacements(seqs, threshold=40)
    assert disp.size == 30 and int(disp.sum()) == 0
    assert metrics.buffer_occupancies(seqs, threshold=40)[-1] == 0


# ---------------------------------------------------------------- delay (RFC 7679, RFC 2330)


def test_one_way_delay_keeps_nanoseconds_and_marks_loss() -> None:
    t0 = 1_700_000_000_000_000_000
    send = pd.Series([t0, t0 + 10, t0 + 20], dtype="Int64")
    recv = pd.Series([t0 + 1, None, t0 + 23], dtype="Int64")
    owd = metrics.one_way_delay(send, recv)
    assert owd[0] == 1.0 and math.isnan(owd[1]) and owd[2] == 3.0


def test_percentiles_rfc2330_no_interpolation() -> None:
    # RFC 2330 §11.3 (smallest x with EDF(x) >= X%), hand-computed
    delays = [10, 20, 30, 40]
    assert metrics.delay_percentile(delays, 50) == 20
    assert metrics.delay_percentile(delays, 50.1) == 30
    assert metrics.delay_percentile(delays, 95) == 40
    assert metrics.delay_percentile(delays, 0) == 10
    assert metrics.delay_percentile(delays, 100) == 40


def test_median_rfc7679_even_count() -> None:
    # RFC 7679 §5.2: mean of the two central values for an even count
    assert metrics.delay_median([10, 20, 30, 40]) == 25
    assert metrics.delay_median([10, 20, 30]) == 20


def test_lost_packets_as_infinite_delay() -> None:
    # RFC 7679 §5.1: undefined delays count as infinitely large
    delays = [1.0, 2.0, float("nan"), float("nan")]
    assert metrics.delay_percentile(delays, 50) == 1.0  # dropped by default
    assert metrics.delay_percentile(delays, 100) == 2.0
    assert metrics.delay_percentile(delays, 50, lost_as_infinite=True) == 2.0
    assert metrics.delay_percentile(delays, 75, lost_as_infinite=True) == math.inf
    assert metrics.delay_median(delays, lost_as_infinite=True) == math.inf


def test_delay_statistics_of_nothing() -> None:
    for value in (
        metrics.delay_percentile([], 50),
        metrics.delay_median([float("nan")]),
        metrics.delay_min([]),
        metrics.delay_max(pd.Series([None], dtype="Int64")),
    ):
        assert math.isnan(value)


def test_ipdv_consecutive_pairs() -> None:
    # RFC 3393 consecutive selection, hand-computed; a lost packet (NaN)
    # leaves both pairs it belongs to undefined
    out = metrics.ipdv([10.0, 12.0, float("nan"), 11.0, 15.0])
    assert out[0] == 2.0 and math.isnan(out[1]) and math.isnan(out[2]) and out[3] == 4.0
    assert metrics.ipdv([5.0]).size == 0


# ---------------------------------------------------------------- jitter (RFC 3550)


def _rfc3550_a8(send: list[int], recv: list[int]) -> float:
    """Transliteration of the RFC 3550 Appendix A.8 code fragment (floating form).

    The first packet only sets s->transit (the RFC leaves the first difference
    to initialisation; we start from the first transit).
    """
    jitter = 0.0
    last = recv[0] - send[0]
    for arrival, ts in zip(recv[1:], send[1:], strict=True):
        transit = arrival - ts
        d = transit - last
        last = transit
        if d < 0:
            d = -d
        jitter += (1.0 / 16.0) * (float(d) - jitter)
    return jitter


def test_jitter_known_series() -> None:
    # transits 0, 16, 0, 16 -> |D| = 16 each time:
    # J = 1, 1 + 15/16 = 31/16, 31/16 + (16 - 31/16)/16 = 721/256
    send = [0, 100, 200, 300]
    recv = [0, 116, 200, 316]
    series = metrics.jitter_series(send, recv)
    assert series.tolist() == [0.0, 1.0, 31 / 16, 721 / 256]
    assert metrics.interarrival_jitter(send, recv) == 721 / 256


def test_jitter_constant_delay_is_zero() -> None:
    send = list(range(0, 1000, 10))
    assert metrics.interarrival_jitter(send, [s + 7 for s in send]) == 0.0


def test_jitter_of_nothing() -> None:
    assert math.isnan(metrics.interarrival_jitter([], []))
    assert metrics.interarrival_jitter([5], [9]) == 0.0


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1, max_size=50))
def test_jitter_matches_rfc3550_appendix_a8(pairs: list[tuple[int, int]]) -> None:
    send = [p[0] for p in pairs]
    recv = [p[0] + p[1] for p in pairs]
    assert metrics.interarrival_jitter(send, recv) == pytest.approx(_rfc3550_a8(send, recv))


def test_jitter_steady_state_of_alternating_delay() -> None:
    # |D| = 2 ms forever: J converges to 2 ms (fixed point of J += (|D| - J)/16)
    n = 2000
    send = np.arange(n, dtype=np.int64) * 20_000_000
    recv = send + np.where(np.arange(n) % 2 == 0, 5_000_000, 7_000_000)
    assert metrics.interarrival_jitter(send, recv) == pytest.approx(2_000_000, rel=1e-9)


# ---------------------------------------------------------------- duplication (RFC 5560)


def test_duplicates() -> None:
    copies = [1, 0, 3, 1, 2]
    assert metrics.extra_copies(copies) == 3
    assert metrics.duplicated_packets(copies) == 2
    # RFC 5560 §5.1: the lost packet (0 copies) is removed first -> 3 extra / 4 arrived
    assert metrics.duplication_ratio(copies) == pytest.approx(3 / 4)
    assert math.isnan(metrics.duplication_ratio([0, 0]))
    assert math.isnan(metrics.duplication_ratio([]))


# ---------------------------------------------------------------- input handling


def test_accepts_series_lists_and_arrays_alike() -> None:
    seqs = [0, 2, 1]
    assert metrics.reordered_count(seqs) == 1
    assert metrics.reordered_count(np.array(seqs)) == 1
    assert metrics.reordered_count(pd.Series(seqs, dtype="Int64")) == 1


def test_missing_sequence_numbers_are_rejected() -> None:
    with pytest.raises(ValueError, match="missing"):
        metrics.reordered(pd.Series([0, None, 2], dtype="Int64"))


def test_missing_values_are_not_losses_whatever_the_container() -> None:
    # a Series, an array and a list agree: NaN / <NA> mean "missing", never "lost"
    assert metrics.loss_ratio(pd.Series([0.0, np.nan])) == 0.0
    assert metrics.loss_ratio(np.array([0.0, np.nan])) == 0.0
    assert metrics.loss_ratio([False, pd.NA]) == 0.0
    assert metrics.loss_periods(np.array([0.0, np.nan, np.nan, 0.0])).lengths.size == 0
    assert metrics.loss_ratio(np.array([1, 0, 2, 0])) == 0.5


def test_n_reordering_ratio_needs_n_of_at_least_one() -> None:
    with pytest.raises(ValueError, match="n must be >= 1"):
        metrics.n_reordering_ratio([1, 2, 3], 0)
