"""What happened over time: per protocol and interval, delivery, throughput, loss and delay.

The summary gives one number per protocol; a flent-style time series shows when
things happened (a loss burst, a queue filling, TCP recovering). Intervals are
counted from the protocol's first send (each protocol of a run has its own clock
origin, since they run one after the other), ``interval_ms`` wide (default 100).

Per interval:

* ``sent``: messages whose send time falls in it; ``lost`` those of them that never
  arrived (the loss is charged to when the message left, as iperf3 and flent do);
* ``delivered``, ``bytes_delivered``, ``throughput_bps`` (goodput: message bytes,
  headers excluded), ``owd_p50_ms``, ``owd_p99_ms``, ``out_of_order``: over the
  messages whose first copy *arrived* in it (delay is seen when it is measured;
  out of order per RFC 4737 §3.3 over the whole stream's arrival order).

Every interval is as wide as the others, the last one too (the protocol's last event
falls inside it): a rate over a sliver of time at the end would magnify the receiver's
reading in bursts into a rate the link never carried.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lab import metrics
from lab.analysis.summary import arrival_order

__all__ = ["DEFAULT_INTERVAL_MS", "TIMESERIES_COLUMNS", "flow_timeseries", "timeseries"]

DEFAULT_INTERVAL_MS = 100.0

TIMESERIES_COLUMNS = (
    "protocol",
    "interval",
    "t_start_s",
    "t_end_s",
    "sent",
    "lost",
    "delivered",
    "bytes_delivered",
    "throughput_bps",
    "owd_p50_ms",
    "owd_p99_ms",
    "out_of_order",
)


def timeseries(messages: pd.DataFrame, interval_ms: float = DEFAULT_INTERVAL_MS) -> pd.DataFrame:
    """One row per protocol and interval, from the first send to the last event.

    Intervals with nothing in them are kept (a stall is information): their counts
    are 0 and their delays NaN.
    """
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be > 0, not {interval_ms}")
    parts = [
        _one_protocol(str(protocol), messages.loc[messages["protocol"] == protocol], interval_ms)
        for protocol in pd.unique(messages["protocol"])
    ]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=list(TIMESERIES_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(TIMESERIES_COLUMNS)]


def flow_timeseries(
    messages: pd.DataFrame, interval_ms: float = DEFAULT_INTERVAL_MS
) -> pd.DataFrame:
    """The same per parallel flow: one row per protocol, flow and interval.

    Only protocols with more than one flow (``workload.parallel``); every flow of a
    protocol counts from the protocol's first send, so their intervals line up (how
    the flows converge to their shares, or do not). Empty without parallel flows.
    """
    columns = ["protocol", "flow", *TIMESERIES_COLUMNS[1:]]
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be > 0, not {interval_ms}")
    if "flow" not in messages:
        return pd.DataFrame(columns=columns)
    parts = []
    for protocol in pd.unique(messages["protocol"]):
        df = messages.loc[messages["protocol"] == protocol]
        if df["flow"].nunique() < 2:
            continue
        t_send = df["t_send_ns"].astype("Int64")
        origin = int(t_send[t_send >= 0].min())
        for _, rows in df.groupby("flow", sort=True):
            part = _one_protocol(str(protocol), rows, interval_ms, origin=origin)
            parts.append(part.assign(flow=int(rows["flow"].iloc[0])))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def _one_protocol(
    protocol: str, df: pd.DataFrame, interval_ms: float, origin: int | None = None
) -> pd.DataFrame:
    """``origin``: the clock's zero (default: the first send of ``df``)."""
    t_send = df["t_send_ns"].astype("Int64")
    sent_mask = t_send.notna() & (t_send >= 0)
    if not sent_mask.any():
        return pd.DataFrame(columns=list(TIMESERIES_COLUMNS))
    width_ns = interval_ms * 1e6
    origin = int(t_send[sent_mask].min()) if origin is None else origin
    t_recv = df["t_recv_ns"].astype("Int64")
    arrived = t_recv.notna().to_numpy(dtype=bool) & sent_mask.to_numpy(dtype=bool)
    send_ns = t_send.to_numpy(dtype=np.int64, na_value=origin)
    recv_ns = t_recv.to_numpy(dtype=np.int64, na_value=origin)
    sent_rows = sent_mask.to_numpy(dtype=bool)
    last_recv = int(recv_ns[arrived].max()) if arrived.any() else origin
    last = max(int(send_ns[sent_rows].max()), last_recv)
    intervals = int((last - origin) // width_ns) + 1
    send_bin = ((send_ns - origin) // width_ns).astype(np.int64)
    recv_bin = ((recv_ns - origin) // width_ns).astype(np.int64)

    sent = np.bincount(send_bin[sent_rows], minlength=intervals)
    lost = np.bincount(send_bin[sent_rows & ~arrived], minlength=intervals)
    delivered = np.bincount(recv_bin[arrived], minlength=intervals)
    sizes = df["size"].to_numpy(dtype=np.int64)
    delivered_bytes = np.bincount(recv_bin[arrived], weights=sizes[arrived], minlength=intervals)

    owd_ms = (recv_ns[arrived] - send_ns[arrived]) / 1e6
    bins = recv_bin[arrived]
    frame = pd.DataFrame({"bin": bins, "owd_ms": owd_ms})
    grouped = frame.groupby("bin")["owd_ms"]
    p50 = grouped.quantile(0.5).reindex(range(intervals))
    p99 = grouped.quantile(0.99).reindex(range(intervals))

    out_of_order = np.zeros(intervals, dtype=np.int64)
    flows = df["flow"].to_numpy(dtype=np.int64) if "flow" in df else np.zeros(len(df), np.int64)
    for flow in np.unique(flows[arrived]):  # each flow has its own seq and arrival order
        mine = arrived & (flows == flow)
        order = arrival_order(df.loc[mine])
        seqs = df["seq"].to_numpy(dtype=np.int64)[mine][order]
        flags = metrics.reordered(seqs)
        out_of_order += np.bincount(recv_bin[mine][order][flags], minlength=intervals)

    start_s = np.arange(intervals) * interval_ms / 1e3
    end_s = start_s + interval_ms / 1e3
    return pd.DataFrame(
        {
            "protocol": protocol,
            "interval": np.arange(intervals, dtype=np.int64),
            "t_start_s": start_s,
            "t_end_s": end_s,
            "sent": sent.astype(np.int64),
            "lost": lost.astype(np.int64),
            "delivered": delivered.astype(np.int64),
            "bytes_delivered": delivered_bytes.astype(np.int64),
            "throughput_bps": delivered_bytes * 8 / (end_s - start_s),
            "owd_p50_ms": p50.to_numpy(dtype=np.float64),
            "owd_p99_ms": p99.to_numpy(dtype=np.float64),
            "out_of_order": out_of_order.astype(np.int64),
        }
    )
