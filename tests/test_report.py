"""HTML reports, ``lab list`` / ``lab compare`` and the sweep page.

Most tests build small results folders by hand (no root); one renders a real run and
opens it in headless Chromium, which proves plotly's JavaScript ran (its SVGs are in
the DOM) and nothing raised.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lab.cli import build_parser
from lab.errors import ResultsError
from lab.report import _run_figures as figs
from lab.report import render_report, render_sweep
from lab.report.listing import compare_runs, list_runs
from lab.report.sweep import mathis_bps, mean_ci, model_table, read_sweep, t_quantile
from lab.results import FORMAT_VERSION, load_run
from tests.conftest import QUICK_DRAIN, write_scenario

CHROMIUM = Path("/usr/bin/chromium")
EVIL = "<script>alert(1)</script>"
EVIL_CELL = '<img src=x onerror="alert(2)">'


# --- hand-made results folders --------------------------------------------------------


def write_meta(folder: Path, **fields: Any) -> None:
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "lab_version": "0.1.0",
        "scenario": "demo",
        "seed": 3,
        "started": "2026-01-01T10:00:00.000+00:00",
        "ended": "2026-01-01T10:00:05.000+00:00",
        "complete": True,
        "kernel": "6.1.0-test",
        "python": "3.11.7",
        "packages": {"pandas": "3.0", "plotly": "7.0"},
        "congestion_control": "cubic",
    }
    meta.update(fields)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps(meta))


def messages_table(protocols: tuple[str, ...], count: int) -> pd.DataFrame:
    """Paced messages, every 17th lost (not TCP), a few swapped pairs, TCP delayed in bursts."""
    frames = []
    t0 = 1_800_000_000_000_000_000
    for index, protocol in enumerate(protocols):
        seq = np.arange(count)
        send = t0 + index * 10**10 + seq * 1_000_000
        owd = 10_000_000 + (seq % 50 == 0) * 40_000_000
        recv = (send + owd).astype(float)
        if protocol != "tcp":
            recv[seq % 17 == 5] = np.nan
        arrival = pd.Series(recv).rank(method="first") - 1
        if protocol == "udp":  # swap arrivals of a few pairs: reordering
            for s in range(10, count - 1, 97):
                arrival[s], arrival[s + 1] = arrival[s + 1], arrival[s]
        frames.append(
            pd.DataFrame(
                {
                    "protocol": protocol,
                    "seq": seq,
                    "size": 256,
                    "t_send_ns": send,
                    "t_recv_ns": pd.Series(recv).astype("Int64"),
                    "arrival_index": arrival.where(~np.isnan(recv)).astype("Int64"),
                    "copies": (~np.isnan(recv)).astype(int),
                    "duplicate": False,
                    "intact": True,
                    "owd_ns": pd.Series(np.where(np.isnan(recv), np.nan, owd)).astype("Int64"),
                    "t_echo_ns": pd.NA,
                    "rtt_ns": pd.NA,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def summary_table(messages: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for protocol, group in messages.groupby("protocol", sort=False):
        delivered = int(group["t_recv_ns"].notna().sum())
        owd = group["owd_ns"].dropna().astype(float) / 1e6
        rows.append(
            {
                "protocol": protocol,
                "sent": len(group),
                "delivered": delivered,
                "lost": len(group) - delivered,
                "loss_pct": 100 * (len(group) - delivered) / len(group),
                "out_of_order": 3 if protocol == "udp" else 0,
                "duplicates": 0,
                "owd_p50_ms": owd.median(),
                "owd_p99_ms": owd.quantile(0.99),
                "rtt_p50_ms": None,
                "goodput_bps": 2e6 if protocol == "tcp" else 1.9e6,
                "accounting_closes": True,
            }
        )
    return pd.DataFrame(rows)


def make_run(
    folder: Path,
    *,
    description: str = "a demo run",
    protocols: tuple[str, ...] = ("tcp", "udp"),
    count: int = 300,
    wire: bool = False,
    **meta: Any,
) -> Path:
    """A results folder as `lab run` writes it, small and deterministic."""
    write_meta(folder, **meta)
    write_scenario(
        folder,
        f'name = "demo"\ndescription = {json.dumps(description)}\nseed = 3\n'
        f"protocols = {json.dumps(list(protocols))}\n"
        f"[workload]\ncount = {count}\nsize = 256\n[impairment]\ndelay_ms = 10\nloss = 5\n",
    )
    messages = messages_table(protocols, count)
    messages.to_csv(folder / "messages.csv", index=False)
    summary_table(messages).to_csv(folder / "summary.csv", index=False)
    pd.DataFrame(
        {
            "direction": ["client_to_server", "server_to_client"],
            "packets_in": [700, 200],
            "forwarded": [680, 195],
            "dropped_loss": [20, 5],
            "closes": [True, True],
        }
    ).to_csv(folder / "accounting.csv", index=False)
    pd.DataFrame(
        {
            "protocol": ["tcp", "tcp", "udp", "udp"],
            "direction": ["client_to_server", "server_to_client"] * 2,
            "packets": [400, 200, 300, 0],
            "dropped_loss": [10, 5, 10, 0],
            "reordered": [0, 0, 3, 0],
        }
    ).to_csv(folder / "impairment_by_protocol.csv", index=False)
    (folder / "capture").mkdir(exist_ok=True)
    (folder / "capture" / "tcp-client.pcap").write_bytes(b"")
    pd.DataFrame(
        {
            "protocol": ["tcp", "udp"],
            "side": ["client", "client"],
            "path": ["capture/tcp-client.pcap", "capture/udp-client.pcap"],
            "interface": ["lab0", EVIL_CELL],
            "packets": [600, 300],
            "kernel_drops": [0, 0],
        }
    ).to_csv(folder / "captures.csv", index=False)
    pd.DataFrame(
        {
            "protocol": list(protocols),
            "client_port": [50000 + i for i in range(len(protocols))],
            "server_port": 50000,
            "started_ns": 0,
            "ended_ns": 2 * 10**9,
            "client.Tcp.RetransSegs": [7] + [0] * (len(protocols) - 1),
        }
    ).to_csv(folder / "exchanges.csv", index=False)
    if wire:
        write_wire_tables(folder)
    return folder


def write_wire_tables(folder: Path) -> None:
    """tcp_segments.csv and hol.csv as the wire analysis writes them: every segment once
    per capture (``side``), sender flags on the sender's copy, receiver flags on the other."""
    t0 = 1_800_000_000_000_000_000
    n = 120
    index = np.arange(n)

    def segments(side: str, direction: str, delay: int, **flags: Any) -> pd.DataFrame:
        data = direction == "client_to_server"
        frame = pd.DataFrame(
            {
                "client_port": 50000,
                "side": side,
                "ts_ns": t0 + index * 2_000_000 + delay + (0 if data else 10_000_000),
                "direction": direction,
                "seq": 1 + index * 256 if data else 1,
                "len": 256 if data else 0,
                "flags": 24 if data else 16,
            }
        )
        for name in ("retransmission", "fast_retransmission", "spurious", "dup_ack"):
            frame[name] = flags.get(name, False)
        frame["out_of_order"] = flags.get("out_of_order", False)
        return frame

    sent_retx = {"retransmission": index % 30 == 7, "fast_retransmission": index % 60 == 7}
    frames = [
        segments("client", "client_to_server", 0, **sent_retx),
        # the receiver's copy: flags judged at the sender are not counted here
        segments("server", "client_to_server", 5_000_000, retransmission=True),
        segments("server", "server_to_client", 0, dup_ack=index % 30 == 8),
        segments("client", "server_to_client", 5_000_000, out_of_order=index % 40 == 3),
    ]
    pd.concat(frames).sort_values("ts_ns").to_csv(folder / "tcp_segments.csv", index=False)
    seq = np.arange(300)
    blocked = seq % 50 == 1
    pd.DataFrame(
        {
            "seq": seq,
            "t_recv_ns": t0 + seq * 1_000_000 + 10_000_000,
            "hol_wait_ns": np.where(blocked, 30_000_000, np.where(seq % 50 == 2, 100_000, 0)),
            "blocked": blocked,
        }
    ).to_csv(folder / "hol.csv", index=False)


