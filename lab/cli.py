"""The ``lab`` command line.

Every :class:`~lab.errors.LabError` becomes one line on stderr and exit status 2
(``--debug`` adds the traceback). Ctrl-C and SIGTERM tear the testbed down, mark the
run incomplete and exit with 130.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lab import __version__
from lab.errors import Interrupted, LabError, ScenarioError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Not a terminal (pipes, CI logs): wide enough that the summary table is not cut.
_stdout = Console() if sys.stdout.isatty() else Console(width=200)
_stderr = Console(stderr=True, highlight=False, soft_wrap=True)

Handler = Callable[[argparse.Namespace], int]


def _cmd_run(args: argparse.Namespace) -> int:
    from lab.runner import run_scenario
    from lab.scenario import load_scenario

    scenario = load_scenario(args.scenario)  # validation first: nothing written on bad input
    status = _stdout.status(f"running {scenario.name}", spinner="dots")
    with status:
        outcome = run_scenario(
            scenario,
            Path(args.scenario),
            Path(args.results),
            progress=lambda text: status.update(f"{scenario.name}: {text}"),
        )
    _print_summary(outcome.summary, title=f"{scenario.name} — {scenario.description}".strip(" —"))
    _stdout.print(
        f"testbed set-up {outcome.setup_s * 1000:.0f} ms, tear-down {outcome.teardown_s * 1000:.0f} ms"
    )
    _stdout.print(f"results: [bold]{outcome.path}[/bold]")
    return 0


def _print_summary(summary: object, title: str) -> None:
    import pandas as pd

    assert isinstance(summary, pd.DataFrame)
    table = Table(title=title, title_justify="left")
    columns = [
        ("protocol", "protocol", "{}"),
        ("sent", "sent", "{:d}"),
        ("delivered", "delivered", "{:d}"),
        ("loss_pct", "loss %", "{:.2f}"),
        ("out_of_order", "out of order", "{:d}"),
        ("duplicates", "dup", "{:d}"),
        ("owd_p50_ms", "OWD p50 ms", "{:.3f}"),
        ("owd_p99_ms", "OWD p99 ms", "{:.3f}"),
        ("owd_max_ms", "OWD max ms", "{:.3f}"),
        ("jitter_ms", "jitter ms", "{:.3f}"),
        ("goodput_bps", "goodput Mbit/s", "{:.3f}"),
    ]
    if "rtt_p50_ms" in summary and summary["rtt_p50_ms"].notna().any():
        columns[-1:-1] = [("rtt_p50_ms", "RTT p50 ms", "{:.3f}"), ("rtt_p99_ms", "RTT p99 ms", "{:.3f}")]
    if "losses_explained" in summary:
        columns.append(("losses_explained", "losses explained", "{:d}"))
    for _, header, _ in columns:
        table.add_column(header, justify="right")
    for _, row in summary.iterrows():
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            if key == "goodput_bps" and value is not None:
                value = value / 1e6
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                cells.append("–")
            else:
                cells.append(fmt.format(int(value) if fmt == "{:d}" else value))
        table.add_row(*cells)
    _stdout.print(table)


def _cmd_validate(args: argparse.Namespace) -> int:
    from lab.scenario import load_scenario

    failures = 0
    for path in args.scenarios:
        try:
            scenario = load_scenario(path)
        except LabError as error:
            _stderr.print(str(error), markup=False)
            failures += 1
            continue
        _stdout.print(f"{path}: ok ({scenario.name}: {', '.join(p.value for p in scenario.protocols)})")
    return EXIT_USAGE if failures else 0


def _cmd_cleanup(args: argparse.Namespace) -> int:
    from lab.testbed import cleanup_leftovers

    removed = cleanup_leftovers()
    _stdout.print(f"removed: {', '.join(removed)}" if removed else "nothing to clean up")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lab",
        description="protolab: measure how TCP, UDP and RAW sockets behave on an impaired link.",
    )
    parser.add_argument("--version", action="version", version=f"protolab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a scenario (root): testbed, exchanges, results")
    run.add_argument("scenario", help="scenario file (TOML), e.g. scenarios/quickstart.toml")
    run.add_argument("--results", default="results", help="results root folder (default: results)")
    run.set_defaults(handler=_cmd_run)

    validate = commands.add_parser("validate", help="check scenario files without running them")
    validate.add_argument("scenarios", nargs="+", help="scenario files")
    validate.set_defaults(handler=_cmd_validate)

    cleanup = commands.add_parser("cleanup", help="remove testbeds left by killed runs (root)")
    cleanup.set_defaults(handler=_cmd_cleanup)
    return parser


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lab`` and ``python -m lab``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        _stderr.print("lab: interrupted; testbed torn down, run marked incomplete", markup=False)
        return EXIT_INTERRUPTED
    except Interrupted as error:
        _stderr.print(f"lab: {error}", markup=False)
        return EXIT_INTERRUPTED
    except LabError as error:
        if args.debug:
            traceback.print_exc()
        # a scenario error already starts with the file name, the most useful prefix
        text = str(error) if isinstance(error, ScenarioError) else f"lab: {error}"
        _stderr.print(text, markup=False)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
