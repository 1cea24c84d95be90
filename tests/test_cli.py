"""CLI argument handling that needs no root (the commands themselves are tested as root)."""

from __future__ import annotations

import os

import pytest

from lab import cli
from lab.cli import _exec as exec_cli


def _exec_argv(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> tuple[str | None, list[str]]:
    """What `lab exec` would run: the testbed id asked for and the argv, without running it."""
    asked: list[str | None] = []
    ran: list[list[str]] = []

    def pick(run_id: str | None) -> str:
        asked.append(run_id)
        return run_id or "only"

    monkeypatch.setattr(exec_cli, "pick_testbed", pick)
    monkeypatch.setattr(os, "execvp", lambda _file, args: ran.append(list(args)))
    assert cli.main(argv) == 0
    return asked[0], ran[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["exec", "--id", "ab12", "client", "--", "ping", "-c", "1", "server"],
        ["exec", "client", "--id", "ab12", "--", "ping", "-c", "1", "server"],
        ["exec", "client", "--id=ab12", "--", "ping", "-c", "1", "server"],
    ],
)
def test_exec_takes_the_id_before_or_after_the_host(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    run_id, ran = _exec_argv(monkeypatch, argv)
    assert run_id == "ab12"
    assert ran == ["ip", "netns", "exec", "lab-ab12-c", "ping", "-c", "1", "server"]


def test_exec_passes_options_after_the_separator_to_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id, ran = _exec_argv(monkeypatch, ["exec", "server", "--", "iperf3", "--id", "x"])
    assert run_id is None
    assert ran[-3:] == ["iperf3", "--id", "x"]


def test_testbed_down_takes_the_id_either_way() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["testbed", "down", "ab12"]).id == "ab12"
    assert parser.parse_args(["testbed", "down", "--id", "ab12"]).id_option == "ab12"


def test_exec_of_a_missing_program_exits_127_like_a_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    import lab.testbed

    monkeypatch.setattr(lab.testbed._netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(exec_cli, "pick_testbed", lambda run_id: "ab12cd34")
    assert cli.main(["exec", "client", "--", "no-such-program-xyz", "-v"]) == 127


def test_exec_without_root_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import lab.testbed

    monkeypatch.setattr(lab.testbed._netns.os, "geteuid", lambda: 1000)
    assert cli.main(["exec", "client", "--", "true"]) == 2
    assert capsys.readouterr().err.strip() == (
        "lab: entering a testbed needs root (network namespaces): run it as `sudo .venv/bin/lab ...`"
    )
