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
    """Sequence distance from each lost packet to the previous lost one.

    RFC 3357 §4 (loss distance): the difference in sequence numbers of two
    successively lost packets, whether or not received packets separate them.
    The first lost packet has no predecessor, so the result has one element
    fewer than there are losses (empty when fewer than two losses).
    """
    positions = np.flatnonzero(as_bool(lost))
    return np.diff(positions).astype(np.int64)


@dataclass(frozen=True)
class LossPeriods:
    """Loss periods of a stream (RFC 3357 §4 and §5).

    ``starts`` and ``lengths`` give each maximal run of consecutive losses
    (position of its first lost packet, number of packets lost in it);
    ``gaps`` the number of packets received between two successive periods
    (the inter-loss period lengths).
    """

    starts: IntArray
    lengths: IntArray
    gaps: IntArray

    @property
    def count(self) -> int:
        """Number of loss periods (RFC 3357 §5, loss period total)."""
        return int(self.lengths.size)


def loss_periods(lost: ArrayIn) -> LossPeriods:
    """Split a loss pattern into loss periods.

    RFC 3357 §4 (loss period): a loss period starts at packet i when l(i) = 1 and
    l(i-1) = 0 and lasts while packets keep being lost; §5 derives the count
    of periods, their lengths and the lengths of the gaps between them.
    """
    flags = as_bool(lost).astype(np.int8)
    edges = np.diff(np.concatenate(([0], flags, [0])))
    starts = np.flatnonzero(edges == 1).astype(np.int64)
    ends = np.flatnonzero(edges == -1).astype(np.int64)  # one past the last loss
    return LossPeriods(starts=starts, lengths=ends - starts, gaps=starts[1:] - ends[:-1])
