"""Named network namespaces: create, enter, remove, list.

Entering is :mod:`lab._netns` (the lab's one way in, re-exported here); pyroute2 does
the netlink work; this module adds the lab's naming rule (everything it creates starts
with ``lab-``) so cleanup can never touch anything else, the root check every testbed
command makes first, and the ``/etc/netns`` hosts files ``ip netns exec`` reads.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2 import netns as _pyroute2_netns

from lab._netns import enter, inside
from lab.errors import PrivilegeError

__all__ = [
    "ETC_NETNS",
    "PREFIX",
    "create",
    "enter",
    "inside",
    "is_lab_namespace",
    "list_all",
    "namespace_names",
    "netlink",
    "pids_in",
    "read_sysctl",
    "remove",
    "remove_hosts_files",
    "require_root",
    "write_hosts_files",
    "write_sysctl",
]

#: Prefix of every namespace the lab creates: ``lab-<run id>-c`` / ``lab-<run id>-s``.
PREFIX = "lab-"
_LAB_NAMESPACE = re.compile(r"^lab-[a-z0-9]+-[cs]$")


def is_lab_namespace(name: str) -> bool:
    """True for names the lab's testbeds use (never for anything else on the host)."""
    return bool(_LAB_NAMESPACE.match(name))


def namespace_names(run_id: str) -> tuple[str, str]:
    """The client's and the server's namespace of testbed ``run_id``."""
    return f"{PREFIX}{run_id}-c", f"{PREFIX}{run_id}-s"


def require_root(doing: str = "building a testbed") -> None:
    """Refuse early, before anything is written: namespaces need root."""
    if os.geteuid() != 0:
        raise PrivilegeError(
            f"{doing} needs root (network namespaces): run it as `sudo .venv/bin/lab ...`"
        )


def create(name: str) -> None:
    """Create an empty named namespace with iproute2's ``ip netns add``.

    iproute2 is the reference for the /run/netns mount dance, and unlike pyroute2's
    ``netns.create`` it runs no Python in a forked child (see :func:`netlink`).
    """
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"ip netns add {name}: {done.stderr.strip()}")


def remove(name: str) -> None:
    """Remove a named namespace (``ip netns del``); a missing one is not an error."""
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def list_all() -> list[str]:
    """Names of all named namespaces on the host."""
    return sorted(_pyroute2_netns.listnetns())


def pids_in(name: str) -> list[int]:
    """Processes whose network namespace is ``name``."""
    try:
        target = os.stat(Path(_pyroute2_netns.NETNS_RUN_DIR) / name)
    except FileNotFoundError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ns = os.stat(entry / "ns" / "net")
        except OSError:
            continue
        if (ns.st_dev, ns.st_ino) == (target.st_dev, target.st_ino):
            found.append(int(entry.name))
    return found


@contextlib.contextmanager
def netlink(name: str) -> Iterator[IPRoute]:
    """A netlink socket of namespace ``name``, opened from inside it.

    pyroute2's ``IPRoute(netns=...)`` forks a helper process; a fork that unwinds
    through the caller's ``finally`` blocks tore down other runs' testbeds here.
    A socket opened after setns belongs to that namespace, with no fork at all.
    """
    with inside(name):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def write_sysctl(name: str, key: str, value: str) -> None:
    """Set a per-namespace sysctl, e.g. ``net.ipv4.tcp_congestion_control``."""
    with inside(name):
        Path("/proc/sys", *key.split(".")).write_text(value)


def read_sysctl(name: str, key: str) -> str:
    """Read a per-namespace sysctl."""
    with inside(name):
        return Path("/proc/sys", *key.split(".")).read_text().strip()


#: ``ip netns exec`` bind-mounts ``/etc/netns/<ns>/hosts`` over /etc/hosts: names for the hosts.
ETC_NETNS = Path("/etc/netns")


def write_hosts_files(names: Iterable[str], text: str) -> None:
    """The /etc/hosts that programs run by ``ip netns exec`` in each namespace see."""
    for name in names:
        folder = ETC_NETNS / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hosts").write_text(text)


def remove_hosts_files(names: Iterable[str]) -> None:
    """Remove what :func:`write_hosts_files` wrote; a missing file is not an error."""
    for name in names:
        folder = ETC_NETNS / name
        with contextlib.suppress(FileNotFoundError):
            (folder / "hosts").unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
    with contextlib.suppress(OSError):
        ETC_NETNS.rmdir()  # only when empty: leave no trace of the lab behind
