"""Offered vs achieved rate, sender backlog and the engine's own percentages (pure)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lab.analysis.context import (
    FIRST_TX_COLUMNS,
    LATE_ALARM_MS,
    datagram_first_transmissions,
    engine_figures,
    late_message,
    late_protocols,
    sending_figures,
)
from lab.analysis.impairment import impairment_by_protocol

MS = 1_000_000
T0 = 1_796_177_413_000_000_000


def _messages(protocol: str, t_send: list[int], size: int = 100) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "protocol": protocol,
            "seq": np.arange(len(t_send)),
            "size": size,
            "t_send_ns": pd.array(t_send, dtype="Int64"),
        }
    )


def test_paced_sender_achieves_the_offered_rate_and_blocked_one_does_not() -> None:
    # 11 messages of 100 B every 1 ms: 800 kbit/s offered and achieved
    paced = _messages("udp", [T0 + i * MS for i in range(11)])
    # the same 11 messages, but send() blocked: the last one was handed over at 20 ms
    blocked = _messages("tcp", [T0 + i * 2 * MS for i in range(11)])
    figures = sending_figures(
        pd.concat([paced, blocked], ignore_index=True),
        pd.DataFrame(columns=list(FIRST_TX_COLUMNS)),
        offered_bps=800_000,
    ).set_index("protocol")
    assert figures.loc["udp", "send_rate_bps"] == pytest.approx(800_000)
    assert figures.loc["tcp", "send_rate_bps"] == pytest.approx(400_000)
    assert (figures["offered_bps"] == 800_000).all()
    assert math.isnan(figures.loc["udp", "backlog_p50_ms"]), "no capture: no backlog figure"


def test_backlog_is_send_to_first_transmission() -> None:
    messages = _messages("tcp", [T0 + i * MS for i in range(4)])
    first_tx = pd.DataFrame(
        {
            "protocol": "tcp",
            "seq": [0, 1, 2, 3],
            "t_first_tx_ns": pd.array([T0, T0 + 3 * MS, T0 + 2 * MS, T0 + 3 * MS], dtype="Int64"),
        }
    )
    row = sending_figures(messages, first_tx, 1.0).iloc[0]
    # waits 0, 2, 0, 0 ms: median 0, p99 (RFC 2330 nearest rank) 2 ms
    assert row["backlog_p50_ms"] == pytest.approx(0.0)
    assert row["backlog_p99_ms"] == pytest.approx(2.0)


def test_first_transmission_of_datagrams_keeps_the_clients_first_copy() -> None:
    client, server = 0xC6120001, 0xC6120002
    packets = pd.DataFrame(
        {
            "ts_ns": pd.array([10, 11, 12, 13, 14], dtype="Int64"),
            "src": pd.array([client, server, client, client, client], dtype="UInt32"),
            "lab_seq": pd.array([0, 0, 1, 1, pd.NA], dtype="UInt32"),
        }
    )
    table = datagram_first_transmissions(packets, "udp", client)
    assert table["seq"].tolist() == [0, 1]
    assert table["t_first_tx_ns"].tolist() == [10, 12], "the echo and a later copy do not count"


def test_engine_figures_sum_both_directions() -> None:
    by_protocol = pd.DataFrame(
        {
            "protocol": ["tcp", "tcp", "udp"],
            "direction": ["client_to_server", "server_to_client", "client_to_server"],
            "packets": [150, 50, 1000],
            "dropped_loss": [8, 2, 45],
            "dropped_queue": [0, 0, 5],
            "duplicated": [2, 0, 10],
            "corrupted": [0, 4, 0],
            "reordered": [20, 0, 97],
        }
    )
    figures = engine_figures(by_protocol).set_index("protocol")
    assert figures.loc["tcp", "engine_packets"] == 200
    assert figures.loc["tcp", "engine_loss_pct"] == pytest.approx(5.0)
    assert figures.loc["tcp", "engine_corrupt_pct"] == pytest.approx(2.0)
    assert figures.loc["udp", "engine_loss_pct"] == pytest.approx(5.0), "queue drops count"
    assert figures.loc["udp", "engine_reorder_pct"] == pytest.approx(9.7)
    assert figures.loc["udp", "engine_duplicate_pct"] == pytest.approx(1.0)
    assert engine_figures(by_protocol.iloc[0:0]).empty
    assert figures["engine_late_p99_ms"].isna().all(), "tables from before lateness: unknown"


def test_lateness_is_write_end_minus_schedule_of_forwarded_packets_only() -> None:
    """100 UDP packets scheduled 20 ms after arrival whose writes ended 10 us late, but
    every tenth 3 ms late; a dropped packet (never written) counts for nothing; the
    echoes came back 50 us late. p50 and p99 are RFC 2330's (no interpolation)."""
    late_us = [3000 if k % 10 == 9 else 10 for k in range(100)]
    t_in = [T0 + k * MS for k in range(100)]
    scheduled = [t + 20 * MS for t in t_in]
    truth = pd.DataFrame(
        {
            "direction": ["client_to_server"] * 101 + ["server_to_client"] * 2,
            "ip_proto": 17,
            "src_port": [50_000] * 101 + [7] * 2,
            "dst_port": [7] * 101 + [50_000] * 2,
            "fate": ["forwarded"] * 100 + ["dropped-loss"] + ["forwarded"] * 2,
            "t_in_ns": [*t_in, T0, T0, T0],
            "scheduled_ns": [*scheduled, T0 + 20 * MS, T0, T0],
            "t_out_ns": [s + u * 1000 for s, u in zip(scheduled, late_us, strict=True)]
            + [-1, T0 + 50_000, T0 + 50_000],
            "duplicated": False,
            "corrupted": False,
            "reordered": False,
        }
    )
    exchanges = pd.DataFrame({"protocol": ["udp"], "server_port": [7]})
    table = impairment_by_protocol(truth, exchanges).set_index("direction")
    assert table.loc["client_to_server", "late_p50_ms"] == pytest.approx(0.010)
    assert table.loc["client_to_server", "late_p99_ms"] == pytest.approx(3.0)
    assert table.loc["server_to_client", "late_p99_ms"] == pytest.approx(0.050)
    figures = engine_figures(table.reset_index()).set_index("protocol")
    assert figures.loc["udp", "engine_late_p99_ms"] == pytest.approx(3.0), "the worse direction"


def test_the_schedule_alarm_starts_at_its_threshold_and_ignores_unknown_lateness() -> None:
    summary = pd.DataFrame(
        {
            "protocol": ["tcp", "udp", "raw"],
            "engine_late_p99_ms": [LATE_ALARM_MS - 0.001, LATE_ALARM_MS, np.nan],
        }
    )
    assert late_protocols(summary) == {"udp": LATE_ALARM_MS}
    assert late_protocols(summary.drop(columns="engine_late_p99_ms")) == {}, "netem: no record"
    assert late_message({}) == ""
    assert "of udp more than 1.0 ms after" in late_message(late_protocols(summary))
