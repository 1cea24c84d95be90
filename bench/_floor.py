"""The TUN floor: the engine's link forwarded by ``bench/tun_floor.c`` instead of the engine.

The same two TUN devices, namespaces and addresses as a testbed
(``lab.testbed.open_tun_testbed``), with a forwarder that only reads a packet from one
device and writes it to the other, one thread per direction. What it carries is what the
TUN design allows before the engine decides anything: the benchmarks give the engine's
figures as a ratio to it, and its own as a ratio to plain veth.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from _cc import compile_c

from lab.testbed import Testbed, open_tun_testbed

SOURCE = Path(__file__).resolve().with_name("tun_floor.c")
#: what the floor's forwarder is called in the benchmarks' tables
LINK = "tun-floor"


def compile_floor(folder: Path) -> Path:
    """``tun_floor.c`` compiled into ``folder``."""
    return compile_c(SOURCE, folder)


@contextlib.contextmanager
def running_floor(binary: Path, congestion_control: str = "cubic") -> Iterator[tuple[Testbed, int]]:
    """A TUN testbed with the floor forwarding for the body: (testbed, forwarder pid).

    The forwarder is stopped before the testbed goes (and dies with this process,
    PR_SET_PDEATHSIG); an exit of its own while it forwarded is an error.
    """
    with open_tun_testbed(congestion_control) as (testbed, client_fd, server_fd):
        forwarder = subprocess.Popen(
            [str(binary), str(client_fd), str(server_fd)], pass_fds=(client_fd, server_fd)
        )
        try:
            yield testbed, forwarder.pid
        finally:
            ended_by_itself = forwarder.poll()
            if ended_by_itself is None:
                forwarder.send_signal(signal.SIGTERM)
                forwarder.wait(10)
        if ended_by_itself is not None:
            raise RuntimeError(f"{binary.name} exited {ended_by_itself} while it forwarded")
