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
    """Extra copies per packet sent; NaN for an empty stream (RFC 5560)."""
    counts = as_int(copies)
    return extra_copies(counts) / counts.size if counts.size else float("nan")


def duplicated_packets(copies: ArrayIn) -> int:
    """Packets that arrived more than once (RFC 5560)."""
    return int((as_int(copies) > 1).sum())
