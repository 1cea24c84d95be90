"""The ``lab`` command line: one module per command, each with ``register(commands)``.

Every :class:`~lab.errors.LabError` becomes one line on stderr and exit status 2
(``--debug`` adds the traceback). Ctrl-C and SIGTERM tear the testbed down, mark the
run incomplete and exit with 130. The stages (testbed, capture, analysis, report) know
nothing of argparse or rich: printing and parsing live here.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from collections.abc import Sequence

from lab._signals import HELD_SIGNALS, command_starting, mark_command_finished, raise_interrupt
from lab._terminal import visible
from lab._version import __version__
from lab.cli import (
    _analyze,
    _cleanup,
    _compare,
    _exec,
    _list,
    _report,
    _run,
    _sniff,
    _testbed,
    _validate,
)
from lab.cli._common import EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_USAGE, Handler, stderr
from lab.errors import Interrupted, LabError, ScenarioError

__all__ = ["EXIT_INCOMPLETE", "EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "main"]

#: In the order ``lab --help`` lists them.
_COMMANDS = (
    _run,
    _validate,
    _cleanup,
    _testbed,
    _exec,
    _sniff,
    _analyze,
    _report,
    _list,
    _compare,
)


def build_parser() -> argparse.ArgumentParser:
    """``lab``'s parser; each command module adds its own sub-command."""
    parser = argparse.ArgumentParser(
        prog="lab",
        description="protolab: measure how TCP, UDP and RAW sockets behave on an impaired link.",
    )
    parser.add_argument("--version", action="version", version=f"protolab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lab`` and ``python -m lab``: the exit status.

    Ctrl-C and SIGTERM interrupt the command (a KeyboardInterrupt through every
    clean-up) until it has its status; the caller's handlers come back afterwards.
    """
    command_starting()
    previous = {signum: signal.signal(signum, raise_interrupt) for signum in HELD_SIGNALS}
    try:
        return _run_command(argv)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_command(argv: Sequence[str] | None) -> int:
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
        stderr.print(visible(f"lab: interrupted{what}"), markup=False)
        return EXIT_INTERRUPTED
    except LabError as error:
        mark_command_finished(True)
        if debug:
            traceback.print_exc()
        # a scenario error already starts with the file name, the most useful prefix
        text = str(error) if isinstance(error, ScenarioError) else f"lab: {error}"
        stderr.print(visible(text), markup=False)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
