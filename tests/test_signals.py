"""The lab's signal handling: held steps act late, a finished command ignores signals."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import PROJECT_ROOT


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_signal_after_the_command_returned_changes_nothing() -> None:
    """The race CI hit: SIGTERM between the command's return and the exit."""
    done = _python(
        """
        import os, signal
        import lab.cli
        from lab import _main
        command = lab.cli.main
        def command_then_signals():
            status = command(["validate", "scenarios/quickstart.toml"])
            os.kill(os.getpid(), signal.SIGTERM)  # handled here, after the return
            os.kill(os.getpid(), signal.SIGINT)
            print("status", status, flush=True)
            return status
        lab.cli.main = command_then_signals
        _main.main()
        """
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "status 0", done.stdout


def test_the_callers_handlers_come_back_after_a_command() -> None:
    """In a notebook or test process, Ctrl-C works as before once ``lab`` returns."""
    done = _python(
        """
        import signal
        from lab import cli
        cli.main(["validate", "scenarios/quickstart.toml"])
        print(signal.getsignal(signal.SIGINT) is signal.default_int_handler,
              signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
        """
    )
    assert done.stdout.strip().splitlines()[-1] == "True True", (done.stdout, done.stderr)


def test_a_signal_while_the_command_runs_interrupts_it() -> None:
    done = _python(
        """
        import argparse, os, signal
        from lab import cli
        def handler(args):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs at the next check
                pass
            print("not interrupted")
            return 0
        parser = cli.build_parser
        def build():
            built = parser()
            built.parse_args = lambda argv: argparse.Namespace(debug=False, handler=handler)
            return built
        cli.build_parser = build
        print("status", cli.main([]))
        """
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert "not interrupted" not in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "status 130", done.stdout
    assert done.stderr.strip().startswith("lab: interrupted"), done.stderr


def test_a_held_step_runs_whole_and_the_signal_acts_after_it() -> None:
    done = _python(
        """
        import os, signal
        from lab._signals import held_signals, raise_interrupt
        signal.signal(signal.SIGTERM, raise_interrupt)
        steps = []
        try:
            with held_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):
                    pass
                steps.append("whole")
            steps.append("after")
        except KeyboardInterrupt:
            steps.append("interrupted")
        print(",".join(steps))
        """
    )
    assert done.stdout.strip() == "whole,interrupted", (done.stdout, done.stderr)
