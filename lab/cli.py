"""The ``lab`` command line.

Every :class:`~lab.errors.LabError` becomes one line on stderr and exit status 2
(``--debug`` adds the traceback). Ctrl-C and SIGTERM tear the testbed down, mark the
run incomplete and exit with 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from lab._signals import mark_command_finished, raise_interrupt
from lab._terminal import markup_safe, visible
from lab._version import __version__
from lab.errors import Interrupted, LabError, ScenarioError

if TYPE_CHECKING:
    from lab.scenario import Scenario, SweepCell
    from lab.testbed import Testbed

EXIT_INCOMPLETE = 1
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
    if scenario.sweep is not None:
        return _run_sweep(scenario, args)
    if not args.json:
        _print_plan(scenario)
    status = _stdout.status(f"running {markup_safe(scenario.name)}", spinner="dots")
    with status if not args.json else contextlib.nullcontext():
        outcome = run_scenario(
            scenario,
            Path(args.scenario),
            Path(args.results),
            progress=lambda text: status.update(markup_safe(f"{scenario.name}: {text}")),
        )
    state = "complete" if outcome.complete else "incomplete"
    try:
        if args.json:  # for scripts: the results folder and the summary, nothing else on stdout
            summary = json.loads(outcome.summary.to_json(orient="records"))
            page = outcome.report_path
            document = {
                "results": str(outcome.path),
                "report": page and str(page),
                "complete": outcome.complete,
                "failed": outcome.failed,
                "summary": summary,
            }
            print(json.dumps(document, indent=2))
            return 0 if outcome.complete else EXIT_INCOMPLETE
        title = f"{scenario.name} — {scenario.description}".strip(" —")
        _print_summary(outcome.summary, title=markup_safe(title))
        setup_ms, teardown_ms = outcome.setup_s * 1000, outcome.teardown_s * 1000
        _stdout.print(f"testbed set-up {setup_ms:.0f} ms, tear-down {teardown_ms:.0f} ms")
        _print_report_path(outcome.report_path)
        _stdout.print(f"results: [bold]{markup_safe(outcome.path)}[/bold]")
        return _report_failures(outcome.failed, outcome.path)
    except KeyboardInterrupt:  # only the printing was cut short
        raise Interrupted(f"the run had ended; {outcome.path} is {state}") from None


def _report_failures(failed: dict[str, str], path: Path) -> int:
    """Say which parts failed (the rest is in the folder); the exit status to return."""
    if not failed:
        return 0
    for part, why in failed.items():
        _stderr.print(visible(f"lab: {part} failed: {why}"), markup=False)
    _stderr.print(visible(f"lab: {path}: incomplete; what did not fail is in it"), markup=False)
    return EXIT_INCOMPLETE


def _print_plan(scenario: Scenario) -> None:
    """How long the run will take at most, before it starts (a typo in count shows here)."""
    protocols = len(scenario.protocols)
    sending = scenario.workload.send_duration_s
    drain = scenario.timeouts.drain_s
    _stdout.print(
        markup_safe(
            f"{scenario.name}: {protocols} protocol(s) x {sending:.3g} s of sending "
            f"+ up to {drain:.3g} s drain each: about {protocols * sending:.3g} s, "
            f"at most {protocols * (sending + drain):.3g} s plus set-up and analysis"
        )
    )


def _run_sweep(scenario: Scenario, args: argparse.Namespace) -> int:
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from lab.runner import run_sweep

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} runs"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    if args.json:  # for scripts: no progress bar, the folder, the page and the table
        outcome = run_sweep(scenario, Path(args.scenario), Path(args.results))
        page = outcome.report_path
        table = json.loads(outcome.table.to_json(orient="records"))
        document = {
            "results": str(outcome.path),
            "report": page and str(page),
            "complete": not outcome.failed,
            "failed": outcome.failed,
            "table": table,
        }
        print(json.dumps(document, indent=2))
        return EXIT_INCOMPLETE if outcome.failed else 0
    with Progress(*columns, console=_stdout, transient=False) as bar:
        task = bar.add_task(markup_safe(scenario.name), total=None)

        def on_cell(index: int, total: int, cell: SweepCell) -> None:
            bar.update(
                task,
                total=total,
                completed=index,
                description=markup_safe(f"{scenario.name}: {cell.label}"),
            )

        outcome = run_sweep(scenario, Path(args.scenario), Path(args.results), on_cell=on_cell)
    echo = scenario.workload.pattern.value == "echo"  # round trips are the point there
    metrics = {"loss_pct": ("loss %", 1.0, "{:.2f}")}
    if echo:
        metrics["rtt_p50_ms"] = ("RTT p50 ms", 1.0, "{:.3f}")
    metrics["owd_p99_ms"] = ("OWD p99 ms", 1.0, "{:.3f}")
    metrics["goodput_bps"] = ("goodput Mbit/s", 1e-6, "{:.3f}")
    shown = [c for c in metrics if c in outcome.table]
    means = outcome.table.groupby(["value", "protocol"])[shown].mean().reset_index()
    table = Table(
        title=markup_safe(f"{scenario.name}: mean over repetitions"), title_justify="left"
    )
    headers = [outcome.table["parameter"].iloc[0], "protocol"]
    for header in (*headers, *(metrics[c][0] for c in shown)):
        table.add_column(markup_safe(header), justify="right")
    for row in means.itertuples(index=False):
        value, protocol, *figures = row
        cells = [
            metrics[c][2].format(float(figure) * metrics[c][1])
            for c, figure in zip(shown, figures, strict=True)
        ]
        table.add_row(markup_safe(value), markup_safe(protocol), *cells)
    _stdout.print(table)
    _print_report_path(outcome.report_path)
    _stdout.print(f"results: [bold]{markup_safe(outcome.path)}[/bold]")
    return _report_failures(
        {f"cell {label}": why for label, why in outcome.failed.items()}, outcome.path
    )


def _print_report_path(page: Path | None) -> None:
    if page is not None:
        _stdout.print(f"report: [bold]{markup_safe(page)}[/bold]")


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
        columns[-1:-1] = [
            ("rtt_p50_ms", "RTT p50 ms", "{:.3f}"),
            ("rtt_p99_ms", "RTT p99 ms", "{:.3f}"),
        ]
    # the link's own doing beside what the receiver saw (RFC 4737 counts differ by design)
    if "engine_loss_pct" in summary:
        columns.insert(4, ("engine_loss_pct", "link drop %", "{:.2f}"))
    if "engine_reorder_pct" in summary and (
        (summary["engine_reorder_pct"].fillna(0) > 0).any() or (summary["out_of_order"] > 0).any()
    ):
        at = [key for key, _, _ in columns].index("out_of_order") + 1
        columns.insert(at, ("engine_reorder_pct", "link reorder %", "{:.2f}"))
    # what was asked of the sender, what it managed, and how long messages waited to leave
    if "send_rate_bps" in summary:
        at = [key for key, _, _ in columns].index("goodput_bps")
        columns[at:at] = [
            ("offered_bps", "offered Mbit/s", "{:.3f}"),
            ("send_rate_bps", "sent Mbit/s", "{:.3f}"),
            ("backlog_p99_ms", "send backlog p99 ms", "{:.3f}"),
        ]
    if "tcp_retransmissions" in summary:
        columns.append(("tcp_retransmissions", "TCP retrans", "{:d}"))
    if "hol_blocked" in summary:
        columns.append(("hol_blocked", "HOL blocked", "{:d}"))
    if "explained" in summary:  # losses and late messages traced to the engine or the wire
        columns += [("explained", "explained", "{:d}"), ("unexplained", "unexplained", "{:d}")]
    for _, header, _ in columns:
        table.add_column(header, justify="right")
    for _, row in summary.iterrows():
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            if key.endswith("_bps") and value is not None:
                value = value / 1e6
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                cells.append("–")
            else:
                cells.append(markup_safe(fmt.format(int(value) if fmt == "{:d}" else value)))
        table.add_row(*cells)
    _stdout.print(table)


def _cmd_validate(args: argparse.Namespace) -> int:
    from lab.scenario import load_scenario

    failures = 0
    for path in args.scenarios:
        try:
            scenario = load_scenario(path)
        except LabError as error:
            _stderr.print(visible(error), markup=False)
            failures += 1
            continue
        protocols = ", ".join(p.value for p in scenario.protocols)
        _stdout.print(markup_safe(f"{path}: ok ({scenario.name}: {protocols})"))
    return EXIT_USAGE if failures else 0


def _cmd_cleanup(args: argparse.Namespace) -> int:
    from lab.testbed import cleanup_leftovers

    removed = cleanup_leftovers(args.ids, everything=args.all)
    _stdout.print(
        markup_safe(f"removed: {', '.join(removed)}") if removed else "nothing to clean up"
    )
    return 0


def _cmd_testbed_up(args: argparse.Namespace) -> int:
    from lab.scenario import load_scenario
    from lab.testbed import build_persistent

    scenario = load_scenario(args.scenario)
    testbed = build_persistent(scenario.impairment, scenario.seed, scenario.congestion_control)
    try:
        _print_testbed(testbed, scenario)
    except KeyboardInterrupt:  # only the printing was cut short: the testbed is up
        raise Interrupted(
            f"testbed {testbed.run_id} is up; stop it with `lab testbed down {testbed.run_id}`"
        ) from None
    return 0


def _print_testbed(testbed: Testbed, scenario: Scenario) -> None:
    from lab.testbed import route_congestion_control

    _stdout.print(
        f"testbed [bold]{testbed.run_id}[/bold] is up ({markup_safe(scenario.name)}); "
        "impaired link:"
    )
    for host in (testbed.client, testbed.server):
        _stdout.print(f"  {host.role:<6} {host.address:<12} namespace {host.netns}")
    pinned = route_congestion_control(testbed.client) or "the namespace default"
    _stdout.print(
        f"TCP over the link uses {pinned} (set on the route, as the scenario says; "
        "a program's own choice, e.g. iperf3 -C reno, overrides it)"
    )
    _stdout.print(
        "try:  lab exec server -- iperf3 -s -1 &\n"
        "      lab exec client -- iperf3 -c server -u -b 10M -t 3\n"
        f"stop: lab testbed down {testbed.run_id}"
    )


def _pick_testbed(run_id: str | None) -> str:
    from lab.testbed import persistent_testbeds

    ids = [str(s["run_id"]) for s in persistent_testbeds()]
    if run_id:
        if run_id not in ids:
            raise LabError(f"no testbed {run_id!r} is up (up: {', '.join(ids) or 'none'})")
        return run_id
    if len(ids) != 1:
        raise LabError(
            "no testbed is up: start one with `lab testbed up SCENARIO`"
            if not ids
            else f"several testbeds are up ({', '.join(ids)}): name one with --id"
        )
    return ids[0]


def _cmd_testbed_down(args: argparse.Namespace) -> int:
    from lab.testbed import destroy, persistent_testbeds

    if args.id and args.id_option and args.id != args.id_option:
        raise LabError(f"two testbed ids given: {args.id} and {args.id_option}")
    run_id = _pick_testbed(args.id or args.id_option)
    state = next(s for s in persistent_testbeds() if s["run_id"] == run_id)
    destroy(run_id)
    _stdout.print(f"testbed {run_id} removed")
    ground_truth = Path(str(state.get("ground_truth", "")))
    if ground_truth.is_file():  # what the engine did while the testbed was up
        from lab.impairment.groundtruth import accounting, load_ground_truth

        books = accounting(load_ground_truth(ground_truth)[0])
        ground_truth.unlink()
        table = Table(title="impairment engine: packets per direction", title_justify="left")
        columns = ["direction", "packets_in", "forwarded", "dropped_loss", "dropped_queue"]
        columns += ["duplicated", "corrupted", "reordered"]
        for column in columns:
            table.add_column(column.replace("_", " "), justify="right")
        for row in books[columns].itertuples(index=False):
            table.add_row(*(str(value) for value in row))
        _stdout.print(table)
    return 0


EXIT_NOT_FOUND = 127  # as shells report a command that does not exist
EXIT_NOT_EXECUTABLE = 126


def _cmd_exec(args: argparse.Namespace) -> int:
    import os
    import shutil

    from lab.testbed import exec_argv, require_root

    require_root("entering a testbed")  # say so, instead of ip's own error

    command = list(args.command)
    run_id = args.id
    # `lab exec client --id ab12 -- ping ...`: the id is ours, not the command's
    if command[:1] == ["--id"] and len(command) >= 2 and run_id is None:
        run_id, command = command[1], command[2:]
    elif command[:1] and command[0].startswith("--id="):
        run_id, command = command[0].removeprefix("--id="), command[1:]
    command = command[1:] if command[:1] == ["--"] else command
    if not command:
        raise LabError("give a command after --, e.g. lab exec client -- ping -c 3 server")
    run_id = _pick_testbed(run_id)
    # the namespace shares the host's files: the program is found (or not) as here
    if shutil.which(command[0]) is None:
        exists = "/" in command[0] and os.path.exists(command[0])
        why = "permission denied" if exists else "command not found"
        _stderr.print(visible(f"lab exec: {command[0]}: {why}"), markup=False)
        return EXIT_NOT_EXECUTABLE if exists else EXIT_NOT_FOUND
    argv = exec_argv(run_id, args.host, command)
    os.execvp(argv[0], argv)
    return 0  # not reached


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
    run.add_argument("--json", action="store_true", help="print the summary as JSON (no table)")
    run.set_defaults(handler=_cmd_run)

    validate = commands.add_parser("validate", help="check scenario files without running them")
    validate.add_argument("scenarios", nargs="+", help="scenario files")
    validate.set_defaults(handler=_cmd_validate)

    cleanup = commands.add_parser(
        "cleanup",
        help="remove what killed runs and dead testbeds left behind (root)",
        description="Remove testbeds whose process is gone, namespaces no testbed claims and "
        "stray files in /run/protolab. Live testbeds stay unless named or --all is given.",
    )
    cleanup.add_argument("ids", nargs="*", metavar="ID", help="also remove these live testbeds")
    cleanup.add_argument(
        "--all", action="store_true", help="remove every lab testbed, live ones included"
    )
    cleanup.set_defaults(handler=_cmd_cleanup)

    testbed = commands.add_parser("testbed", help="keep an impaired testbed up for your own tools")
    testbed_commands = testbed.add_subparsers(dest="testbed_command", required=True)
    up = testbed_commands.add_parser("up", help="build the scenario's testbed and leave it running")
    up.add_argument("scenario", help="scenario file: its [impairment] is applied")
    up.set_defaults(handler=_cmd_testbed_up)
    down = testbed_commands.add_parser("down", help="remove a testbed started with `up`")
    down.add_argument("id", nargs="?", help="testbed id (optional when only one is up)")
    down.add_argument("--id", dest="id_option", metavar="ID", help="the same, as an option")
    down.set_defaults(handler=_cmd_testbed_down)

    run_in = commands.add_parser(
        "exec",
        help="run a command on a testbed host, e.g. lab exec client -- ping -c 3 server",
    )
    run_in.add_argument("host", choices=["client", "server"])
    run_in.add_argument("--id", help="testbed id (optional when only one is up)")
    run_in.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    run_in.set_defaults(handler=_cmd_exec)

    from lab.capture import live

    sniff = commands.add_parser(
        "sniff",
        help="capture live traffic on an interface (root), with a live summary",
        description="Capture packets on IFACE with a RAW AF_PACKET socket (root or CAP_NET_RAW);"
        " a live summary per protocol and flow.",
    )
    live.add_arguments(sniff)
    sniff.set_defaults(handler=live.run)

    from lab.analysis import offline

    offline.register(commands)

    from lab.report.commands import register as register_report_commands

    register_report_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lab`` and ``python -m lab``."""
    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGINT, raise_interrupt)
    debug = False
    try:
        args = build_parser().parse_args(argv)
        debug = bool(args.debug)
        handler: Handler = args.handler
        status = handler(args)
        mark_command_finished(True)  # first thing after the return (lab._signals says why)
        return status
    except KeyboardInterrupt as interrupt:
        mark_command_finished(True)  # one line is printed for the first signal, not more
        # only what is known to be true: the stage that was interrupted says what it left
        what = f"; {interrupt.what}" if isinstance(interrupt, Interrupted) else ""
        _stderr.print(visible(f"lab: interrupted{what}"), markup=False)
        return EXIT_INTERRUPTED
    except LabError as error:
        mark_command_finished(True)
        if debug:
            traceback.print_exc()
        # a scenario error already starts with the file name, the most useful prefix
        text = str(error) if isinstance(error, ScenarioError) else f"lab: {error}"
        _stderr.print(visible(text), markup=False)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
