"""Per-protocol summary of the ``messages`` table the exchanges produce.

One row per protocol; every figure comes from a :mod:`lab.metrics` function so
the metric definitions (and their RFC references) live in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    "flows",
    "jain_index",
)

_NS_PER_MS = 1e6
_NS_PER_S = 1e9


#: Which way each flow's messages went, by (protocol, flow): ``client_to_server`` (the
#: default for a flow not listed) or ``server_to_client`` (exchanges.csv's ``direction``).
Directions = Mapping[tuple[str, int], str]
CLIENT_TO_SERVER = "client_to_server"


def summarize(messages: pd.DataFrame, directions: Directions | None = None) -> pd.DataFrame:
    """One summary row per protocol, in the order protocols first appear.

    Columns are :data:`SUMMARY_COLUMNS`; a figure that cannot be computed (no
    message delivered, no echo) is NaN. Percentiles follow RFC 2330 §11.3 and
    the median RFC 7679 §5.2, over delivered messages only. Counts and goodput cover
    every flow of the protocol, both directions of a bidirectional run included;
    Jain's index compares flows going the same way (bidirectional: the less fair way).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in messages.columns]
    if missing:
        raise AnalysisError(f"messages table lacks column(s): {', '.join(missing)}")
    rows = [
        _summarize_one(str(proto), messages.loc[messages["protocol"] == proto], directions or {})
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


def _summarize_one(protocol: str, df: pd.DataFrame, directions: Directions) -> dict[str, Any]:
    t_send = _column(df, "t_send_ns")
    t_recv = _column(df, "t_recv_ns")
    delivered_mask = t_recv.notna().to_numpy(dtype=np.bool_)
    sent = len(df)
    delivered = int(delivered_mask.sum())

    owd_ns = metrics.one_way_delay(t_send, t_recv)

    # order-dependent figures per flow (each has its own seq and arrival order), then
    # summed (reordered arrivals) or averaged (jitter) over the flows
    flows = [group for _, group in _flows(df)]
    reordered = 0
    jitters = []
    for flow in flows:
        arrived = flow.loc[_column(flow, "t_recv_ns").notna().to_numpy(dtype=np.bool_)]
        order = arrival_order(arrived)
        reordered += metrics.reordered_count(
            _column(arrived, "seq").to_numpy(dtype=np.int64)[order]
        )
        jitters.append(
            metrics.interarrival_jitter(
                _column(arrived, "t_send_ns").iloc[order], _column(arrived, "t_recv_ns").iloc[order]
            )
        )
    defined = [j for j in jitters if not np.isnan(j)]
    jitter_ns = float(np.mean(defined)) if defined else float("nan")
    ways: dict[str, list[float]] = {}
    for number, flow in _flows(df):
        way = directions.get((protocol, number), CLIENT_TO_SERVER)
        ways.setdefault(way, []).append(_goodput(flow))
    fairness = [jain_index(rates) for rates in ways.values() if len(rates) > 1]

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

    return {
        "protocol": protocol,
        "sent": sent,
        "delivered": delivered,
        "lost": sent - delivered,
        "loss_pct": 100.0 * metrics.loss_ratio(~delivered_mask),
        "out_of_order": reordered,
        "duplicates": metrics.extra_copies(copies),
        "owd_min_ms": metrics.delay_min(owd_ns) / _NS_PER_MS,
        "owd_p50_ms": metrics.delay_median(owd_ns) / _NS_PER_MS,
        "owd_p95_ms": metrics.delay_percentile(owd_ns, 95) / _NS_PER_MS,
        "owd_p99_ms": metrics.delay_percentile(owd_ns, 99) / _NS_PER_MS,
        "owd_max_ms": metrics.delay_max(owd_ns) / _NS_PER_MS,
        "jitter_ms": jitter_ns / _NS_PER_MS,
        "rtt_p50_ms": metrics.delay_median(rtt) / _NS_PER_MS,
        "rtt_p99_ms": metrics.delay_percentile(rtt, 99) / _NS_PER_MS,
        "goodput_bps": _goodput(df),
        "duration_s": (last_event - first_send) / _NS_PER_S if sent else float("nan"),
        "flows": len(flows),
        "jain_index": min(fairness) if fairness else float("nan"),
    }


def _flows(df: pd.DataFrame) -> list[tuple[int, pd.DataFrame]]:
    """The protocol's flows (one when there is no ``flow`` column: format 1, or one flow)."""
    if "flow" not in df.columns or df.empty:
        return [(0, df)]
    return [(int(group["flow"].iloc[0]), group) for _, group in df.groupby("flow", sort=True)]


def _goodput(df: pd.DataFrame) -> float:
    """Delivered message bytes over first send to last delivery, bit/s (NaN: none)."""
    t_recv = _column(df, "t_recv_ns")
    delivered = t_recv.notna().to_numpy(dtype=np.bool_)
    if not delivered.any():
        return float("nan")
    span = int(t_recv.max()) - int(_column(df, "t_send_ns").min())
    size = _column(df, "size").to_numpy(dtype=np.int64, na_value=0)[delivered].sum()
    return float(size) * 8 / (span / _NS_PER_S) if span > 0 else float("nan")


def jain_index(rates: list[float]) -> float:
    """Jain's fairness index (Jain, Chiu, Hawe 1984; RFC 5166 §4.4): (Σx)² / (n Σx²).

    1 when every flow gets the same, 1/n when one flow gets everything; NaN without rates.
    """
    values = np.asarray([r for r in rates if not np.isnan(r)], dtype=np.float64)
    if values.size == 0 or not (values > 0).any():
        return float("nan")
    return float(values.sum() ** 2 / (values.size * (values**2).sum()))


FLOW_COLUMNS = (
    "protocol",
    "flow",
    "direction",
    "sent",
    "delivered",
    "goodput_bps",
    "owd_p50_ms",
    "owd_p99_ms",
    "share",
)


def flow_table(messages: pd.DataFrame, directions: Directions | None = None) -> pd.DataFrame:
    """``flows.csv``: one row per protocol and flow, and each flow's share of its protocol.

    ``share`` is the flow's goodput over the sum of the goodputs of its protocol's flows
    going the same way.
    """
    directions = directions or {}
    rows = []
    for protocol in pd.unique(messages["protocol"]):
        df = messages.loc[messages["protocol"] == protocol]
        for flow, group in _flows(df):
            delivered = _column(group, "t_recv_ns").notna()
            owd = metrics.one_way_delay(_column(group, "t_send_ns"), _column(group, "t_recv_ns"))
            rows.append(
                {
                    "protocol": str(protocol),
                    "flow": flow,
                    "direction": directions.get((str(protocol), flow), CLIENT_TO_SERVER),
                    "sent": len(group),
                    "delivered": int(delivered.sum()),
                    "goodput_bps": _goodput(group),
                    "owd_p50_ms": metrics.delay_median(owd) / _NS_PER_MS,
                    "owd_p99_ms": metrics.delay_percentile(owd, 99) / _NS_PER_MS,
                }
            )
    frame = pd.DataFrame(rows, columns=list(FLOW_COLUMNS[:-1]))  # share comes next
    total = frame.groupby(["protocol", "direction"])["goodput_bps"].transform("sum")
    frame["share"] = frame["goodput_bps"] / total.where(total > 0)
    return frame


def arrival_order(arrived: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.intp]]:
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
