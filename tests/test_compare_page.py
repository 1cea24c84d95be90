"""``lab compare``'s page: both runs' time series overlaid, written beside the CSV."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lab.analysis.timeseries import timeseries
from lab.cli import build_parser
from lab.results import load_run
from tests.test_report import make_run


def run_cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.handler(args)
    return status


def with_timeseries(folder: Path) -> Path:
    timeseries(load_run(folder).messages, 50).to_csv(folder / "timeseries.csv", index=False)
    return folder


def plotted(page: str) -> list[list[dict[str, object]]]:
    """The traces of each plotly figure on the page, y values decoded."""
    figures = []
    for data in re.findall(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\]),\s*\{", page, re.S):
        traces = json.loads(data)
        for trace in traces:
            y = trace.get("y")
            if isinstance(y, dict):  # plotly 6: typed arrays as base64
                trace["y"] = np.frombuffer(base64.b64decode(y["bdata"]), y["dtype"]).tolist()
        figures.append(traces)
    return figures


def test_the_page_overlays_both_runs_per_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a = with_timeseries(make_run(tmp_path / "run-a"))
    b = with_timeseries(make_run(tmp_path / "run-b", count=200))
    monkeypatch.chdir(tmp_path)
    assert run_cli(["compare", str(a), str(b), "--json", "--output", "d.csv"]) == 0
    document = json.loads(capsys.readouterr().out)
    page = Path(document["page"])
    assert page == Path("d.html") and page.is_file()
    goodput, delay = plotted(page.read_text())[:2]
    assert {str(t["name"]) for t in goodput} == {"TCP A", "TCP B", "UDP A", "UDP B"}
    series = load_run(b).table("timeseries")
    udp_b = series.loc[series["protocol"] == "udp"]
    drawn = {str(t["name"]): t for t in goodput}["UDP B"]
    assert drawn["y"] == pytest.approx(list(udp_b["throughput_bps"] / 1e6))
    drawn = {str(t["name"]): t for t in delay}["UDP B"]
    assert drawn["y"] == pytest.approx(list(udp_b["owd_p50_ms"]), nan_ok=True)


def test_a_run_without_time_series_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make_run(tmp_path / "run-a")  # as a format-1 run: no timeseries.csv
    b = with_timeseries(make_run(tmp_path / "run-b"))
    monkeypatch.chdir(tmp_path)
    assert run_cli(["compare", str(a), str(b)]) == 0
    page = (tmp_path / "compare-run-a-run-b.html").read_text()
    assert "Run A has no timeseries.csv" in page and "Run B has no" not in page
