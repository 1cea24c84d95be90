"""Packet loss: the loss ratio (RFC 7680) and loss patterns (RFC 3357).

Every function takes a per-packet ``lost`` flag in send (sequence) order:
True where the packet never arrived, the RFC 7680 singleton "loss = 1".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.metrics._arrays import ArrayIn, IntArray, as_bool


def loss_ratio(lost: ArrayIn) -> float:
    """Fraction of packets lost, 0..1; NaN for an empty stream.

    RFC 7680 §4 (Type-P-One-way-Packet-Loss-Ratio, the "average" of RFC 2680):
    the mean of the per-packet loss singletons of the stream.
    """
    flags = as_bool(lost)
    return float(flags.mean()) if flags.size else float("nan")


def loss_distances(lost: ArrayIn) -> IntArray:
    """Loss distance of each lost packet, in send order.

    RFC 3357 §4 and §5.4.1 (Type-P-One-Way-Loss-Distance-Stream): the
    difference in sequence numbers between a lost packet and the previously
    lost one, whether or not received packets separate them; "the loss
    distance associated with the very first packet loss is considered to be
    zero". One element per lost packet (empty when nothing was lost).
    """
    positions = np.flatnonzero(as_bool(lost))
    return np.diff(positions, prepend=positions[:1]).astype(np.int64)


@dataclass(frozen=True)
class LossPeriods:
    """Loss periods of a stream (RFC 3357 §4, §5.4.2 and §6.2-§6.4).

    ``starts`` and ``lengths`` give each maximal run of consecutive losses
    (position of its first lost packet, number of packets lost in it: the
    §6.3 loss period lengths); ``gaps`` the §6.4 inter-loss period length of
    each period: the loss distance from the last packet lost in the previous
    period to the first packet lost in this one (the number of packets
    received in between plus one), 0 for the first period.
    """

    starts: IntArray
    lengths: IntArray
    gaps: IntArray

    @property
    def count(self) -> int:
        """Number of loss periods (RFC 3357 §6.2, Type-P-One-Way-Loss-Period-Total)."""
        return int(self.lengths.size)


def loss_periods(lost: ArrayIn) -> LossPeriods:
    """Split a loss pattern into loss periods.

    RFC 3357 §4 (loss period): a loss period starts at packet i when l(i) = 1 and
    l(i-1) = 0 and lasts while packets keep being lost; §6.2-§6.4 derive the
    count of periods, their lengths and the inter-loss period lengths.
    """
    flags = as_bool(lost).astype(np.int8)
    edges = np.diff(np.concatenate(([0], flags, [0])))
    starts = np.flatnonzero(edges == 1).astype(np.int64)
    ends = np.flatnonzero(edges == -1).astype(np.int64)  # one past the last loss
    # §6.4: distance from the last loss of period i-1 (ends - 1) to the first of period i
    first = np.zeros(min(starts.size, 1), dtype=np.int64)  # §6.4: 0 for the first period
    gaps = np.concatenate((first, starts[1:] - (ends[:-1] - 1))).astype(np.int64)
    return LossPeriods(starts=starts, lengths=ends - starts, gaps=gaps)
