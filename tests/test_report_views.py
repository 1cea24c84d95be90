"""The report's views over time (issue 11): throughput, delay and loss per interval
(timeseries.csv), the TCP sender's state (tcp_info.csv) and the time-sequence graph of
each TCP connection (tcp_segments.csv, with the window and SACK columns the wire
analysis reads from the TCP options).

Figures are checked on hand-made frames (their traces hold the table's values); one
real bulk run is rendered in headless Chromium, and its views are saved as screenshots
(into docs/ when ``LAB_SAVE_SCREENSHOTS=1``).
"""

from __future__ import annotations

import math
import os
import shutil
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scapy.layers.inet import IP, TCP
from scapy.packet import Packet, Raw

from lab.analysis.timeseries import timeseries
from lab.analysis.wire import analyze_tcp
from lab.pcap import file_header, read_pcap, record_header
from lab.report import _run_figures as figs
from lab.report import _time_figures as series
from lab.report import _wire_figures as wire
from lab.report import render_report
from lab.report._data import RUN_TABLES, load_run
from lab.report._html import page
from lab.report.run_page import build_page
from lab.results import load_run as load_results
from tests.conftest import PROJECT_ROOT, QUICK_DRAIN, run_body
from tests.pcapng_writer import Pcapng
from tests.test_report import CHROMIUM, assert_rendered, chromium, make_run

T0 = 1_800_000_000_000_000_000
DOCS = PROJECT_ROOT / "docs"


def traces(fig: go.Figure) -> dict[str, Any]:
    """The figure's traces by name (names are unique within one figure)."""
    named = {trace.name: trace for trace in fig.data if trace.name}
    return named


def values(sequence: Any) -> list[float]:
    """Plotly's stored values as floats (None and NaN as NaN), for comparisons."""
    return [math.nan if v is None else float(v) for v in sequence]


def same(a: Any, b: Any) -> bool:
    return bool(np.allclose(values(a), values(b), equal_nan=True))


# --- over time: timeseries.csv ------------------------------------------------------------


def series_table() -> pd.DataFrame:
    """Two protocols, three intervals each; TCP's last one shorter and without arrivals."""
    return pd.DataFrame(
        {
            "protocol": ["tcp"] * 3 + ["udp"] * 3,
            "interval": [0, 1, 2] * 2,
            "t_start_s": [0.0, 0.1, 0.2] * 2,
            "t_end_s": [0.1, 0.2, 0.25, 0.1, 0.2, 0.3],
            "sent": [100, 100, 50, 100, 100, 100],
            "lost": [0, 0, 0, 1, 0, 3],
            "delivered": [90, 110, 0, 99, 100, 97],
            "bytes_delivered": [9000, 11000, 0, 9900, 10000, 9700],
            "throughput_bps": [10e6, 12e6, 0.0, 11e6, 11.5e6, 10.5e6],
            "owd_p50_ms": [10.0, 12.0, np.nan, 10.0, 10.5, 10.0],
            "owd_p99_ms": [20.0, 30.0, np.nan, 11.0, 12.0, 15.0],
            "out_of_order": [0, 0, 0, 0, 1, 0],
        }
    )


def test_throughput_figure_holds_the_table() -> None:
    frames = series.interval_frames(series_table())
    assert list(frames) == ["tcp", "udp"]
    fig, thinned = series.throughput_figure(frames)
    named = traces(fig)
    assert set(named) == {"TCP throughput", "UDP throughput", "TCP lost (0)", "UDP lost (4)"}
    tcp = named["TCP throughput"]
    # a step line: each interval's value from its start, the last one drawn to its end
    assert same(tcp.x, [0.0, 0.1, 0.2, 0.25]) and same(tcp.y, [10, 12, 0, 0])
    assert tcp.line.shape == "hv"
    assert same(named["UDP throughput"].y, [11, 11.5, 10.5, 10.5])
    lost = named["UDP lost (4)"]
    assert isinstance(lost, go.Bar)
    assert same(lost.y, [1, 0, 3]) and same(lost.x, [0.05, 0.15, 0.25])
    assert same(lost.width, [0.1, 0.1, 0.1])
    assert lost.xaxis == "x2"  # the loss panel below the throughput
    assert thinned == ""


def test_delay_figure_p50_and_p99_per_interval() -> None:
    fig, _ = series.delay_figure(series.interval_frames(series_table()))
    named = traces(fig)
    assert set(named) == {"TCP p50", "TCP p99", "UDP p50", "UDP p99"}
    assert same(named["TCP p50"].y, [10, 12, np.nan, np.nan])  # nothing arrived: a gap
    assert same(named["UDP p99"].y, [11, 12, 15, 15])
    assert named["TCP p99"].line.dash == "dot" and named["TCP p50"].line.dash == "solid"
    assert not named["TCP p50"].connectgaps


