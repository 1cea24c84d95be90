"""Results folders: ``results/<scenario>-<UTC time>/``, written so a half run never passes as done.

The folder is created when a run starts with ``meta.json`` saying ``complete: false``;
tables are written as they are ready; only the last step sets ``complete: true``. A
run that fails or is interrupted keeps its folder (for the post-mortem) but stays
marked incomplete, and readers (``lab report``, ``lab list``) say so.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import pandas as pd

from lab._version import __version__
from lab.errors import ResultsError

#: Version of the results format (files, columns, units); see results/README.md.
FORMAT_VERSION = 1
DEFAULT_ROOT = Path("results")
_PACKAGES = ("protolab", "scapy", "pandas", "numpy", "pydantic", "pyroute2", "rich", "plotly")


def _utc_stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y%m%dT%H%M%SZ")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def now_iso() -> str:
    """The time as meta.json writes it (UTC, ISO 8601, milliseconds)."""
    return _iso(time.time())


def environment() -> dict[str, Any]:
    """What the numbers depend on: kernel, Python, package versions."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "packages": versions,
    }


@dataclass
class RunFolder:
    """One run's folder, open for writing.

    Safe under ``sudo``: the folder is created by the lab and stays the lab's (root's)
    until the run ends, so nobody else can plant a file or a link in it; every file is
    written through the folder's own descriptor (``O_NOFOLLOW``; a fresh ``O_EXCL``
    temporary name, then renamed), so a folder renamed away and replaced by a link
    meanwhile is never written through. The invoking user gets the folder last
    (:meth:`finish` / :meth:`abandon`), ownership changed without following links.
    """

    path: Path
    meta: dict[str, Any]
    _dir_fd: int = field(repr=False)

    @classmethod
    def create(
        cls,
        root: Path,
        scenario_name: str,
        scenario_file: Path,
        seed: int,
        *,
        scenario_text: str | None = None,
    ) -> RunFolder:
        """Make the folder, copy the scenario in and write an incomplete meta.json.

        ``scenario_text`` replaces the copy where the file is not what ran (a sweep
        cell runs its own resolved scenario).
        """
        started = time.time()
        try:
            if scenario_text is None:
                scenario_text = scenario_file.read_text(encoding="utf-8")
        except OSError as error:
            message = f"{scenario_file}: cannot copy the scenario in: {error.strerror}"
            raise ResultsError(message) from None
        except UnicodeDecodeError:
            message = f"{scenario_file}: cannot copy the scenario in: not UTF-8 text"
            raise ResultsError(message) from None
        try:
            root.mkdir(parents=True, exist_ok=True)
            root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            message = f"{root}: cannot create the results folder: {error.strerror}"
            raise ResultsError(message) from None
        try:
            base = f"{scenario_name}-{_utc_stamp(started)}"
            name, suffix = base, 1
            while True:
                try:
                    os.mkdir(name, 0o755, dir_fd=root_fd)
                    break
                except FileExistsError:
                    suffix += 1
                    name = f"{base}-{suffix}"
                except OSError as error:
                    message = f"{root / name}: cannot create the run folder: {error.strerror}"
                    raise ResultsError(message) from None
            dir_fd = os.open(name, _DIR_FLAGS, dir_fd=root_fd)
        finally:
            os.close(root_fd)
        path = root / name
        meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "lab_version": __version__,
            "scenario": scenario_name,
            "seed": seed,
            "started": _iso(started),
            "ended": None,
            "complete": False,
            **environment(),
        }
        folder = cls(path, meta, dir_fd)
        try:
            folder.write_text("scenario.toml", scenario_text)
            folder.save_meta()
        except BaseException:
            folder.close()
            shutil.rmtree(path, ignore_errors=True)  # nothing half-made is left behind
            raise
        return folder

    @property
    def io_path(self) -> Path:
        """A path that always names this folder, even if ``path`` was renamed or replaced
        (``/proc/<pid>/fd/N`` of this process, valid in its children too): for code that
        writes by path, such as the sniffer."""
        return Path(f"/proc/{os.getpid()}/fd/{self._dir_fd}")

    def save_meta(self) -> None:
        self.write_text("meta.json", json.dumps(self.meta, indent=2, default=str) + "\n")

    def write_text(self, name: str, text: str) -> Path:
        """Write the file ``name`` atomically (a reader never sees half of it)."""
        _write_at(self._dir_fd, name, lambda fh: fh.write(text))
        return self.path / name

    def write_table(self, name: str, frame: pd.DataFrame) -> Path:
        """Write ``name``.csv atomically (a reader never sees half a table)."""
        _write_at(self._dir_fd, f"{name}.csv", lambda fh: frame.to_csv(fh, index=False))
        return self.path / f"{name}.csv"

    def mkdir(self, name: str) -> Path:
        """A sub-folder (e.g. ``capture``), as a path through :attr:`io_path`."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=self._dir_fd)
        return self.io_path / name

    def finish(self, **fields: Any) -> None:
        """Mark the run complete: the last write of a successful run, then hand it over."""
        self.meta.update(fields)
        self.meta["ended"] = self.meta.get("ended") or now_iso()
        self.meta["complete"] = True
        self.save_meta()
        self.close()

    def abandon(self, reason: str, **fields: Any) -> None:
        """Record why the run did not finish; it stays incomplete. Then hand it over."""
        if self._dir_fd < 0:
            return  # already handed over: nothing more is written
        self.meta.update(fields)
        self.meta["ended"] = _iso(time.time())
        self.meta["complete"] = False
        self.meta["incomplete_reason"] = reason
        self.save_meta()
        self.close()

    def close(self) -> None:
        """Hand the folder to the invoking user (under sudo) and let go of it; idempotent."""
        if self._dir_fd < 0:
            return
        try:
            _hand_over(self._dir_fd)
        finally:
            os.close(self._dir_fd)
            self._dir_fd = -1


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _write_at(dir_fd: int, name: str, fill: Callable[[TextIO], object]) -> None:
    """Write ``name`` in the folder ``dir_fd`` through a new temporary file, then rename.

    The temporary name is fresh and created exclusively, never following a link, so
    nothing planted in the folder is written through; the rename replaces whatever
    ``name`` was (a link included) without following it.
    """
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, _NEW_FILE_FLAGS, 0o644, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            fill(handle)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _invoking_user() -> tuple[int, int] | None:
    """(uid, gid) of the user who ran ``sudo lab``, when root works on their behalf."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not uid or not gid:
        return None
    try:
        return int(uid), int(gid)
    except ValueError:
        return None


