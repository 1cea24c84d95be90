"""``lab exec HOST [--id ID] -- COMMAND``: run a program on a testbed host."""

from __future__ import annotations

import argparse
import os
import shutil

from lab._terminal import visible
from lab.cli._common import Commands, stderr
from lab.cli._testbed import pick_testbed
from lab.errors import LabError

__all__ = ["execute", "register"]

EXIT_NOT_FOUND = 127  # as shells report a command that does not exist
EXIT_NOT_EXECUTABLE = 126


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "exec",
        help="run a command on a testbed host, e.g. lab exec client -- ping -c 3 server",
    )
    parser.add_argument("host", choices=["client", "server"])
    parser.add_argument("--id", help="testbed id (optional when only one is up)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    parser.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    """Replace this process by the command inside the host's namespace."""
    from lab.testbed import exec_argv, require_root

    require_root("entering a testbed")  # say so, instead of ip's own error

    command = list(args.command)
    run_id = args.id
    # `lab exec client --id ab12 -- ping ...`: the id is ours, not the command's
    if command[:1] == ["--id"] and len(command) >= 2 and run_id is None:
        run_id, command = command[1], command[2:]
    elif command[:1] and command[0].startswith("--id="):
        run_id, command = command[0].removeprefix("--id="), command[1:]
    command = command[1:] if command[:1] == ["--"] else command
    if not command:
        raise LabError("give a command after --, e.g. lab exec client -- ping -c 3 server")
    run_id = pick_testbed(run_id)
    # the namespace shares the host's files: the program is found (or not) as here
    if shutil.which(command[0]) is None:
        exists = "/" in command[0] and os.path.exists(command[0])
        why = "permission denied" if exists else "command not found"
        stderr.print(visible(f"lab exec: {command[0]}: {why}"), markup=False)
        return EXIT_NOT_EXECUTABLE if exists else EXIT_NOT_FOUND
    argv = exec_argv(run_id, args.host, command)
    os.execvp(argv[0], argv)
    return 0  # not reached
