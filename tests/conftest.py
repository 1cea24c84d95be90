"""Shared fixtures. Root-only tests are marked ``requires_root`` and skipped without root."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from lab.results import Run
from lab.runner import RunOutcome

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = PROJECT_ROOT / "scenarios"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces, raw sockets)")
    for item in items:
        if "requires_root" in item.keywords:
            item.add_marker(skip)


def lab_namespaces() -> set[str]:
    """Namespaces of the lab's testbeds that exist right now."""
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("lab-")}


@pytest.fixture
def no_leftover_namespaces() -> Iterator[None]:
    """Fail the test if a testbed this process built is still there afterwards.

    Judged by the testbeds' own state files (owner pid), not by a before/after diff of
    all namespaces, so other runs on the machine at the same time do not matter.
    """
    from lab.testbed import read_states

    yield
    mine = [s for s in read_states() if s.get("owner_pid") == os.getpid()]
    left = {str(n) for s in mine for n in s.get("namespaces", [])} & lab_namespaces()  # type: ignore[union-attr]
    assert not mine and not left, f"testbeds left behind: {mine}"


@pytest.fixture
def results_root(tmp_path: Path) -> Path:
    return tmp_path / "results"


#: For lossy tests: a datagram receiver waits drain_s after the last send for messages
#: that will never come (3 s by default); 1 s is still far past these links' hold.
QUICK_DRAIN = "[timeouts]\ndrain_s = 1.0\n"


def write_scenario(directory: Path, text: str, name: str = "scenario.toml") -> Path:
    """Write a scenario file for a test and return its path."""
    path = directory / name
    path.write_text(text)
    return path


def lab_run_json(scenario: Path, results: Path, timeout_s: float = 240) -> dict[str, object]:
    """``lab run SCENARIO --json`` as a user would run it; its JSON document (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "lab", "run", str(scenario), "--results", str(results), "--json"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document: dict[str, object] = json.loads(done.stdout)
    return document


def run_tables(scenario: Path, results: Path, *, render: bool = False) -> Run:
    """The run ``lab run SCENARIO --json`` makes, in this process; report.html only with
    ``render``.

    For tests that read the run's folder: the CLI's own path (start-up, printing) costs
    each run a second or two and the page a few more; the tests of the CLI check those.
    The run must be complete, as the CLI's exit 0 says."""
    from lab import load_run
    from lab.runner import run_scenario
    from lab.scenario import load_scenario

    outcome = run_scenario(load_scenario(scenario), scenario, results, render=render)
    assert outcome.complete, outcome.failed
    run = load_run(outcome.path)
    assert run.complete, run.meta
    return run


def run_body(directory: Path, body: str, name: str = "t") -> RunOutcome:
    """Write a scenario (name, description, then ``body``) and run it for real (root).

    No report.html: these tests read the tables (the report tests draw their own), and
    drawing it costs each run a second or two."""
    from lab.runner import run_scenario
    from lab.scenario import load_scenario

    directory.mkdir(parents=True, exist_ok=True)
    path = write_scenario(
        directory, f'name = "{name}"\ndescription = "test"\n{body}', f"{name}.toml"
    )
    return run_scenario(load_scenario(path), path, directory / "results", render=False)


def summary_row(outcome: RunOutcome, protocol: str) -> pd.Series:
    """One protocol's row of a run's summary."""
    return outcome.summary.set_index("protocol").loc[protocol]


@dataclass(frozen=True)
class UpTestbed:
    """A testbed from `lab testbed up` with `iperf3 -s -1` listening on its server."""

    run_id: str
    up_output: str
    exec_prefix: list[str]


def _wait_listening(netns: str, port: int, server: subprocess.Popen[bytes]) -> None:
    """Until a TCP socket listens on ``port`` in ``netns`` (iperf3 -s is ready), 10 s at most.

    Asked of the namespace's kernel (``ss``) rather than slept for: the server is up
    in well under a second unless the machine is busy, and then a fixed sleep is short."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and server.poll() is None:
        listening = subprocess.run(
            ["ip", "netns", "exec", netns, "ss", "-Hltn", f"sport = :{port}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if listening.strip():
            return
        time.sleep(0.05)


@contextlib.contextmanager
def iperf3_testbed(scenario: Path, server_timeout_s: int = 30) -> Iterator[UpTestbed]:
    """`lab testbed up` the scenario, start iperf3's server in it; always stop both.

    Fails the test if the testbed cannot be taken down afterwards.
    """
    lab = [sys.executable, "-m", "lab"]
    up = subprocess.run(
        [*lab, "testbed", "up", str(scenario)], capture_output=True, text=True, check=False
    )
    assert up.returncode == 0, up.stderr
    run_id = up.stdout.split()[1]
    exec_prefix = [*lab, "exec", "--id", run_id]
    server = subprocess.Popen(
        [*exec_prefix, "server", "--", "timeout", str(server_timeout_s), "iperf3", "-s", "-1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(f"lab-{run_id}-s", 5201, server)
        yield UpTestbed(run_id, up.stdout, exec_prefix)
    finally:
        server.kill()
        server.wait()
        down = subprocess.run(
            [*lab, "testbed", "down", run_id], capture_output=True, text=True, check=False
        )
    assert down.returncode == 0, down.stderr