# --- the run report ---------------------------------------------------------------------


def test_report_is_one_self_contained_file(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "demo-run")
    page = render_report(folder)
    assert page == folder / "report.html"
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    # nothing fetched: no external script, stylesheet, image or font outside plotly.js
    library_end = html.index("</script>")
    assert "plotly.js" in html[:library_end]
    ours = html[library_end:]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", ours)
    assert "<link" not in html
    assert html.count("Plotly.newPlot") >= 5
    assert html.count("plotly.js v") <= 2  # the library is inlined once (its banner)
    for title in ("Summary", "One-way delay", "Sequence numbers vs arrival", "Loss over time"):
        assert f">{title}</h2>" in html
    # wire-analysis tables absent: a note, not an error
    assert html.count("Not available for this run") == 2
    # pcaps linked relatively when they exist, marked missing otherwise
    assert '<a href="capture/tcp-client.pcap">' in html
    assert "capture/udp-client.pcap (missing)" in html
    assert "INCOMPLETE RUN" not in html and 'class="banner"' not in html


def test_a_host_that_did_not_keep_the_schedule_is_named_beside_the_figures(
    tmp_path: Path,
) -> None:
    folder = make_run(tmp_path / "late")
    summary = pd.read_csv(folder / "summary.csv")
    summary["engine_late_p99_ms"] = [0.09, 0.99]  # tcp, udp: both kept it
    summary.to_csv(folder / "summary.csv", index=False)
    assert "did not keep the link" not in render_report(folder).read_text()
    summary["engine_late_p99_ms"] = [0.09, 11.7]  # the guest stalled during udp
    summary.to_csv(folder / "summary.csv", index=False)
    html = render_report(folder).read_text()
    assert '<p class="note">The host did not keep the link&#x27;s schedule' in html
    assert "packets of udp more than 11.7 ms after" in html and "tcp more" not in html


