"""Per-protocol summary of the ``messages`` table the exchanges produce.

One row per protocol; every figure comes from a :mod:`lab.metrics` function so
the metric definitions (and their RFC references) live in one place.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lab import metrics
from lab.errors import AnalysisError

REQUIRED_COLUMNS = ("protocol", "seq", "size", "t_send_ns", "t_recv_ns")

SUMMARY_COLUMNS = (
    "protocol",
    "sent",
    "delivered",
    "lost",
    "loss_pct",
    "out_of_order",
    "duplicates",
    "owd_min_ms",
    "owd_p50_ms",
    "owd_p95_ms",
    "owd_p99_ms",
    "owd_max_ms",
    "jitter_ms",
    "rtt_p50_ms",
    "rtt_p99_ms",
    "goodput_bps",
    "duration_s",
)

_NS_PER_MS = 1e6
_NS_PER_S = 1e9


def summarize(messages: pd.DataFrame) -> pd.DataFrame:
    """One summary row per protocol, in the order protocols first appear.

    Columns are :data:`SUMMARY_COLUMNS`; a figure that cannot be computed (no
    message delivered, no echo) is NaN. Percentiles follow RFC 2330 §11.3 and
    the median RFC 7679 §5.2, over delivered messages only.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in messages.columns]
    if missing:
        raise AnalysisError(f"messages table lacks column(s): {', '.join(missing)}")
    rows = [
        _summarize_one(str(proto), messages.loc[messages["protocol"] == proto])
        for proto in pd.unique(messages["protocol"])
    ]
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    counts = ["sent", "delivered", "lost", "out_of_order", "duplicates"]
    frame[counts] = frame[counts].astype(np.int64)
    floats = [c for c in SUMMARY_COLUMNS if c != "protocol" and c not in counts]
    frame[floats] = frame[floats].astype(np.float64)
    return frame


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` as nullable Int64, all <NA> when absent."""
    if name not in df.columns:
        return pd.Series(pd.NA, index=df.index, dtype="Int64")
    return df[name].astype("Int64")


def _summarize_one(protocol: str, df: pd.DataFrame) -> dict[str, Any]:
    t_send = _column(df, "t_send_ns")
    t_recv = _column(df, "t_recv_ns")
    delivered_mask = t_recv.notna().to_numpy(dtype=np.bool_)
    sent = len(df)
    delivered = int(delivered_mask.sum())

    owd_ns = metrics.one_way_delay(t_send, t_recv)

    arrived = df.loc[delivered_mask]
    order = _arrival_order(arrived)
    arrivals_seq = _column(arrived, "seq").to_numpy(dtype=np.int64)[order]
    jitter_ns = metrics.interarrival_jitter(
        _column(arrived, "t_send_ns").iloc[order], _column(arrived, "t_recv_ns").iloc[order]
    )

    copies = (
        _column(df, "copies").fillna(0)
        if "copies" in df
        else pd.Series(delivered_mask.astype(np.int64), index=df.index)
    )
    rtt = _column(df, "rtt_ns")

    send_ns = t_send.to_numpy(dtype=np.int64, na_value=0)
    recv_ns = t_recv.to_numpy(dtype=np.int64, na_value=0)[delivered_mask]
    first_send = int(send_ns.min()) if sent else 0
    last_event = max(int(send_ns.max()), int(recv_ns.max()) if delivered else 0) if sent else 0
    span_ns = int(recv_ns.max()) - first_send if delivered else 0
    delivered_bytes = int(_column(df, "size").to_numpy(dtype=np.int64)[delivered_mask].sum())
    goodput = delivered_bytes * 8 / (span_ns / _NS_PER_S) if span_ns > 0 else float("nan")

    return {
        "protocol": protocol,
        "sent": sent,
        "delivered": delivered,
        "lost": sent - delivered,
        "loss_pct": 100.0 * metrics.loss_ratio(~delivered_mask),
        "out_of_order": metrics.reordered_count(arrivals_seq),
        "duplicates": metrics.extra_copies(copies),
        "owd_min_ms": metrics.delay_min(owd_ns) / _NS_PER_MS,
        "owd_p50_ms": metrics.delay_median(owd_ns) / _NS_PER_MS,
        "owd_p95_ms": metrics.delay_percentile(owd_ns, 95) / _NS_PER_MS,
        "owd_p99_ms": metrics.delay_percentile(owd_ns, 99) / _NS_PER_MS,
        "owd_max_ms": metrics.delay_max(owd_ns) / _NS_PER_MS,
        "jitter_ms": jitter_ns / _NS_PER_MS,
        "rtt_p50_ms": metrics.delay_median(rtt) / _NS_PER_MS,
        "rtt_p99_ms": metrics.delay_percentile(rtt, 99) / _NS_PER_MS,
        "goodput_bps": goodput,
        "duration_s": (last_event - first_send) / _NS_PER_S if sent else float("nan"),
    }


def _arrival_order(arrived: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.intp]]:
    """Row positions of the delivered messages in the order they arrived.

    Uses ``arrival_index`` when every delivered row has one, else the receive
    time (ties broken by seq).
    """
    index = _column(arrived, "arrival_index")
    if len(arrived) and bool(index.notna().all()):
        keys = index.to_numpy(dtype=np.int64)
        return np.argsort(keys, kind="stable")
    recv = _column(arrived, "t_recv_ns").to_numpy(dtype=np.int64, na_value=0)
    seq = _column(arrived, "seq").to_numpy(dtype=np.int64, na_value=0)
    return np.lexsort((seq, recv))
