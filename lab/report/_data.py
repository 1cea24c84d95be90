"""Reading a results folder for display: meta.json, scenario.toml and whichever CSVs exist.

Reports only render what the run wrote; a missing table is not an error here (the page
says "not available"), an unreadable one is (:class:`~lab.errors.ResultsError`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lab.errors import ResultsError
from lab.results import read_meta
from lab.results import read_table as read_results_table

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


def read_table(path: Path) -> pd.DataFrame:
    """One CSV; an unreadable file is a ResultsError naming it."""
    try:
        return read_results_table(path)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ResultsError(f"{path}: unreadable CSV: {error}") from None


def read_scenario(folder: Path) -> tuple[dict[str, Any], str | None]:
    """The run's copy of its scenario file; a broken copy is shown as text, not refused."""
    path = folder / "scenario.toml"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}, None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError:
        return {}, text


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
    meta = read_meta(folder)
    if meta.get("kind") == "sweep":
        raise ResultsError(f"{folder}: a sweep folder, not a run: render it with render_sweep")
    check_complete(folder, meta, allow_incomplete)
    scenario, text = read_scenario(folder)
    tables = {
        name: read_table(folder / f"{name}.csv")
        for name in RUN_TABLES
        if (folder / f"{name}.csv").is_file()
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
