"""Text from files reaches the terminal as text: no markup, no raw control sequences."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from lab._terminal import markup_safe, visible
from lab.cli import _run as run_cli

HOSTILE = "[/bold] x \x1b[31mRED\x1b[0m \x9b2J [link=file:///etc]y[/link]"


def test_visible_shows_control_characters_and_keeps_text() -> None:
    assert visible("a\tb\nc") == "a\tb\nc"
    assert visible("\x1b[31m") == "\\x1b[31m"
    assert visible("\x9b\x07\x7f") == "\\x9b\\x07\\x7f"
    assert visible("naïve → ok") == "naïve → ok"


def test_markup_safe_prints_literally() -> None:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(markup_safe(HOSTILE))
    assert console.file.getvalue().strip() == visible(HOSTILE)  # type: ignore[attr-defined]


def test_summary_title_from_a_scenario_cannot_break_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = Console(file=io.StringIO(), width=400, color_system=None)
    monkeypatch.setattr(run_cli, "stdout", out)
    summary = pd.DataFrame({"protocol": ["[red]udp"], "sent": [1], "delivered": [1]})
    run_cli.print_summary(summary, title=markup_safe(f"x — {HOSTILE}"))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b" not in text and "[/bold]" in text and "[red]udp" in text


def test_summary_names_a_host_that_did_not_keep_the_schedule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = Console(file=io.StringIO(), width=400, color_system=None)
    monkeypatch.setattr(run_cli, "stdout", out)
    summary = pd.DataFrame(
        {"protocol": ["tcp", "[red]udp"], "sent": [1, 1], "engine_late_p99_ms": [0.2, 3.25]}
    )
    run_cli.print_summary(summary, title="t")
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert "note: The host did not keep the link's schedule" in text
    assert "packets of [red]udp more than 3.2 ms after" in text and "tcp more" not in text
    out.file.truncate(0)  # type: ignore[attr-defined]
    run_cli.print_summary(summary.assign(engine_late_p99_ms=[0.2, 0.3]), title="t")
    assert "schedule" not in out.file.getvalue()  # type: ignore[attr-defined]


def test_validate_error_with_escape_sequence_stays_one_visible_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\n[impairment]\n"\\u001b[2Jvegas" = 1\n')
    done = subprocess.run(
        [sys.executable, "-m", "lab", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "\x1b" not in done.stderr and "\\x1b[2Jvegas" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
