"""A results folder as a page needs it, read through :mod:`lab.results` (its only reader).

Reports only render what the run wrote; a missing table is not an error here (the page
says "not available"), an unreadable one is (:class:`~lab.errors.ResultsError`), and so
is one that cannot be what a run wrote (size, rows, columns: :mod:`lab.results`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lab import results
from lab.errors import ResultsError
from lab.results import (
    Workload,
    is_file_safely,
    present,
    read_meta,
    read_scenario,
    read_table,
    run_workload,
)

__all__ = [
    "RUN_TABLES",
    "RunData",
    "Workload",
    "as_bool",
    "as_float",
    "check_complete",
    "distinct_values",
    "format_value",
    "is_file_safely",
    "load_run",
    "present",
    "read_meta",
    "read_scenario",
    "read_table",
    "run_workload",
    "sweep_values",
]

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
    "timeseries",
    "tcp_info",
    "probe",
    "flows",
    "flow_timeseries",
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


def check_complete(folder: Path, meta: dict[str, Any], allow_incomplete: bool) -> None:
    if meta.get("complete") is True or allow_incomplete:
        return
    reason = meta.get("incomplete_reason") or "it did not finish"
    raise ResultsError(
        f"{folder}: run is incomplete ({reason}); use --allow-incomplete to render it anyway"
    )


def load_run(folder: Path, *, allow_incomplete: bool = False) -> RunData:
    """Read a run folder; refuses newer formats, sweeps and (unless allowed) incomplete runs."""
    run = results.load_run(folder)
    if run.kind == "sweep":
        raise ResultsError(f"{folder}: a sweep folder, not a run: render it with render_sweep")
    check_complete(folder, run.meta, allow_incomplete)
    tables = {name: run.table(name) for name in RUN_TABLES if run.has_table(name)}
    return RunData(folder, run.meta, run.scenario, run.scenario_text, tables)


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
