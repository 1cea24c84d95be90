"""What ``lab list`` and ``lab compare`` show: past runs, and two runs' summaries side by side."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lab.errors import ResultsError, one_line
from lab.report._data import (
    distinct_values,
    format_value,
    present,
    read_meta,
    read_table,
    run_workload,
    sweep_values,
)


@dataclass(frozen=True)
class RunInfo:
    """One line of ``lab list``."""

    name: str
    path: str
    kind: str  # "run" or "sweep"
    scenario: str
    started: str | None
    complete: bool
    reason: str | None
    protocols: list[str] = field(default_factory=list)
    loss_pct: dict[str, float | None] = field(default_factory=dict)
    summary: str = ""
    report: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _loss_line(summary: pd.DataFrame) -> tuple[list[str], dict[str, float | None], str]:
    protocols = [str(p) for p in summary["protocol"]] if "protocol" in summary else []
    losses: dict[str, float | None] = {}
    parts = []
    for index, protocol in enumerate(protocols):
        loss = _number(summary["loss_pct"].iloc[index]) if "loss_pct" in summary else None
        losses[protocol] = loss
        text = f"{protocol} loss {loss:.2f}%" if loss is not None else f"{protocol} loss ?"
        if "owd_p99_ms" in summary:
            p99 = _number(summary["owd_p99_ms"].iloc[index])
            text += f", p99 {p99:.1f} ms" if p99 is not None else ""
        parts.append(text)
    return protocols, losses, "; ".join(parts)


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def run_info(folder: Path) -> RunInfo:
    """Describe one results folder; a folder of a newer format raises ResultsError."""
    meta = read_meta(folder)
    kind = "sweep" if meta.get("kind") == "sweep" else "run"
    scenario, _, workload = run_workload(folder, meta)
    declared = scenario.get("protocols", [])
    protocols = [str(p) for p in declared] if isinstance(declared, list) else []
    losses: dict[str, float | None] = {}
    line = ""
    if kind == "sweep" and present(folder / "sweep.csv"):
        sweep = read_table(folder / "sweep.csv", workload)
        if "protocol" in sweep:
            protocols = [str(p) for p in pd.unique(sweep["protocol"])]
        if {"parameter", "value"} <= set(sweep.columns) and not sweep.empty:
            values = distinct_values(sweep_values(sweep["value"]))
            line = (
                f"{sweep['parameter'].iloc[0]} = {', '.join(format_value(v) for v in values)}"
                f" ({sweep[['value', 'repetition']].drop_duplicates().shape[0]} runs)"
                if "repetition" in sweep
                else f"{sweep['parameter'].iloc[0]}: {len(values)} values"
            )
    elif present(folder / "summary.csv"):
        protocols, losses, line = _loss_line(read_table(folder / "summary.csv", workload))
    page = folder / ("sweep.html" if kind == "sweep" else "report.html")
    return RunInfo(
        name=folder.name,
        path=str(folder),
        kind=kind,
        scenario=str(meta.get("scenario") or scenario.get("name") or "?"),
        started=meta.get("started"),
        complete=meta.get("complete") is True,
        reason=meta.get("incomplete_reason"),
        protocols=protocols,
        loss_pct=losses,
        summary=line or ("no summary" if kind == "run" else ""),
        report=str(page) if page.is_file() else None,
    )


def list_runs(root: Path) -> tuple[list[RunInfo], list[str]]:
    """Runs under ``root`` (oldest first) and one warning per folder that could not be read."""
    if not root.is_dir():
        raise ResultsError(f"{root}: no such results folder")
    runs: list[RunInfo] = []
    problems: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not (folder / "meta.json").is_file():
            continue
        try:
            runs.append(run_info(folder))
        except ResultsError as error:
            problems.append(one_line(error))
        except OSError as error:  # e.g. a folder it may not read
            problems.append(f"{folder}: unreadable: {error.strerror or one_line(error)}")
    runs.sort(key=lambda r: (r.started or "", r.name))
    return runs, problems


def _summary_of(folder: Path, allow_incomplete: bool) -> pd.DataFrame:
    meta = read_meta(folder)
    if meta.get("complete") is not True and not allow_incomplete:
        reason = meta.get("incomplete_reason") or "it did not finish"
        raise ResultsError(
            f"{folder}: run is incomplete ({reason}); use --allow-incomplete to compare anyway"
        )
    path = folder / "summary.csv"
    if not present(path):
        raise ResultsError(f"{folder}: no summary.csv to compare")
    summary = read_table(path, run_workload(folder, meta)[2])
    if "protocol" not in summary:
        raise ResultsError(f"{path}: no protocol column")
    return summary.assign(protocol=summary["protocol"].astype(str)).set_index("protocol")


def numeric_columns(summary: pd.DataFrame) -> list[str]:
    """summary.csv columns that hold numbers (booleans such as accounting_closes excluded)."""
    return [
        c
        for c in summary.columns
        if pd.api.types.is_numeric_dtype(summary[c]) and not pd.api.types.is_bool_dtype(summary[c])
    ]


def compare_runs(run_a: Path, run_b: Path, *, allow_incomplete: bool = False) -> pd.DataFrame:
    """One row per protocol and numeric summary column: a, b, b - a and the relative change.

    Only protocols present in both runs are compared; ``rel_pct`` is empty when a is 0.
    """
    a = _summary_of(run_a, allow_incomplete)
    b = _summary_of(run_b, allow_incomplete)
    protocols = [p for p in a.index if p in b.index]
    if not protocols:
        raise ResultsError(
            f"{run_a.name} ({', '.join(a.index)}) and {run_b.name} ({', '.join(b.index)}) "
            "have no protocol in common"
        )
    columns = [c for c in numeric_columns(a) if c in set(numeric_columns(b))]
    rows = []
    for protocol in protocols:
        for column in columns:
            value_a = _number(a.at[protocol, column])
            value_b = _number(b.at[protocol, column])
            diff = value_b - value_a if value_a is not None and value_b is not None else None
            rel = 100 * diff / abs(value_a) if diff is not None and value_a else None
            rows.append(
                {
                    "protocol": protocol,
                    "metric": column,
                    "a": value_a,
                    "b": value_b,
                    "diff": diff,
                    "rel_pct": rel,
                }
            )
    return pd.DataFrame(rows, columns=["protocol", "metric", "a", "b", "diff", "rel_pct"])


def setting_differences(run_a: Path, run_b: Path) -> list[str]:
    """Workload and impairment settings that differ between two runs' scenario files,
    as ``name (A vs B)``: a comparison across them mixes the workload's effect with the
    link's. Empty when a scenario file is missing or unreadable (nothing to say)."""
    from lab.report._data import read_scenario  # noqa: PLC0415

    first, second = read_scenario(run_a)[0], read_scenario(run_b)[0]
    if not first or not second:
        return []
    found = []
    for table in ("workload", "impairment", "protocols", "congestion_control", "nagle"):
        a, b = _flat(table, first.get(table)), _flat(table, second.get(table))
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                found.append(f"{key} ({_shown(a.get(key))} vs {_shown(b.get(key))})")
    return found


def _flat(prefix: str, value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        return {prefix: value} if value is not None else {}
    out: dict[str, object] = {}
    for key, inner in value.items():
        out.update(_flat(f"{prefix}.{key}", inner))
    return out


def _shown(value: object) -> str:
    return "unset" if value is None else repr(value)
