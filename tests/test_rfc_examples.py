"""lab.metrics against the worked examples printed in the RFCs themselves.

Every expected value below is copied from the RFC text named next to it (the
RFC texts were read from the HTML renderings of the RFCs vendored in the public
GitHub repository khamidou/rfc-czar: rfc3357.html, rfc4737.html,
rfc5560.html, rfc7679.html, rfc3550.html). Where a value is derived from the
RFC's own numbers rather than printed in it, the comment says so.

RFCs without a usable worked example (their hand-computed tests stay in
tests/test_metrics.py):

* RFC 3550 (interarrival jitter): §6.4.1 gives only the formula
  J(i) = J(i-1) + (|D(i-1,i)| - J(i-1))/16 with
  D(i,j) = (Rj - Ri) - (Sj - Si), and Appendix A.8 only a code fragment; no
  numeric example. test_metrics.py checks the formula by hand and against a
  transliteration of A.8.
* RFC 3393 (IPDV): its text could not be retrieved. The IPDV values below come
  from the RFC 4737 §7 tables, whose IPDV column is defined there as
  Delay(SrcNum) - Delay(SrcNum-1), i.e. RFC 3393 with consecutive packets.
* RFC 5236 (Reorder Density, Reorder Buffer-occupancy Density): only the
  opening pages of the RFC could be retrieved, not its examples; the RD/RBD
  tests in test_metrics.py are hand-computed from the authors' published
  algorithms, plus one published example from outside the RFC (a 2020 review
  article's Table 1, cited there).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import NamedTuple

import numpy as np
import pytest

from lab import metrics

# ============================================================== RFC 3357 loss patterns


def _lost_flags(lost_seqs: list[int], last_seq: int) -> list[bool]:
    """Loss flags indexed by sequence number 0..last_seq."""
    lost = set(lost_seqs)
    return [s in lost for s in range(last_seq + 1)]


def test_rfc3357_s4_loss_distance_example() -> None:
    # RFC 3357 §4: "the packet with sequence number 20 is considered lost,
    # followed by the packet with sequence number 50. The loss distance is 30."
    distances = metrics.loss_distances(_lost_flags([20, 50], 60))
    assert distances.tolist() == [0, 30]  # §5.4.1: the first loss has distance 0


def test_rfc3357_s4_loss_period_example() -> None:
    # RFC 3357 §4:   r r r x r r x x x r x r r x x x
    #          i:    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
    # "there are four loss periods in the above sequence beginning at
    #  P_3, P_6, P_10, and P_13."
    lost = [c == "x" for c in "rrrxrrxxxrxrrxxx"]
    periods = metrics.loss_periods(lost)
    assert periods.count == 4
    assert periods.starts.tolist() == [3, 6, 10, 13]
    assert periods.lengths.tolist() == [1, 3, 1, 3]  # derived: the runs of x above


# RFC 3357 §5.4.3: the Type-P-One-Way-Loss-Stream
#   {<T1,0>,<T2,1>,<T3,0>,<T4,0>,<T5,1>,<T6,0>,<T7,1>,<T8,0>,<T9,1>,<T10,1>}
# "Packets sent at T2, T5, T7, T9, T10 are lost."
RFC3357_LOSS_STREAM = [0, 1, 0, 0, 1, 0, 1, 0, 1, 1]


def test_rfc3357_s543_loss_distance_stream() -> None:
    # §5.4.3 (i): "Since packet 2 is the first lost packet, the associated loss
    # distance is zero. For the next lost packet (packet 5), loss distance is
    # 5-2 or 3. ... (packets 7, 9, and 10) their loss distances are 2, 2, and 1"
    # Type-P-One-Way-Loss-Distance-Stream:
    #   {<0,0>,<0,1>,<0,0>,<0,0>,<3,1>,<0,0>,<2,1>,<0,0>,<2,1>,<1,1>}
    rfc_stream = [(0, 0), (0, 1), (0, 0), (0, 0), (3, 1), (0, 0), (2, 1), (0, 0), (2, 1), (1, 1)]
    distances = metrics.loss_distances(RFC3357_LOSS_STREAM)
    assert distances.tolist() == [0, 3, 2, 2, 1]
    per_packet = np.zeros(len(RFC3357_LOSS_STREAM), dtype=np.int64)
    per_packet[np.flatnonzero(RFC3357_LOSS_STREAM)] = distances
    assert list(zip(per_packet.tolist(), RFC3357_LOSS_STREAM, strict=True)) == rfc_stream


def test_rfc3357_s543_loss_period_stream() -> None:
    # §5.4.3 (ii) Type-P-One-Way-Loss-Period-Stream:
    #   {<0,0>,<1,1>,<0,0>,<0,0>,<2,1>,<0,0>,<3,1>,<0,0>,<4,1>,<4,1>}
    rfc_stream = [(0, 0), (1, 1), (0, 0), (0, 0), (2, 1), (0, 0), (3, 1), (0, 0), (4, 1), (4, 1)]
    periods = metrics.loss_periods(RFC3357_LOSS_STREAM)
    per_packet = [0] * len(RFC3357_LOSS_STREAM)
    for n, (start, length) in enumerate(
        zip(periods.starts.tolist(), periods.lengths.tolist(), strict=True), start=1
    ):
        for i in range(start, start + length):
            per_packet[i] = n
    assert list(zip(per_packet, RFC3357_LOSS_STREAM, strict=True)) == rfc_stream


def test_rfc3357_s65_statistics() -> None:
    # RFC 3357 §6.5, same sample as §5.4.3
    periods = metrics.loss_periods(RFC3357_LOSS_STREAM)
    # "Type-P-One-Way-Loss-Period-Total = 4"
    assert periods.count == 4
    # "Type-P-One-Way-Loss-Period-Lengths = {<1,1>,<2,1>,<3,1>,<4,2>}"
    assert list(enumerate(periods.lengths.tolist(), start=1)) == [(1, 1), (2, 1), (3, 1), (4, 2)]
    # "the loss periods 1 and 2 are separated by 3 (5-2), loss periods 2 and 3
    # are separated by 2 (7-5), and 3 and 4 are separated by 2 (9-7). Thus,
    # Type-P-One-Way-Inter-Loss-Period-Lengths = {<1,0>,<2,3>,<3,2>,<4,2>}"
    assert list(enumerate(periods.gaps.tolist(), start=1)) == [(1, 0), (2, 3), (3, 2), (4, 2)]


def _noticeable(distances: list[int], delta: int) -> list[bool]:
    """RFC 3357 §6.1: a loss is noticeable when its distance to the previous loss
    is no greater than delta (the first loss has no previous loss)."""
    return [i > 0 and d <= delta for i, d in enumerate(distances)]


def test_rfc3357_s65_noticeable_rate() -> None:
    # §6.5: "Let delta = 2. ... there are 3 loss distances that violate the
    # delta of 2. Thus, Type-P-One-Way-Loss-Noticeable-Rate = 3/5"
    distances = metrics.loss_distances(RFC3357_LOSS_STREAM).tolist()
    noticeable = _noticeable(distances, delta=2)
    assert sum(noticeable) / len(distances) == pytest.approx(3 / 5)


def test_rfc3357_s61_noticeable_examples() -> None:
    # §6.1: "Let delta = 99. Let us assume that packet 50 is lost followed by a
    # bursty loss of length 3 starting from packet 125. All the three losses
    # starting from packet 125 are noticeable."
    distances = metrics.loss_distances(_lost_flags([50, 125, 126, 127], 200)).tolist()
    assert distances == [0, 75, 1, 1]
    assert _noticeable(distances, delta=99) == [False, True, True, True]
    # "a loss rate of one percent with a spread of 100 between losses (e.g.,
    # 100, 200, 300, 400, 500 out of 500 packets) ..."
    spread = metrics.loss_distances(_lost_flags([100, 200, 300, 400, 500], 500)).tolist()
    assert spread == [0, 100, 100, 100, 100]
    assert not any(_noticeable(spread, delta=99))
    # "(e.g., 100, 175, 275, 290, 400: losses occurring at 175 and 290 violate delta = 99)"
    seqs = [100, 175, 275, 290, 400]
    distances = metrics.loss_distances(_lost_flags(seqs, 500)).tolist()
    assert distances == [0, 75, 100, 15, 110]
    flagged = [s for s, n in zip(seqs, _noticeable(distances, delta=99), strict=True) if n]
    assert flagged == [175, 290]


# ============================================================== RFC 4737 reordering


def _reordered_seqs(arrivals: list[int]) -> list[int]:
    flags = metrics.reordered(arrivals)
    return [s for s, f in zip(arrivals, flags.tolist(), strict=True) if f]


def test_rfc4737_s1_example() -> None:
    # RFC 4737 §1: "if sequentially numbered packets arrive 1,2,4,5,3, then
    # packet 3 is reordered."
    assert _reordered_seqs([1, 2, 4, 5, 3]) == [3]


def test_rfc4737_s434_loss_and_reordering() -> None:
    # RFC 4737 §4.3.4: "the arrival sequence 1, 10, 5 (where packets 2, 3, 4,
    # and 6 through 9 are lost)": 5 is reordered, the jump to 10 is not.
    assert _reordered_seqs([1, 10, 5]) == [5]


def test_rfc4737_s53_block_example() -> None:
    # RFC 4737 §5.3: "In the arrival sequence s={1,2,3,7,8,9,4,5,6}, packets 4,
    # 5, and 6 are reordered, but only packet 4 is n-reordered, with n=3."
    s = [1, 2, 3, 7, 8, 9, 4, 5, 6]
    assert _reordered_seqs(s) == [4, 5, 6]
    assert metrics.n_reordering(s).tolist() == [0, 0, 0, 0, 0, 0, 3, 0, 0]


class Row(NamedTuple):
    """One row of the RFC 4737 §7 tables (times in ms, blanks as None)."""

    s: int  # s @Dst
    next_exp: int  # NextExp when the packet arrived
    src_time: int
    dst_time: int
    delay: int
    ipdv: int | None  # Delay(SrcNum) - Delay(SrcNum-1)
    dst_order: int
    byte_offset: int | None
    late_time: int | None


PAYLOAD = 100  # §7.1: "All packets contain PayloadSize=100 bytes"

# RFC 4737 §7.1 Table 1: Example with Packet 4 Reordered
TABLE_1 = [
    Row(1, 1, 0, 68, 68, None, 1, None, None),
    Row(2, 2, 20, 88, 68, 0, 2, None, None),
    Row(3, 3, 40, 108, 68, 0, 3, None, None),
    Row(5, 4, 80, 148, 68, -82, 4, None, None),
    Row(6, 6, 100, 168, 68, 0, 5, None, None),
    Row(7, 7, 120, 188, 68, 0, 6, None, None),
    Row(8, 8, 140, 208, 68, 0, 7, None, None),
    Row(4, 9, 60, 210, 150, 82, 8, 400, 62),
    Row(9, 9, 160, 228, 68, 0, 9, None, None),
    Row(10, 10, 180, 248, 68, 0, 10, None, None),
]

# RFC 4737 §7.2 Table 2: Example with Packets 5 and 6 Reordered
TABLE_2 = [
    Row(1, 1, 0, 68, 68, None, 1, None, None),
    Row(2, 2, 20, 88, 68, 0, 2, None, None),
    Row(3, 3, 40, 108, 68, 0, 3, None, None),
    Row(4, 4, 60, 128, 68, 0, 4, None, None),
    Row(7, 5, 120, 188, 68, -22, 5, None, None),
    Row(5, 8, 80, 189, 109, 41, 6, 100, 1),
    Row(6, 8, 100, 190, 90, -19, 7, 100, 2),
    Row(8, 8, 140, 208, 68, 0, 8, None, None),
    Row(9, 9, 160, 228, 68, 0, 9, None, None),
    Row(10, 10, 180, 248, 68, 0, 10, None, None),
]

# RFC 4737 §7.3 Table 3: Example with Packets 4, 5, and 6 reordered
TABLE_3 = [
    Row(1, 1, 0, 68, 68, None, 1, None, None),
    Row(2, 2, 20, 88, 68, 0, 2, None, None),
    Row(3, 3, 40, 108, 68, 0, 3, None, None),
    Row(7, 4, 120, 188, 68, -88, 4, None, None),
    Row(8, 8, 140, 208, 68, 0, 5, None, None),
    Row(9, 9, 160, 228, 68, 0, 6, None, None),
    Row(10, 10, 180, 248, 68, 0, 7, None, None),
    Row(4, 11, 60, 250, 190, 122, 8, 400, 62),
    Row(5, 11, 80, 252, 172, -18, 9, 400, 64),
    Row(6, 11, 100, 256, 156, -16, 10, 400, 68),
    Row(11, 11, 200, 268, 68, 0, 11, None, None),
]

TABLES = {"table1": TABLE_1, "table2": TABLE_2, "table3": TABLE_3}


@pytest.mark.parametrize("name", TABLES)
def test_rfc4737_s7_reordered_singletons(name: str) -> None:
    # §3.3: Type-P-Reordered = TRUE iff s < NextExp, with the tables' NextExp column
    table = TABLES[name]
    arrivals = [r.s for r in table]
    assert [r.dst_order for r in table] == list(range(1, len(table) + 1))
    flags = metrics.reordered(arrivals).tolist()
    assert flags == [r.s < r.next_exp for r in table]
    # exactly the rows with a Byte Offset / Late Time entry are the reordered ones
    assert flags == [r.late_time is not None for r in table]


@pytest.mark.parametrize("name", TABLES)
def test_rfc4737_s7_one_way_delay_and_ipdv(name: str) -> None:
    table = TABLES[name]
    # Delay column: "1-way delay of the packet, ms" (RFC 7679: DstTime - SrcTime)
    owd = metrics.one_way_delay([r.src_time for r in table], [r.dst_time for r in table])
    assert owd.tolist() == [r.delay for r in table]
    # IPDV column: "IPDV = Delay(SrcNum)-Delay(SrcNum-1)", i.e. in send order
    by_seq = sorted(table, key=lambda r: r.s)
    assert [r.s for r in by_seq] == list(range(1, len(table) + 1))
    ipdv = metrics.ipdv([r.delay for r in by_seq])
    assert by_seq[0].ipdv is None
    assert ipdv.tolist() == [r.ipdv for r in by_seq[1:]]


def _late_time_and_byte_offset(table: list[Row]) -> list[tuple[int, int] | None]:
    """LateTime (§4.3.3) and ByteOffset (§4.4.3) of each arrival, from the extent.

    LateTime(s[i]) = DstTime(i) - DstTime(i-e);
    ByteOffset(s[i]) = Sum[payloads of s[j] where s[j] > s[i] and i > j >= i-e].
    """
    arrivals = [r.s for r in table]
    extent = metrics.reordering_extent(arrivals).tolist()
    out: list[tuple[int, int] | None] = []
    for i, e in enumerate(extent):
        if e == 0:
            out.append(None)
            continue
        late = table[i].dst_time - table[i - e].dst_time
        offset = sum(PAYLOAD for j in range(i - e, i) if arrivals[j] > arrivals[i])
        out.append((late, offset))
    return out


@pytest.mark.parametrize("name", TABLES)
def test_rfc4737_s7_late_time_and_byte_offset(name: str) -> None:
    # Late Time and Byte Offset columns of Tables 1-3, computed from the
    # reordering extent that lab.metrics returns
    table = TABLES[name]
    expected = [
        None if r.late_time is None or r.byte_offset is None else (r.late_time, r.byte_offset)
        for r in table
    ]
    assert _late_time_and_byte_offset(table) == expected


def test_rfc4737_s71_single_packet_reordered() -> None:
    # §7.1: "when j=3, but 3 < 4, and 4 is the maximum extent, e=4"
    # "Further, we can compute the Late Time (210-148=62ms ...)"
    # "Following the definitions of Section 5.1, Packet 4 is designated 4-reordered."
    s = [r.s for r in TABLE_1]
    assert s == [1, 2, 3, 5, 6, 7, 8, 4, 9, 10]
    assert metrics.reordering_extent(s).tolist() == [0, 0, 0, 0, 0, 0, 0, 4, 0, 0]
    assert metrics.n_reordering(s).tolist() == [0, 0, 0, 0, 0, 0, 0, 4, 0, 0]
    assert metrics.reordered_count(s) == 1


def test_rfc4737_s72_two_packets_reordered() -> None:
    # §7.2: Packet 5 "e=1"; Packet 6 "we find 2 is its maximum extent, and e=2".
    # "Packet 5 is designated 1-reordered, but Packet 6 is not designated n-reordered."
    s = [r.s for r in TABLE_2]
    assert s == [1, 2, 3, 4, 7, 5, 6, 8, 9, 10]
    assert metrics.reordering_extent(s).tolist() == [0, 0, 0, 0, 0, 1, 2, 0, 0, 0]
    assert metrics.n_reordering(s).tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    # "We find the minimum j=5 (for both packets)": the discontinuity j = i - e
    # (1-based arrival positions), at Packet 7
    extent = metrics.reordering_extent(s)
    late = np.flatnonzero(extent)
    discontinuity = (late + 1) - extent[late]
    assert discontinuity.tolist() == [5, 5]
    assert s[4] == 7


def test_rfc4737_s73_three_packets_reordered() -> None:
    s = [r.s for r in TABLE_3]
    assert s == [1, 2, 3, 7, 8, 9, 10, 4, 5, 6, 11]
    extent = metrics.reordering_extent(s)
    # "The histogram of Reordering extents (e) would be:
    #    Bin         1  2  3  4  5  6  7
    #    Frequency   0  0  0  1  1  1  0"
    histogram = np.bincount(extent[extent > 0], minlength=8)[1:8]
    assert histogram.tolist() == [0, 0, 0, 1, 1, 1, 0]
    # "when n=4, 4<=j<8, and 7 > 4, so the packet is 4-reordered. when n=5,
    # 3<=j<8, but 3 < 4, and 4 is the maximum n-reordering."
    # "the packet at i=9 is not designated as n-reordered. We find the same
    # result for Packet 6."
    assert metrics.n_reordering(s).tolist() == [0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0]
    # §5.3 Definition 2 (degree of n-reordering = m/l) applied to this sample:
    # only packet 4 is n-reordered, for n = 1..4, out of l = 11 arrivals
    for n in (1, 3, 4):
        assert metrics.n_reordering_ratio(s, n) == pytest.approx(1 / 11)
    assert metrics.n_reordering_ratio(s, 5) == 0.0
    # §4.1.3 R = reordered / L applied to this sample: 3 reordered of 11
    assert metrics.reordered_ratio(s) == pytest.approx(3 / 11)
    # "we find that the minimum j=4 for all three packets. They are all
    # associated with the reordering discontinuity at Packet 7."
    late = np.flatnonzero(extent)
    assert ((late + 1) - extent[late]).tolist() == [4, 4, 4]


def test_rfc4737_s74_multiple_discontinuities() -> None:
    # RFC 4737 §7.4 Table 4
    s = [1, 2, 3, 6, 7, 4, 5, 8, 9, 10, 12, 13, 11, 14, 15, 16]
    # "Packet 4 has extent e=2, Packet 5 has extent e=3, and Packet 11 has e=2."
    extent = metrics.reordering_extent(s)
    assert {s[i]: int(extent[i]) for i in np.flatnonzero(extent)} == {4: 2, 5: 3, 11: 2}
    # "There are two different reordering discontinuities, one at Packet 6
    # (where j=4) and one at Packet 12 (where j'=11)." ... "Gap(Packet 12) =
    # (11) - (4) = 7"
    late = np.flatnonzero(extent)
    discontinuities = sorted(set(((late + 1) - extent[late]).tolist()))
    assert discontinuities == [4, 11]
    assert [s[j - 1] for j in discontinuities] == [6, 12]
    assert discontinuities[1] - discontinuities[0] == 7
    # §4.6.3 run counter r, from the reordered singletons:
    # "r = 1, 2, 3, 4, 5, 0, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3"
    # "We also have three reordering-free runs of lengths 5, 0, and 5."
    r, runs, counter = [], [], 0
    for flag in metrics.reordered(s).tolist():
        if flag:
            runs.append(counter)
            counter = 0
        else:
            counter += 1
        r.append(counter)
    assert r == [1, 2, 3, 4, 5, 0, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    assert runs == [5, 0, 5]


# ============================================================== RFC 5560 duplication

# RFC 5560 §5.3: "Consider a stream of 4 packets, sent as: (1, 2, 3, 4)"
RFC5560_CASES = {
    "case1": (1, 2, 3, 4),
    "case2": (1, 1, 2, 2, 3, 3, 4, 4),
    "case3": (1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4),
    "case4": (1, 1, 1, 2, 3, 3, 3, 4),
    "case2a": (1, 1, 2, 2, 3, 3, 4, 4),
    "case2b": (1, 2, 3, 4, 1, 2, 3, 4),
    "case2c": (1, 2, 3, 4, 4, 3, 2, 1),
}
# (Type-P-one-way-packet-duplication-fraction, Type-P-one-way-replicated-packet-rate)
RFC5560_EXPECTED = {
    "case1": (0.0, 0.0),  # "both ... are 0"
    "case2": (1.0, 1.0),  # "duplication-fraction is 100% ... replicated-packet-rate is 100%, too"
    "case3": (2.0, 1.0),  # "duplication-fraction is 200% ... replicated-packet-rate is still 100%"
    "case4": (1.0, 0.5),  # "duplication-fraction is again 100% ... replicated-packet-rate is 50%"
    # "these variations of case 2 ... all yield the same results"
    "case2a": (1.0, 1.0),
    "case2b": (1.0, 1.0),
    "case2c": (1.0, 1.0),
}


@pytest.mark.parametrize("case", RFC5560_CASES)
def test_rfc5560_s53_examples(case: str) -> None:
    arrivals = Counter(RFC5560_CASES[case])
    # Type-P-one-way-packet-arrival-count of each packet sent, in send order
    copies = [arrivals[s] for s in (1, 2, 3, 4)]
    fraction, replicated = RFC5560_EXPECTED[case]
    assert metrics.duplication_ratio(copies) == pytest.approx(fraction)
    # §5.2: duplicated packets / packets sent and not lost
    arrived = sum(1 for c in copies if c >= 1)
    assert metrics.duplicated_packets(copies) / arrived == pytest.approx(replicated)
    # §3.5: duplication = arrival-count - 1, summed over the stream
    assert metrics.extra_copies(copies) == len(RFC5560_CASES[case]) - 4


# ============================================================== RFC 7679 delay statistics

NAN = float("nan")  # an undefined delay (lost packet)


def test_rfc7679_s51_percentile_example() -> None:
    # RFC 7679 §5.1: Stream1 = <<T1, 100 msec> <T2, 110 msec> <T3, undefined>
    # <T4, 90 msec> <T5, 500 msec>> "Then, the 50th percentile would be 110
    # msec, since 90 msec and 100 msec are smaller and 500 msec and 'undefined'
    # are larger." §5.1: "undefined values are treated as infinitely large".
    # (By default delay_percentile drops undefined values instead; the RFC's
    # convention is the lost_as_infinite option.)
    stream1 = [100, 110, NAN, 90, 500]
    assert metrics.delay_percentile(stream1, 50, lost_as_infinite=True) == 110


def test_rfc7679_s52_median_example() -> None:
    # RFC 7679 §5.2: Stream2 = <<T1, 100 msec> <T2, 110 msec> <T3, undefined>
    # <T4, 90 msec>> "Then, the median would be 105 msec, the mean of 100 msec
    # and 110 msec, the two central values." (undefined counted as infinite)
    stream2 = [100, 110, NAN, 90]
    assert metrics.delay_median(stream2, lost_as_infinite=True) == 105


def test_rfc7679_s53_minimum_example() -> None:
    # RFC 7679 §5.3: "In the above example [Stream2], the minimum would be 90 msec."
    assert metrics.delay_min([100, 110, NAN, 90]) == 90
    assert math.isnan(metrics.delay_min([NAN, NAN]))  # §5.3: undefined if all are undefined
