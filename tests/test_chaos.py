"""Signals at random instants across every phase of ``lab run`` and ``lab testbed up``.

Seeded, so a failure replays. Each try: start the command, send SIGINT, SIGTERM or
SIGKILL (then ``lab cleanup``) after a random delay spanning start-up, testbed set-up,
the exchanges, analysis, report and printing, and check what is left:

* no traceback, and the one line printed is true: "nothing was written" means no
  folder, "marked incomplete" means meta.json says incomplete, exit 0 means complete;
* ``complete: true`` only when every file of a run is there;
* no namespace, engine, state file or ground-truth record left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.testbed import STATE_DIR
from tests.conftest import PROJECT_ROOT, lab_namespaces, write_scenario

pytestmark = [pytest.mark.requires_root, pytest.mark.slow]
LAB = [sys.executable, "-m", "lab"]
SEED = 20261202
RUN_FILES = (
    "scenario.toml",
    "meta.json",
    "messages.csv",
    "summary.csv",
    "exchanges.csv",
    "captures.csv",
    "impairment.csv",
    "accounting.csv",
    "explained.csv",
    "report.html",
    "capture/tcp-client.pcap",
    "capture/udp-server.pcap",
)
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
#: also SIGTERM to the whole process group, as a service manager or a shell's kill -- -PGID
GROUP_TERM = -signal.SIGTERM


def _engines() -> set[str]:
    out = subprocess.run(
        ["pgrep", "-f", "lab.impairment.forwarder"], capture_output=True, text=True, check=False
    ).stdout
    return set(out.split())


def _state_files() -> set[str]:
    return {p.name for p in STATE_DIR.iterdir()} if STATE_DIR.is_dir() else set()


def _snapshot() -> tuple[set[str], set[str], set[str]]:
    return lab_namespaces(), _engines(), _state_files()


def _cleanup() -> None:
    done = subprocess.run([*LAB, "cleanup"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def _foreign_run_ids(ours: int) -> set[str]:
    """Testbeds of other live lab processes (runs alongside this test are not ours)."""
    from lab.testbed import read_states

    foreign = set()
    for state in read_states():
        owner = state.get("owner_pid")
        if isinstance(owner, int) and owner != ours and Path(f"/proc/{owner}").exists():
            foreign.add(str(state["run_id"]))
    return foreign


def _engine_run_id(pid: str) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    at = argv.index(b"--run-id") + 1 if b"--run-id" in argv else 0
    return argv[at].decode() if at else ""


def _assert_nothing_left(
    before: tuple[set[str], set[str], set[str]], label: str, ours: int
) -> None:
    foreign = _foreign_run_ids(ours)
    namespaces, engines, states = _snapshot()
    left = {n for n in namespaces - before[0] if n[4:-2] not in foreign}
    assert left == set(), f"{label}: namespaces left"
    left = {e for e in engines - before[1] if _engine_run_id(e) not in foreign}
    assert left == set(), f"{label}: engines left"
    left = {s for s in states - before[2] if s.split("-")[0].split(".")[0] not in foreign}
    assert left == set(), f"{label}: state files left"


def _check_run_folder(results: Path, code: int, stderr: str, label: str) -> None:
    folders = list(results.iterdir()) if results.exists() else []
    if "nothing was written" in stderr or "nothing was done" in stderr:
        assert folders == [], f"{label}: said nothing was written: {stderr}"
        return
    if not folders:
        assert code != 0, f"{label}: success without a folder"
        return
    (folder,) = folders
    meta = json.loads((folder / "meta.json").read_text())
    if meta["complete"]:
        missing = [name for name in RUN_FILES if not (folder / name).exists()]
        assert not missing, f"{label}: complete but missing {missing}"
    if code == 0:
        assert meta["complete"] is True, f"{label}: exit 0 but incomplete"
    if "marked incomplete" in stderr:
        assert meta["complete"] is False, f"{label}: said incomplete: {stderr}"
    if "is complete" in stderr:
        assert meta["complete"] is True, f"{label}: said complete: {stderr}"


def _send(process: subprocess.Popen[str], signum: int) -> None:
    """``signum``, or SIGTERM to the process group when ``signum`` is GROUP_TERM."""
    if process.poll() is not None:
        return
    if signum == GROUP_TERM:
        os.killpg(process.pid, signal.SIGTERM)  # the process leads its own group
    else:
        process.send_signal(signum)


def _name(signum: int) -> str:
    return "SIGTERM to the group" if signum == GROUP_TERM else signal.Signals(signum).name


def _until(process: subprocess.Popen[str], delay: float) -> None:
    """``delay`` seconds, or less if the command ends by itself first (then the signal,
    sent only to a live process, is not sent at all: waiting longer changes nothing)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=delay)


