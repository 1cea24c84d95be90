"""Endpoints on far hosts, shaped like the local ones, and files fetched back from them.

:func:`spawn_remote` is :func:`lab.exchanges._endpoint.spawn` for a host over SSH: it
returns a process-like handle and a Connection-like control whose messages are those
of the local pipe (``("ready",)``, ``("sender_done", ns)``, ``("stop",)``, ``("result",
EndpointResult)``), so :func:`lab.exchanges.run_exchange` drives either the same way.
The endpoint body is chosen on the far end by protocol and role; its settings and its
result cross as checked JSON (:mod:`lab.hosts._wire`), never pickled.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import stat
from functools import partial
from pathlib import Path
from typing import IO, Any

import asyncssh

from lab.capture.sniffer import CaptureStats
from lab.errors import HostError, one_line
from lab.exchanges._endpoint import (
    ControlChannel,
    EndpointProcess,
    EndpointResult,
    EndpointSettings,
)
from lab.hosts._wire import WireError, control_message, decode, encode
from lab.hosts.agent import CAPTURE_COUNTS, PROTOCOLS
from lab.hosts.ssh import AGENT_START_S, AgentStream, RemoteHost

__all__ = [
    "ControlChannel",
    "EndpointProcess",
    "RemoteCapture",
    "RemoteControl",
    "RemoteEndpoint",
    "RemoteNetem",
    "agent_budget_s",
    "fetch_file",
    "spawn_remote",
]

#: The longest any endpoint agent may live (a probe runs "until stopped").
MAX_AGENT_S = 6 * 3600.0
#: Added to an endpoint's own timeouts: start-up, result transfer, a loaded machine.
AGENT_MARGIN_S = 30.0
#: The largest file :func:`fetch_file` copies unless told otherwise.
MAX_FETCH_BYTES = 8 * 1024**3


class RemoteEndpoint:
    """A far endpoint, with the calls a run makes on a local endpoint's process."""

    def __init__(self, name: str, host: RemoteHost, stream: AgentStream, pid: int) -> None:
        self.name = name
        self.host = host
        self.pid = pid
        """The agent's process id on the far host."""
        self._stream = stream

    def __repr__(self) -> str:
        return f"<RemoteEndpoint {self.name} on {self.host} pid {self.pid}>"

    def join(self, timeout: float | None = None) -> None:
        """Wait until the agent has exited (it does right after sending its result)."""
        self._stream.join(timeout)

    def is_alive(self) -> bool:
        return self._stream.running

    def terminate(self) -> None:
        """End the endpoint now: its channel closes, the agent exits (TERM if it lingers)."""
        self._stream.terminate()

    kill = terminate

    @property
    def exitcode(self) -> int | None:
        return self._stream.exit_status


class RemoteControl:
    """The far endpoint's control pipe: ``poll``, ``recv``, ``send``, ``fileno``, ``close``."""

    def __init__(self, host: RemoteHost, role: str, stream: AgentStream) -> None:
        self._host = host
        self._role = role
        self._stream = stream

    def poll(self, timeout: float | None = 0.0) -> bool:
        """True when a message (or the end) is waiting, after at most ``timeout`` s."""
        return self._stream.poll(timeout)

    def recv(self) -> tuple[Any, ...]:
        """The next control message, checked: EOFError when the endpoint is gone."""
        message = self._stream.receive()
        op = message["op"]
        try:
            if op == "msg":
                return tuple(control_message(message.get("msg")))
            if op == "result":
                return ("result", decode(EndpointResult, message.get("result")))
        except WireError as error:
            raise HostError(f"{self._host}: the {self._role} sent a bad {op}: {error}") from None
        if op == "error":
            raise HostError(f"{self._host}: {self._role} agent: {one_line(message.get('error'))}")
        raise HostError(f"{self._host}: the {self._role} agent sent an unknown {op!r}")

    def send(self, obj: tuple[Any, ...]) -> None:
        """A control message to the endpoint; BrokenPipeError once it is gone.

        ``("sender_done", deadline_ns)`` carries a time on our clock, which the far
        endpoint compares with its own: once the host's offset is measured
        (:meth:`RemoteHost.clock_offset`), the deadline is moved onto its clock.
        """
        offset = self._host.last_offset
        if offset is not None and len(obj) == 2 and obj[0] == "sender_done":
            obj = ("sender_done", int(obj[1]) + round(offset.offset_ns))
        self._stream.send({"op": "msg", "msg": control_message(obj)})

    def fileno(self) -> int:
        return self._stream.fileno()

    def close(self) -> None:
        """Close the control side; the endpoint ends with it (as a local one loses its pipe)."""
        self._stream.close()


