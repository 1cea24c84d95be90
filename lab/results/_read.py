"""Reading a results folder: meta.json checked, tables with one dtype rule, nothing followed.

A results folder may come from anywhere (a colleague's tarball, a shared drive):
every file is opened without following links, meta.json is size- and depth-checked
before it is walked, and tables are bounded by what the run's workload can write
(:mod:`lab.results._checks`). This is the only code that parses a results folder.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lab.errors import ResultsError, one_line
from lab.results._checks import (
    LARGEST,
    MAX_SCENARIO_BYTES,
    Workload,
    read_checked_table,
    too_deep,
    workload_of,
)
from lab.results._files import MAX_META_BYTES, MAX_META_DEPTH, nested_deeper_than, read_small_file
from lab.results._write import FORMAT_VERSION


def read_table(path: Path, workload: Workload = LARGEST) -> pd.DataFrame:
    """One results CSV, exact ``*_ns`` integers, checked against what ``workload`` can write.

    "" (a table with no header) is an empty frame; a missing, unreadable or impossible
    table is a ResultsError naming the file.
    """
    try:
        return read_checked_table(path, workload)
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except OSError as error:
        raise ResultsError(f"{path}: unreadable: {error.strerror or one_line(error)}") from None


def present(path: Path) -> bool:
    """Whether anything is at ``path`` (a link or a directory too: reading refuses those)."""
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


def read_meta(path: Path) -> dict[str, Any]:
    """meta.json of a results folder; refuses folders of a newer format.

    The fields readers act on (:data:`_META_TYPES`) must have their JSON type or be null.

    Size and nesting are checked before anything walks the data: a meta.json larger
    than :data:`MAX_META_BYTES` or nested deeper than :data:`MAX_META_DEPTH` is refused.
    """
    meta_path = path / "meta.json"
    too_deep = (
        f"{meta_path}: nested deeper than {MAX_META_DEPTH} levels: not a meta.json the lab wrote"
    )
    try:
        meta = json.loads(read_small_file(meta_path, MAX_META_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: not a results folder (no meta.json)") from None
    except RecursionError:
        raise ResultsError(too_deep) from None
    except (OSError, ValueError) as error:
        raise ResultsError(f"{meta_path}: unreadable: {error}") from None
    if nested_deeper_than(meta, MAX_META_DEPTH):
        raise ResultsError(too_deep)
    if not isinstance(meta, dict):
        raise ResultsError(f"{meta_path}: not a JSON object")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultsError(f"{meta_path}: format_version: must be a whole number >= 1")
    if version > FORMAT_VERSION:
        raise ResultsError(
            f"{meta_path}: format_version {version} is newer than this lab understands "
            f"({FORMAT_VERSION}); upgrade protolab"
        )
    for key, (kind, name) in _META_TYPES.items():
        value = meta.get(key)
        if value is not None and not isinstance(value, kind):
            raise ResultsError(
                f"{meta_path}: {key}: must be {name} or null, not {type(value).__name__}"
            )
    return dict(meta)


def read_scenario(folder: Path) -> tuple[dict[str, Any], str | None]:
    """The run's copy of its scenario file (data, text); a broken copy is text only.

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


#: Every table a run folder may hold, ``<name>.csv``, in the order a run writes them
#: (results/README.md documents each). A sweep folder holds ``sweep`` instead.
RUN_TABLES = (
    "messages",
    "exchanges",
    "impairment",
    "accounting",
    "impairment_by_protocol",
    "captures",
    "tcp_segments",
    "tcp_stats",
    "rtt_samples",
    "hol",
    "explained",
    "explained_summary",
    "timeseries",
    "flows",
    "flow_timeseries",
    "tcp_info",
    "probe",
    "summary",
)
SWEEP_TABLES = ("sweep",)
CAPTURE_DIR = "capture"
REPORT_PAGES = {"run": "report.html", "sweep": "sweep.html"}


def pcap_path(folder: Path, protocol: str, role: str) -> Path:
    """``capture/<protocol>-<client|server>.pcap`` in a results folder: the one rule."""
    return folder / CAPTURE_DIR / f"{protocol}-{role}.pcap"