def _signal_after(process: subprocess.Popen[str], signum: int, delay: float) -> tuple[int, str]:
    _until(process, delay)
    _send(process, signum)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


def _expect_quiet(code: int, stderr: str, signum: int, label: str) -> None:
    assert "Traceback" not in stderr, f"{label}: {stderr}"
    if code == -abs(signum) and not stderr:
        return  # came before Python had started the lab: the default action, silently
    if signum != signal.SIGKILL and code != 0:
        assert code == 130, f"{label}: exit {code}: {stderr}"
        assert stderr.strip().splitlines()[-1].startswith("lab: interrupted"), (label, stderr)


@pytest.mark.parametrize("attempt", range(14))  # ~5 s each: make test stays ~10 min
def test_lab_run_under_signals(tmp_path: Path, attempt: int) -> None:
    rng = random.Random(SEED + attempt)
    signum = rng.choice((*SIGNALS, GROUP_TERM))
    delay = rng.uniform(0.0, 6.0)  # start-up ... printing, for this short run
    label = f"run try {attempt}: {_name(signum)} at {delay:.2f} s"
    scenario = write_scenario(
        tmp_path,
        'name = "chaos"\n[workload]\ncount = 100\nrate = 500\n[impairment]\ndelay_ms = 2\n',
    )
    results = tmp_path / "results"
    before = _snapshot()
    process = subprocess.Popen(
        [*LAB, "run", str(scenario), "--results", str(results)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    code, stderr = _signal_after(process, signum, delay)
    _expect_quiet(code, stderr, signum, label)
    if signum == signal.SIGKILL:
        time.sleep(0.5)  # the engine and endpoints die with their parent
        _cleanup()
    _assert_nothing_left(before, label, process.pid)
    _check_run_folder(results, code, stderr, label)


@pytest.mark.parametrize("attempt", range(7))
def test_lab_testbed_up_under_signals(tmp_path: Path, attempt: int) -> None:
    rng = random.Random(SEED + 1000 + attempt)
    signum = rng.choice((*SIGNALS, GROUP_TERM))
    delay = rng.uniform(0.0, 2.5)
    label = f"testbed up try {attempt}: {_name(signum)} at {delay:.2f} s"
    scenario = write_scenario(tmp_path, 'name = "chaos"\n[impairment]\nloss = 1\n')
    before = _snapshot()
    process = subprocess.Popen(
        [*LAB, "testbed", "up", str(scenario)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _until(process, delay)
    _send(process, signum)
    _, stderr = process.communicate(timeout=60)
    code = process.returncode
    _expect_quiet(code, stderr, signum, label)
    if signum == signal.SIGKILL:
        _cleanup()  # removes a testbed whose builder died half-way, keeps a whole one
    foreign = _foreign_run_ids(process.pid)
    up = [
        s
        for s in _state_files() - before[2]
        if s.endswith(".json") and s.removesuffix(".json") not in foreign
    ]
    if code == 0 or "is up" in stderr or (signum == signal.SIGKILL and up):
        # a whole testbed: it works, and `lab testbed down` removes it
        assert len(up) == 1, f"{label}: {up}"
        run_id = up[0].removesuffix(".json")
        ping = subprocess.run(
            [*LAB, "exec", "--id", run_id, "client", "--", "ping", "-c", "1", "-W", "2", "server"],
            capture_output=True,
            text=True,
            check=False,
        )
        down = subprocess.run(
            [*LAB, "testbed", "down", run_id], capture_output=True, text=True, check=False
        )
        assert ping.returncode in (0, 1), f"{label}: {ping.stderr}"  # 1: the 1 % loss
        assert down.returncode == 0, f"{label}: {down.stderr}"
    else:
        assert "no testbed was kept" in stderr or "nothing was done" in stderr or not up, (
            label,
            stderr,
        )
    _assert_nothing_left(before, label, process.pid)
