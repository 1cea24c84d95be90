"""The ``lab`` command's entry point: quiet even when interrupted while starting.

Loading the CLI takes a moment (rich, and pydantic behind the scenario schema); a
Ctrl-C or SIGTERM then would print a long traceback. Here it prints one true line:
nothing had been started.
"""

from __future__ import annotations

import os
import signal
import sys

from lab._signals import HELD_SIGNALS, raise_interrupt

EXIT_INTERRUPTED = 130


def main() -> int:
    """Load the CLI and run it; an interrupt before it runs started nothing."""
    for signum in HELD_SIGNALS:  # also what lab.cli.main gives back when it returns
        signal.signal(signum, raise_interrupt)
    try:
        from lab.cli import main as cli_main  # noqa: PLC0415 (the slow part, guarded)

        status = cli_main()  # catches every interrupt once the command has begun
    except KeyboardInterrupt:
        sys.stderr.write("lab: interrupted while starting; nothing was done\n")
        return _exit_now(EXIT_INTERRUPTED)
    return _exit_now(status)


def _exit_now(code: int) -> int:
    """Exit with ``code`` now, the command's work and clean-up done.

    A Ctrl-C that passed through an import is marked unhandled by CPython even when the
    lab caught and reported it (or a library swallowed it), and the interpreter would
    then end the process by SIGINT, silently, whatever the command said. Leaving here
    keeps the exit status the one the command chose.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
