"""``lab testbed up SCENARIO`` and ``lab testbed down [ID]``: a testbed for your own tools."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from lab._terminal import markup_safe
from lab.cli._common import Commands, stdout
from lab.errors import Interrupted, LabError

if TYPE_CHECKING:
    from lab.scenario import Scenario
    from lab.testbed import Testbed

__all__ = ["down", "pick_testbed", "register", "up"]


def register(commands: Commands) -> None:
    parser = commands.add_parser("testbed", help="keep an impaired testbed up for your own tools")
    testbed_commands = parser.add_subparsers(dest="testbed_command", required=True)
    up_parser = testbed_commands.add_parser(
        "up", help="build the scenario's testbed and leave it running"
    )
    up_parser.add_argument("scenario", help="scenario file: its [impairment] is applied")
    up_parser.set_defaults(handler=up)
    down_parser = testbed_commands.add_parser("down", help="remove a testbed started with `up`")
    down_parser.add_argument("id", nargs="?", help="testbed id (optional when only one is up)")
    down_parser.add_argument("--id", dest="id_option", metavar="ID", help="the same, as an option")
    down_parser.set_defaults(handler=down)


def up(args: argparse.Namespace) -> int:
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

    stdout.print(
        f"testbed [bold]{testbed.run_id}[/bold] is up ({markup_safe(scenario.name)}); "
        "impaired link:"
    )
    for host in (testbed.client, testbed.server):
        stdout.print(f"  {host.role:<6} {host.address:<12} namespace {host.netns}")
    pinned = route_congestion_control(testbed.client) or "the namespace default"
    stdout.print(
        f"TCP over the link uses {pinned} (set on the route, as the scenario says; "
        "a program's own choice, e.g. iperf3 -C reno, overrides it)"
    )
    stdout.print(
        "try:  lab exec server -- iperf3 -s -1 &\n"
        "      lab exec client -- iperf3 -c server -u -b 10M -t 3\n"
        f"stop: lab testbed down {testbed.run_id}"
    )


def pick_testbed(run_id: str | None) -> str:
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


def down(args: argparse.Namespace) -> int:
    from lab.testbed import destroy, persistent_testbeds

    if args.id and args.id_option and args.id != args.id_option:
        raise LabError(f"two testbed ids given: {args.id} and {args.id_option}")
    run_id = pick_testbed(args.id or args.id_option)
    state = next(s for s in persistent_testbeds() if s["run_id"] == run_id)
    destroy(run_id)
    stdout.print(f"testbed {run_id} removed")
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
        stdout.print(table)
    return 0
