"""Start and stop the userspace impairment engine process."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import TestbedError
from lab.impairment.spec import ImpairmentSpec

_READY_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0


@dataclass
class EngineHandle:
    """A running forwarder process and where it will write its ground truth."""

    process: subprocess.Popen[bytes]
    ground_truth_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> Path | None:
        """SIGTERM the engine, wait for it to flush; the ground-truth file, if written."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.ground_truth_path if self.ground_truth_path.exists() else None


def start_engine(
    client_fd: int,
    server_fd: int,
    spec: ImpairmentSpec,
    seed: int,
    ground_truth_path: Path,
    *,
    run_id: str,
    die_with_parent: bool,
    on_spawn: Callable[[int], None] = lambda _pid: None,
) -> EngineHandle:
    """Spawn the forwarder holding both TUN fds; return once it is forwarding.

    ``on_spawn`` gets the process id before anything waits on the process, so whoever
    tears down can always find it; if the start fails or is interrupted, the process
    is killed here.
    """
    config = {
        "client_fd": client_fd,
        "server_fd": server_fd,
        "seed": seed,
        "impairment": spec.model_dump(mode="json"),
        "output": str(ground_truth_path),
        "die_with_parent": die_with_parent,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.impairment.forwarder",
            "--run-id",
            run_id,
            "--config",
            json.dumps(config),
        ],
        pass_fds=(client_fd, server_fd),
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        # a persistent engine outlives the command: it must not hold the caller's stderr open
        stderr=None if die_with_parent else subprocess.DEVNULL,
        start_new_session=not die_with_parent,
    )
    assert process.stdout is not None
    try:
        on_spawn(process.pid)
        ready, _, _ = select.select([process.stdout], [], [], _READY_TIMEOUT_S)
        line = os.read(process.stdout.fileno(), 64) if ready else b""
    except BaseException:
        process.kill()
        process.wait()
        raise
    if not line.startswith(b"ready"):
        process.kill()
        process.wait()
        raise TestbedError(
            f"impairment engine did not start (exit status {process.returncode}); "
            "run with --debug for details"
        )
    return EngineHandle(process, ground_truth_path)
