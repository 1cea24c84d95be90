"""The benchmarks' C helpers (the lateness probe, the TUN floor), compiled for each run.

No prebuilt binaries: each is built from its source in ``bench/`` with the gcc that
``make deps`` installs, into a folder the caller removes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def compile_c(source: Path, folder: Path) -> Path:
    """``source`` compiled with ``gcc -O2 -pthread`` into ``folder``; raises RuntimeError
    (the compiler's message) when it cannot be."""
    binary = folder / source.stem
    done = subprocess.run(
        ["gcc", "-O2", "-pthread", "-o", str(binary), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"gcc {source.name}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return binary
