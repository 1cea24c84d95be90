"""``lab list``: past runs under a results root, complete or not, loss per protocol."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lab._terminal import markup_safe, visible
from lab.cli._common import Commands, print_json, wide_console

__all__ = ["cmd_list", "register"]


def register(commands: Commands) -> None:
    listing = commands.add_parser("list", help="list past runs: complete or not, loss per protocol")
    listing.add_argument("--results", default="results", help="results root (default: results)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    """``lab list``: every results folder under --results, oldest first."""
    from lab.report.listing import list_runs

    root = Path(args.results)
    runs, problems = list_runs(root)
    if args.json:
        print_json({"root": str(root), "runs": [r.to_json() for r in runs], "unreadable": problems})
        return 0
    console = wide_console()
    if not runs:
        console.print(f"no runs in {markup_safe(root)}", highlight=False)
    else:
        table = Table(title=f"runs in {markup_safe(root)}", title_justify="left")
        for header in ("run", "started", "complete", "protocols", "summary", "report"):
            table.add_column(header, overflow="fold")
        for run in runs:
            status = "[green]yes[/green]" if run.complete else "[red]no[/red]"
            if not run.complete and run.reason:
                status += f" ({markup_safe(run.reason)})"
            name = markup_safe(run.name) + (" [dim](sweep)[/dim]" if run.kind == "sweep" else "")
            table.add_row(
                name,
                markup_safe((run.started or "?")[:19].replace("T", " ")),
                status,
                markup_safe(", ".join(run.protocols)),
                markup_safe(run.summary),
                "yes" if run.report else "–",
            )
        console.print(table)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for problem in problems:
        err.print(f"lab list: skipped {visible(problem)}", markup=False)
    return 0
