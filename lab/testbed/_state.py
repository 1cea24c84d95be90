"""The state folder: what each testbed owns, written down before it exists.

A JSON file per testbed under :data:`STATE_DIR` names its namespaces, its engine and
the process that keeps it alive, so ``lab cleanup`` can remove what a killed run left
behind, and only that. Beside the state files lie the engines' ground-truth records.
This module is the only code that knows the files' names and their JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from lab._signals import held_signals

__all__ = [
    "STATE_DIR",
    "ground_truth_path",
    "read_state",
    "read_states",
    "remove_ground_truth",
    "remove_state",
    "remove_strays",
    "write_state",
]

STATE_DIR = Path("/run/protolab")


def ground_truth_path(run_id: str) -> Path:
    """Where a run's engine writes its record: the lab's state folder (root's only),
    never a results folder someone else may own. The name carries the process that
    will read it, so ``lab cleanup`` removes it only once that process is gone (a run
    reads it after its testbed, and the testbed's state file, are gone)."""
    return STATE_DIR / f"{run_id}-{os.getpid()}-ground-truth.npz"


def _state_path(run_id: str) -> Path:
    return STATE_DIR / f"{run_id}.json"


def write_state(state_id: str, **fields: object) -> None:
    """Add ``fields`` to a testbed's state file, whole or not at all (signals held)."""
    with held_signals():
        STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = _state_path(state_id)
        state: dict[str, object] = json.loads(path.read_text()) if path.exists() else {}
        state.update(fields)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)


def read_state(run_id: str) -> dict[str, object]:
    """One testbed's state; empty when its file is missing or unreadable."""
    state: dict[str, object] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(_state_path(run_id).read_text())
    return state


def remove_state(run_id: str) -> None:
    """Remove a testbed's state file, the last thing its teardown does."""
    with contextlib.suppress(FileNotFoundError):
        _state_path(run_id).unlink()


def read_states() -> list[dict[str, object]]:
    """State files of testbeds that exist (or were left behind)."""
    if not STATE_DIR.exists():
        return []
    states = []
    for path in sorted(STATE_DIR.glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            states.append(json.loads(path.read_text()))
    return states


def remove_ground_truth(state: dict[str, object]) -> None:
    """Remove the engine's record a state names, if it lies in the state folder."""
    path = state.get("ground_truth")
    if isinstance(path, str) and Path(path).parent == STATE_DIR:
        Path(path).unlink(missing_ok=True)


def remove_strays(live: set[str]) -> list[str]:
    """Files in the state folder of no live testbed: half-written state, old records."""
    if not STATE_DIR.is_dir():
        return []
    removed = []
    for path in sorted(STATE_DIR.iterdir()):
        if path.suffix == ".json" or not path.is_file():
            continue  # a state file is removed with its testbed
        run_id, _, rest = path.name.partition("-")
        reader = rest.split("-", 1)[0]
        if run_id.split(".", 1)[0] in live or (reader.isdigit() and _alive(int(reader))):
            continue
        path.unlink(missing_ok=True)
        removed.append(f"{path} (stray)")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
