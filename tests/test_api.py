"""The Python API (``import lab``): what a notebook uses, typed and documented."""

from __future__ import annotations

import json
import pydoc
import subprocess
import sys
from pathlib import Path

import pytest

import lab
from tests.conftest import PROJECT_ROOT

SCRIPT = """\
from pathlib import Path

import pandas as pd

import lab


def delays(folder: Path) -> pd.Series:
    run: lab.Run = lab.load_run(folder)
    tcp = run.messages[run.messages["protocol"] == "tcp"]
    return tcp["owd_ns"] / 1e6


def fresh() -> lab.Run:
    scenario: lab.Scenario = lab.load_scenario("scenarios/quickstart.toml")
    try:
        return lab.run(scenario, results="results")
    except lab.LabError as error:
        raise SystemExit(str(error)) from None


def differ(a: lab.Run, b: Path) -> pd.DataFrame:
    return lab.compare(a, b)


def retransmissions(capture: Path) -> int:
    flows: pd.DataFrame = lab.analyze_pcap(capture).flows
    return int(flows["retransmissions"].fillna(0).sum())


page: Path | None = fresh().report_path
"""


def test_help_lists_the_public_api_with_docstrings() -> None:
    text = pydoc.render_doc(lab, renderer=pydoc.plaintext)
    names = ("run(", "load_run(", "load_scenario(", "compare(", "sniff(", "analyze_pcap(")
    for name in (*names, "class Run"):
        assert name in text, name
    assert "Run a scenario (a file, or a :class:`Scenario` already loaded)" in text
    assert set(lab.__all__) <= set(dir(lab))


def test_a_script_using_the_api_passes_mypy_strict(tmp_path: Path) -> None:
    script = tmp_path / "notebook_like.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(script)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_load_run_refuses_a_newer_format_and_a_missing_table(tmp_path: Path) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(lab.ResultsError, match="newer than this lab understands"):
        lab.load_run(folder)
    (folder / "meta.json").write_text(json.dumps({"format_version": 1, "complete": False}))
    run = lab.load_run(folder)
    assert not run.complete and run.report_path is None and run.table_names == ()
    with pytest.raises(lab.ResultsError, match="no such table"):
        _ = run.summary


@pytest.mark.requires_root
@pytest.mark.slow
def test_run_load_and_compare_from_python(tmp_path: Path) -> None:
    scenario = lab.load_scenario(PROJECT_ROOT / "scenarios" / "quickstart.toml")
    small = scenario.model_copy(
        update={"workload": scenario.workload.model_copy(update={"count": 200})}
    )
    run = lab.run(small, results=tmp_path)
    assert run.complete and run.kind == "run"
    assert set(run.summary["protocol"]) == {"tcp", "udp"}
    assert str(run.messages["t_recv_ns"].dtype) == "Int64", "exact nanoseconds"
    assert run.report_path is not None and run.report_path.name == "report.html"
    assert run.pcap("tcp", "client").is_file()
    again = lab.load_run(run.path)
    assert again.meta == run.meta and "summary" in again.table_names
    diff = lab.compare(run, again.path)
    assert (diff["diff"].fillna(0) == 0).all()
    assert "# built in Python" in (run.path / "scenario.toml").read_text()


def test_analyze_pcap_is_lab_analyze(tmp_path: Path) -> None:
    """The same flows as ``lab analyze --json``, for any capture."""
    from tests.test_analyze import mixed_capture

    capture = mixed_capture(tmp_path)
    report = lab.analyze_pcap(str(capture))
    done = subprocess.run(
        [sys.executable, "-m", "lab", "analyze", "--json", "--top", "0", str(capture)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    printed = json.loads(done.stdout)
    assert printed["flows_total"] == len(report.flows) > 0
    assert printed["flows"] == json.loads(json.dumps(report.rows()))
    with pytest.raises(lab.AnalysisError):
        lab.analyze_pcap(tmp_path / "missing.pcap")
