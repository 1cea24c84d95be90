"""Results folders: what is written, and what is refused before anything is (no root needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import lab.testbed
from lab.errors import PrivilegeError, ResultsError
from lab.report.listing import list_runs
from lab.results import FORMAT_VERSION, RunFolder, read_meta
from lab.runner import run_scenario
from lab.scenario import load_scenario
from tests.conftest import write_scenario


def _scenario(tmp_path: Path) -> Path:
    return write_scenario(tmp_path, 'name = "r"\n')


def test_without_root_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab.testbed._netns.os, "geteuid", lambda: 1000)
    path = _scenario(tmp_path)
    with pytest.raises(PrivilegeError, match="needs root"):
        run_scenario(load_scenario(path), path, tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_unusable_results_root_is_one_clear_error(tmp_path: Path) -> None:
    path = _scenario(tmp_path)
    occupied = tmp_path / "afile"
    occupied.write_text("not a folder")
    with pytest.raises(ResultsError, match=r"afile: cannot create the results folder"):
        RunFolder.create(occupied, "r", path, 1)
    with pytest.raises(ResultsError, match=r"cannot copy the scenario in"):
        RunFolder.create(tmp_path / "results", "r", tmp_path / "missing.toml", 1)
    assert not (tmp_path / "results").exists()  # the scenario is read before anything is made


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ([], "not a JSON object"),
        (None, "not a JSON object"),
        ({"format_version": "1"}, "format_version: must be a whole number >= 1"),
        ({"format_version": True}, "format_version: must be a whole number >= 1"),
        ({"format_version": FORMAT_VERSION + 1}, "is newer than this lab understands"),
    ],
)
def test_bad_meta_json_is_refused(tmp_path: Path, meta: object, message: str) -> None:
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ResultsError, match=message):
        read_meta(tmp_path)


def test_one_bad_folder_does_not_stop_lab_list(tmp_path: Path) -> None:
    good = RunFolder.create(tmp_path / "results", "good", _scenario(tmp_path), 1)
    good.finish()
    bad = tmp_path / "results" / "bad"
    bad.mkdir()
    (bad / "meta.json").write_text("[]")
    runs, problems = list_runs(tmp_path / "results")
    assert [r.name for r in runs] == [good.path.name]
    assert len(problems) == 1 and "not a JSON object" in problems[0]


def test_ns_columns_read_back_exact_with_gaps(tmp_path: Path) -> None:
    """A lost message leaves t_recv_ns empty; the others must not round to 256 ns."""
    from lab.results import read_table

    exact = [1_796_177_413_772_978_721, 1_796_177_413_772_978_723]
    path = tmp_path / "delays.csv"  # a table of no fixed layout: only the dtype rule
    path.write_text(f"seq,t_recv_ns,owd_ms\n0,{exact[0]},1.5\n1,,\n2,{exact[1]},2.5\n")
    table = read_table(path)
    assert str(table["t_recv_ns"].dtype) == "Int64"
    assert table["t_recv_ns"].isna().tolist() == [False, True, False]
    assert [int(v) for v in table["t_recv_ns"].dropna()] == exact
    assert table["owd_ms"].dtype == float, "only *_ns columns change"
    assert float(pd.read_csv(path)["t_recv_ns"][0]) != exact[0], "float64 would round it"
