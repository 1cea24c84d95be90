"""lab.metrics against the worked examples printed in the RFCs themselves.

Every expected value below is copied from the RFC text named next to it (the
RFC texts were read from the HTML renderings of the RFCs vendored in the public
GitHub repository khamidou/rfc-czar: rfc3357.html, rfc4737.html,
rfc5560.html, rfc7679.html, rfc3550.html; and from the plain-text RFCs
rfc5236.txt and rfc3393.txt). Where a value is derived from the RFC's own
numbers rather than printed in it, the comment says so.

* RFC 5236 (Reorder Density RD, Reorder Buffer-occupancy Density RBD): the
  receive-index examples of §3.1, §3.3 and §4, the buffer example of §3.8, the
  rogue packet of §6 and all eight tables of §8 (no loss, loss, duplicate;
  typed in as printed, the densities of the §8 b. and c. figures too), plus
  property tests against line-by-line transcriptions of the §7.1 and §7.2
  algorithms and the §3 claim that duplicates change neither metric.
* RFC 3393 (IPDV) prints no numeric example. Its definitions and statements
  (§2.4 pair and Figure 1, undefined when a packet is lost, §3.5 consecutive
  and max/min selections, §4.6 peak-to-peak, §2.7 constant offsets cancel,
  §5.1-§5.2 skew, §4.5 jitter as filtered |ipdv|) are checked on the packets
  of the RFC 4737 §7 tables, whose IPDV column is RFC 3393 with consecutive
  packets; numbers that are ours are marked as such.

RFCs without a usable worked example (their hand-computed tests stay in
tests/test_metrics.py):

* RFC 3550 (interarrival jitter): §6.4.1 gives only the formula
  J(i) = J(i-1) + (|D(i-1,i)| - J(i-1))/16 with
  D(i,j) = (Rj - Ri) - (Sj - Si), and Appendix A.8 only a code fragment; no
  numeric example. test_metrics.py checks the formula by hand and against a
  transliteration of A.8.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

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


# ============================================================== RFC 5236 reorder density


def _table(text: str) -> dict[str, list[float | None]]:
    """Rows of an RFC table typed in as printed: a label, then one value per
    column, "-" where the RFC leaves the cell blank (a duplicate)."""
    rows: dict[str, list[float | None]] = {}
    for line in text.strip().splitlines():
        label, *cells = line.split()
        rows[label] = [None if c == "-" else float(c) for c in cells]
    return rows


def _ints(row: list[float | None]) -> list[int]:
    """The filled cells of a row, as integers."""
    return [int(v) for v in row if v is not None]


def _counted(row: dict[str, list[float | None]], key: str) -> list[int]:
    """S of the columns where row ``key`` is filled (the arrivals the RFC counts)."""
    return [
        int(s) for s, v in zip(row["S"], row[key], strict=True) if s is not None and v is not None
    ]


def _running_frequency(values: list[int]) -> list[int]:
    """FD[D] / FB[B] rows of the §8 step tables: how often each value has been
    seen so far, including the current column."""
    seen: Counter[int] = Counter()
    out = []
    for v in values:
        seen[v] += 1
        out.append(seen[v])
    return out


# RFC 5236 §3.1 Examples 1-2, §3.3 Example 3, §4 Examples 4-5, as printed.
# "-" marks a duplicate, to which no RI is assigned (§3.1).
RFC5236_RI_EXAMPLES = {
    "s31_example1": """
        S    2   1   4   5    3
        RI   1   2   3   4    5
        """,
    "s31_example2": """
        S    1   4   3   5    3
        RI   1   3   4   5    -
        """,
    "s33_example3": """
        S    1   4   3   5   3   8   7   6
        RI   1   3   4   5   -   6   7   8
        D    0  -1   1   0   -  -2   0   2
        """,
    "s4_example4": """
        S    1       2       3       5       4       6
        RI   1       2       3       4       5       6
        D    0       0       0      -1       1       0
        """,
    "s4_example5": """
        S    1       2       5       3       6       2
        RI   1       2       3       5       6       -
        D    0       0       -2      2       0       -
        """,
}


@pytest.mark.parametrize("name", RFC5236_RI_EXAMPLES)
def test_rfc5236_s3_s4_receive_index_and_displacement(name: str) -> None:
    # §3.1: RI skips the number of a lost packet and is not given to duplicates;
    # §3.3: D = RI - S. The examples name no DT; §5: with DT as long as the
    # sequence "a complete picture of reordering is seen".
    table = _table(RFC5236_RI_EXAMPLES[name])
    arrived = _ints(table["S"])
    disp = metrics.reorder_displacements(arrived, threshold=len(arrived)).tolist()
    counted = _counted(table, "RI")
    assert [s + d for s, d in zip(counted, disp, strict=True)] == _ints(table["RI"])
    if "D" in table:
        assert disp == _ints(table["D"])


def test_rfc5236_s4_reorder_sets() -> None:
    # §4: R = {r(m, dm) | dm != 0}, printed for Examples 4 and 5
    for name, printed in (("s4_example4", {(4, 1), (5, -1)}), ("s4_example5", {(3, 2), (5, -2)})):
        table = _table(RFC5236_RI_EXAMPLES[name])
        arrived = _ints(table["S"])
        disp = metrics.reorder_displacements(arrived, threshold=len(arrived)).tolist()
        counted = _counted(table, "RI")
        assert {(m, d) for m, d in zip(counted, disp, strict=True) if d != 0} == printed


def test_rfc5236_s38_buffer_occupancy_example() -> None:
    # §3.8: "(1, 2, 4, 5, 3) ... When packet 4 arrives, the buffer occupancy is
    # 1 ... becomes 2 when packet 5 arrives. When packet 3 arrives ... the
    # buffer occupancy reduces to zero." (no BT given; one large enough)
    assert metrics.buffer_occupancies([1, 2, 4, 5, 3], threshold=5).tolist() == [0, 0, 1, 2, 0]


def test_rfc5236_s6_rogue_packet() -> None:
    # §6: "(1, 5430, 2, 3, 4, 5, ...) ... when the displacement is greater than
    # DT, rogue packet 5430 is discarded", so the others are counted on time.
    arrived = [1, 5430, *range(2, 11)]
    assert metrics.reorder_displacements(arrived, threshold=3).tolist() == [0] * 10
    # §6 also says only "a pre-specified threshold that limits the time a packet
    # remains in the buffer can make RBD robust against rogue packets": plain
    # RBD keeps 5430 buffered (derived from §7.2, not printed)
    assert metrics.buffer_occupancies(arrived, threshold=3).tolist() == [0] + [1] * 10


# RFC 5236 §8 a. "Consider the sequence of packets (1, 4, 2, 5, 3, 6, 7, 8) with DT = BT = 4."
RFC5236_TABLE_1 = """
S         1     4     2     5     3     6   7    8
RI        1     2     3     4     5     6   7    8
D         0    -2     1    -1     2     0   0    0
FD[D]     1     1     1     1     1     2   3    4
"""
RFC5236_TABLE_2 = """
  D       -2       -1      0     1       2