def test_many_intervals_are_thinned_but_losses_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(figs, "MAX_POINTS", 100)
    n = 1000
    table = pd.DataFrame(
        {
            "protocol": "udp",
            "interval": np.arange(n),
            "t_start_s": np.arange(n) / 10,
            "t_end_s": np.arange(1, n + 1) / 10,
            "sent": 100,
            "lost": (np.arange(n) == 503).astype(int),
            "delivered": 100,
            "throughput_bps": 1e6,
            "owd_p50_ms": 1.0,
            "owd_p99_ms": 2.0,
        }
    )
    fig, thinned = series.throughput_figure(series.interval_frames(table))
    assert "Thinned for display (more than 100 intervals per protocol): one in 10" in thinned
    assert "including every interval with a loss" in thinned
    bars = traces(fig)["UDP lost (1)"]
    assert len(bars.x) == 101  # every 10th and the one with the loss
    assert same([x for x, y in zip(bars.x, bars.y, strict=True) if y], [50.35])


def test_older_series_without_interval_ends() -> None:
    table = series_table().drop(columns=["t_end_s"])
    frames = series.interval_frames(table)
    assert same(frames["udp"]["t_end_s"], [0.1, 0.2, 0.3])


# --- TCP sender state: tcp_info.csv ---------------------------------------------------------


def tcp_info_table() -> pd.DataFrame:
    cwnd = np.array([10, 20, 40, 20, 21, 22])
    return pd.DataFrame(
        {
            "protocol": "tcp",
            "t_ns": pd.array(T0 - 5_000_000 + np.arange(6) * 20_000_000, dtype="Int64"),
            "cwnd_segments": cwnd,
            "cwnd_bytes": cwnd * 1448,
            "ssthresh_segments": [np.nan, np.nan, np.nan, 20, 20, 20],
            "in_flight_segments": [0, 18, 40, 19, 21, 0],
            "in_flight_bytes": np.array([0, 18, 40, 19, 21, 0]) * 1448,
            "srtt_ms": [20.0, 21.0, 25.0, 24.0, 22.0, 21.0],
            "rttvar_ms": [10.0, 5.0, 3.0, 2.0, 1.0, 1.0],
            "min_rtt_ms": 20.0,
            "rto_ms": [224.0, 224.0, 228.0, 228.0, 224.0, 224.0],
            "snd_wnd_bytes": 1_318_912,
            "ca_state": ["open", "open", "open", "recovery", "recovery", "open"],
            "congestion_control": "cubic",
        }
    )


def test_cwnd_figure_holds_the_table() -> None:
    table = tcp_info_table()
    state = series.sender_frame(table, T0)
    assert same(state["s"], [-0.005, 0.015, 0.035, 0.055, 0.075, 0.095])
    fig, thinned = series.cwnd_figure(state)
    named = traces(fig)
    assert same(named["cwnd"].y, table["cwnd_bytes"])
    assert same(named["cwnd"].x, state["s"])
    assert same(named["in flight"].y, table["in_flight_bytes"])
    assert same(named["ssthresh"].y, [np.nan] * 3 + [20 * 1448] * 3)  # x the sample's MSS
    receive = named["peer's receive window (snd_wnd)"]
    assert receive.visible == "legendonly"
    assert same(receive.y, [1_318_912] * 6)
    # the congestion state strip, in the kernel's order
    assert list(named["state open"].y) == ["open"] * 4
    assert same(named["state recovery"].x, [0.055, 0.075])
    assert named["state open"].yaxis == "y2"
    assert thinned == ""


def test_rtt_figure_srtt_band_and_min_rtt() -> None:
    table = tcp_info_table()
    fig, _ = series.rtt_figure(series.sender_frame(table, T0))
    named = traces(fig)
    assert same(named["srtt"].y, table["srtt_ms"])
    band = named["srtt ± rttvar"]
    assert band.fill == "tonexty"
    assert same(band.y, table["srtt_ms"] + table["rttvar_ms"])
    lower = fig.data[list(fig.data).index(band) - 1]
    assert same(lower.y, (table["srtt_ms"] - table["rttvar_ms"]).clip(lower=0))
    assert same(named["min_rtt"].y, [20] * 6)
    assert named["RTO"].visible == "legendonly"


def test_sender_state_without_messages_starts_at_the_first_sample() -> None:
    state = series.sender_frame(tcp_info_table(), None)
    assert state["s"].iloc[0] == 0 and math.isclose(state["s"].iloc[-1], 0.1)