def _hand_over(dir_fd: int) -> None:
    """Under sudo, give the folder and everything in it to the invoking user.

    Only what the lab made is there (the folder was the lab's until now); links are
    changed themselves, never followed; the folder itself goes last.
    """
    owner = _invoking_user()
    if owner is None:
        return
    uid, gid = owner
    for _, dirs, files, fd in os.fwalk(".", dir_fd=dir_fd, follow_symlinks=False):
        for name in (*dirs, *files):
            with contextlib.suppress(OSError):
                os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
    os.fchown(dir_fd, uid, gid)


def write_file(folder: Path, name: str, text: str) -> Path:
    """Write ``folder/name`` atomically for a command that runs after the run (reports).

    The folder is opened without following a link and the file is written as
    :class:`RunFolder` writes; as root, the new file gets the folder's owner (a report
    rendered under sudo belongs to the user whose results it shows).
    """
    try:
        dir_fd = os.open(folder, _DIR_FLAGS)
    except OSError as error:
        raise ResultsError(f"{folder}: cannot open the folder: {error.strerror}") from None
    try:
        _write_at(dir_fd, name, lambda fh: fh.write(text))
        owner = os.fstat(dir_fd)
        if os.geteuid() == 0 and owner.st_uid != 0:
            with contextlib.suppress(OSError):
                os.chown(name, owner.st_uid, owner.st_gid, dir_fd=dir_fd, follow_symlinks=False)
    except PermissionError:
        raise ResultsError(
            f"{folder / name}: cannot write: permission denied (the folder belongs to "
            f"uid {os.fstat(dir_fd).st_uid}; run with sudo)"
        ) from None
    except OSError as error:
        raise ResultsError(f"{folder / name}: cannot write: {error.strerror}") from None
    finally:
        os.close(dir_fd)
    return folder / name


def table_dtypes(columns: list[str]) -> dict[str, str]:
    """The dtype rule of every results table: ``*_ns`` columns are nullable Int64.

    Nanosecond timestamps (~1.8e18) do not fit a float64's 53-bit mantissa: read as
    float (pandas' choice for an integer column with an empty cell) they round to
    multiples of 256 ns. Int64 keeps them exact and empty cells as <NA>.
    """
    return {column: "Int64" for column in columns if column.endswith("_ns")}


def read_table(path: Path) -> pd.DataFrame:
    """One results CSV with the dtype rule applied; "" -> an empty frame."""
    try:
        header = pd.read_csv(path, nrows=0)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    return pd.read_csv(path, low_memory=False, dtype=table_dtypes(list(header.columns)))


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


