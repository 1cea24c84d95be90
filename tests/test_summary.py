"""lab.analysis.summary.summarize on hand-made message tables with known answers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from lab.analysis.summary import SUMMARY_COLUMNS, summarize
from lab.errors import AnalysisError

T0 = 1_700_000_000_000_000_000  # a realistic CLOCK_REALTIME in ns
MS = 1_000_000


def make_messages(
    protocol: str,
    send_ms: Sequence[float],
    recv_ms: Sequence[float | None],
    *,
    size: int = 100,
    copies: Sequence[int] | None = None,
    rtt_ms: Sequence[float | None] | None = None,
    with_arrival_index: bool = True,
) -> pd.DataFrame:
    """A messages table as the exchanges write it, times relative to T0 in ms."""
    n = len(send_ms)
    t_send = np.array([T0 + round(s * MS) for s in send_ms], dtype=np.int64)
    t_recv = pd.array([None if r is None else T0 + round(r * MS) for r in recv_ms], dtype="Int64")
    recv_series = pd.Series(t_recv)
    order = recv_series.rank(method="first") - 1
    arrival = pd.array([None if pd.isna(v) else int(v) for v in order], dtype="Int64")
    if copies is None:
        copies = [0 if r is None else 1 for r in recv_ms]
    rtt = pd.array(
        [None if r is None else round(r * MS) for r in (rtt_ms or [None] * n)], dtype="Int64"
    )
    frame = pd.DataFrame(
        {
            "protocol": protocol,
            "seq": np.arange(n, dtype=np.int64),
            "size": np.full(n, size, dtype=np.int64),
            "t_send_ns": t_send,
            "t_recv_ns": t_recv,
            "arrival_index": arrival,
            "copies": np.asarray(copies, dtype=np.int64),
            "duplicate": np.asarray(copies, dtype=np.int64) > 1,
            "owd_ns": pd.Series(t_recv) - pd.Series(t_send),
            "t_echo_ns": pd.array([None] * n, dtype="Int64"),
            "rtt_ns": rtt,
        }
    )
    if not with_arrival_index:
        frame = frame.drop(columns="arrival_index")
    return frame


def test_clean_stream_known_figures() -> None:
    # transit 1, 2, 3, 4 ms -> |D| = 1 ms three times:
    # J = 1/16, 31/256, 721/4096 ms (RFC 3550 §6.4.1 recursion by hand)
    msgs = make_messages("udp", [0, 10, 20, 30], [1, 12, 23, 34])
    row = summarize(msgs).iloc[0]
    assert row["protocol"] == "udp"
    assert (row["sent"], row["delivered"], row["lost"]) == (4, 4, 0)
    assert row["loss_pct"] == 0.0
    assert row["out_of_order"] == 0
    assert row["duplicates"] == 0
    assert row["owd_min_ms"] == pytest.approx(1.0)
    assert row["owd_p50_ms"] == pytest.approx(2.5)  # even count: mean of 2 and 3 (RFC 7679 §5.2)
    assert row["owd_p95_ms"] == pytest.approx(4.0)
    assert row["owd_p99_ms"] == pytest.approx(4.0)
    assert row["owd_max_ms"] == pytest.approx(4.0)
    assert row["jitter_ms"] == pytest.approx(721 / 4096)
    assert math.isnan(row["rtt_p50_ms"]) and math.isnan(row["rtt_p99_ms"])
    assert row["goodput_bps"] == pytest.approx(400 * 8 / 0.034)
    assert row["duration_s"] == pytest.approx(0.034)


def test_loss_reordering_and_duplicates() -> None:
    # seq 2 lost; seq 4 overtakes seq 3 (one type-P-reordered arrival);
    # seq 5 arrives three times (two extra copies).
    msgs = make_messages(
        "udp",
        [0, 1, 2, 3, 4, 5],
        [10, 11, None, 15, 14, 16],
        copies=[1, 1, 0, 1, 1, 3],
    )
    row = summarize(msgs).iloc[0]
    assert (row["sent"], row["delivered"], row["lost"]) == (6, 5, 1)
    assert row["loss_pct"] == pytest.approx(100 / 6)
    assert row["out_of_order"] == 1
    assert row["duplicates"] == 2


def test_out_of_order_counts_every_late_arrival() -> None:
    # arrival order 0, 3, 1, 2, 4: seqs 1 and 2 arrive after 3 -> 2 reordered
    msgs = make_messages("tcp", [0, 1, 2, 3, 4], [10, 13, 14, 11, 15])
    assert summarize(msgs).iloc[0]["out_of_order"] == 2


def test_arrival_order_falls_back_to_receive_time() -> None:
    msgs = make_messages("tcp", [0, 1, 2, 3, 4], [10, 13, 14, 11, 15], with_arrival_index=False)
    assert summarize(msgs).iloc[0]["out_of_order"] == 2


def test_jitter_follows_arrival_order_not_send_order() -> None:
    # arrival order 1, 0: transits 9 then 10 ms -> |D| = 1 ms -> J = 1/16 ms
    msgs = make_messages("udp", [0, 1], [10, 10])
    msgs["arrival_index"] = pd.array([1, 0], dtype="Int64")
    assert summarize(msgs).iloc[0]["jitter_ms"] == pytest.approx(1 / 16)


def test_rtt_percentiles() -> None:
    msgs = make_messages("tcp", [0, 1, 2, 3, 4], [1, 2, 3, 4, 5], rtt_ms=[2, 4, 6, 8, 100])
    row = summarize(msgs).iloc[0]
    assert row["rtt_p50_ms"] == pytest.approx(6.0)
    assert row["rtt_p99_ms"] == pytest.approx(100.0)


def test_one_row_per_protocol_in_first_appearance_order() -> None:
    msgs = pd.concat(
        [
            make_messages("raw", [0, 1], [1, 2]),
            make_messages("tcp", [0, 1], [1, 2]),
            make_messages("udp", [0, 1], [None, 2]),
        ],
        ignore_index=True,
    )
    out = summarize(msgs)
    assert list(out["protocol"]) == ["raw", "tcp", "udp"]
    assert list(out.columns) == list(SUMMARY_COLUMNS)
    assert list(out["lost"]) == [0, 0, 1]


def test_nothing_delivered_gives_nan_not_a_crash() -> None:
    msgs = make_messages("udp", [0, 5, 10], [None, None, None])
    row = summarize(msgs).iloc[0]
    assert (row["sent"], row["delivered"], row["lost"]) == (3, 0, 3)
    assert row["loss_pct"] == 100.0
    assert row["out_of_order"] == 0 and row["duplicates"] == 0
    for col in ("owd_min_ms", "owd_p50_ms", "owd_p99_ms", "jitter_ms", "goodput_bps"):
        assert math.isnan(row[col]), col
    assert row["duration_s"] == pytest.approx(0.010)


def test_single_message() -> None:
    row = summarize(make_messages("udp", [0], [3])).iloc[0]
    assert row["jitter_ms"] == 0.0
    assert row["owd_p99_ms"] == pytest.approx(3.0)


def test_empty_table_gives_empty_summary() -> None:
    out = summarize(make_messages("udp", [0], [1]).iloc[:0])
    assert out.empty
    assert list(out.columns) == list(SUMMARY_COLUMNS)


def test_missing_column_is_an_analysis_error() -> None:
    msgs = make_messages("udp", [0], [1]).drop(columns="t_recv_ns")
    with pytest.raises(AnalysisError, match="t_recv_ns"):
        summarize(msgs)


def test_dtypes() -> None:
    out = summarize(make_messages("udp", [0, 1], [1, None]))
    assert out["sent"].dtype == np.int64
    assert out["owd_p50_ms"].dtype == np.float64


def test_nanosecond_precision_survives_large_timestamps() -> None:
    # 1 ns one-way delays on ~1.7e18 ns timestamps must not round to 0 or 256 ns
    msgs = make_messages("udp", [0, 1], [0, 1])
    msgs["t_recv_ns"] = (msgs["t_send_ns"] + 1).astype("Int64")
    row = summarize(msgs).iloc[0]
    assert row["owd_min_ms"] == pytest.approx(1e-6)
    assert row["owd_max_ms"] == pytest.approx(1e-6)