def agent_budget_s(settings: EndpointSettings) -> float:
    """How long a far endpoint may live: its timeouts, its sending time, and a margin.

    The far end's ``timeout`` kills it after this, whatever happens to the controller.
    """
    sending = settings.duration_s if settings.duration_s is not None else 0.0
    if settings.rate > 0 and math.isfinite(settings.rate):
        sending = max(sending, settings.count / settings.rate)
    budget = (
        settings.connect_timeout_s
        + sending
        + settings.run_timeout_s
        + settings.drain_timeout_s
        + AGENT_MARGIN_S
    )
    return min(budget, MAX_AGENT_S)


def spawn_remote(
    host: RemoteHost,
    role: str,
    protocol: str,
    settings: EndpointSettings,
    *,
    budget_s: float | None = None,
) -> tuple[RemoteEndpoint, RemoteControl]:
    """Start the ``protocol`` endpoint ``role`` on ``host``; return it and its control.

    ``protocol`` is ``"tcp"``, ``"udp"``, ``"raw"`` (a :class:`~lab.scenario.Protocol`
    will do) or ``"probe"``; ``role`` names the side as the local run does ("server",
    "client-1", "probe-server"). Returns once the far endpoint is starting (its Python
    is up), so the caller's "ready" timeout measures the endpoint, not SSH. The agent
    is ended by the far end's ``timeout`` after ``budget_s`` (default
    :func:`agent_budget_s`), and by :meth:`RemoteEndpoint.kill` or the host's close.
    """
    protocol = str(protocol)
    if protocol not in PROTOCOLS:
        raise HostError(f"{host}: no remote endpoint for protocol {protocol!r}")
    stream = host.start_agent(budget_s if budget_s is not None else agent_budget_s(settings))
    try:
        stream.send({"op": "run", "protocol": protocol, "role": role, "settings": encode(settings)})
        pid = _reply(stream, host, f"the {role} agent", "started").get("pid")
        if type(pid) is not int:
            raise HostError(f"{host}: the {role} agent started without a process id")
    except BaseException:
        stream.close()
        raise
    return RemoteEndpoint(f"lab-{role}@{host}", host, stream, pid), RemoteControl(
        host, role, stream
    )


def _reply(stream: AgentStream, host: RemoteHost, what: str, expected: str) -> dict[str, Any]:
    """The agent's next answer, which must be ``expected``; its refusal or silence (after
    :data:`AGENT_START_S`) as a one-line HostError naming ``what`` asked."""
    if not stream.poll(AGENT_START_S):
        raise HostError(f"{host}: {what} did not answer within {AGENT_START_S:g} s")
    try:
        reply = stream.receive()
    except EOFError:
        raise stream.failure() from None
    if reply["op"] == "error":
        raise HostError(f"{host}: {one_line(reply.get('error'))}")
    if reply["op"] != expected:
        raise HostError(f"{host}: {what} answered {reply['op']!r}, not {expected!r}")
    return reply


class RemoteNetem:
    """A netem qdisc on a far host's interface, held by an agent for as long as it runs:
    ending the agent (close, logout, a dead controller) deletes the qdisc."""

    def __init__(self, host: RemoteHost, interface: str, args: list[str]) -> None:
        self.host, self.interface = host, interface
        self._stream = host.start_agent(MAX_AGENT_S)
        try:
            self._stream.send({"op": "netem", "interface": interface, "args": args})
            _reply(self._stream, host, f"tc netem on {interface}", "started")
        except BaseException:
            self._stream.close()
            raise

    def close(self) -> None:
        """Remove the qdisc (the agent deletes it as it ends); idempotent."""
        with contextlib.suppress(BrokenPipeError, OSError):
            self._stream.send({"op": "bye"})
        self._stream.join(5.0)
        self._stream.close()


