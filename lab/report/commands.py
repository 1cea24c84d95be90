"""``lab report``, ``lab list`` and ``lab compare``: registered into the CLI by :func:`register`.

Handlers take the parsed arguments, print to stdout (a rich table, or JSON with
``--json``) and return the exit status; bad input raises ResultsError, which the CLI
turns into one line and exit status 2. pandas and plotly load only when a handler runs,
so ``lab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pwd
import stat
import sys
import warnings
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lab._terminal import markup_safe, visible
from lab.errors import ResultsError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the report, list and compare sub-commands to ``lab``'s parser."""
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

    listing = commands.add_parser("list", help="list past runs: complete or not, loss per protocol")
    listing.add_argument("--results", default="results", help="results root (default: results)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=cmd_list)

    compare = commands.add_parser(
        "compare",
        help="differences of two runs' summaries per protocol (B - A), also written as CSV",
    )
    compare.add_argument("run_a", metavar="RUN_A", help="results folder of the reference run")
    compare.add_argument("run_b", metavar="RUN_B", help="results folder of the other run")
    compare.add_argument(
        "--output",
        help="CSV to write (default: ./compare-<RUN_A name>-<RUN_B name>.csv; "
        "never inside either run's folder)",
    )
    compare.add_argument(
        "--allow-incomplete", action="store_true", help="compare runs that did not finish"
    )
    compare.add_argument("--json", action="store_true", help="print JSON instead of a table")
    compare.set_defaults(handler=cmd_compare)


def _console() -> Console:
    # not a terminal (pipes, CI logs): wide enough that tables are not cut
    return Console() if sys.stdout.isatty() else Console(width=200)


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(_json_safe(data), indent=2) + "\n")


def _json_safe(data: object) -> object:
    """NaN and infinity are not JSON: they become null."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {str(k): _json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_json_safe(v) for v in data]
    return data


def _fmt(value: object, *, signed: bool = False) -> str:
    """A number for the compare table: integers whole, big numbers without exponent."""
    if not isinstance(value, float | int) or (isinstance(value, float) and math.isnan(value)):
        return "–" if value is None or isinstance(value, float) else str(value)
    if value == 0:
        return "0"
    sign = "+" if signed else ""
    if float(value).is_integer() or abs(value) >= 1e4:
        return f"{value:{sign}.0f}"
    return f"{value:{sign}.4g}"


def _is_sweep(folder: Path) -> bool:
    from lab.report._data import read_run_meta  # noqa: PLC0415

    meta = read_run_meta(folder)
    return meta.get("kind") == "sweep" or (
        (folder / "sweep.csv").is_file() and not (folder / "messages.csv").is_file()
    )


def cmd_report(args: argparse.Namespace) -> int:
    """``lab report RESULTS_DIR``: write the page, print where it is."""
    from lab.report import render_report, render_sweep  # noqa: PLC0415

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
        _print_json({"path": str(page), "kind": "sweep" if sweep else "run"})
    else:
        _console().print(f"report: [bold]{markup_safe(page)}[/bold]", highlight=False)
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


def cmd_list(args: argparse.Namespace) -> int:
    """``lab list``: every results folder under --results, oldest first."""
    from lab.report.listing import list_runs  # noqa: PLC0415

    root = Path(args.results)
    runs, problems = list_runs(root)
    if args.json:
        _print_json(
            {"root": str(root), "runs": [r.to_json() for r in runs], "unreadable": problems}
        )
        return 0
    console = _console()
    if not runs:
        console.print(f"no runs in {markup_safe(root)}", highlight=False)
    else:
        table = Table(title=f"runs in {markup_safe(root)}", title_justify="left")
        for header in ("run", "started", "complete", "protocols", "summary", "report"):
            table.add_column(header, overflow="fold")
        for run in runs:
            status = "[green]yes[/green]" if run.complete else "[red]no[/red]"
            if not run.complete and run.reason:
                status += f" ({_escape(run.reason)})"
            name = _escape(run.name) + (" [dim](sweep)[/dim]" if run.kind == "sweep" else "")
            table.add_row(
                name,
                _escape((run.started or "?")[:19].replace("T", " ")),
                status,
                _escape(", ".join(run.protocols)),
                _escape(run.summary),
                "yes" if run.report else "–",
            )
        console.print(table)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for problem in problems:
        err.print(f"lab list: skipped {visible(problem)}", markup=False)
    return 0


def _escape(text: str) -> str:
    return markup_safe(text)


def cmd_compare(args: argparse.Namespace) -> int:
    """``lab compare RUN_A RUN_B``: B - A per protocol and summary column, table and CSV."""
    from lab.report.listing import compare_runs, setting_differences  # noqa: PLC0415

    run_a, run_b = Path(args.run_a), Path(args.run_b)
    for folder in (run_a, run_b):
        if not folder.is_dir():
            raise ResultsError(f"{folder}: no such results folder")
    diff = compare_runs(run_a, run_b, allow_incomplete=args.allow_incomplete)
    default = f"compare-{run_a.resolve().name}-{run_b.resolve().name}.csv"
    output = Path(args.output) if args.output else Path.cwd() / default
    try:
        diff.to_csv(output, index=False)
    except OSError as error:
        raise ResultsError(f"{output}: cannot write: {error.strerror or error}") from None
    err = Console(stderr=True, highlight=False)
    for difference in setting_differences(run_a, run_b):  # B - A then mixes causes
        err.print(visible(f"lab compare: the runs differ in {difference}"), markup=False)
    if args.json:
        rows = [{str(k): v for k, v in r.items()} for r in diff.to_dict(orient="records")]
        _print_json({"a": str(run_a), "b": str(run_b), "csv": str(output), "rows": rows})
        return 0
    table = Table(
        title=markup_safe(f"B - A   A = {run_a.resolve().name}   B = {run_b.resolve().name}"),
        title_justify="left",
    )
    for header, justify in (
        ("protocol", "left"),
        ("metric", "left"),
        ("A", "right"),
        ("B", "right"),
        ("B - A", "right"),
        ("rel %", "right"),
    ):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    previous = None
    for row in diff.itertuples(index=False):
        protocol = str(row.protocol)
        rel = row.rel_pct
        rel_text = f"{rel:+.1f}" if isinstance(rel, float) and not math.isnan(rel) else "–"
        table.add_row(
            _escape(protocol) if protocol != previous else "",
            _escape(str(row.metric)),
            _fmt(row.a),
            _fmt(row.b),
            _fmt(row.diff, signed=True),
            rel_text,
        )
        previous = protocol
    console = _console()
    console.print(table)
    console.print(f"written: [bold]{_escape(str(output))}[/bold]", highlight=False)
    return 0