# --- time-sequence graph: tcp_segments.csv ---------------------------------------------------


def segment_rows(**columns: Any) -> pd.DataFrame:
    return pd.DataFrame(columns)


def connection(port: int = 50000, *, delay_ns: int = 5_000_000) -> pd.DataFrame:
    """One connection as the wire analysis writes it: the handshake, three data segments
    (the second lost and fast-retransmitted), the ACKs (one with a SACK block), each
    segment once per capture; the server capture misses the lost copy."""
    ms = 1_000_000
    c2s, s2c = "client_to_server", "server_to_client"
    us = 1_000
    sent = [  # (t at the sender, direction, seq, ack, len, flags, window_bytes, sack, flags)
        (0, c2s, 0, None, 0, 2, 64240, "", {}),
        (10 * ms, s2c, 0, 1, 0, 18, 65160, "", {}),
        (11 * ms, c2s, 1, 1, 1000, 24, 64256, "", {}),
        (11 * ms + 100 * us, c2s, 1001, 1, 1000, 24, 64256, "", {}),
        (11 * ms + 200 * us, c2s, 2001, 1, 1000, 24, 64256, "", {}),
        (16 * ms, s2c, 1, 1001, 0, 16, 64512, "", {}),
        (16 * ms + 200 * us, s2c, 1, 1001, 0, 16, 64512, "2001-3001", {"dup_ack": True}),
        (22 * ms, c2s, 1001, 1, 1000, 24, 64256, "", {"retransmission": True}),
        (27 * ms, s2c, 1, 3001, 0, 16, 65536, "", {}),
    ]
    rows = []
    for t, direction, seq, ack, length, flags, window, sack, marks in sent:
        sender = "client" if direction == c2s else "server"
        receiver = "server" if sender == "client" else "client"
        lost = direction == c2s and seq == 1001 and not marks
        copies = [(sender, t)] + ([] if lost else [(receiver, t + delay_ns)])
        for side, ts in copies:
            row = {
                "client_port": port,
                "side": side,
                "ts_ns": T0 + ts,
                "direction": direction,
                "seq": seq,
                "ack": ack,
                "len": length,
                "flags": flags,
                "window": window >> 7,
                "retransmission": False,
                "fast_retransmission": False,
                "spurious": False,
                "dup_ack": False,
                "out_of_order": False,
                "window_bytes": window,
                "sack": sack,
            }
            if side == sender:  # sender flags where the analysis judges them
                row.update(marks)
                row["fast_retransmission"] = bool(marks.get("retransmission"))
            rows.append(row)
    return pd.DataFrame(rows).sort_values("ts_ns", kind="stable", ignore_index=True)


def test_time_sequence_graph_holds_the_table() -> None:
    segments = connection()
    graphs = wire.time_sequence_figures(segments, float(T0))
    assert len(graphs) == 1
    graph = graphs[0]
    assert graph.has_data and graph.has_window and graph.has_sack
    named = traces(graph.figure)
    arrow = "client→server"
    # data as sent, at the client capture: marks at each segment's end, bars over its bytes
    data = [t for t in graph.figure.data if t.name == f"data {arrow}"]
    bars, tops = (data[0], data[1]) if data[0].mode == "lines" else (data[1], data[0])
    assert same(tops.y, [1001, 2001, 3001]) and same(tops.customdata, [1, 1001, 2001])
    assert same(tops.x, [0.011, 0.0111, 0.0112])  # the client's times, not the server's
    assert same(bars.y[:3], [1, 1001, np.nan])
    resent = [t for t in graph.figure.data if t.name == f"fast retransmission {arrow}"]
    assert any(same(t.y, [2001]) and same(t.x, [0.022]) for t in resent if t.mode == "markers")
    # the ACKs as they came back to the client (those that move a line: the duplicate
    # ACK moves neither), ACK + window above them, the SACK block the duplicate carried
    acks = named[f"ACK, {arrow} data"]
    assert same(acks.y, [1, 1001, 3001])
    assert same(acks.x, [0.015, 0.021, 0.032])
    window = named[f"receive window, {arrow} data (ACK + window)"]
    assert same(window.y, [1 + 65160, 1001 + 64512, 3001 + 65536])
    sack = named[f"SACK blocks, {arrow} data (1)"]
    assert same(sack.y, [2001, 3001, np.nan]) and same(sack.x[:2], [0.0212, 0.0212])
    # the event strip: each flag counted where the analysis judges it
    assert "retransmission (1)" in named and "fast retransmission (1)" in named
    assert "dup ack (1)" in named and "out of order (0)" in named
    assert named["dup ack (1)"].yaxis == "y2"