@dataclass(frozen=True)
class Run:
    """A results folder, read: its meta.json, and its tables as DataFrames on demand.

    Tables load when first asked for (``run.summary``, ``run.table("hol")``), with the
    results' dtype rule (exact ``*_ns`` integers). Obtain one with :func:`load_run`.
    """

    path: Path
    meta: dict[str, Any]
    _cache: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False, compare=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """``"run"`` or ``"sweep"``."""
        return "sweep" if self.meta.get("kind") == "sweep" else "run"

    @property
    def complete(self) -> bool:
        """True only when the run finished and every file is there."""
        return self.meta.get("complete") is True

    @property
    def table_names(self) -> tuple[str, ...]:
        """The tables this folder holds."""
        names = SWEEP_TABLES if self.kind == "sweep" else RUN_TABLES
        return tuple(name for name in names if present(self.path / f"{name}.csv"))

    def table(self, name: str) -> pd.DataFrame:
        """``<name>.csv`` as a DataFrame; ResultsError if the folder has no such table.

        Checked against what the run's workload can write (a hostile or corrupted
        table is refused in one line), with the dtype rule (exact ``*_ns`` integers).
        """
        if name not in self._cache:
            path = self.path / f"{name}.csv"
            if name not in (*RUN_TABLES, *SWEEP_TABLES) or not present(path):
                have = ", ".join(self.table_names) or "none"
                raise ResultsError(f"{path}: no such table in this folder (it has: {have})")
            self._cache[name] = read_table(path, self.workload)
        return self._cache[name]

    def has_table(self, name: str) -> bool:
        """Whether the folder holds ``<name>.csv`` (something there: reading may refuse it)."""
        return present(self.path / f"{name}.csv")

    @property
    def scenario(self) -> dict[str, Any]:
        """The run's copy of its scenario file, parsed ({} when missing or broken)."""
        return self._scenario()[0]

    @property
    def scenario_text(self) -> str | None:
        """The run's copy of its scenario file as written (None when missing)."""
        return self._scenario()[1]

    @property
    def workload(self) -> Workload:
        """What the run's workload can write: the bound every table is checked against."""
        if "workload" not in self._memo:
            self._memo["workload"] = workload_of(
                self.scenario if self.scenario_text is not None else None, self.meta
            )
        workload: Workload = self._memo["workload"]
        return workload

    def _scenario(self) -> tuple[dict[str, Any], str | None]:
        if "scenario" not in self._memo:
            self._memo["scenario"] = read_scenario(self.path)
        scenario: tuple[dict[str, Any], str | None] = self._memo["scenario"]
        return scenario

    @property
    def summary(self) -> pd.DataFrame:
        """One row per protocol (summary.csv); a sweep's rows (sweep.csv) for a sweep."""
        return self.table("sweep" if self.kind == "sweep" else "summary")

    @property
    def messages(self) -> pd.DataFrame:
        """One row per message and protocol: send and receive times, delays."""
        return self.table("messages")

    @property
    def report_path(self) -> Path | None:
        """The folder's HTML page, if it was written."""
        page = self.path / REPORT_PAGES[self.kind]
        return page if page.is_file() else None

    def pcap(self, protocol: str, role: str) -> Path:
        """The capture of ``protocol`` at ``role`` ("client" or "server")."""
        return pcap_path(self.path, protocol, role)

    def runs(self) -> list[Run]:
        """A sweep's cells, each a Run (empty for a run)."""
        cells = self.path / "runs"
        if self.kind != "sweep" or not cells.is_dir():
            return []
        return [load_run(p) for p in sorted(cells.iterdir()) if (p / "meta.json").is_file()]


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read a results folder (a run or a sweep): meta.json checked, tables on demand.

    Refuses a folder of a newer format version than this lab understands. An incomplete
    run loads too (``run.complete`` says so, ``run.meta["incomplete_reason"]`` why).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ResultsError(f"{folder}: no such results folder")
    return Run(folder, read_meta(folder))
