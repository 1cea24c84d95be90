"""IETF IPPM metrics as pure functions on numpy / pandas arrays.

Each function cites the RFC section that defines it. Inputs are array-likes
(lists, numpy arrays, pandas Series; pandas <NA> is accepted where a value may
be missing). Nothing here does I/O.
"""

from lab.metrics._delay import (
    delay_max,
    delay_median,
    delay_min,
    delay_percentile,
    interarrival_jitter,
    ipdv,
    ipdv_pairs,
    jitter_series,
    one_way_delay,
    peak_to_peak_ipdv,
)
from lab.metrics._dup import duplicated_packets, duplication_ratio, extra_copies
from lab.metrics._loss import LossPeriods, loss_distances, loss_periods, loss_ratio
from lab.metrics._reorder import (
    buffer_occupancies,
    n_reordering,
    n_reordering_ratio,
    reorder_buffer_density,
    reorder_density,
    reorder_displacements,
    reordered,
    reordered_count,
    reordered_ratio,
    reordering_extent,
)

__all__ = [
    "LossPeriods",
    "buffer_occupancies",
    "delay_max",
    "delay_median",
    "delay_min",
    "delay_percentile",
    "duplicated_packets",
    "duplication_ratio",
    "extra_copies",
    "interarrival_jitter",
    "ipdv",
    "ipdv_pairs",
    "jitter_series",
    "loss_distances",
    "loss_periods",
    "loss_ratio",
    "n_reordering",
    "n_reordering_ratio",
    "one_way_delay",
    "peak_to_peak_ipdv",
    "reorder_buffer_density",
    "reorder_density",
    "reorder_displacements",
    "reordered",
    "reordered_count",
    "reordered_ratio",
    "reordering_extent",
]
