"""Opening a results file safely, and the one dtype rule of every table."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from lab.errors import ResultsError


def table_dtypes(columns: list[str]) -> dict[str, str]:
    """The dtype rule of every results table: ``*_ns`` columns are nullable Int64.

    Nanosecond timestamps (~1.8e18) do not fit a float64's 53-bit mantissa: read as
    float (pandas' choice for an integer column with an empty cell) they round to
    multiples of 256 ns. Int64 keeps them exact and empty cells as <NA>.
    """
    return {column: "Int64" for column in columns if column.endswith("_ns")}


#: meta.json of a real run is a few kB; readers refuse a larger one before parsing it.
MAX_META_BYTES = 1 << 20
#: meta.json nests 3 deep at most (link_stats.<device>.<counter>); deeper is refused.
MAX_META_DEPTH = 16
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_results_file(path: Path) -> BinaryIO:
    """Open a file of a results folder for reading, or refuse it in one line.

    Only a regular file: never through a symbolic link (the lab never writes one) and
    never a FIFO or a device, which could block or never end. A missing file raises
    FileNotFoundError: the caller knows what its absence means.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ResultsError(f"{path}: a symbolic link, not a file the lab wrote") from None
        raise ResultsError(f"{path}: unreadable: {error.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise ResultsError(f"{path}: {kind}, not a file the lab wrote")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_small_file(path: Path, max_bytes: int) -> bytes:
    """A results file of at most ``max_bytes`` (else ResultsError), read without parsing."""
    with open_results_file(path) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ResultsError(f"{path}: larger than {max_bytes:,} bytes: not a file the lab wrote")
    return data


def nested_deeper_than(data: object, limit: int) -> bool:
    """Whether dicts and lists in ``data`` nest more than ``limit`` levels (no recursion)."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