def test_everything_from_data_is_escaped(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "evil", description=f"desc {EVIL}", scenario=f"x{EVIL}")
    html = render_report(folder).read_text()
    assert EVIL not in html
    assert EVIL_CELL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    # every <script> we open is closed by us, none by data
    assert html.count("<script") == html.count("</script>")
    assert html.count("<script") == 1 + html.count("Plotly.newPlot")


def test_figure_json_cannot_close_the_script() -> None:
    import plotly.graph_objects as go

    from lab.report._html import figure

    fig = go.Figure(go.Scatter(x=[1], y=[1], name=EVIL, text=["</script><b>x</b>"]))
    fragment = figure(fig, 300)
    assert fragment.lower().count("</script") == 1
    assert EVIL not in fragment


def test_newer_format_is_refused(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "future", format_version=FORMAT_VERSION + 1)
    with pytest.raises(ResultsError, match="newer than this lab understands") as caught:
        render_report(folder)
    assert "\n" not in str(caught.value)
    assert not (folder / "report.html").exists()


def test_incomplete_run_is_refused_unless_allowed(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "half", complete=False, incomplete_reason="interrupted")
    (folder / "summary.csv").unlink()
    with pytest.raises(ResultsError, match=r"incomplete \(interrupted\).*--allow-incomplete"):
        render_report(folder)
    html = render_report(folder, allow_incomplete=True).read_text()
    assert 'class="banner"' in html
    assert "INCOMPLETE RUN: interrupted" in html
    assert "no summary.csv" in html


def test_not_a_results_folder(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such results folder"):
        render_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="not a results folder"):
        render_report(tmp_path / "empty")


def test_wire_analysis_sections_when_present(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "wire", wire=True)
    html = render_report(folder).read_text()
    assert "Not available for this run" not in html
    assert "retransmission (4)" in html  # 4 of the 120 sent, not the receiver's copies
    assert "fast retransmission (2)" in html
    assert "dup ack (4)" in html
    assert "out of order (3)" in html
    assert "blocked behind a gap (6)" in html  # the analysis's verdict, not wait > 0