class RemoteCapture:
    """The lab's sniffer on a far host's interface: start, stop, and its pcap copied here.

    The far agent captures into a private folder of its own and removes it when told
    ``bye`` or when this side goes away, so nothing is left there either way.
    """

    def __init__(self, host: RemoteHost, interface: str, budget_s: float) -> None:
        self.host, self.interface = host, interface
        self._stream = host.start_agent(budget_s)
        try:
            self._stream.send({"op": "capture", "interface": interface})
            reply = _reply(self._stream, host, f"the capture on {interface}", "started")
            path = reply.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                raise HostError(f"{host}: the capture agent gave no pcap path")
            self.remote_path = path
        except BaseException:
            self._stream.close()
            raise

    def stop(self, local_path: Path) -> CaptureStats:
        """Stop capturing, copy the pcap to ``local_path``; the sniffer's counts."""
        try:
            self._stream.send({"op": "msg", "msg": ["stop"]})
            what = f"the capture on {self.interface}"
            counts = _reply(self._stream, self.host, what, "result").get("result")
            if not isinstance(counts, dict) or not all(
                type(counts.get(k)) is int and counts[k] >= 0 for k in CAPTURE_COUNTS
            ):
                raise HostError(f"{self.host}: the capture's counts are not valid")
            fetch_file(self.host, self.remote_path, local_path)
            with contextlib.suppress(BrokenPipeError):
                self._stream.send({"op": "bye"})
        finally:
            self.close()
        values = {k: int(counts[k]) for k in CAPTURE_COUNTS}
        return CaptureStats(path=local_path, interface=self.interface, netns=None, **values)

    def close(self) -> None:
        """End the far capture (its folder goes with it); idempotent."""
        self._stream.close()


def fetch_file(
    host: RemoteHost,
    remote_path: str,
    local_path: Path | str,
    *,
    max_bytes: int = MAX_FETCH_BYTES,
    timeout_s: float = 600.0,
) -> Path:
    """Copy the regular file ``remote_path`` on ``host`` to ``local_path`` over SFTP.

    Never writes through a symbolic link: a destination that is one is refused, the copy
    goes to a new file (O_EXCL, O_NOFOLLOW) beside it, and a rename puts it in place, so
    a link planted meanwhile is replaced, not followed. Refuses anything but a regular
    file on the far end, and more than ``max_bytes``.
    """
    local = Path(local_path)
    directory = os.open(local.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _refuse_non_file(local, directory)
        temporary = f".{local.name}.{secrets.token_hex(4)}.part"
        fd = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
            dir_fd=directory,
        )
        try:
            with os.fdopen(fd, "wb") as out:
                host.run_on_connection(
                    partial(_download, str(host), remote_path, out, max_bytes), timeout_s
                )
            _refuse_non_file(local, directory)
            os.replace(temporary, local.name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=directory)
            raise
    finally:
        os.close(directory)
    return local


def _refuse_non_file(local: Path, directory: int) -> None:
    try:
        status = os.lstat(local.name, dir_fd=directory)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(status.st_mode):
        raise HostError(f"{local}: is a symbolic link; refusing to write through it")
    if not stat.S_ISREG(status.st_mode):
        raise HostError(f"{local}: exists and is not a regular file")


async def _download(
    host: str,
    remote_path: str,
    out: IO[bytes],
    max_bytes: int,
    connection: asyncssh.SSHClientConnection,
) -> None:
    try:
        async with connection.start_sftp_client() as sftp:
            attributes = await sftp.stat(remote_path)
            if attributes.permissions is None or not stat.S_ISREG(attributes.permissions):
                raise HostError(f"{host}:{remote_path}: not a regular file")
            if attributes.size is not None and attributes.size > max_bytes:
                raise HostError(f"{host}:{remote_path}: {attributes.size} bytes, over {max_bytes}")
            copied = 0
            async with sftp.open(remote_path, "rb") as remote:
                while chunk := await remote.read(1 << 18):
                    assert isinstance(chunk, bytes)  # opened "rb"
                    copied += len(chunk)
                    if copied > max_bytes:
                        raise HostError(f"{host}:{remote_path}: grew past {max_bytes} bytes")
                    out.write(chunk)
    except asyncssh.SFTPError as error:
        raise HostError(f"{host}:{remote_path}: {one_line(error.reason)}") from None
