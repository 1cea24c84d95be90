"""``lab cleanup [ID...] [--all]``: remove what killed runs and dead testbeds left behind."""

from __future__ import annotations

import argparse

from lab._terminal import markup_safe
from lab.cli._common import Commands, stdout

__all__ = ["cleanup", "register"]


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "cleanup",
        help="remove what killed runs and dead testbeds left behind (root)",
        description="Remove testbeds whose process is gone, namespaces no testbed claims and "
        "stray files in /run/protolab. Live testbeds stay unless named or --all is given.",
    )
    parser.add_argument("ids", nargs="*", metavar="ID", help="also remove these live testbeds")
    parser.add_argument(
        "--all", action="store_true", help="remove every lab testbed, live ones included"
    )
    parser.set_defaults(handler=cleanup)


def cleanup(args: argparse.Namespace) -> int:
    from lab.testbed import cleanup_leftovers

    removed = cleanup_leftovers(args.ids, everything=args.all)
    stdout.print(
        markup_safe(f"removed: {', '.join(removed)}") if removed else "nothing to clean up"
    )
    return 0
