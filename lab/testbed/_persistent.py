"""Testbeds that outlive the command: ``lab testbed up``, ``lab exec``, ``lab testbed down``.

Such a testbed is kept alive by its engine, not by a ``lab`` process, so it is
recorded as ``ready`` only once whole: until then ``lab cleanup`` treats it as the
building command's, and a build that fails or is interrupted leaves nothing behind.
"""

from __future__ import annotations

from lab._signals import held_signals
from lab.errors import Interrupted
from lab.impairment.spec import ImpairmentSpec
from lab.testbed import _netns
from lab.testbed._build import CLIENT_ADDRESS, SERVER_ADDRESS, Role, Testbed, build, new_run_id
from lab.testbed._cleanup import teardown
from lab.testbed._state import ground_truth_path, read_states, write_state

__all__ = ["build_persistent", "destroy", "exec_argv", "persistent_testbeds"]


def build_persistent(impairment: ImpairmentSpec, seed: int, congestion_control: str) -> Testbed:
    """A testbed that outlives the command (``lab testbed up``).

    Signals are held until it is whole: then it is either complete and recorded, or
    torn down, never an engine nobody knows about.
    """
    _netns.require_root()
    testbed: Testbed | None = None
    try:
        with held_signals():  # a signal meanwhile acts when the testbed is whole, in hand
            run_id = new_run_id()
            testbed = build(
                run_id=run_id,
                impairment=impairment,
                seed=seed,
                congestion_control=congestion_control,
                ground_truth_path=ground_truth_path(run_id),
                persistent=True,
            )
            _write_hosts_files(testbed.run_id)
            write_state(testbed.run_id, ready=True)
    except KeyboardInterrupt as error:
        _discard(testbed)
        raise Interrupted("no testbed was kept") from error
    except BaseException:
        _discard(testbed)
        raise
    return testbed


def _discard(testbed: Testbed | None) -> None:
    """Tear down a testbed nobody will use, its engine's record included."""
    if testbed is not None:
        testbed.close()
        if testbed.ground_truth_path is not None:
            testbed.ground_truth_path.unlink(missing_ok=True)


def _write_hosts_files(run_id: str) -> None:
    """Let ``lab exec`` users type ``server`` / ``client`` instead of addresses."""
    text = f"127.0.0.1 localhost\n{CLIENT_ADDRESS} client\n{SERVER_ADDRESS} server\n"
    _netns.write_hosts_files(_netns.namespace_names(run_id), text)


def destroy(run_id: str) -> None:
    """Remove a testbed by id (``lab testbed down``)."""
    _netns.require_root()
    teardown(run_id)


def persistent_testbeds() -> list[dict[str, object]]:
    """State of testbeds started with ``lab testbed up`` that still exist."""
    present = set(_netns.list_all())
    found = []
    for state in read_states():
        namespaces = state.get("namespaces")
        names = {str(name) for name in namespaces} if isinstance(namespaces, list) else set()
        if state.get("persistent") and state.get("ready") and names and names <= present:
            found.append(state)
    return found


def exec_argv(run_id: str, role: Role, command: list[str]) -> list[str]:
    """The argv that runs ``command`` inside a testbed host (``lab exec``)."""
    client_ns, server_ns = _netns.namespace_names(run_id)
    return ["ip", "netns", "exec", client_ns if role == "client" else server_ns, *command]
