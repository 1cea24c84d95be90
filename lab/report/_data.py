"""Reading a results folder for display: meta.json, scenario.toml and whichever CSVs exist.

Reports only render what the run wrote; a missing table is not an error here (the page
says "not available"), an unreadable one is (:class:`~lab.errors.ResultsError`), and so
is one that cannot be what a run wrote (:mod:`lab.report._checks`: size, rows, columns).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lab.errors import ResultsError
from lab.report._checks import (
    LARGEST,
    MAX_SCENARIO_BYTES,
    Workload,
    one_line,
    read_checked_table,
    too_deep,
    workload_of,
)
from lab.results import read_meta, read_small_file

#: The tables a run report reads; ``impairment.csv`` (one row per packet) is not needed.
RUN_TABLES = (
    "summary",
    "messages",
    "exchanges",
    "accounting",
    "impairment_by_protocol",
    "captures",
    "tcp_segments",
    "tcp_stats",
    "hol",
)


@dataclass(frozen=True)
class RunData:
    """Everything a run report shows, as read from disk."""

    folder: Path
    meta: dict[str, Any]
    scenario: dict[str, Any]
    scenario_text: str | None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.meta.get("complete") is True

    def table(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)

    @property
    def protocols(self) -> list[str]:
        """Protocols in run order: summary.csv first, then messages.csv, then the scenario."""
        for name in ("summary", "messages"):
            frame = self.tables.get(name)
            if frame is not None and "protocol" in frame:
                return [str(p) for p in pd.unique(frame["protocol"].dropna())]
        declared = self.scenario.get("protocols", ["tcp", "udp"])
        return [str(p) for p in declared] if isinstance(declared, list) else []


def read_table(path: Path, workload: Workload = LARGEST) -> pd.DataFrame:
    """One CSV, checked against what ``workload`` can produce; else a ResultsError naming it."""
    try:
        return read_checked_table(path, workload)
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except OSError as error:
        raise ResultsError(f"{path}: unreadable: {error.strerror or one_line(error)}") from None


def present(path: Path) -> bool:
    """Whether anything is at ``path`` (a link or a directory too: those are refused)."""
    try:
        os.lstat(path)
    except OSError:
        return False
    return True


def is_file_safely(path: Path) -> bool:
    """``path.is_file()`` for a path built from data: a name too long or with a NUL is no file."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


#: Fields of meta.json that readers act on, and the JSON type each must have (or null).
_META_TYPES: dict[str, tuple[type, str]] = {
    "scenario": (str, "a string"),
    "started": (str, "a string"),
    "ended": (str, "a string"),
    "incomplete_reason": (str, "a string"),
    "kind": (str, "a string"),
    "complete": (bool, "true or false"),
}


def read_run_meta(folder: Path) -> dict[str, Any]:
    """meta.json (:func:`lab.results.read_meta`), with the fields readers use type-checked."""
    meta = read_meta(folder)
    for key, (kind, name) in _META_TYPES.items():
        value = meta.get(key)
        if value is not None and not isinstance(value, kind):
            raise ResultsError(
                f"{folder / 'meta.json'}: {key}: must be {name} or null, not {type(value).__name__}"
            )
    return meta


def read_scenario(folder: Path) -> tuple[dict[str, Any], str | None]:
    """The run's copy of its scenario file; a broken copy is shown as text, not refused.

    A copy that cannot be one (a link, a directory, larger than any scenario) is refused.
    """
    path = folder / "scenario.toml"
    try:
        text = read_small_file(path, MAX_SCENARIO_BYTES).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return {}, None
    except OSError as error:
        raise ResultsError(f"{path}: unreadable: {error.strerror or one_line(error)}") from None
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return {}, text
    return ({}, text) if too_deep(data) else (data, text)


def run_workload(folder: Path, meta: dict[str, Any]) -> tuple[dict[str, Any], str | None, Workload]:
    """scenario.toml (data and text) and the workload that bounds the folder's tables."""
    scenario, text = read_scenario(folder)
    return scenario, text, workload_of(scenario if text is not None else None, meta)


def check_complete(folder: Path, meta: dict[str, Any], allow_incomplete: bool) -> None:
    if meta.get("complete") is True or allow_incomplete:
        return
    reason = meta.get("incomplete_reason") or "it did not finish"
    raise ResultsError(
        f"{folder}: run is incomplete ({reason}); use --allow-incomplete to render it anyway"
    )


def load_run(folder: Path, *, allow_incomplete: bool = False) -> RunData:
    """Read a run folder; refuses newer formats, sweeps and (unless allowed) incomplete runs."""
    if not folder.is_dir():
        raise ResultsError(f"{folder}: no such results folder")
    meta = read_run_meta(folder)
    if meta.get("kind") == "sweep":
        raise ResultsError(f"{folder}: a sweep folder, not a run: render it with render_sweep")
    check_complete(folder, meta, allow_incomplete)
    scenario, text, workload = run_workload(folder, meta)
    tables = {
        name: read_table(folder / f"{name}.csv", workload)
        for name in RUN_TABLES
        if present(folder / f"{name}.csv")
    }
    return RunData(folder, meta, scenario, text, tables)


def as_bool(series: pd.Series) -> pd.Series:
    """CSV booleans (True/False, 1/0, empty) as a plain bool Series; empty is False."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype(bool)
    text = series.astype("string").str.strip().str.lower()
    return text.isin(["true", "1", "1.0", "yes"]).fillna(False).astype(bool)


def as_float(series: pd.Series) -> pd.Series:
    """Numbers with empty cells as NaN, whatever dtype pandas guessed."""
    return pd.to_numeric(series, errors="coerce").astype(float)


def sweep_values(series: pd.Series) -> pd.Series:
    """A sweep's values: numbers when every value is one, else text (cubic, bbr, True).

    Numbers sort and plot on a numeric axis; text keeps the order the sweep ran in.
    """
    present = series.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if len(present) and numbers.notna().all():
        return pd.to_numeric(series, errors="coerce").astype(float)
    return series.astype("string").astype(object)


def format_value(value: object) -> str:
    """A sweep value for titles and tables: 5 not 5.0, text as written."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def distinct_values(series: pd.Series) -> list[object]:
    """The distinct sweep values, sorted when numeric, in run order when text."""
    values = list(pd.unique(series.dropna()))
    if all(isinstance(v, float) for v in values):
        return sorted(values, key=lambda v: float(str(v)))
    return values
