"""Removing testbeds: one by id, and whatever killed runs left behind.

Teardown works from the state file, not from a :class:`~lab.testbed.Testbed` in
memory, so the same code removes a testbed being closed, one ``lab testbed down``
names, and the leftovers of a process that died (``lab cleanup``). It never kills
a process it cannot prove is the testbed's (PIDs are reused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from lab.errors import TestbedError
from lab.testbed import _netns
from lab.testbed._state import (
    read_state,
    read_states,
    remove_ground_truth,
    remove_state,
    remove_strays,
)

__all__ = ["cleanup_leftovers", "teardown"]


def teardown(run_id: str) -> None:
    """Kill what the testbed started and remove its namespaces and state file."""
    state = read_state(run_id)
    _netns.remove_hosts_files(_netns.namespace_names(run_id))
    engine_pid = state.get("engine_pid")
    if isinstance(engine_pid, int) and _is_engine_of(engine_pid, run_id):
        _terminate(engine_pid)
    for name in _netns.namespace_names(run_id):
        for pid in _netns.pids_in(name):
            _terminate(pid)
        _netns.remove(name)
    remaining = [n for n in _netns.namespace_names(run_id) if n in _netns.list_all()]
    if remaining:
        raise TestbedError(f"could not remove namespaces {', '.join(remaining)}")
    remove_state(run_id)


def _is_engine_of(pid: int, run_id: str) -> bool:
    """Is ``pid`` still this testbed's engine? (PIDs are reused: never kill a stranger.)"""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"lab.impairment.forwarder" in argv and run_id.encode() in argv


def _terminate(pid: int) -> None:
    """SIGTERM, then SIGKILL after a short wait; only if it is still ours to kill."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def cleanup_leftovers(run_ids: Sequence[str] = (), *, everything: bool = False) -> list[str]:
    """Remove what runs and testbeds left behind; return what was removed.

    By default only what belongs to dead processes: testbeds of runs whose ``lab``
    process is gone, persistent testbeds (``lab testbed up``) whose engine is gone,
    lab namespaces no state file claims, and stray files in the state folder (a state
    file half-written, a ground-truth record nobody will read). A live testbed goes
    only when named in ``run_ids``, or with ``everything``. Only names matching
    ``lab-<id>-c|s`` are touched.
    """
    _netns.require_root()
    removed: list[str] = []
    states = read_states()
    known = {str(s["run_id"]) for s in states}
    unknown_ids = sorted(set(run_ids) - known - _namespace_ids())
    if unknown_ids:
        raise TestbedError(f"no testbed {', '.join(unknown_ids)} (see `lab testbed down`)")
    doomed = {str(s["run_id"]) for s in states if everything or _owner_gone(s)}
    doomed |= set(run_ids)
    doomed |= _namespace_ids() - known  # namespaces nobody claims
    for run_id in sorted(doomed):
        present = [n for n in _netns.namespace_names(run_id) if n in _netns.list_all()]
        state = next((s for s in states if s.get("run_id") == run_id), {})
        teardown(run_id)
        remove_ground_truth(state)
        removed.extend(present or [f"testbed {run_id} (state only)"])
    live = {str(s["run_id"]) for s in read_states()}
    removed.extend(remove_strays(live))
    return removed


def _namespace_ids() -> set[str]:
    return {
        name[len(_netns.PREFIX) : -2] for name in _netns.list_all() if _netns.is_lab_namespace(name)
    }


def _owner_gone(state: dict[str, object]) -> bool:
    """Has the process that keeps this testbed alive died?

    A run's testbed lives as long as its ``lab`` process; a persistent one, once built
    (``ready``), as long as its engine (the command that built it has returned); one
    still being built, as long as the command building it.
    """
    if state.get("persistent") and state.get("ready"):
        engine = state.get("engine_pid")
        return not (isinstance(engine, int) and _is_engine_of(engine, str(state.get("run_id"))))
    owner = state.get("owner_pid")
    if not isinstance(owner, int):
        return True
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return True
    return False
