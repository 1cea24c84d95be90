"""Text from files and arguments, made safe for the terminal.

A scenario's description, a folder name or a table cell is data, not markup: rich
would parse ``[/bold]`` in it (and raise ``MarkupError`` after the work is done), and
an ANSI escape sequence would reach the terminal raw and could rewrite what it
shows. Everything the CLI prints that did not come from the lab's own literals goes
through one of these two functions.
"""

from __future__ import annotations

import re

from rich.markup import escape

__all__ = ["markup_safe", "visible"]

# C0 controls except tab and newline, DEL, and the C1 controls (ESC [ as one byte: CSI)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(value: object) -> str:
    """``str(value)`` with control characters shown as ``\\xNN``, for plain printing."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", str(value))


def markup_safe(value: object) -> str:
    """:func:`visible`, with rich markup escaped: for text inside a rich markup string."""
    return escape(visible(value))
