"""docs/tutorial.ipynb runs as written (root: it runs a scenario), so it cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = [pytest.mark.requires_root, pytest.mark.slow]
NOTEBOOK = PROJECT_ROOT / "docs" / "tutorial.ipynb"


def test_the_tutorial_executes_and_draws_its_figure(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(PROJECT_ROOT / "docs")}},
    ).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 1, "the TCP vs UDP delay figure"
    traces = json.dumps(figures[0]["data"]["application/vnd.plotly.v1+json"]["data"])
    assert '"tcp"' in traces and '"udp"' in traces, "both protocols are drawn"
    nbformat.write(notebook, tmp_path / "executed.ipynb")  # a readable copy for a failure
