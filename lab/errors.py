"""One exception tree for everything the lab reports to a user.

Every error a user can cause or meet derives from :class:`LabError`; the CLI turns
it into one line on stderr and exit status 2. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import re
from pathlib import Path


class LabError(Exception):
    """Base of every error the lab reports as one line (exit status 2)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with what was true when it came: ``what``, one sentence.

    A KeyboardInterrupt, so everything that cleans up on Ctrl-C still does; the CLI
    prints ``lab: interrupted; <what>`` and exits 130.
    """

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class ScenarioError(LabError):
    """A scenario file is unreadable or invalid; names the file and the field."""

    def __init__(self, path: Path | str, field: str, message: str) -> None:
        self.path = str(path)
        self.field = field
        self.message = message
        where = f"{self.path}: {field}: " if field else f"{self.path}: "
        super().__init__(f"{where}{message}")


class PrivilegeError(LabError):
    """The command needs root (or CAP_NET_ADMIN / CAP_NET_RAW)."""


class TestbedError(LabError):
    """The namespaces, link or forwarder could not be set up or torn down."""

    __test__ = False  # not a pytest test class, despite the name


class ExchangeError(LabError):
    """An exchange endpoint failed (socket error, timeout it could not recover from)."""


class CaptureError(LabError):
    """A capture could not start (unknown interface, bad BPF filter) or failed."""


class AnalysisError(LabError):
    """A capture or result file could not be read or analysed."""


class ResultsError(LabError):
    """A results folder is missing, incomplete or of a newer format."""


class HostError(LabError):
    """A far host over SSH: unreachable, untrusted key, refused login, wrong protolab, no rights."""


_WHITESPACE = re.compile(r"\s+")


def one_line(error: object) -> str:
    """An exception's message on one line (pandas' end with a newline): errors are one line."""
    return _WHITESPACE.sub(" ", str(error)).strip() or type(error).__name__
