"""Writing a results folder: created incomplete, tables as they are ready, complete last.

The folder is created when a run starts with ``meta.json`` saying ``complete: false``;
tables are written as they are ready; only the last step sets ``complete: true``. A
run that fails or is interrupted keeps its folder (for the post-mortem) but stays
marked incomplete, and readers (``lab report``, ``lab list``) say so. Every file is
written through the folder's descriptor (never through a link, never over an existing
temporary file) and handed to the user who ran ``sudo`` last.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from lab._version import __version__
from lab.errors import ResultsError

#: Version of the results format (files, columns, units); see results/README.md.
FORMAT_VERSION = 3
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