def test_large_runs_are_thinned_and_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(figs, "MAX_POINTS", 100)
    folder = make_run(tmp_path / "big", count=1000)
    html = render_report(folder).read_text()
    assert "Thinned for display (more than 100 messages per protocol): one in 10" in html


def test_three_protocols_side_by_side(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "three", protocols=("tcp", "udp", "raw"))
    html = render_report(folder).read_text()
    assert all(f">{p}</span>" in html for p in ("TCP", "UDP", "RAW"))
    assert "TCP vs UDP vs RAW" in html


def test_sweep_folder_is_not_a_run(tmp_path: Path) -> None:
    write_meta(tmp_path / "s", kind="sweep")
    with pytest.raises(ResultsError, match="a sweep folder"):
        render_report(tmp_path / "s")


# --- lab report / list / compare -----------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.handler(args)
    return status


def test_cli_report_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_run(tmp_path / "r")
    assert run_cli(["report", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"path": str(folder / "report.html"), "kind": "run"}
    incomplete = make_run(tmp_path / "i", complete=False)
    with pytest.raises(ResultsError, match="--allow-incomplete"):
        run_cli(["report", str(incomplete)])
    assert run_cli(["report", str(incomplete), "--allow-incomplete"]) == 0


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    make_run(root / "demo-1", started="2026-01-01T10:00:00.000+00:00")
    make_run(
        root / "demo-2",
        started="2026-01-02T10:00:00.000+00:00",
        complete=False,
        incomplete_reason="interrupted",
    )
    write_meta(root / "future", format_version=FORMAT_VERSION + 1)
    (root / "not-a-run").mkdir()
    return root


def test_list_runs(tmp_path: Path) -> None:
    runs, problems = list_runs(make_root(tmp_path))
    assert [r.name for r in runs] == ["demo-1", "demo-2"]
    assert [r.complete for r in runs] == [True, False]
    assert runs[1].reason == "interrupted"
    assert runs[0].protocols == ["tcp", "udp"]
    assert runs[0].loss_pct["tcp"] == 0
    assert runs[0].loss_pct["udp"] == pytest.approx(100 * 18 / 300)
    assert "udp loss 6.00%" in runs[0].summary
    assert len(problems) == 1 and "newer" in problems[0]


def test_cli_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_root(tmp_path)
    assert run_cli(["list", "--results", str(root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in data["runs"]] == ["demo-1", "demo-2"]
    assert data["runs"][1]["complete"] is False
    assert run_cli(["list", "--results", str(root)]) == 0
    captured = capsys.readouterr()
    assert "demo-1" in captured.out and "interrupted" in captured.out
    assert "skipped" in captured.err
    with pytest.raises(ResultsError, match="no such results folder"):
        run_cli(["list", "--results", str(tmp_path / "missing")])


def test_compare_runs(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b")
    summary = load_run(b).summary
    summary.loc[summary["protocol"] == "udp", "goodput_bps"] = 2.85e6
    summary.to_csv(b / "summary.csv", index=False)
    diff = compare_runs(a, b)
    cells = {
        (str(r["protocol"]), str(r["metric"])): (r["diff"], r["rel_pct"])
        for r in diff.to_dict(orient="records")
    }
    assert cells[("udp", "goodput_bps")] == (pytest.approx(0.95e6), pytest.approx(50.0))
    change, relative = cells[("tcp", "loss_pct")]
    assert change == 0
    assert relative is None or math.isnan(float(relative))  # relative to 0: undefined
    assert ("tcp", "accounting_closes") not in cells  # a boolean
    assert ("tcp", "rtt_p50_ms") in cells  # numeric, all empty


def test_cli_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make_run(tmp_path / "run-a")
    b = make_run(tmp_path / "run-b")
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    assert run_cli(["compare", str(a), str(b)]) == 0
    captured = capsys.readouterr()
    assert "goodput_bps" in captured.out and "B - A" in captured.out
    assert "differ" not in captured.err, "same settings: no warning"
    assert not list(b.glob("compare-*")), "nothing is written into a run's folder"
    written = pd.read_csv(here / "compare-run-a-run-b.csv")
    assert list(written.columns) == ["protocol", "metric", "a", "b", "diff", "rel_pct"]
    target = tmp_path / "diff.csv"
    assert run_cli(["compare", str(a), str(b), "--json", "--output", str(target)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["csv"] == str(target) and target.exists()
    assert any(r["metric"] == "loss_pct" and r["rel_pct"] is None for r in data["rows"])


def test_compare_refuses_bad_input(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", protocols=("tcp",))
    b = make_run(tmp_path / "b", protocols=("udp",))
    with pytest.raises(ResultsError, match="no protocol in common"):
        compare_runs(a, b)
    c = make_run(tmp_path / "c", complete=False)
    with pytest.raises(ResultsError, match="incomplete"):
        compare_runs(a, c)
    (a / "summary.csv").unlink()
    with pytest.raises(ResultsError, match=r"no summary\.csv"):
        compare_runs(a, c, allow_incomplete=True)
    with pytest.raises(ResultsError, match="no such results folder"):
        run_cli(["compare", str(tmp_path / "x"), str(b)])


# --- the sweep page ----------------------------------------------------------------------------


def make_sweep(folder: Path, parameter: str = "impairment.loss", **meta: Any) -> Path:
    """sweep.csv as the sweep runner writes it: 4 values x 3 repetitions x TCP and UDP."""
    write_meta(folder, kind="sweep", scenario="loss-sweep", **meta)
    rows = []
    for value in (0.0, 1.0, 2.0, 5.0):
        for repetition in range(3):
            run = f"runs/loss-sweep-loss={value:g}-r{repetition}"
            for protocol in ("tcp", "udp"):
                p = value / 100
                goodput = (
                    (min(8e6, 0.5 * mathis_bps(1448, 20, p)) if p else 8e6)
                    if protocol == "tcp"
                    else 8e6 * (1 - p)
                )
                rows.append(
                    {
                        "parameter": parameter,
                        "value": value,
                        "repetition": repetition,
                        "protocol": protocol,
                        "sent": 1000,
                        "delivered": 1000
                        if protocol == "tcp"
                        else 1000 - int(10 * value) - repetition,
                        "loss_pct": 0.0 if protocol == "tcp" else value,
                        "out_of_order": repetition,
                        "owd_p99_ms": 10 + value * (5 if protocol == "tcp" else 0.1) + repetition,
                        "goodput_bps": goodput * (1 + 0.05 * (repetition - 1)),
                        "run": run,
                        "base_rtt_ms": 20.0,
                        "mss_bytes": 1448,
                        "tcp_retransmissions": 12 * value + repetition
                        if protocol == "tcp"
                        else None,
                    }
                )
    pd.DataFrame(rows).to_csv(folder / "sweep.csv", index=False)
    report = folder / "runs" / "loss-sweep-loss=1-r0" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html></html>")
    return folder


def test_t_quantiles_and_ci() -> None:
    assert t_quantile(1) == pytest.approx(12.706)
    assert t_quantile(2) == pytest.approx(4.303)
    assert t_quantile(35) == pytest.approx(2.042)  # the smaller tabulated dof: wider, safe
    assert t_quantile(1000) == pytest.approx(1.96)
    assert math.isnan(t_quantile(0))
    tidy = pd.DataFrame({"protocol": "tcp", "value": 1.0, "x": [1.0, 2.0, 3.0]})
    stats = mean_ci(tidy, "x").iloc[0]
    assert stats["n"] == 3 and stats["mean"] == pytest.approx(2.0)
    assert stats["half"] == pytest.approx(4.303 * 1.0 / math.sqrt(3))


def test_mathis_model() -> None:
    # MSS 1448 B, RTT 20 ms, p = 1 %: 1448 * 8 / 0.02 * 1.2247 / 0.1 = 7.09 Mbit/s
    assert mathis_bps(1448, 20, 0.01) == pytest.approx(7.093e6, rel=1e-3)
    assert math.isnan(mathis_bps(1448, 20, 0))
    assert math.isnan(mathis_bps(1448, 0, 0.01))


def test_render_sweep(tmp_path: Path) -> None:
    folder = make_sweep(tmp_path / "loss-sweep")
    page = render_sweep(folder)
    assert page == folder / "sweep.html"
    html = page.read_text()
    for title in (
        "Delivery ratio (delivered / sent)",
        "One-way delay p99 (ms)",
        "Goodput (Mbit/s)",
        "Reordering ratio (out of order / delivered)",
        "TCP retransmitted segments",
    ):
        assert f"<h3>{title}</h3>" in html
    for name in ("Mathis", "CUBIC", "PFTK"):
        assert f"{name} model (TCP)" in html  # the curve on the goodput figure
        assert f'<th class="">measured / {name}</th>' in html  # the ratio column
    # synthetic TCP goodput is half of Mathis at 1, 2 and 5 %; CUBIC is Reno-friendly there
    # (= Mathis); PFTK's ratios are checked by hand in test_sweep_model_table
    assert (
        "Measured TCP goodput is 0.50–0.50 × the Mathis model (median 0.50 ×, 3 loss value(s)); "
        "0.50–0.50 × the CUBIC model (median 0.50 ×, 3 loss value(s)); "
        "0.62–1.17 × the PFTK model (median 0.75 ×, 3 loss value(s))."
    ) in html
    assert "At loss 0 no model is defined" in html
    assert "T0 = RTT + 200 ms (Linux&#x27;s minimum RTO" in html
    for sentence in ("Mathis et al. (1997) assume", "The CUBIC model (RFC 9438", "PFTK (Padhye"):
        assert f"<li>{sentence}" in html
    assert "t(0.975, n−1)" in html
    assert '<a href="runs/loss-sweep-loss%3D1-r0/report.html">' in html
    assert '<a href="runs/loss-sweep-loss%3D2-r0/">' in html  # no report yet: the folder
    assert html.count("<script") == html.count("</script>")


def test_sweep_model_table(tmp_path: Path) -> None:
    tidy = read_sweep(make_sweep(tmp_path / "s"))
    table = model_table(tidy).set_index("loss %")
    assert list(table.index) == [0.0, 1.0, 2.0, 5.0]
    # loss 0: the measurement, no model
    assert table.loc[0.0, "measured Mbit/s (mean)"] == pytest.approx(8.0)
    assert table.loc[0.0, ["Mathis Mbit/s", "CUBIC Mbit/s", "PFTK Mbit/s"]].isna().all()
    assert table.loc[0.0, ["measured / Mathis", "measured / PFTK"]].isna().all()
    row = table.loc[2.0]
    # MSS 1448 B, RTT 20 ms, p = 0.02, T0 = 20 + 200 ms = 0.22 s, b = 1:
    #   Mathis: 1448 * 8 / 0.02 * 1.2247449 / sqrt(0.02) = 579200 * 8.660254 = 5.01602 Mbit/s
    #   PFTK:   0.02 * sqrt(2 * 0.02 / 3) = 0.0023094; 3 * sqrt(3 * 0.02 / 8) = 0.2598076;
    #           0.22 * 0.2598076 * 0.02 * (1 + 32 * 0.0004) = 0.0011578;
    #           1 / (0.0023094 + 0.0011578) = 288.418 pkt/s * 11584 bit = 3.34103 Mbit/s
    assert row["T0 ms"] == pytest.approx(220)
    assert row["Mathis Mbit/s"] == pytest.approx(5.01602, rel=1e-5)
    assert row["CUBIC Mbit/s"] == pytest.approx(5.01602, rel=1e-5)
    assert row["CUBIC region"] == "Reno-friendly"
    assert row["PFTK Mbit/s"] == pytest.approx(3.34103, rel=1e-5)
    measured = 0.5 * 5.01602  # the synthetic repetitions are 0.95, 1 and 1.05 x this
    assert row["measured Mbit/s (mean)"] == pytest.approx(measured, rel=1e-5)
    assert row["measured / Mathis"] == pytest.approx(0.5, rel=1e-5)
    assert row["measured / PFTK"] == pytest.approx(measured / 3.34103, rel=1e-5)


def test_sweep_models_with_measured_rto(tmp_path: Path) -> None:
    folder = make_sweep(tmp_path / "s")
    frame = load_run(folder).summary
    frame["rto_ms"] = 1000.0
    frame.to_csv(folder / "sweep.csv", index=False)
    table = model_table(read_sweep(folder)).set_index("loss %")
    # T0 = 1 s: 0.02 * sqrt(0.04 / 3) = 0.0023094; 1 * 0.2598076 * 0.02 * 1.0128 = 0.0052627
    #   1 / 0.0075721 = 132.064 pkt/s * 11584 bit = 1.52983 Mbit/s
    assert table.loc[2.0, "T0 ms"] == 1000
    assert table.loc[2.0, "PFTK Mbit/s"] == pytest.approx(1.52983, rel=1e-5)
    assert "the measured retransmission timeout" in render_sweep(folder).read_text()


@pytest.mark.parametrize("rtt", [None, 0.0])
def test_sweep_models_without_rtt(tmp_path: Path, rtt: float | None) -> None:
    # an older sweep.csv without base_rtt_ms, or a link without delay: the page says why
    folder = make_sweep(tmp_path / "s")
    frame = load_run(folder).summary
    if rtt is None:
        frame = frame.drop(columns=["base_rtt_ms"])
    else:
        frame["base_rtt_ms"] = rtt
    frame.to_csv(folder / "sweep.csv", index=False)
    html = render_sweep(folder).read_text()
    assert "No model at loss 1, 2, 5 %: sweep.csv has no usable base_rtt_ms" in html
    assert "not comparable with the PFTK model (no defined value)" in html
    assert "measured / CUBIC" in html  # the table is still there, with dashes
    assert "Mathis model (TCP)" not in html  # no curve from undefined inputs


def test_sweep_of_another_parameter_has_no_model(tmp_path: Path) -> None:
    folder = make_sweep(tmp_path / "s", parameter="impairment.reorder")
    html = render_sweep(folder).read_text()
    assert "Mathis" not in html and "PFTK" not in html and "CUBIC model" not in html
    assert "Against impairment.reorder" in html


def test_sweep_of_text_values(tmp_path: Path) -> None:
    # e.g. [sweep] congestion_control = ["cubic", "reno", "bbr"]: categories, in run order
    folder = make_sweep(tmp_path / "cc", parameter="congestion_control")
    tidy = load_run(folder).summary
    tidy = tidy.loc[tidy["value"] < 5].copy()
    tidy["value"] = tidy["value"].map({0.0: "cubic", 1.0: "reno", 2.0: "bbr"})
    tidy.to_csv(folder / "sweep.csv", index=False)
    html = render_sweep(folder).read_text()
    assert "congestion_control = cubic, reno, bbr" in html
    assert "Against congestion_control" in html and "Mathis" not in html
    (info,), problems = list_runs(tmp_path)
    assert problems == []
    assert info.summary == "congestion_control = cubic, reno, bbr (9 runs)"


def test_sweep_refuses_bad_input(tmp_path: Path) -> None:
    folder = make_sweep(tmp_path / "s", complete=False, incomplete_reason="interrupted")
    with pytest.raises(ResultsError, match="incomplete"):
        render_sweep(folder)
    assert "INCOMPLETE SWEEP" in render_sweep(folder, allow_incomplete=True).read_text()
    pd.DataFrame({"parameter": ["x"], "value": [1]}).to_csv(folder / "sweep.csv", index=False)
    with pytest.raises(ResultsError, match="missing column"):
        render_sweep(folder, allow_incomplete=True)
    with pytest.raises(ResultsError, match=r"no sweep\.csv"):
        render_sweep(tmp_path)


def test_cli_report_renders_a_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_sweep(tmp_path / "s")
    assert run_cli(["report", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "sweep"
    runs, _ = list_runs(tmp_path)
    assert runs[0].kind == "sweep" and "impairment.loss = 0, 1, 2, 5" in runs[0].summary


# --- in a real browser ----------------------------------------------------------------------


def chromium(page: Path, tmp_path: Path, screenshot: Path | None = None) -> tuple[str, str]:
    """Open ``page`` in headless Chromium: (the DOM after scripts ran, Chromium's log).

    With ``screenshot``, the same page load also writes the PNG: one launch, not two (a
    real run's report costs Chromium ~10 s of CPU to draw; the DOM and the picture are
    of the same drawing).
    """
    common = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1400,4000",
        "--virtual-time-budget=5000",
    ]
    url = page.resolve().as_uri()
    if screenshot is not None:
        common += ["--hide-scrollbars", f"--screenshot={screenshot}"]
    dom = subprocess.run(
        [*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    )
    if screenshot is not None:
        assert screenshot.is_file(), dom.stderr[-3000:]
    return dom.stdout, dom.stderr


def assert_rendered(dom: str, log: str, figures: int) -> None:
    assert dom.count('class="plot-container plotly"') == figures
    assert dom.count('class="main-svg"') >= 2 * figures  # plotly drew every figure
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    errors = [line for line in console if re.search(r"uncaught|error", line, re.IGNORECASE)]
    assert not errors, errors


needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")


@needs_chromium
def test_handmade_report_in_chromium(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "evil", description=EVIL, wire=True)
    page = render_report(folder)
    dom, log = chromium(page, tmp_path)
    assert_rendered(dom, log, page.read_text().count("Plotly.newPlot"))
    assert EVIL not in dom  # the description is text, not a script element
    assert "alert(1)" in dom


@needs_chromium
def test_sweep_page_in_chromium(tmp_path: Path) -> None:
    page = render_sweep(make_sweep(tmp_path / "s"))
    dom, log = chromium(page, tmp_path)
    assert_rendered(dom, log, page.read_text().count("Plotly.newPlot"))


@needs_chromium
@pytest.mark.requires_root
@pytest.mark.slow
def test_real_run_report_in_chromium(tmp_path: Path, no_leftover_namespaces: None) -> None:
    from lab.runner import run_scenario
    from lab.scenario import load_scenario

    scenario_file = write_scenario(
        tmp_path,
        'name = "report-check"\ndescription = "lossy, reordering link for the report test"\n'
        'seed = 5\nprotocols = ["tcp", "udp"]\n'
        "[workload]\ncount = 400\nsize = 256\nrate = 1000\n"
        "[impairment]\ndelay_ms = 5\nloss = 3\nreorder = 5\n" + QUICK_DRAIN,
    )
    # the page is drawn here, from the finished folder: the run need not draw it first
    outcome = run_scenario(
        load_scenario(scenario_file), scenario_file, tmp_path / "results", render=False
    )
    assert outcome.complete, outcome.failed
    page = render_report(outcome.path)
    html = page.read_text()
    assert page.stat().st_size < 8_000_000
    screenshot = tmp_path / "report.png"
    dom, log = chromium(page, tmp_path, screenshot)
    assert_rendered(dom, log, html.count("Plotly.newPlot"))
    assert screenshot.stat().st_size > 50_000  # a blank 1400x4000 PNG is a few kB
    assert ">report-check" in dom or "report-check" in dom
    if shutil.which("file"):
        kind = subprocess.run(
            ["file", str(screenshot)], capture_output=True, text=True, check=False
        ).stdout
        assert "PNG image data, 1400 x 4000" in kind


def test_compare_warns_when_the_runs_settings_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make_run(tmp_path / "a", count=300)
    b = make_run(tmp_path / "b", count=200)
    monkeypatch.chdir(tmp_path)
    assert run_cli(["compare", str(a), str(b)]) == 0
    err = capsys.readouterr().err
    assert "lab compare: the runs differ in workload.count (300 vs 200)" in err