FD[D]      1        1      4     1       1
RD[D]     0.125   0.125   0.5   0.125   0.125
"""
RFC5236_TABLE_3 = """
S         1     4     2     5     3     6     7     8
E         1     2     2     3     3     6     7     8
B         0     1     1     2     0     0     0     0
FB[B]     1     1     2     1     2     3     4     5
"""
RFC5236_TABLE_4 = """
B           0        1     2
FB[B]       5        2     1
RBD[B]     0.625   0.25  0.125
"""
# §8 b. "Consider a sequence of 6 packets (1, 2, 4, 5, 6, 7) with DT = BT = 3."
RFC5236_TABLE_5 = """
S         1     2     4     5     6     7
RI        1     2     4     5     6     7
D         0     0     0     0     0     0
FD[D]     1     2     3     4     5     6
"""
RFC5236_TABLE_6 = """
S        1     2     4     5     6     7
E        1     2     3     3     3     7
B        0     0     1     2     3     0
FB[B]    1     2     1     1     1     3
"""
# §8 c. "Consider a sequence of 6 packets (1, 3, 2, 3, 4, 5) with DT = 2."
RFC5236_TABLE_7 = """
S         1     3     2     3     4     5
RI        1     2     3     -     4     5
D         0    -1     1     -     0     0
FD[D]     1     1     1     -     2     3
"""
RFC5236_TABLE_8 = """
S     1     3     2     3     4     5
E     1     2     2     -     4     5
B     0     1     0     -     0     0
FB[B] 1     1     2     -     3     4
"""

# (RD steps table, DT, RBD steps table, BT); §8 c. gives only DT = 2, and its
# Table 8 and figure fit BT = 2 as well
RFC5236_S8_SCENARIOS = {
    "a_no_loss": (RFC5236_TABLE_1, 4, RFC5236_TABLE_3, 4),
    "b_loss": (RFC5236_TABLE_5, 3, RFC5236_TABLE_6, 3),
    "c_duplicate": (RFC5236_TABLE_7, 2, RFC5236_TABLE_8, 2),
}


@pytest.mark.parametrize("scenario", RFC5236_S8_SCENARIOS)
def test_rfc5236_s8_rd_steps_tables_1_5_7(scenario: str) -> None:
    # §8 Tables 1, 5 and 7: S, RI, D and the running FD[D] of the §7.1 algorithm
    text, dt, _, _ = RFC5236_S8_SCENARIOS[scenario]
    table = _table(text)
    disp = metrics.reorder_displacements(_ints(table["S"]), threshold=dt).tolist()
    assert disp == _ints(table["D"])
    counted = _counted(table, "D")
    assert [s + d for s, d in zip(counted, disp, strict=True)] == _ints(table["RI"])
    assert _running_frequency(disp) == _ints(table["FD[D]"])


@pytest.mark.parametrize("scenario", RFC5236_S8_SCENARIOS)
def test_rfc5236_s8_rbd_steps_tables_3_6_8(scenario: str) -> None:
    # §8 Tables 3, 6 and 8: S, B and the running FB[B] of the §7.2 algorithm.
    # (The E row is typed in too, but lab.metrics does not expose E.)
    # Table 6 is the one where RBD, unlike RD, sees the loss of packet 3: the
    # buffer fills to BT = 3 before 3 is declared lost.
    _, _, text, bt = RFC5236_S8_SCENARIOS[scenario]
    table = _table(text)
    occ = metrics.buffer_occupancies(_ints(table["S"]), threshold=bt).tolist()
    assert occ == _ints(table["B"])
    assert _running_frequency(occ) == _ints(table["FB[B]"])


def test_rfc5236_s8_table_2_reorder_density() -> None:
    table = _table(RFC5236_TABLE_2)
    rd = metrics.reorder_density([1, 4, 2, 5, 3, 6, 7, 8], threshold=4)
    assert rd.index.tolist() == list(range(-4, 5))
    printed = dict(zip(_ints(table["D"]), table["RD[D]"], strict=True))
    assert rd.to_dict() == {k: printed.get(k, 0.0) for k in range(-4, 5)}
    freq = Counter(metrics.reorder_displacements([1, 4, 2, 5, 3, 6, 7, 8], threshold=4).tolist())
    assert freq == dict(zip(_ints(table["D"]), _ints(table["FD[D]"]), strict=True))


def test_rfc5236_s8_table_4_reorder_buffer_occupancy_density() -> None:
    table = _table(RFC5236_TABLE_4)
    rbd = metrics.reorder_buffer_density([1, 4, 2, 5, 3, 6, 7, 8], threshold=4)
    assert rbd.index.tolist() == [0, 1, 2, 3, 4]
    printed = dict(zip(_ints(table["B"]), table["RBD[B]"], strict=True))
    assert rbd.to_dict() == {k: printed.get(k, 0.0) for k in range(5)}
    freq = Counter(metrics.buffer_occupancies([1, 4, 2, 5, 3, 6, 7, 8], threshold=4).tolist())
    assert freq == dict(zip(_ints(table["B"]), _ints(table["FB[B]"]), strict=True))


def test_rfc5236_s8b_densities_with_loss() -> None:
    # §8 b. figures: RD[0] = 1.0; RBD 0.5 at B = 0 and 0.167 at B = 1, 2, 3
    rd = metrics.reorder_density([1, 2, 4, 5, 6, 7], threshold=3)
    assert rd.to_dict() == {-3: 0.0, -2: 0.0, -1: 0.0, 0: 1.0, 1: 0.0, 2: 0.0, 3: 0.0}
    rbd = metrics.reorder_buffer_density([1, 2, 4, 5, 6, 7], threshold=3)
    assert rbd.tolist() == pytest.approx([0.5, 0.167, 0.167, 0.167], abs=0.0005)


def test_rfc5236_s8c_densities_with_duplicate() -> None:
    # §8 c. figures: RD 0.2, 0.6, 0.2 at D = -1, 0, 1; RBD 0.8, 0.2 at B = 0, 1
    # (N' = 5: the second copy of 3 is not counted, §3.6, §3.11)
    rd = metrics.reorder_density([1, 3, 2, 3, 4, 5], threshold=2)
    assert rd.tolist() == pytest.approx([0.0, 0.2, 0.6, 0.2, 0.0])
    rbd = metrics.reorder_buffer_density([1, 3, 2, 3, 4, 5], threshold=2)
    assert rbd.tolist() == pytest.approx([0.8, 0.2, 0.0])


def _rfc5236_s71(arrivals: list[int], dt: int) -> list[int] | None:
    """RFC 5236 §7.1 (RD, Stay-back Method) transcribed line by line: the D of
    each FD[D]++, in order. None where its Step 2 would loop for ever (every
    number in window and buffer below RI, so RI is never found)."""
    stream = iter(arrivals)
    window: list[int] = []
    buffer: list[int] = []
    out: list[int] = []
    ri = 1

    def get_next_arrival() -> int | None:
        for new_s in stream:
            if not (new_s < ri or new_s in buffer or new_s in window):
                return new_s
        return None

    # Step 1: "Store first unique DT+1 sequence numbers in arriving order into window"
    while len(window) < dt + 1 and (first := get_next_arrival()) is not None:
        window.append(first)
    while window:  # Step 2
        if ri in window or ri in buffer:
            s = window.pop(0)
            d = ri - s
            if abs(d) <= dt:
                out.append(d)
                if ri in buffer:
                    buffer.remove(ri)
                if d < 0:
                    buffer.append(s)
                ri += 1
            new_s = get_next_arrival()
            if new_s is not None:
                window.append(new_s)
        else:
            if max(window + buffer) < ri:
                return None
            m = min(window + buffer)
            ri = m if ri < m else ri + 1
    return out


def _rfc5236_s72(arrivals: list[int], bt: int) -> list[int] | None:
    """RFC 5236 §7.2 (RBD) transcribed line by line: B at each FB[B]++.

    None where, with the buffer full, the packets released after the loss do
    not reach S: the pseudo-code then neither buffers nor releases S (B leaves
    it out although §3.8 counts "the newly arrived packet", and a later copy of
    S would be counted again although §3 says RBD is orthogonal to
    duplication). buffer_occupancies keeps S buffered there instead.
    """
    e, b = 1, 0
    in_buffer: set[int] = set()
    out: list[int] = []
    for s in arrivals:
        if s in in_buffer or s < e:
            continue  # case a
        if s == e:  # case b
            e += 1
            while e in in_buffer:
                b -= 1
                in_buffer.remove(e)
                e += 1
        elif b < bt:  # case c, room in the buffer
            b += 1
            in_buffer.add(s)
        else:  # case c, expected packet delayed beyond BT: lost
            e += 1
            while not (e in in_buffer or e == s):
                e += 1
            while e in in_buffer or e == s:
                if e != s:
                    b -= 1
                    in_buffer.remove(e)
                e += 1
            if e <= s:
                return None
        out.append(b)
    return out


@settings(max_examples=300)
@given(st.lists(st.integers(1, 30), unique=True, max_size=30), st.integers(0, 6))
def test_rfc5236_s71_algorithm_with_loss(arrivals: list[int], dt: int) -> None:
    # any subset of 1..30 in any order (losses and reordering, no duplicates)
    expected = _rfc5236_s71(arrivals, dt)
    assume(expected is not None)
    assert metrics.reorder_displacements(arrivals, threshold=dt).tolist() == expected


@settings(max_examples=300)
@given(st.lists(st.integers(1, 30), max_size=40), st.integers(0, 40), st.integers(0, 6))
def test_rfc5236_s72_algorithm(rest: list[int], at: int, bt: int) -> None:
    # losses, reordering and duplicates; packet 1 arrives somewhere, since §7.2
    # starts at E = 1 and buffer_occupancies at the lowest number that arrived
    arrivals = [*rest[:at], 1, *rest[at:]]
    expected = _rfc5236_s72(arrivals, bt)
    assume(expected is not None)
    assert metrics.buffer_occupancies(arrivals, threshold=bt).tolist() == expected


def test_rfc5236_s72_arrival_after_a_declared_loss_waits() -> None:
    # Where the lab departs from the §7.2 pseudo-code (derived, not printed):
    # BT = 1, 3 is buffered waiting for 2; 5 finds the buffer full, so 2 is
    # declared lost and 3 released, but 4 is missing too. The pseudo-code drops
    # 5 from the count (B = 0) and would count its copy later; §3.8 ("including
    # the newly arrived packet") and §3 (RBD orthogonal to duplication) keep 5
    # in the buffer until 4 arrives, and its copy is a duplicate.
    assert _rfc5236_s72([1, 3, 5, 4], 1) is None
    assert metrics.buffer_occupancies([1, 3, 5, 4], threshold=1).tolist() == [0, 1, 1, 0]
    assert metrics.buffer_occupancies([1, 3, 5, 4, 5], threshold=1).tolist() == [0, 1, 1, 0]


@given(
    st.lists(st.integers(1, 30), unique=True, min_size=1, max_size=30),
    st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), max_size=10),
    st.integers(0, 6),
)
def test_rfc5236_s3_orthogonal_to_duplication(
    arrivals: list[int], copies: list[tuple[int, int]], threshold: int
) -> None:
    # §3: "RD is orthogonal to loss and duplication, whereas RBD is orthogonal
    # to duplication": a later copy of a packet that already arrived changes
    # neither (§3.1: duplicates get no RI; §7.2 case a)
    duplicated = list(arrivals)
    for which, where in copies:
        i = which % len(duplicated)
        duplicated.insert(i + 1 + where % (len(duplicated) - i), duplicated[i])
    for f in (metrics.reorder_displacements, metrics.buffer_occupancies):
        assert f(duplicated, threshold).tolist() == f(arrivals, threshold).tolist()


@given(st.lists(st.integers(1, 60), unique=True, max_size=40), st.integers(0, 6))
def test_rfc5236_s3_rd_orthogonal_to_loss(kept: list[int], dt: int) -> None:
    # §3 / §8 b.: packets lost from an in-order stream displace nothing (RI
    # skips them), whatever DT
    arrivals = sorted(kept)
    assert metrics.reorder_displacements(arrivals, threshold=dt).tolist() == [0] * len(arrivals)


# ============================================================== RFC 3393 IPDV
# RFC 3393 prints no numeric example. These tests take its definitions and
# statements one by one; the packets come from the RFC 4737 §7 tables above
# (the IPDV column printed there is RFC 3393 with consecutive packets), other
# numbers are ours and the comments say so.


def _by_seq(table: list[Row]) -> list[Row]:
    return sorted(table, key=lambda r: r.s)


def test_rfc3393_s24_ipdv_of_a_pair_is_the_difference_of_their_delays() -> None:
    # §2.4: "Src sent two packets, the first at wire-time T1 ... and the second
    # at wire-time T2 ... received by Dst at wire-time dT1+T1 ... and at
    # wire-time dT2+T2 ..., and that dT2-dT1=ddT."
    # RFC 4737 Table 1, packets 3 and 4: T1 = 40, T2 = 60, received at 108 and
    # 210 ms; the IPDV printed for packet 4 is 82.
    p3, p4 = _by_seq(TABLE_1)[2:4]
    assert (p3.s, p4.s, p4.ipdv) == (3, 4, 82)
    owd = metrics.one_way_delay([p3.src_time, p4.src_time], [p3.dst_time, p4.dst_time])
    assert owd.tolist() == [68, 150]  # dT1, dT2
    assert metrics.ipdv(owd).tolist() == [82]
    assert metrics.ipdv_pairs(owd, [0], [1]).tolist() == [82]
    # the order of the pair matters: the second packet's delay minus the first's
    assert metrics.ipdv_pairs(owd, [1], [0]).tolist() == [-82]


def test_rfc3393_s24_figure1_selected_pair() -> None:
    # §2.4 Figure 1: of P(i), P(j), P(k), "Suppose that packets P(i) and P(k)
    # are selected. Then ddT = dTk - dTi". With RFC 4737 Table 2's packets 4,
    # 5, 6 (delays 68, 109, 90 ms): ddT(4, 6) = 90 - 68 = 22, which is also
    # the sum of the two consecutive IPDVs printed for 5 and 6 (41 - 19).
    rows = _by_seq(TABLE_2)
    delays = [r.delay for r in rows]
    i, j, k = 3, 4, 5  # positions of packets 4, 5, 6
    assert [rows[n].s for n in (i, j, k)] == [4, 5, 6]
    assert metrics.ipdv_pairs(delays, [i], [k]).tolist() == [22]
    assert rows[j].ipdv is not None and rows[k].ipdv is not None
    assert rows[j].ipdv + rows[k].ipdv == 22


def test_rfc3393_s24_undefined_when_a_packet_is_lost() -> None:
    # §2.4: ipdv is "undefined" when "Dst did not receive one or both packets";
    # §4.1: statistics are conditioned on pairs that both arrived.
    # Our numbers: sends every 20 ms, the third packet lost.
    send = [0, 20, 40, 60, 80, 100]
    recv = pd.Series([68, 90, None, 128, 155, 170], dtype="Int64")
    owd = metrics.one_way_delay(send, recv)
    out = metrics.ipdv(owd)
    defined = ~np.isnan(out)
    assert defined.tolist() == [True, False, False, True, True]  # pairs (2,3), (3,4) undefined
    assert out[defined].tolist() == [2, 7, -5]  # delays 68, 70, -, 68, 75, 70
    pairs = metrics.ipdv_pairs(owd, [0, 2, 2], [2, 0, 2])
    assert np.isnan(pairs).all()  # one packet lost, or both (the same one)
    # §4.3: "the 50th percentile is the median", of the conditioned sample
    assert metrics.delay_percentile(out, 50) == 2
    assert metrics.delay_median(out) == 2


def test_rfc3393_s35_consecutive_selection() -> None:
    # §3.5, second example: the sample "is just <T(i), T(i+1), D(i+1)-D(i)>".
    # RFC 4737 Tables 1-3 print exactly that in their IPDV column.
    for table in TABLES.values():
        rows = _by_seq(table)
        out = metrics.ipdv([r.delay for r in rows])
        pairs = list(itertools.pairwise(rows))
        triples = [
            (a.src_time, b.src_time, d) for (a, b), d in zip(pairs, out.tolist(), strict=True)
        ]
        assert triples == [(a.src_time, b.src_time, b.ipdv) for a, b in pairs]


def test_rfc3393_s35_s46_peak_to_peak_per_sub_interval() -> None:
    # §3.5, first example: "the selection function specifies the 'non-infinite'
    # max and min one-way-delays over each sub-interval ... contiguous
    # sub-intervals of fixed specified length ... <transmission time of the max
    # delay packet, transmission time of the min delay packet, D(max)-D(min)>";
    # §4.6 Type-P-One-way-peak-to-peak-ipdv. RFC 4737 Table 3, sub-intervals of
    # 60 ms: sends 0-40 (delays 68, 68, 68), 60-100 (190, 172, 156),
    # 120-160 (68 x3), 180-200 (68, 68); hand-computed: 0, 190 - 156 = 34, 0, 0.
    rows = _by_seq(TABLE_3)
    send = [r.src_time for r in rows]
    delays = [float(r.delay) for r in rows]
    assert metrics.peak_to_peak_ipdv(send, delays, 60).tolist() == [0, 34, 0, 0]
    # the same value as the pair (max-delay packet, min-delay packet) of §3.5:
    # packets 4 (190 ms) and 6 (156 ms) in the second sub-interval
    assert metrics.ipdv_pairs(delays, [5], [3]).tolist() == [34]
    # packet 4 lost: the max is taken over the defined delays, 172 - 156 = 16;
    # a sub-interval with one defined delay has no pair
    delays[3] = math.nan
    delays[9] = math.nan  # packet 10, leaving 11 alone in the last sub-interval
    out = metrics.peak_to_peak_ipdv(send, delays, 60)
    assert out[:3].tolist() == [0, 16, 0] and math.isnan(out[3])


def test_rfc3393_s271_s272_constant_offsets_cancel() -> None:
    # §2.7.1: "If ... the error that affects the first measurement of
    # One-Way-Delay were the same as the one affecting the second measurement,
    # they will cancel each other when calculating ipdv." §2.7.2: a constant
    # difference between host time and wire time "will be canceled".
    # RFC 4737 Table 3 in integer nanoseconds; our offsets.
    rows = _by_seq(TABLE_3)
    ms = 1_000_000
    t0 = 1_700_000_000_000_000_000
    send = np.array([t0 + r.src_time * ms for r in rows], dtype=np.int64)
    recv = np.array([t0 + r.dst_time * ms for r in rows], dtype=np.int64)
    true_ipdv = metrics.ipdv(metrics.one_way_delay(send, recv))
    assert (true_ipdv / ms).tolist() == [r.ipdv for r in rows[1:]]
    offset = -3_217_000_123  # Dst clock 3.2 s behind Src: delays are negative
    host = 41_007  # a constant 41 us between host and wire time at Src
    owd = metrics.one_way_delay(send + host, recv + offset)
    assert (owd - metrics.one_way_delay(send, recv) == offset - host).all()
    assert metrics.ipdv(owd).tolist() == true_ipdv.tolist()


def test_rfc3393_s271_s51_linear_skew() -> None:
    # §2.7.1: with a clock error e(t) = K*t + O "the error added to the
    # subtraction of two different time stamps (t2 > t1) is e(t2)-e(t1) =
    # K*(t2 - t1)". §5.1: with a constant transit time the ipdv is zero, and a
    # relative skew s (no drift) makes it s*t for a pair t apart.
    # RFC 4737 Table 1 (times in ms); K = 2**-10 and O are ours (exact in binary).
    rows = _by_seq(TABLE_1)
    send = np.array([r.src_time for r in rows], dtype=np.float64)
    recv = np.array([r.dst_time for r in rows], dtype=np.float64)
    k, o = 2.0**-10, 5000.0
    skewed = metrics.ipdv(metrics.one_way_delay(send, recv + k * recv + o))
    true_ipdv = metrics.ipdv(metrics.one_way_delay(send, recv))
    assert (skewed - true_ipdv).tolist() == (k * np.diff(recv)).tolist()
    # §5.1: constant transit (68 ms), every pair 20 ms apart: ipdv = s*20
    constant = send + 68
    out = metrics.ipdv(metrics.one_way_delay(send, constant + k * constant + o))
    assert out.tolist() == [k * 20] * (len(rows) - 1)


def test_rfc3393_s52_skew_estimate_and_correction() -> None:
    # §5.2: "If the skew is linear ... the error in ipdv values will depend on
    # the time between the packets used in calculating the value ... In the
    # event that the delays are constant, the skew parameter S can be estimated
    # from the estimate Ti of the time between packets and the sample mean ipdv
    # value ... the ipdv values can be corrected by subtracting the estimated
    # S * ti", and "the displacement due to the skew does not change the shape
    # of the distribution, and, for example the Standard Deviation remains the
    # same". As there, the delay error is S times the time since the start (the
    # S * delay part is second order and left out); S = 2**-12 is ours, the
    # packets, sent every 20 ms, are RFC 4737 Table 2's.
    rows = _by_seq(TABLE_2)
    send = np.array([r.src_time for r in rows], dtype=np.float64)
    recv = np.array([r.dst_time for r in rows], dtype=np.float64)
    s = 2.0**-12
    true_ipdv = metrics.ipdv(metrics.one_way_delay(send, recv))
    skewed = metrics.ipdv(metrics.one_way_delay(send, recv + s * send))
    assert (skewed - true_ipdv).tolist() == [s * 20] * (len(rows) - 1)
    assert np.std(skewed) == pytest.approx(np.std(true_ipdv), abs=1e-12)
    # delays constant (68 ms): the mean ipdv over the mean spacing estimates S
    constant = send + 68
    flat = metrics.ipdv(metrics.one_way_delay(send, constant + s * send))
    estimate = flat.mean() / np.diff(send).mean()
    assert estimate == s
    assert (flat - estimate * np.diff(send)).tolist() == [0] * (len(rows) - 1)


def test_rfc3393_s45_jitter_is_filtered_absolute_ipdv() -> None:
    # §4.5: RFC 1889's jitter takes "the absolute values of the ipdv sequence
    # (as defined in this document) and applying an exponential filter with
    # parameter 1/16 ... (i.e., j_new = 15/16* j_old + 1/16*j_new)" (the last
    # j_new meaning |ipdv|). Consecutive in send order is consecutive in arrival
    # order when nothing is lost or reordered: RFC 4737 Table 3's packets 1-6
    # arrive in the order sent (ipdv 0, 0, 122, -18, -16 as printed there).
    rows = _by_seq(TABLE_3)[:6]
    send = [r.src_time for r in rows]
    recv = [r.dst_time for r in rows]
    assert recv == sorted(recv)
    ipdv = metrics.ipdv(metrics.one_way_delay(send, recv))
    assert ipdv.tolist() == [r.ipdv for r in rows[1:]]
    j, expected = 0.0, [0.0]
    for d in np.abs(ipdv).tolist():
        j = 15 / 16 * j + 1 / 16 * d
        expected.append(j)
    assert metrics.jitter_series(send, recv).tolist() == pytest.approx(expected, rel=1e-12)
