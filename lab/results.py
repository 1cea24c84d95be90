"""Results folders: ``results/<scenario>-<UTC time>/``, written so a half run never passes as done.

The folder is created when a run starts with ``meta.json`` saying ``complete: false``;
tables are written as they are ready; only the last step sets ``complete: true``. A
run that fails or is interrupted keeps its folder (for the post-mortem) but stays
marked incomplete, and readers (``lab report``, ``lab list``) say so.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from lab._version import __version__
from lab.errors import ResultsError

#: Version of the results format (files, columns, units); see results/README.md.
FORMAT_VERSION = 1
DEFAULT_ROOT = Path("results")
_PACKAGES = ("protolab", "scapy", "pandas", "numpy", "pydantic", "pyroute2", "rich", "plotly")


def _utc_stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y%m%dT%H%M%SZ")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def environment() -> dict[str, Any]:
    """What the numbers depend on: kernel, Python, package versions."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "packages": versions,
    }


@dataclass
class RunFolder:
    """One run's folder, open for writing."""

    path: Path
    meta: dict[str, Any]

    @classmethod
    def create(
        cls,
        root: Path,
        scenario_name: str,
        scenario_file: Path,
        seed: int,
        *,
        scenario_text: str | None = None,
    ) -> RunFolder:
        """Make the folder, copy the scenario in and write an incomplete meta.json.

        ``scenario_text`` replaces the copy where the file is not what ran (a sweep
        cell runs its own resolved scenario).
        """
        started = time.time()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            message = f"{root}: cannot create the results folder: {error.strerror}"
            raise ResultsError(message) from None
        base = f"{scenario_name}-{_utc_stamp(started)}"
        path = root / base
        suffix = 1
        while True:
            try:
                path.mkdir()
                break
            except FileExistsError:
                suffix += 1
                path = root / f"{base}-{suffix}"
            except OSError as error:
                message = f"{path}: cannot create the run folder: {error.strerror}"
                raise ResultsError(message) from None
        try:
            if scenario_text is None:
                shutil.copyfile(scenario_file, path / "scenario.toml")
            else:
                (path / "scenario.toml").write_text(scenario_text, encoding="utf-8")
        except OSError as error:
            shutil.rmtree(path, ignore_errors=True)  # nothing half-made is left behind
            raise ResultsError(f"{path}: cannot copy the scenario in: {error.strerror}") from None
        meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "lab_version": __version__,
            "scenario": scenario_name,
            "seed": seed,
            "started": _iso(started),
            "ended": None,
            "complete": False,
            **environment(),
        }
        folder = cls(path, meta)
        folder.save_meta()
        _chown_to_invoking_user(path)
        return folder

    def save_meta(self) -> None:
        write_json(self.path / "meta.json", self.meta)

    def write_table(self, name: str, frame: pd.DataFrame) -> Path:
        """Write ``name``.csv atomically (a reader never sees half a table)."""
        target = self.path / f"{name}.csv"
        tmp = target.with_suffix(".csv.tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(target)
        return target

    def finish(self, **fields: Any) -> None:
        """Mark the run complete: the last write of a successful run."""
        self.meta.update(fields)
        self.meta["ended"] = _iso(time.time())
        self.meta["complete"] = True
        self.save_meta()
        _chown_to_invoking_user(self.path)

    def abandon(self, reason: str, **fields: Any) -> None:
        """Record why the run did not finish; it stays incomplete."""
        self.meta.update(fields)
        self.meta["ended"] = _iso(time.time())
        self.meta["complete"] = False
        self.meta["incomplete_reason"] = reason
        self.save_meta()
        _chown_to_invoking_user(self.path)


def table_dtypes(columns: list[str]) -> dict[str, str]:
    """The dtype rule of every results table: ``*_ns`` columns are nullable Int64.

    Nanosecond timestamps (~1.8e18) do not fit a float64's 53-bit mantissa: read as
    float (pandas' choice for an integer column with an empty cell) they round to
    multiples of 256 ns. Int64 keeps them exact and empty cells as <NA>.
    """
    return {column: "Int64" for column in columns if column.endswith("_ns")}


def read_table(path: Path) -> pd.DataFrame:
    """One results CSV with the dtype rule applied; "" -> an empty frame."""
    try:
        header = pd.read_csv(path, nrows=0)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    return pd.read_csv(path, low_memory=False, dtype=table_dtypes(list(header.columns)))


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)


def read_meta(path: Path) -> dict[str, Any]:
    """meta.json of a results folder; refuses folders of a newer format."""
    meta_path = path / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path}: not a results folder (no meta.json)") from None
    except (OSError, ValueError) as error:
        raise ResultsError(f"{meta_path}: unreadable: {error}") from None
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
    return dict(meta)


def _chown_to_invoking_user(path: Path) -> None:
    """Under sudo, hand the results to the user who asked for them."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not uid or not gid:
        return
    for item in [path, *path.rglob("*")]:
        try:
            os.chown(item, int(uid), int(gid))
        except OSError:
            continue
