"""``lab report RESULTS_DIR``: (re)write a run's report.html or a sweep's sweep.html."""

from __future__ import annotations

import argparse
import os
import pwd
import stat
import warnings
from pathlib import Path

from lab._terminal import markup_safe
from lab.cli._common import Commands, print_json, wide_console
from lab.errors import ResultsError

__all__ = ["cmd_report", "register"]


def register(commands: Commands) -> None:
    report = commands.add_parser(
        "report",
        help="(re)write report.html of a run (or sweep.html of a sweep) from its CSVs",
        description="Render the self-contained HTML report of a results folder and print its path.",
    )
    report.add_argument("results_dir", metavar="RESULTS_DIR", help="a run or sweep folder")
    report.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="render a run that did not finish (the page says INCOMPLETE)",
    )
    report.add_argument("--json", action="store_true", help="print JSON instead of text")
    report.set_defaults(handler=cmd_report)


def _is_sweep(folder: Path) -> bool:
    from lab.results import read_meta

    meta = read_meta(folder)
    return meta.get("kind") == "sweep" or (
        (folder / "sweep.csv").is_file() and not (folder / "messages.csv").is_file()
    )


def cmd_report(args: argparse.Namespace) -> int:
    """``lab report RESULTS_DIR``: write the page, print where it is."""
    from lab.report import render_report, render_sweep

    folder = Path(args.results_dir)
    if not folder.is_dir():
        raise ResultsError(f"{folder}: no such results folder")
    sweep = _is_sweep(folder)
    _check_writable(folder, "sweep.html" if sweep else "report.html")
    render = render_sweep if sweep else render_report
    with warnings.catch_warnings():
        # inf or nan in a table (a degenerate run) is drawn as missing: not worth a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        page = render(folder, allow_incomplete=args.allow_incomplete)
    if args.json:
        print_json({"path": str(page), "kind": "sweep" if sweep else "run"})
    else:
        wide_console().print(f"report: [bold]{markup_safe(page)}[/bold]", highlight=False)
    return 0


def _check_writable(folder: Path, name: str) -> None:
    """Refuse before rendering (which takes seconds) when the page cannot be written."""
    target = folder / name
    try:
        mode = os.lstat(target).st_mode
    except OSError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise ResultsError(f"{target}: a directory: cannot write the page over it")
    if not os.access(folder, os.W_OK | os.X_OK):
        try:
            uid = folder.stat().st_uid
        except OSError:
            owner = "another user"
        else:
            try:
                owner = pwd.getpwuid(uid).pw_name
            except KeyError:
                owner = f"uid {uid}"
        raise ResultsError(
            f"{folder}: cannot write {name}: permission denied (the folder belongs to "
            f"{owner}; run with sudo)"
        )
