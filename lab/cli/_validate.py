"""``lab validate FILE...``: check scenario files without running them."""

from __future__ import annotations

import argparse

from lab._terminal import markup_safe, visible
from lab.cli._common import EXIT_USAGE, Commands, stderr, stdout
from lab.errors import LabError

__all__ = ["register", "validate"]


def register(commands: Commands) -> None:
    parser = commands.add_parser("validate", help="check scenario files without running them")
    parser.add_argument("scenarios", nargs="+", help="scenario files")
    parser.set_defaults(handler=validate)


def validate(args: argparse.Namespace) -> int:
    from lab.scenario import load_scenario

    failures = 0
    for path in args.scenarios:
        try:
            scenario = load_scenario(path)
        except LabError as error:
            stderr.print(visible(error), markup=False)
            failures += 1
            continue
        protocols = ", ".join(p.value for p in scenario.protocols)
        stdout.print(markup_safe(f"{path}: ok ({scenario.name}: {protocols})"))
    return EXIT_USAGE if failures else 0
