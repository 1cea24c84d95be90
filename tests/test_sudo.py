"""Under sudo, the invoking user gets the results and nothing else (root only).

``SUDO_UID`` / ``SUDO_GID`` say who asked; the attacker is that user (uid 65534 here),
who owns the results root, as in a checkout's ``results/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, SCENARIOS

pytestmark = pytest.mark.requires_root
USER = 65534
LAB = [sys.executable, "-m", "lab"]


@pytest.fixture
def user_root() -> Iterator[Path]:
    """A results root owned by the user, where the user can rename and link."""
    root = Path(tempfile.mkdtemp(prefix="lab-sudo-", dir="/tmp"))
    root.chmod(0o755)
    os.chown(root, USER, USER)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _as_user(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3", "-c", code],
        user=USER,
        group=USER,
        extra_groups=[],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def _start_run(root: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "SUDO_UID": str(USER), "SUDO_GID": str(USER)}
    return subprocess.Popen(
        [*LAB, "run", str(SCENARIOS / "quickstart.toml"), "--results", str(root)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_folder(root: Path) -> Path:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = [p for p in root.iterdir() if (p / "meta.json").exists()]
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError("the run folder never appeared")


def test_the_user_can_plant_nothing_during_the_run_and_owns_everything_after(
    user_root: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "root-file"
    victim.write_text("root's")
    run = _start_run(user_root)
    folder = _run_folder(user_root)
    tries = _as_user(
        "import os, sys\n"
        f"folder, victim = {str(folder)!r}, {str(victim)!r}\n"
        "denied = 0\n"
        "for name in ('x', 'summary.csv.tmp', 'report.html', 'capture'):\n"
        "    try:\n"
        "        os.symlink(victim, os.path.join(folder, name))\n"
        "    except PermissionError:\n"
        "        denied += 1\n"
        "print(denied)\n"
    )
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert tries.stdout.strip() == "4", tries.stdout + tries.stderr
    assert victim.stat().st_uid == 0 and victim.read_text() == "root's"
    for path in [folder, *folder.rglob("*")]:
        assert path.lstat().st_uid == USER, f"{path} is not the user's"
    assert (folder / "report.html").is_file()
    assert not list(folder.glob(".*.tmp")), "no temporary file is left"


def test_a_run_folder_swapped_for_a_link_is_never_written_through(user_root: Path) -> None:
    victim_dir = Path(tempfile.mkdtemp(prefix="lab-victim-", dir="/tmp"))
    try:
        victim_dir.chmod(0o755)
        (victim_dir / "report.html").write_text("precious")
        run = _start_run(user_root)
        folder = _run_folder(user_root)
        swap = _as_user(
            "import os\n"
            f"folder = {str(folder)!r}\n"
            "os.rename(folder, folder + '-moved')\n"
            f"os.symlink({str(victim_dir)!r}, folder)\n"
        )
        assert swap.returncode == 0, swap.stderr
        _, err = run.communicate(timeout=120)
        assert run.returncode != 0, "the report could not go where the folder was"
        assert "Traceback" not in err
        assert (victim_dir / "report.html").read_text() == "precious"
        assert sorted(p.name for p in victim_dir.iterdir()) == ["report.html"]
        moved = Path(f"{folder}-moved")
        assert (moved / "summary.csv").is_file(), "the run wrote into its own folder"
        assert moved.stat().st_uid == USER
    finally:
        shutil.rmtree(victim_dir, ignore_errors=True)
