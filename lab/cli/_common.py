"""What every command shares: the consoles, exit statuses and JSON output."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from rich.console import Console

from lab._terminal import markup_safe, visible

__all__ = [
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "Commands",
    "Handler",
    "frame_records",
    "json_safe",
    "print_json",
    "print_report_path",
    "report_failures",
    "stderr",
    "stdout",
    "wide_console",
]

EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]
#: What ``add_subparsers`` returns (argparse gives it no public name).
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def wide_console() -> Console:
    """stdout's console; not a terminal (pipes, CI logs): wide enough that tables are not cut."""
    return Console() if sys.stdout.isatty() else Console(width=200)


stdout = wide_console()
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: object) -> None:
    """One JSON document on stdout, NaN and infinity as null."""
    sys.stdout.write(json.dumps(json_safe(data), indent=2) + "\n")


def json_safe(data: object) -> object:
    """NaN and infinity are not JSON: they become null."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {str(k): json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(v) for v in data]
    return data


def print_report_path(page: Path | None) -> None:
    if page is not None:
        stdout.print(f"report: [bold]{markup_safe(page)}[/bold]")


def report_failures(failed: dict[str, str], path: Path) -> int:
    """Say which parts failed (the rest is in the folder); the exit status to return."""
    if not failed:
        return 0
    for part, why in failed.items():
        stderr.print(visible(f"lab: {part} failed: {why}"), markup=False)
    stderr.print(visible(f"lab: {path}: incomplete; what did not fail is in it"), markup=False)
    return EXIT_INCOMPLETE


def frame_records(frame: object) -> list[dict[str, object]]:
    """A DataFrame's rows as JSON-ready dicts: missing values (NaN, NA) as null."""
    import numpy as np
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)

    def plain(value: object) -> object:
        if isinstance(value, np.generic):
            value = value.item()
        if value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
            return None
        return value

    return [{str(k): plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
