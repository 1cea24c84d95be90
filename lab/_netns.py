"""Entering a network namespace by name: the one way the lab does it.

``setns(2)`` on the calling thread through libc, no helper process and no heavy import,
so the testbed (building links), the endpoints and the sniffer (child processes) and
``lab sniff --netns`` all enter namespaces the same way. A thread's namespace is its
own: the body of :func:`inside` runs there and the thread comes back afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

__all__ = ["NETNS_RUN_DIR", "call_in", "enter", "inside"]

#: Where ``ip netns add`` (and the lab) put named namespaces.
NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000

T = TypeVar("T")


def _setns_fd(fd: int, name: str) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), name)


def enter(name: str) -> None:
    """Move the calling thread into the named network namespace (never creates one)."""
    if "/" in name or name in ("", ".", ".."):
        raise FileNotFoundError(errno.ENOENT, "no such network namespace", name)
    fd = os.open(os.path.join(NETNS_RUN_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns_fd(fd, name)
    finally:
        os.close(fd)


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the body with the calling thread inside ``name``, then come back.

    Sockets and TUN devices created in the body belong to ``name``; so do the
    ``/proc/sys/net`` files opened there.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter(name)
        try:
            yield
        finally:
            _setns_fd(own, "the caller's own namespace")
    finally:
        os.close(own)


def call_in(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a short-lived thread that entered network namespace ``name``.

    Sockets and TUN devices ``fn`` creates belong to that namespace and stay usable
    from any thread afterwards; the caller's own namespace is untouched.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            enter(name)
            result.append(fn())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{name}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]