def test_each_data_direction_gets_a_panel_and_each_connection_a_graph() -> None:
    echo = connection()
    back = echo.loc[echo["len"] > 0].copy()  # the same data echoed by the server
    back["direction"] = "server_to_client"
    back["side"] = back["side"].map({"client": "server", "server": "client"})
    both = pd.concat([echo, back, connection(50001)], ignore_index=True)
    graphs = wire.time_sequence_figures(both, float(T0))
    assert [g.flow for g in graphs] == ["50000", "50001"]
    names = set(traces(graphs[0].figure))
    assert {"data client→server", "data server→client"} <= names
    axes = {t.yaxis for t in graphs[0].figure.data}
    assert axes == {"y", "y2", "y3"}  # two panels and the strip
    assert graphs[0].height > graphs[1].height


def test_time_sequence_of_an_older_table_says_what_is_missing(tmp_path: Path) -> None:
    older = connection().drop(columns=["window_bytes", "sack"])
    graph = wire.time_sequence_figures(older, None)[0]
    assert not graph.window_column and not graph.sack_column
    names = set(traces(graph.figure))
    assert "ACK, client→server data" in names
    assert not any(n.startswith(("receive window", "SACK")) for n in names)
    folder = make_run(tmp_path / "older")
    older.to_csv(folder / "tcp_segments.csv", index=False)
    html = render_report(folder).read_text()
    assert "Not drawn: the receive window (this tcp_segments.csv has no window_bytes" in html
    assert "SACK blocks (this tcp_segments.csv has no sack column)" in html


def test_clean_connection_has_no_event_strip() -> None:
    clean = connection()
    for flag in ("retransmission", "fast_retransmission", "dup_ack"):
        clean[flag] = False
    clean["sack"] = ""
    graph = wire.time_sequence_figures(clean, float(T0))[0]
    assert {t.yaxis for t in graph.figure.data} == {"y"}
    assert graph.has_data and not graph.has_sack and graph.sack_column


# --- the page: sections appear with their tables ---------------------------------------------


def with_new_tables(folder: Path) -> Path:
    """Add timeseries.csv (computed from the run's messages, as the analysis does),
    tcp_info.csv and a tcp_segments.csv with window and SACK columns."""
    messages = load_results(folder).table("messages")
    timeseries(messages).to_csv(folder / "timeseries.csv", index=False)
    tcp_info_table().to_csv(folder / "tcp_info.csv", index=False)
    connection().to_csv(folder / "tcp_segments.csv", index=False)
    return folder


def test_run_tables_include_the_new_ones() -> None:
    assert {"timeseries", "tcp_info", "tcp_segments"} <= set(RUN_TABLES)


def test_sections_say_not_available_for_older_runs(tmp_path: Path) -> None:
    html = render_report(make_run(tmp_path / "old")).read_text()
    for title in ("Over time", "TCP sender state", "TCP time-sequence and retransmissions"):
        assert f">{title}</h2>" in html
    assert "Not available: this run has no timeseries.csv" in html
    assert "Not available: this run has no tcp_info.csv" in html


def test_sections_render_the_new_tables(tmp_path: Path) -> None:
    old = build_page(load_run(make_run(tmp_path / "old")))
    run = load_run(with_new_tables(make_run(tmp_path / "new")))
    assert {"timeseries", "tcp_info"} <= set(run.tables)
    html = build_page(run)
    assert "Not available: this run has no" not in html
    for heading in (
        "Throughput and loss",
        "One-way delay</h3>",
        "Congestion window and bytes in flight",
        "Round-trip time as the sender estimates it",
    ):
        assert heading in html
    assert "delay is charged to the arrival interval" in html
    assert "charged to the interval they were sent in" in html
    assert "Congestion control: cubic." in html
    # four new figures; the time-sequence graph replaces the retransmission figure
    assert html.count("Plotly.newPlot") == old.count("Plotly.newPlot") + 4 + 1


def test_a_page_of_chosen_sections(tmp_path: Path) -> None:
    run = load_run(with_new_tables(make_run(tmp_path / "run")))
    html = build_page(run, only=("over-time",))
    assert ">Over time</h2>" in html and ">Summary</h2>" not in html
    assert html.count("Plotly.newPlot") == 2


# --- TCP options: the window scale and SACK columns --------------------------------------------


CLIENT, SERVER = "198.18.0.1", "198.18.0.2"
CP, SP = 49200, 50000
ISN_C, ISN_S = 4_294_967_000, 5000  # the client's wraps through 2^32 during the data


