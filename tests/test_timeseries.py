"""Time series per interval: they add up to the summary, and each figure is where it happened."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lab.analysis.summary import summarize
from lab.analysis.timeseries import flow_timeseries, timeseries

T0 = 1_796_000_000_000_000_000
MS = 1_000_000


def messages(protocol: str = "udp", count: int = 100, *, owd_ms: float = 10.0) -> pd.DataFrame:
    """One message per ms, each ``owd_ms`` late; every 10th lost from 50 on."""
    seq = np.arange(count)
    t_send = T0 + seq * MS
    t_recv = pd.array(t_send + int(owd_ms * MS), dtype="Int64")
    lost = (seq >= 50) & (seq % 10 == 0)
    t_recv[lost] = pd.NA
    return pd.DataFrame(
        {
            "protocol": protocol,
            "seq": seq,
            "size": 1000,
            "t_send_ns": t_send,
            "t_recv_ns": t_recv,
            "arrival_index": pd.array(np.where(lost, -1, seq), dtype="Int64").astype("Int64"),
        }
    ).assign(arrival_index=lambda f: f["arrival_index"].where(~lost, pd.NA))


def test_intervals_add_up_to_the_summary() -> None:
    frame = pd.concat([messages("tcp"), messages("udp", 80, owd_ms=3.0)], ignore_index=True)
    series = timeseries(frame, interval_ms=20)
    summary = summarize(frame).set_index("protocol")
    for protocol, rows in series.groupby("protocol"):
        assert rows["sent"].sum() == summary.loc[protocol, "sent"]
        assert rows["lost"].sum() == summary.loc[protocol, "lost"]
        assert rows["delivered"].sum() == summary.loc[protocol, "delivered"]
        assert rows["out_of_order"].sum() == summary.loc[protocol, "out_of_order"]
        assert rows["interval"].tolist() == list(range(len(rows)))
    assert set(series["protocol"]) == {"tcp", "udp"}


def test_loss_is_charged_to_the_send_interval_and_delay_to_the_arrival() -> None:
    series = timeseries(messages(), interval_ms=10).set_index("interval")
    # messages 50, 60, ..., 90 are lost: sent in intervals 5..9, one each
    assert series.loc[0:4, "lost"].sum() == 0
    assert series.loc[5:9, "lost"].tolist() == [1, 1, 1, 1, 1]
    # a 10 ms delay moves arrivals one interval later: interval 0 receives nothing
    assert series.loc[0, "delivered"] == 0 and np.isnan(series.loc[0, "owd_p50_ms"])
    assert series.loc[1, "delivered"] == 10
    assert series.loc[3, "owd_p50_ms"] == pytest.approx(10.0)
    # 10 messages of 1000 B in 10 ms = 8 Mbit/s
    assert series.loc[2, "throughput_bps"] == pytest.approx(8e6)


def test_reordered_arrivals_count_where_they_arrive() -> None:
    frame = messages(count=30)
    # swap the arrival of seq 12 and 13: 12 now arrives after 13, 1 ms later
    frame.loc[12, ["t_recv_ns", "arrival_index"]] = [frame.loc[13, "t_recv_ns"], 13]
    frame.loc[13, ["t_recv_ns", "arrival_index"]] = [frame.loc[13, "t_recv_ns"] - MS, 12]
    series = timeseries(frame, interval_ms=5)
    assert series["out_of_order"].sum() == 1
    row = series.loc[series["out_of_order"] == 1].iloc[0]
    assert (
        row["t_start_s"] * 1e3 <= (int(frame.loc[12, "t_recv_ns"]) - T0) / MS < row["t_end_s"] * 1e3
    )


def test_every_interval_is_as_wide_and_a_stall_is_kept() -> None:
    frame = messages(count=10)
    frame.loc[9, "t_recv_ns"] = T0 + 95 * MS  # the last message is stuck for 86 ms
    series = timeseries(frame, interval_ms=10)
    assert series["t_end_s"].iloc[-1] == pytest.approx(0.1)  # not cut at the last event
    assert (series["delivered"].iloc[2:9] == 0).all()  # the stall shows as empty intervals
    assert series["throughput_bps"].iloc[-1] == pytest.approx(1000 * 8 / 0.010)


def test_bad_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval_ms"):
        timeseries(messages(), interval_ms=0)


def test_per_flow_series_line_up_and_add_up_to_the_protocols() -> None:
    first = messages("tcp", 100).assign(flow=0)
    second = messages("tcp", 60, owd_ms=3.0).assign(flow=1)
    second["t_send_ns"] += 5 * MS  # starts 5 ms later
    second["t_recv_ns"] += 5 * MS
    frame = pd.concat([first, second, messages("udp", 20).assign(flow=0)], ignore_index=True)
    per_flow = flow_timeseries(frame, interval_ms=10)
    assert set(per_flow["protocol"]) == {"tcp"}  # udp has one flow: not repeated here
    assert per_flow.groupby("flow")["interval"].min().tolist() == [0, 0]
    # the later flow's first send is 5 ms into the protocol's first interval
    assert per_flow.query("flow == 1 and interval == 0")["sent"].item() == 5
    whole = timeseries(frame, interval_ms=10).query("protocol == 'tcp'").set_index("interval")
    summed = per_flow.groupby("interval")[["sent", "lost", "delivered", "bytes_delivered"]].sum()
    assert summed.equals(whole.loc[summed.index, summed.columns].astype(summed.dtypes))
    assert flow_timeseries(messages("udp", 20)).empty  # no flow column: format 1
