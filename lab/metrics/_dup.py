"""Packet duplication (RFC 5560)."""

from __future__ import annotations

import numpy as np

from lab.metrics._arrays import ArrayIn, as_int


def extra_copies(copies: ArrayIn) -> int:
    """Copies received beyond the first, summed over the stream.

    RFC 5560 (one-way packet duplication): a packet received k > 1 times
    counts k - 1 duplicates.
    """
    counts = as_int(copies)
    return int(np.clip(counts - 1, 0, None).sum())


def duplication_ratio(copies: ArrayIn) -> float:
    """Extra copies per packet that arrived; NaN when nothing arrived.

    RFC 5560 §5.1 (Type-P-one-way-packet-duplication-fraction): lost packets
    (arrival count undefined; here 0 or negative) are removed first, then
    (sum of arrival counts / packets left) - 1, i.e. extra copies over the
    number of packets sent and not lost.
    """
    counts = as_int(copies)
    arrived = counts[counts >= 1]
    return extra_copies(arrived) / arrived.size if arrived.size else float("nan")


def duplicated_packets(copies: ArrayIn) -> int:
    """Packets that arrived more than once (RFC 5560 §5.2, the replicated-packet count)."""
    return int((as_int(copies) > 1).sum())