def tcp_packet(to_server: bool, seq: int, ack: int, flags: str, **kw: Any) -> Packet:
    src, dst, sport, dport = (CLIENT, SERVER, CP, SP) if to_server else (SERVER, CLIENT, SP, CP)
    payload = kw.pop("payload", b"")
    ident = kw.pop("ip_id")
    segment = TCP(sport=sport, dport=dport, seq=seq % 2**32, ack=ack % 2**32, flags=flags, **kw)
    return IP(src=src, dst=dst, id=ident) / segment / Raw(payload)


def write_pcap(path: Path, packets: list[tuple[int, Packet]]) -> Path:
    out = bytearray(file_header(262144, 101))
    for ts, packet in packets:
        data = bytes(packet)
        out += record_header(ts // 10**9, ts % 10**9, len(data), len(data)) + data
    path.write_bytes(bytes(out))
    return path


def option_story(client_wscale: int | None = 7) -> list[tuple[int, bool, Packet]]:
    """(time at the sender in µs, sent by the client?, packet), 5 ms each way: the
    handshake, three data segments (the 2nd lost), the ACKs (one SACKs the 3rd), the
    resend and its ACK."""
    syn_opts: list[tuple[str, Any]] = [("MSS", 1460), ("SAckOK", b"")]
    if client_wscale is not None:
        syn_opts.append(("WScale", client_wscale))
    synack_opts = [("MSS", 1460), ("SAckOK", b""), ("WScale", 10)]
    c, s = ISN_C + 1, ISN_S + 1
    data = b"x" * 1000
    sack = [("NOP", None), ("NOP", None), ("SAck", ((c + 2000) % 2**32, (c + 3000) % 2**32))]

    def up(seq: int, ip_id: int, payload: bytes = data) -> Packet:
        return tcp_packet(
            True, seq, s, "PA" if payload else "A", window=502, ip_id=ip_id, payload=payload
        )

    def down(ack: int, window: int, ip_id: int, **kw: Any) -> Packet:
        return tcp_packet(False, s, ack, "A", window=window, ip_id=ip_id, **kw)

    return [
        (0, True, tcp_packet(True, ISN_C, 0, "S", window=64240, options=syn_opts, ip_id=1)),
        (
            5000,
            False,
            tcp_packet(False, ISN_S, c, "SA", window=65160, options=synack_opts, ip_id=100),
        ),
        (10_100, True, up(c, 2, b"")),
        (11_000, True, up(c, 3)),
        (11_100, True, up(c + 1000, 4)),  # lost
        (11_200, True, up(c + 2000, 5)),
        (16_050, False, down(c + 1000, 63, 101)),
        (16_250, False, down(c + 1000, 63, 102, options=sack)),
        (21_300, True, up(c + 1000, 6)),
        (26_350, False, down(c + 3000, 64, 103)),
    ]


def option_captures(tmp_path: Path, client_wscale: int | None = 7) -> tuple[Path, Path]:
    one_way = 5_000_000
    client, server = [], []
    for t, from_client, packet in option_story(client_wscale):
        lost = from_client and packet.id == 4
        here, there = (client, server) if from_client else (server, client)
        here.append((T0 + t * 1000, packet))
        if not lost:
            there.append((T0 + t * 1000 + one_way, packet))
    client.sort(key=lambda p: p[0])
    server.sort(key=lambda p: p[0])
    return (
        write_pcap(tmp_path / "tcp-client.pcap", client),
        write_pcap(tmp_path / "tcp-server.pcap", server),
    )


def story_messages() -> pd.DataFrame:
    seq = np.arange(3)
    return pd.DataFrame(
        {
            "protocol": "tcp",
            "seq": seq,
            "size": 1000,
            "t_send_ns": T0 + 12_000_000 + seq * 100,
            "t_recv_ns": pd.array(T0 + 30_000_000 + seq, dtype="Int64"),
        }
    )


def test_read_pcap_reads_window_scale_and_sack_on_request(tmp_path: Path) -> None:
    client, _ = option_captures(tmp_path)
    plain = read_pcap(client).packets
    assert "tcp_wscale" not in plain and "tcp_sack_blocks" not in plain
    packets = read_pcap(client, tcp_options=True).packets
    assert packets.drop(columns=[c for c in packets if c not in plain]).equals(plain)
    assert packets["tcp_wscale"].tolist()[:2] == [7, 10]
    assert packets["tcp_wscale"].isna().sum() == len(packets) - 2
    sacked = packets.loc[packets["tcp_sack_blocks"] > 0]
    assert len(sacked) == 1
    row = sacked.iloc[0]
    assert row["tcp_sack1_left"] == (ISN_C + 2001) % 2**32
    assert row["tcp_sack1_right"] == (ISN_C + 3001) % 2**32
    assert pd.isna(row["tcp_sack2_left"])


def test_options_in_pcapng_and_malformed_ones(tmp_path: Path) -> None:
    good = tcp_packet(
        True, 1, 1, "A", ip_id=9, options=[("SAck", (10, 20, 30, 40, 50, 60, 70, 80))]
    )
    raw = bytearray(bytes(tcp_packet(True, 1, 1, "A", ip_id=10, options=[("WScale", 3)])))
    raw[20 + 20 + 1] = 0  # the option's length byte: 0 is malformed, the walk stops
    truncated = bytes(good)[:46]  # the SACK option cut by the snap length
    ng = Pcapng()
    ng.section()
    ng.interface(101, tsresol=9)
    for i, data in enumerate((bytes(good), bytes(raw), truncated)):
        ng.packet(data, T0 + i)
    path = tmp_path / "o.pcapng"
    path.write_bytes(ng.data)
    packets = read_pcap(path, tcp_options=True).packets
    assert packets["tcp_sack_blocks"].tolist() == [4, 0, 0]
    assert [packets[f"tcp_sack{i}_right"].iloc[0] for i in range(1, 5)] == [20, 40, 60, 80]
    assert packets["tcp_wscale"].isna().all()


def test_wire_analysis_scales_the_window_and_writes_sack_blocks(tmp_path: Path) -> None:
    client, server = option_captures(tmp_path)
    seg = analyze_tcp(client, server, story_messages(), CP, SP).segments
    at_client = seg.loc[seg["side"] == "client"].reset_index(drop=True)
    # SYNs unscaled; then the client's windows << 7, the server's << 10 (RFC 7323)
    c, s = 502 << 7, 63 << 10
    assert at_client["window_bytes"].tolist() == [64240, 65160, c, c, c, c, s, s, c, 64 << 10]
    sacked = at_client.loc[at_client["sack"].notna()]
    assert sacked["sack"].tolist() == ["2001-3001"]  # relative, in the ACK's numbering
    assert sacked["ack"].tolist() == [1001]
    # the columns before them are what they were
    assert at_client["window"].tolist()[:3] == [64240, 65160, 502]
    assert at_client["retransmission"].sum() == 1


def test_window_scale_off_unless_both_syns_carry_it(tmp_path: Path) -> None:
    client, server = option_captures(tmp_path, client_wscale=None)
    seg = analyze_tcp(client, server, story_messages(), CP, SP).segments
    at_client = seg.loc[seg["side"] == "client"]
    assert at_client["window_bytes"].tolist() == [64240, 65160, 502, 502, 502, 502, 63, 63, 502, 64]


# --- a real run in Chromium; screenshots -------------------------------------------------------


def crop_png(path: Path, margin: int = 16) -> None:
    """Cut the blank rows below a Chromium screenshot's content, in place.

    Chromium encodes a row equal to the one above as filter type 2 ("Up") with every
    byte 0; the rows kept are copied as they are (their filters only look upwards).
    """
    data = path.read_bytes()
    chunks = []
    pos = 8
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]))
        pos += 12 + size
    header = next(body for kind, body in chunks if kind == b"IHDR")
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {2: 3, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace:
        return
    stride = 1 + width * channels
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    blank = bytes(stride - 1)
    last = 0
    for row in range(height):
        line = raw[row * stride : (row + 1) * stride]
        if line[0] != 2 or line[1:] != blank:
            last = row
    keep = min(height, last + 1 + margin)
    if keep >= height:
        return

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, keep, depth, color, 0, 0, 0)
    idat = zlib.compress(raw[: keep * stride], 9)
    path.write_bytes(data[:8] + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def zoomed_time_sequence(run_folder: Path) -> str:
    """A page of the first connection's time-sequence graph zoomed on its first loss:
    from two round trips before the first retransmission to four after."""
    run = load_run(run_folder)
    segments = run.table("tcp_segments")
    messages = run.table("messages")
    assert segments is not None and messages is not None
    prepared = figs.prepare_messages(messages)
    t0 = float(prepared["tcp"].attrs["t0_ns"])
    graph = wire.time_sequence_figures(segments, t0)[0]
    frame = wire.segment_frame(segments, t0)
    sent = frame.loc[frame["at_sender"] & (frame["direction"] == "client_to_server")]
    resent = sent.loc[sent["retransmission"]]
    stats = run.table("tcp_stats")
    rtt = 0.02
    if stats is not None and pd.notna(stats["karn_rtt_p50_ms"].iloc[0]):
        rtt = float(stats["karn_rtt_p50_ms"].iloc[0]) / 1000  # the handshake's may be an outlier
    t = float(resent["s"].iloc[0]) if len(resent) else float(sent["s"].median())
    low, high = t - 2 * rtt, t + 4 * rtt
    inside = sent.loc[sent["s"].between(low, high) & (sent["len"] > 0)]
    span = float(inside["seq"].max() + inside["len"].max() - inside["seq"].min())
    graph.figure.update_xaxes(range=[low, high])
    graph.figure.update_yaxes(
        range=[float(inside["seq"].min()) - 0.1 * span, float(inside["seq"].max()) + 0.3 * span],
        row=1,
        col=1,
    )
    from lab.report._html import figure

    return page(
        "protolab report: time-sequence graph, zoomed on the first loss",
        run_folder.name,
        figure(graph.figure, graph.height),
    )


BULK = (
    'seed = 11\nprotocols = ["tcp", "udp"]\n'
    '[workload]\npattern = "bulk"\nsize = 1400\nduration_s = 1.5\nrate = 2000\n'
    "[impairment]\ndelay_ms = 10\nloss = 1\n" + QUICK_DRAIN
)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
@pytest.mark.requires_root
@pytest.mark.slow
def test_bulk_run_views_render_in_chromium(tmp_path: Path, no_leftover_namespaces: None) -> None:
    outcome = run_body(tmp_path, BULK, "bulk-views")
    report = render_report(outcome.path)
    html = report.read_text()
    for title in ("Over time", "TCP sender state", "TCP time-sequence and retransmissions"):
        assert f">{title}</h2>" in html
    assert "Not available" not in html.split('id="over-time"')[1].split('id="hol"')[0]
    # one Chromium draws the whole report while another draws the views below (each with
    # its own profile folder): the same pages and checks, the two waits overlapped
    with ThreadPoolExecutor(max_workers=1) as pool:
        whole = pool.submit(chromium, report, tmp_path)

        # the zoomed graph is a figure of its own; the section pages only frame the figures
        # the whole report draws, so they are drawn when screenshots are asked for
        run = load_run(outcome.path)
        pages = {"report-bulk-time-sequence-zoom": zoomed_time_sequence(outcome.path)}
        if os.environ.get("LAB_SAVE_SCREENSHOTS") == "1":
            pages |= {
                "report-bulk-over-time": build_page(run, only=("over-time",)),
                "report-bulk-tcp-sender": build_page(run, only=("sender",)),
                "report-bulk-time-sequence": build_page(run, only=("tcp",)),
            }
        shots = tmp_path / "shots"
        shots.mkdir()
        for name, text in pages.items():
            view = shots / f"{name}.html"
            view.write_text(text)
            png = shots / f"{name}.png"
            dom, log = chromium(view, tmp_path / "views", png)
            assert_rendered(dom, log, text.count("Plotly.newPlot"))
            crop_png(png)
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert png.stat().st_size > 30_000, name  # drawn, not blank
            if os.environ.get("LAB_SAVE_SCREENSHOTS") == "1":
                shutil.copyfile(png, DOCS / png.name)
        dom, log = whole.result()
    assert_rendered(dom, log, html.count("Plotly.newPlot"))
    # legends as drawn (plotly's JSON escapes the arrow; the SVG holds the text)
    for legend in ("TCP throughput", "UDP lost (", "TCP p99", "cwnd", "in flight", "srtt"):
        assert f">{legend}" in dom, legend
    assert "receive window, client→server data (ACK + window)" in dom
    assert "SACK blocks, client→server data (" in dom  # 1 % loss: the receiver SACKed


def test_sparse_tables_still_render(tmp_path: Path) -> None:
    """Tables with only their required columns (another writer, a damaged run) render."""
    folder = make_run(tmp_path / "sparse")
    pd.DataFrame({"protocol": ["udp", "udp"], "interval": [0, 1], "t_start_s": [0.0, 0.1]}).to_csv(
        folder / "timeseries.csv", index=False
    )
    pd.DataFrame({"protocol": ["tcp"] * 2, "t_ns": [T0, T0 + 20_000_000]}).to_csv(
        folder / "tcp_info.csv", index=False
    )
    pd.DataFrame(
        {"ts_ns": [T0, T0 + 1], "direction": ["client_to_server"] * 2, "len": [100, 100]}
    ).to_csv(folder / "tcp_segments.csv", index=False)
    html = render_report(folder).read_text()
    assert "Throughput and loss" in html and "Congestion window" in html
    assert "every ~20 ms" in html


def test_parallel_flows_one_colour_each() -> None:
    one = tcp_info_table()
    two = one.assign(cwnd_bytes=one["cwnd_bytes"] * 2, srtt_ms=one["srtt_ms"] + 5)
    table = pd.concat([one.assign(flow=0), two.assign(flow=1)], ignore_index=True)
    state = series.sender_frame(table, T0)
    assert series.flows(state) == ["0", "1"]
    fig, _ = series.cwnd_figure(state)
    named = traces(fig)
    assert same(named["flow 0 cwnd"].y, one["cwnd_bytes"])
    assert same(named["flow 1 cwnd"].y, two["cwnd_bytes"])
    assert named["flow 0 cwnd"].line.color != named["flow 1 cwnd"].line.color
    assert set(named["state recovery"].y) == {"flow 0", "flow 1"}
    rtt, _ = series.rtt_figure(state)
    assert same(traces(rtt)["flow 1 srtt"].y, two["srtt_ms"])
    segments = pd.concat(
        [connection(50000).assign(flow=0), connection(50001).assign(flow=1)], ignore_index=True
    )
    titles = [g.title for g in wire.time_sequence_figures(segments, float(T0))]
    assert titles == ["flow 0 (client port 50000)", "flow 1 (client port 50001)"]


def test_parallel_flows_on_the_page(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "parallel")
    one = tcp_info_table()
    pd.concat([one.assign(flow=0), one.assign(flow=1)], ignore_index=True).to_csv(
        folder / "tcp_info.csv", index=False
    )
    html = render_report(folder).read_text()
    assert "The run had 2 TCP flows: one colour per flow" in html
    assert "every ~20 ms" in html  # one flow's spacing, not the flows' interleaving


def _probe_and_flows_run(folder: Path) -> Path:
    make_run(folder, protocols=("tcp",))
    t0 = 1_800_000_000_000_000_000
    rows = []
    for kind in ("udp", "tcp"):
        for seq in range(30):
            phase = "idle" if seq < 10 else ("load" if seq < 20 else "after")
            rtt = 20_000_000 if phase != "load" else 550_000_000
            lost = kind == "udp" and seq == 15
            rows.append(
                {
                    "load_protocol": "tcp",
                    "probe": kind,
                    "seq": seq,
                    "t_send_ns": t0 + seq * 50_000_000,
                    "t_echo_ns": None if lost else t0 + seq * 50_000_000 + rtt,
                    "rtt_ns": None if lost else rtt,
                    "phase": phase,
                }
            )
    pd.DataFrame(rows).to_csv(folder / "probe.csv", index=False)
    pd.DataFrame(
        {
            "protocol": "tcp",
            "flow": [0, 1],
            "sent": [300, 100],
            "delivered": [300, 100],
            "goodput_bps": [3e6, 1e6],
            "owd_p50_ms": [10.0, 11.0],
            "owd_p99_ms": [20.0, 21.0],
            "share": [0.75, 0.25],
        }
    ).to_csv(folder / "flows.csv", index=False)
    summary = pd.read_csv(folder / "summary.csv")  # a hand-made folder: extend its own file
    summary = summary.assign(
        probe_rtt_idle_ms=20.0,
        probe_rtt_load_ms=550.0,
        probe_rtt_load_p99_ms=551.0,
        probe_rtt_after_ms=20.0,
        probe_lost=1,
        flows=2,
        jain_index=0.8,
    )
    summary.to_csv(folder / "summary.csv", index=False)
    return folder


def test_probe_and_flow_sections_show_what_the_tables_hold(tmp_path: Path) -> None:
    folder = _probe_and_flows_run(tmp_path / "run")
    page_html = build_page(load_run(folder), only=("probe", "flows"))
    assert "Latency under load" in page_html and "Flows: parallel and both directions" in page_html
    assert "Jain&#x27;s fairness index 0.800 over 2 flows" in page_html
    assert "UDP probe beside the TCP load" in page_html
    assert "550" in page_html  # the table's loaded round trip


def test_runs_without_probe_or_parallel_flows_have_no_such_sections(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "run")
    page_html = build_page(load_run(folder))
    assert 'id="probe"' not in page_html and 'id="flows"' not in page_html
    one_flow = pd.DataFrame({"protocol": ["tcp"], "flow": [0], "goodput_bps": [1e6]})
    one_flow.to_csv(folder / "flows.csv", index=False)
    assert 'id="flows"' not in build_page(load_run(folder))  # one flow: nothing to compare