def read_meta(path: Path) -> dict[str, Any]:
    """meta.json of a results folder; refuses folders of a newer format.

    Size and nesting are checked before anything walks the data: a meta.json larger
    than :data:`MAX_META_BYTES` or nested deeper than :data:`MAX_META_DEPTH` is refused.
    """
    meta_path = path / "meta.json"
    too_deep = (
        f"{meta_path}: nested deeper than {MAX_META_DEPTH} levels: not a meta.json the lab wrote"
    )
    try:
        meta = json.loads(read_small_file(meta_path, MAX_META_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: not a results folder (no meta.json)") from None
    except RecursionError:
        raise ResultsError(too_deep) from None
    except (OSError, ValueError) as error:
        raise ResultsError(f"{meta_path}: unreadable: {error}") from None
    if nested_deeper_than(meta, MAX_META_DEPTH):
        raise ResultsError(too_deep)
    if not isinstance(meta, dict):
        raise ResultsError(f"{meta_path}: not a JSON object")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultsError(f"{meta_path}: format_version: must be a whole number >= 1")
    if version > FORMAT_VERSION:
        raise ResultsError(
            f"{meta_path}: format_version {version} is newer than this lab understands "
            f"({FORMAT_VERSION}); upgrade protolab"
        )
    return dict(meta)


#: Every table a run folder may hold, ``<name>.csv``, in the order a run writes them
#: (results/README.md documents each). A sweep folder holds ``sweep`` instead.
RUN_TABLES = (
    "messages",
    "exchanges",
    "impairment",
    "accounting",
    "impairment_by_protocol",
    "captures",
    "tcp_segments",
    "tcp_stats",
    "rtt_samples",
    "hol",
    "explained",
    "explained_summary",
    "summary",
)
SWEEP_TABLES = ("sweep",)
CAPTURE_DIR = "capture"
REPORT_PAGES = {"run": "report.html", "sweep": "sweep.html"}


def pcap_path(folder: Path, protocol: str, role: str) -> Path:
    """``capture/<protocol>-<client|server>.pcap`` in a results folder: the one rule."""
    return folder / CAPTURE_DIR / f"{protocol}-{role}.pcap"


@dataclass(frozen=True)
class Run:
    """A results folder, read: its meta.json, and its tables as DataFrames on demand.

    Tables load when first asked for (``run.summary``, ``run.table("hol")``), with the
    results' dtype rule (exact ``*_ns`` integers). Obtain one with :func:`load_run`.
    """

    path: Path
    meta: dict[str, Any]
    _cache: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """``"run"`` or ``"sweep"``."""
        return "sweep" if self.meta.get("kind") == "sweep" else "run"

    @property
    def complete(self) -> bool:
        """True only when the run finished and every file is there."""
        return self.meta.get("complete") is True

    @property
    def table_names(self) -> tuple[str, ...]:
        """The tables this folder holds."""
        names = SWEEP_TABLES if self.kind == "sweep" else RUN_TABLES
        return tuple(name for name in names if (self.path / f"{name}.csv").is_file())

    def table(self, name: str) -> pd.DataFrame:
        """``<name>.csv`` as a DataFrame; ResultsError if the folder has no such table."""
        if name not in self._cache:
            path = self.path / f"{name}.csv"
            if name not in (*RUN_TABLES, *SWEEP_TABLES) or not path.is_file():
                have = ", ".join(self.table_names) or "none"
                raise ResultsError(f"{path}: no such table in this folder (it has: {have})")
            self._cache[name] = read_table(path)
        return self._cache[name]

    @property
    def summary(self) -> pd.DataFrame:
        """One row per protocol (summary.csv); a sweep's rows (sweep.csv) for a sweep."""
        return self.table("sweep" if self.kind == "sweep" else "summary")

    @property
    def messages(self) -> pd.DataFrame:
        """One row per message and protocol: send and receive times, delays."""
        return self.table("messages")

    @property
    def report_path(self) -> Path | None:
        """The folder's HTML page, if it was written."""
        page = self.path / REPORT_PAGES[self.kind]
        return page if page.is_file() else None

    def pcap(self, protocol: str, role: str) -> Path:
        """The capture of ``protocol`` at ``role`` ("client" or "server")."""
        return pcap_path(self.path, protocol, role)

    def runs(self) -> list[Run]:
        """A sweep's cells, each a Run (empty for a run)."""
        cells = self.path / "runs"
        if self.kind != "sweep" or not cells.is_dir():
            return []
        return [load_run(p) for p in sorted(cells.iterdir()) if (p / "meta.json").is_file()]


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read a results folder (a run or a sweep): meta.json checked, tables on demand.

    Refuses a folder of a newer format version than this lab understands. An incomplete
    run loads too (``run.complete`` says so, ``run.meta["incomplete_reason"]`` why).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ResultsError(f"{folder}: no such results folder")
    return Run(folder, read_meta(folder))
