"""``lab run SCENARIO``: one run or a sweep, with a plan, progress and the summary table."""

from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from lab._terminal import markup_safe
from lab.cli._common import (
    EXIT_INCOMPLETE,
    Commands,
    frame_records,
    print_json,
    print_report_path,
    report_failures,
    stdout,
)
from lab.errors import Interrupted

if TYPE_CHECKING:
    from lab.scenario import Hosts, Scenario, SweepCell

__all__ = ["print_summary", "register", "run"]


def register(commands: Commands) -> None:
    parser = commands.add_parser("run", help="run a scenario (root): testbed, exchanges, results")
    parser.add_argument("scenario", help="scenario file (TOML), e.g. scenarios/quickstart.toml")
    parser.add_argument(
        "--results", default="results", help="results root folder (default: results)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON (no table)")
    parser.add_argument(
        "--hosts-file",
        help="TOML of [[pair]] tables (each as a scenario's [hosts]): a sweep's cells are "
        "spread over the pairs, one cell at a time per pair; a single run takes the first",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lab.runner import run_scenario
    from lab.scenario import load_hosts_file, load_scenario, on_hosts

    scenario = load_scenario(args.scenario)  # validation first: nothing written on bad input
    pairs = load_hosts_file(args.hosts_file) if args.hosts_file else []
    if scenario.sweep is not None:
        return _run_sweep(scenario, args, pairs)
    if pairs:
        scenario = on_hosts(scenario, pairs[0], Path(args.scenario))
    if not args.json:
        _print_plan(scenario)
    status = stdout.status(f"running {markup_safe(scenario.name)}", spinner="dots")
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
            summary = frame_records(outcome.summary)
            page = outcome.report_path
            document = {
                "results": str(outcome.path),
                "report": page and str(page),
                "complete": outcome.complete,
                "failed": outcome.failed,
                "summary": summary,
            }
            print_json(document)
            return 0 if outcome.complete else EXIT_INCOMPLETE
        title = f"{scenario.name} — {scenario.description}".strip(" —")
        print_summary(outcome.summary, title=markup_safe(title))
        setup_ms, teardown_ms = outcome.setup_s * 1000, outcome.teardown_s * 1000
        if scenario.hosts is None:
            stdout.print(f"testbed set-up {setup_ms:.0f} ms, tear-down {teardown_ms:.0f} ms")
        else:
            stdout.print(f"hosts: login and clocks {setup_ms:.0f} ms, logout {teardown_ms:.0f} ms")
        print_report_path(outcome.report_path)
        stdout.print(f"results: [bold]{markup_safe(outcome.path)}[/bold]")
        return report_failures(outcome.failed, outcome.path)
    except KeyboardInterrupt:  # only the printing was cut short
        raise Interrupted(f"the run had ended; {outcome.path} is {state}") from None


def _print_plan(scenario: Scenario) -> None:
    """How long the run will take at most, before it starts (a typo in count shows here)."""
    protocols = len(scenario.protocols)
    sending = scenario.workload.send_duration_s
    drain = scenario.timeouts.drain_s
    stdout.print(
        markup_safe(
            f"{scenario.name}: {protocols} protocol(s) x {sending:.3g} s of sending "
            f"+ up to {drain:.3g} s drain each: about {protocols * sending:.3g} s, "
            f"at most {protocols * (sending + drain):.3g} s plus set-up and analysis"
        )
    )


def _run_sweep(scenario: Scenario, args: argparse.Namespace, pairs: list[Hosts]) -> int:
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
        outcome = run_sweep(scenario, Path(args.scenario), Path(args.results), pairs=pairs)
        page = outcome.report_path
        document = {
            "results": str(outcome.path),
            "report": page and str(page),
            "complete": not outcome.failed,
            "failed": outcome.failed,
            "table": frame_records(outcome.table),
        }
        print_json(document)
        return EXIT_INCOMPLETE if outcome.failed else 0
    with Progress(*columns, console=stdout, transient=False) as bar:
        task = bar.add_task(markup_safe(scenario.name), total=None)

        def on_cell(index: int, total: int, cell: SweepCell) -> None:
            bar.update(
                task,
                total=total,
                completed=index,
                description=markup_safe(f"{scenario.name}: {cell.label}"),
            )

        outcome = run_sweep(
            scenario, Path(args.scenario), Path(args.results), on_cell=on_cell, pairs=pairs
        )
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
    stdout.print(table)
    print_report_path(outcome.report_path)
    stdout.print(f"results: [bold]{markup_safe(outcome.path)}[/bold]")
    return report_failures(
        {f"cell {label}": why for label, why in outcome.failed.items()}, outcome.path
    )


def print_summary(summary: object, title: str) -> None:
    import pandas as pd

    from lab.analysis.context import late_message, late_protocols

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
    if "owd_bound_ms" in summary:  # two hosts: one-way delays good to ± the clocks' bound
        at = [key for key, _, _ in columns].index("owd_max_ms") + 1
        columns.insert(at, ("owd_bound_ms", "OWD ± ms (clocks)", "{:.3f}"))
    if "flows" in summary and (summary["flows"].fillna(1) > 1).any():  # parallel flows
        columns += [("flows", "flows", "{:d}"), ("jain_index", "Jain's index", "{:.3f}")]
    if "probe_rtt_load_ms" in summary:  # latency under load: the probe beside each load
        columns += [
            ("probe_rtt_idle_ms", "probe RTT idle ms", "{:.1f}"),
            ("probe_rtt_load_ms", "probe RTT load ms", "{:.1f}"),
            ("probe_rtt_load_p99_ms", "load p99 ms", "{:.1f}"),
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
    stdout.print(table)
    if alarm := late_message(late_protocols(summary)):
        stdout.print(f"[yellow]note:[/yellow] {markup_safe(alarm)}")
