"""Self-contained HTML pages of results folders: ``report.html`` per run, ``sweep.html``.

Importing this package is cheap (``lab --help`` stays fast): pandas and plotly are
loaded by the functions below, when a page is actually written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["render_report", "render_sweep"]


def render_report(
    folder: Path, *, allow_incomplete: bool = False, meta: dict[str, Any] | None = None
) -> Path:
    """Write ``folder/report.html`` from the run's CSVs; return its path.

    ``meta`` stands in for meta.json (the runner's about-to-be-written meta).
    """
    from lab.report.run_page import render_report as render  # noqa: PLC0415

    return render(folder, allow_incomplete=allow_incomplete, meta=meta)


def render_sweep(
    folder: Path, *, allow_incomplete: bool = False, meta: dict[str, Any] | None = None
) -> Path:
    """Write ``folder/sweep.html`` from ``folder/sweep.csv``; return its path."""
    from lab.report.sweep import render_sweep as render  # noqa: PLC0415

    return render(folder, allow_incomplete=allow_incomplete, meta=meta)
