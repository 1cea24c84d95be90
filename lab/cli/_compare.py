"""``lab compare RUN_A RUN_B``: B - A per protocol and summary metric, as a table and CSV."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lab._terminal import markup_safe, visible
from lab.cli._common import Commands, print_json, wide_console
from lab.errors import ResultsError

__all__ = ["cmd_compare", "register"]


def register(commands: Commands) -> None:
    compare = commands.add_parser(
        "compare",
        help="differences of two runs' summaries per protocol (B - A), also written as CSV",
    )
    compare.add_argument("run_a", metavar="RUN_A", help="results folder of the reference run")
    compare.add_argument("run_b", metavar="RUN_B", help="results folder of the other run")
    compare.add_argument(
        "--output",
        help="CSV to write (default: ./compare-<RUN_A name>-<RUN_B name>.csv; "
        "never inside either run's folder); the page goes beside it, as .html",
    )
    compare.add_argument(
        "--allow-incomplete", action="store_true", help="compare runs that did not finish"
    )
    compare.add_argument("--json", action="store_true", help="print JSON instead of a table")
    compare.set_defaults(handler=cmd_compare)


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


def cmd_compare(args: argparse.Namespace) -> int:
    """``lab compare RUN_A RUN_B``: B - A per protocol and summary column, table and CSV."""
    from lab.report.compare_page import render_compare
    from lab.report.listing import compare_runs, setting_differences

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
    page = render_compare(run_a, run_b, diff, output.with_suffix(".html"))
    err = Console(stderr=True, highlight=False)
    for difference in setting_differences(run_a, run_b):  # B - A then mixes causes
        err.print(visible(f"lab compare: the runs differ in {difference}"), markup=False)
    if args.json:
        rows = [{str(k): v for k, v in r.items()} for r in diff.to_dict(orient="records")]
        print_json(
            {"a": str(run_a), "b": str(run_b), "csv": str(output), "page": str(page), "rows": rows}
        )
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
            markup_safe(protocol) if protocol != previous else "",
            markup_safe(str(row.metric)),
            _fmt(row.a),
            _fmt(row.b),
            _fmt(row.diff, signed=True),
            rel_text,
        )
        previous = protocol
    console = wide_console()
    console.print(table)
    console.print(f"written: [bold]{markup_safe(str(output))}[/bold]", highlight=False)
    console.print(f"page: [bold]{markup_safe(str(page))}[/bold]", highlight=False)
    return 0
