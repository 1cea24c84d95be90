"""Hold Ctrl-C and SIGTERM over a few steps that must not be cut in half.

Building a testbed, tearing it down and writing a state file take well under a
second each; cut in the middle they leave a namespace, an engine or a half-written
file that nothing records. Over such a step the lab's handlers are swapped for one
that only notes the signal; the step ends, the handlers come back and the signal is
acted on at once (a KeyboardInterrupt, as the lab's own handlers would raise).

Handlers, not the signal mask: Python runs handlers in the main thread whichever
thread the kernel delivered to, so masking the main thread alone would not hold a
signal while another thread (rich's live display, a capture) is running.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = [
    "HELD_SIGNALS",
    "command_starting",
    "held_signals",
    "mark_command_finished",
    "raise_interrupt",
]

HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: Non-empty once the command has its exit status and has said what it did.
_command_finished: list[bool] = []

#: Call with ``True`` when the command has its status: a Ctrl-C or SIGTERM after that
#: has nothing left to stop, and must neither print a traceback nor change the status.
#: A bound C method on purpose: calling it runs no Python frame, so no signal handler
#: can run between the command's return and the flag being set (CPython runs handlers
#: at function entry and loop jumps, and after a C call, by when the flag is set).
mark_command_finished = _command_finished.append

#: A command begins: signals interrupt it again (a test may run several in one process).
command_starting = _command_finished.clear


def raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    """SIGINT/SIGTERM handler: stop through every clean-up; nothing once the command is done."""
    if _command_finished:
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Run the body whole; a SIGINT or SIGTERM that came meanwhile acts when it ends.

    A no-op outside the main thread (only the main thread can set handlers, and only it
    runs them). Nested holds are fine: the outermost one acts.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[signal.Signals] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        noted.append(signal.Signals(signum))

    previous = {s: signal.signal(s, note) for s in HELD_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if noted:
            _act_on(noted[0], previous[noted[0]])


def _act_on(signum: int, handler: object) -> None:
    """Do what the handler in place before the hold would have done."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.raise_signal(signum)
    # SIG_IGN: the signal was to be ignored
