"""SSH to the far hosts: log in with keys, check the far end, run bounded agents there.

asyncssh does the SSH (key exchange, host keys from known_hosts, the user's
``~/.ssh/config``); a private event loop thread runs it, so the synchronous lab calls it
like any other function, with a timeout on every wait. Every failure a user can cause
becomes one line of :class:`~lab.errors.HostError`: unknown or changed host key,
refused login, no sshd, no protolab (or another version) on the far end, no rights to
capture there.

Every remote process is the agent (:mod:`lab.hosts.agent`) under ``timeout
--kill-after`` on the far end, so it ends by itself whatever happens here; from this
side, closing its channel (exit, error, Ctrl-C) ends it at once: the agent exits when
its stdin ends, and a TERM follows for one that does not. A killed controller drops the
connection, which ends the channels, which ends the agents.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import math
import os
import re
import select
import shlex
import socket
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from lab._version import __version__
from lab.errors import HostError, one_line
from lab.hosts._wire import MAX_LINE_BYTES, WireError, decode, dumps_line, loads_line
from lab.hosts.agent import HostInfo
from lab.hosts.clock import Exchange, OffsetEstimate, estimate_offset

__all__ = [
    "AgentStream",
    "HostSpec",
    "RemoteHost",
    "SSHOptions",
    "close_all",
    "connect",
    "offset_between",
]

T = TypeVar("T")

#: ``timeout --kill-after``: how long after its TERM an agent that lingers gets a KILL.
KILL_AFTER_S = 5
#: Budget of a short agent (hello, clock exchanges).
SHORT_AGENT_S = 60.0
#: How long an agent may take to start (Python and the lab's imports) and answer.
AGENT_START_S = 30.0
#: Waits on a closing channel: after this, it is closed from our side regardless.
CLOSE_GRACE_S = 1.0

_SPEC = re.compile(
    r"^(?:(?P<user>[^@\s:]+)@)?"  # user@, optional
    r"(?P<host>[^@\s:\[\]]+|\[[0-9a-fA-F:.]+\])"  # name, IPv4, or [IPv6]
    r"(?::(?P<port>\d+))?$"  # :port, optional
)


@dataclass(frozen=True)
class HostSpec:
    """``user@host[:port]`` as the user wrote it; empty parts come from ``~/.ssh/config``."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> HostSpec:
        """Parse ``[user@]host[:port]`` (``[v6addr]:port`` for IPv6)."""
        match = _SPEC.match(text.strip())
        port = int(match["port"]) if match and match["port"] else None
        if match is None or (port is not None and not 0 < port < 65536):
            raise HostError(f"{text!r}: not a host; expected user@host or user@host:port")
        return cls(match["host"].strip("[]"), match["user"], port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        return f"{user}{host}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class SSHOptions:
    """How to reach the far hosts. ``None``: what ``~/.ssh`` (config, known_hosts, keys) says.

    Explicit paths are for tests and unusual set-ups; ``python`` is the far end's
    interpreter that has protolab installed (``python3`` on its PATH by default).
    """

    known_hosts: Path | None = None
    client_keys: tuple[Path, ...] | None = None
    config: Path | None = None
    use_agent: bool = True
    python: str = "python3"
    connect_timeout_s: float = 10.0


class _Loop:
    """One event loop thread for every SSH connection of the process."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="lab-ssh", daemon=True).start()
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """Run ``coroutine`` on the loop; a timeout or Ctrl-C here cancels it there."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout_s)
        except BaseException:
            future.cancel()
            raise


_LOOP = _Loop()
_OPEN_HOSTS: weakref.WeakSet[RemoteHost] = weakref.WeakSet()


@atexit.register
def close_all() -> None:
    """Log out of every host: nothing stays running on any (each close is bounded).

    At exit, and when a sweep spread over host pairs is interrupted."""
    for host in list(_OPEN_HOSTS):
        with contextlib.suppress(Exception):
            host.close()


class _Agent:
    """One agent process on the far end, seen from the loop thread."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        self._process = process
        self._buffer = bytearray()
        self._scanned = 0
        self._stderr = bytearray()
        self._stderr_task = asyncio.get_running_loop().create_task(self._drain_stderr())

    @classmethod
    async def start(
        cls, connection: asyncssh.SSHClientConnection, python: str, budget_s: float
    ) -> _Agent:
        """``python -m lab.hosts.agent`` there, ended by ``timeout`` after ``budget_s``."""
        command = (
            f"cd / && exec timeout --kill-after={KILL_AFTER_S} {math.ceil(budget_s)} "
            f"{shlex.quote(python)} -m lab.hosts.agent"
        )
        process = await connection.create_process(command, encoding=None)
        return cls(process)

    async def _drain_stderr(self) -> None:
        with contextlib.suppress(Exception):
            while chunk := await self._process.stderr.read(65536):
                self._stderr += chunk
                del self._stderr[:-4096]

    async def send(self, message: dict[str, Any]) -> None:
        if self._process.is_closing() or self._process.stdin.is_closing():
            raise BrokenPipeError("the agent's channel is closed")
        self._process.stdin.write(dumps_line(message))
        await self._process.stdin.drain()

    async def receive(self) -> dict[str, Any] | None:
        """The next message; None when the agent's output ended."""
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                self._scanned = 0
                return loads_line(line)
            self._scanned = len(self._buffer)
            if len(self._buffer) > MAX_LINE_BYTES:
                raise WireError(f"the agent sent a line longer than {MAX_LINE_BYTES} bytes")
            chunk = await self._process.stdout.read(1 << 20)
            if not chunk:
                if self._buffer:
                    raise WireError("the agent's output ended inside a line")
                return None
            self._buffer += chunk

    async def wait_exit(self, timeout_s: float) -> int | None:
        """The agent's exit status once its channel closed (None: not within the timeout)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait_closed(), timeout_s)
        return self._process.exit_status if self._process.is_closing() else None

    @property
    def running(self) -> bool:
        return not self._process.is_closing()

    @property
    def exit_status(self) -> int | None:
        return None if self.running else self._process.exit_status

    def stderr_tail(self) -> str:
        lines = bytes(self._stderr).decode(errors="replace").strip().splitlines()
        return lines[-1].strip() if lines else ""

    async def close(self) -> None:
        """End the agent: stdin EOF (it exits), then TERM, then the channel closes."""
        if self._process.is_closing():
            return
        with contextlib.suppress(Exception):
            self._process.stdin.write_eof()
        if await self.wait_exit(CLOSE_GRACE_S) is None:
            with contextlib.suppress(Exception):
                self._process.send_signal("TERM")  # timeout passes it on to the agent
            self._process.close()
            await self.wait_exit(CLOSE_GRACE_S)
        self._stderr_task.cancel()


def _agent_failure(host: str, python: str, exit_status: int | None, stderr: str) -> HostError:
    """Why an agent ended before answering, in one line."""
    if exit_status == 127 or "not found" in stderr:
        return HostError(
            f"{host}: {python!r} not found there; install protolab on it (pip install "
            f"protolab=={__version__}) and name its Python"
        )
    if "No module named" in stderr:
        return HostError(
            f"{host}: protolab is not installed for {python} there ({stderr}); "
            f"install protolab=={__version__} on it"
        )
    if exit_status == 124:
        return HostError(f"{host}: the agent ran out of its time budget there")
    status = "" if exit_status is None else f" (exit status {exit_status})"
    return HostError(f"{host}: the agent ended before answering{status}: {stderr or 'no message'}")


class AgentStream:
    """A running agent for a synchronous caller: send, poll, receive, and a wake fd.

    Messages are read on the loop thread, validated, and queued; one byte per message
    on a pipe makes :meth:`fileno` readable exactly while something is waiting, so the
    stream works with ``select`` like a :class:`multiprocessing.connection.Connection`.
    """

    def __init__(self, host: RemoteHost, agent: _Agent) -> None:
        self._host = host
        self._agent = agent
        self._queue: collections.deque[dict[str, Any] | BaseException | None] = collections.deque()
        self._read_fd, self._write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self._write_fd, False)
        self._ended = False
        self._closed = False
        self._terminated = False
        self._pump_task: asyncio.Task[None] | None = None  # held: a bare task may be collected
        self._fds = weakref.finalize(self, _close_fds, self._read_fd, self._write_fd)

    async def _pump(self) -> None:
        item: dict[str, Any] | BaseException | None
        while True:
            try:
                item = await self._agent.receive()
            except WireError as error:
                item = HostError(f"{self._host}: the agent's output is not valid: {error}")
            except Exception as error:
                item = HostError(f"{self._host}: lost the agent: {one_line(error)}")
            self._queue.append(item)
            with contextlib.suppress(OSError):
                os.write(self._write_fd, b"\0")
            if not isinstance(item, dict):
                return

    def send(self, message: dict[str, Any]) -> None:
        """Send one message; BrokenPipeError once the agent is gone."""
        if self._closed:
            raise BrokenPipeError("the agent's stream is closed")
        try:
            _LOOP.run(self._agent.send(message), AGENT_START_S)
        except (OSError, asyncssh.Error) as error:
            raise BrokenPipeError(f"{self._host}: {one_line(error)}") from None

    def poll(self, timeout_s: float | None = 0.0) -> bool:
        """Whether a message (or the end) is waiting, after up to ``timeout_s`` (None: forever)."""
        if self._closed:
            raise OSError("the agent's stream is closed")
        ready, _, _ = select.select([self._read_fd], [], [], timeout_s)
        return bool(ready)

    def receive(self) -> dict[str, Any]:
        """The next message (blocks); EOFError when the agent ended, HostError when it lied."""
        if self._closed:
            raise OSError("the agent's stream is closed")
        if self._ended:
            raise EOFError
        os.read(self._read_fd, 1)
        item = self._queue.popleft()
        if isinstance(item, dict):
            return item
        self._ended = True
        os.write(self._write_fd, b"\0")  # the end stays readable, as a closed pipe does
        if item is None:
            raise EOFError
        raise item

    def fileno(self) -> int:
        return self._read_fd

    def failure(self) -> HostError:
        """Why the agent ended early (its exit status and last line on stderr)."""
        status = _LOOP.run(self._agent.wait_exit(CLOSE_GRACE_S), CLOSE_GRACE_S + 5)
        return _agent_failure(str(self._host), self._host.options.python, status, self.stderr())

    def stderr(self) -> str:
        return self._agent.stderr_tail()

    def join(self, timeout_s: float | None = None) -> None:
        """Wait until the agent has exited (at most ``timeout_s``; briefly once terminated)."""
        wait = math.inf if timeout_s is None else timeout_s
        if self._terminated:  # its channel is closed from here: nothing more to wait for
            wait = min(wait, CLOSE_GRACE_S)
        with contextlib.suppress(TimeoutError):
            _LOOP.run(self._agent.wait_exit(min(wait, 1e6)), min(wait, 1e6) + 5)

    @property
    def running(self) -> bool:
        return self._agent.running

    @property
    def exit_status(self) -> int | None:
        return self._agent.exit_status

    def terminate(self) -> None:
        """End the agent now (idempotent); its messages already queued stay readable."""
        self._terminated = True
        with contextlib.suppress(Exception):
            _LOOP.run(self._agent.close(), 4 * CLOSE_GRACE_S + 5)
        self._host._forget(self)

    def close(self) -> None:
        """End the agent and release the stream."""
        self.terminate()
        self._closed = True
        self._fds()


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class RemoteHost:
    """A far host we are logged in to; close it (or ``with``) to end all we run there."""

    def __init__(
        self,
        spec: HostSpec,
        options: SSHOptions,
        connection: asyncssh.SSHClientConnection,
        info: HostInfo,
    ) -> None:
        self.spec = spec
        self.options = options
        self.info = info
        self.last_offset: OffsetEstimate | None = None
        """Its clock minus ours, as :meth:`clock_offset` last measured it."""
        self._connection = connection
        self._streams: set[AgentStream] = set()
        self._lock = threading.Lock()
        self._closed = False
        _OPEN_HOSTS.add(self)

    def __str__(self) -> str:
        return str(self.spec)

    def __enter__(self) -> RemoteHost:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def require_capture(self) -> None:
        """Refuse, in one line, when the far end could not capture (root or CAP_NET_RAW).

        Judged by the agent's effective capabilities, not its uid: a root without
        CAP_NET_RAW (a container, a dropped bounding set) cannot capture either.
        """
        if not self.info.cap_net_raw:
            who = "root" if self.info.uid == 0 else f"uid {self.info.uid}"
            raise HostError(
                f"{self}: capturing there needs root with CAP_NET_RAW, and the agent runs "
                f"as {who} without it; log in as root, or give its Python "
                "cap_net_raw,cap_net_admin+ep (setcap)"
            )

    def start_agent(self, budget_s: float) -> AgentStream:
        """A new agent there, ended by the far end's ``timeout`` after ``budget_s``."""
        if self._closed:
            raise HostError(f"{self}: the connection is closed")

        async def start() -> AgentStream:
            agent = await _Agent.start(self._connection, self.options.python, budget_s)
            stream = AgentStream(self, agent)
            stream._pump_task = asyncio.get_running_loop().create_task(stream._pump())
            return stream

        try:
            stream = _LOOP.run(start(), AGENT_START_S)
        except (OSError, asyncssh.Error) as error:
            raise HostError(f"{self}: could not start the agent: {one_line(error)}") from None
        with self._lock:
            self._streams.add(stream)
        return stream

    def _forget(self, stream: AgentStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def run_on_connection(
        self,
        work: Callable[[asyncssh.SSHClientConnection], Awaitable[T]],
        timeout_s: float,
    ) -> T:
        """Run ``work(connection)`` on the SSH loop (SFTP and the like), at most ``timeout_s``."""

        async def call() -> T:
            return await work(self._connection)

        return _LOOP.run(call(), timeout_s)

    def clock_offset(self, count: int = 16) -> OffsetEstimate:
        """This host's clock minus ours, within its bound, from ``count`` exchanges.

        Timestamps are taken on the loop thread right around each request and reply,
        so the bound is the control channel's fastest round trip / 2 (a fraction of a
        millisecond on a LAN).
        """
        if self._closed:
            raise HostError(f"{self}: the connection is closed")
        try:
            rows = _LOOP.run(
                _exchanges(self._connection, self.options.python, str(self), count),
                SHORT_AGENT_S,
            )
        except WireError as error:
            raise HostError(f"{self}: bad clock answer: {error}") from None
        except (OSError, asyncssh.Error) as error:
            raise HostError(f"{self}: clock exchanges failed: {one_line(error)}") from None
        self.last_offset = estimate_offset(rows)
        return self.last_offset

    def close(self) -> None:
        """End every agent still running there, then the connection (idempotent, bounded)."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.close()

        async def close_connection() -> None:
            self._connection.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connection.wait_closed(), 2 * CLOSE_GRACE_S)

        with contextlib.suppress(Exception):
            _LOOP.run(close_connection(), 2 * CLOSE_GRACE_S + 5)
        _OPEN_HOSTS.discard(self)


async def _exchanges(
    connection: asyncssh.SSHClientConnection, python: str, host: str, count: int
) -> list[Exchange]:
    """``count`` four-timestamp exchanges with a fresh agent (closed again in any case)."""
    agent = await _Agent.start(connection, python, SHORT_AGENT_S)
    try:
        rows = []
        for _ in range(count):
            t1 = time.time_ns()
            await agent.send({"op": "clock"})
            reply = await agent.receive()
            t4 = time.time_ns()
            if reply is None:
                status = await agent.wait_exit(CLOSE_GRACE_S)
                raise _agent_failure(host, python, status, agent.stderr_tail())
            t2, t3 = reply.get("t2"), reply.get("t3")
            if reply["op"] != "clock" or type(t2) is not int or type(t3) is not int:
                raise WireError(f"expected clock stamps, got {reply!r:.80}")
            rows.append((t1, t2, t3, t4))
        await agent.send({"op": "bye"})
        return rows
    finally:
        await agent.close()


def offset_between(a: RemoteHost, b: RemoteHost, count: int = 16) -> OffsetEstimate:
    """``b``'s clock minus ``a``'s, measured from here: each against ours, bounds added.

    With a's offset in [θa ± ea] and b's in [θb ± eb] (both against this host's clock),
    b minus a lies in [θb - θa ± (ea + eb)], whatever this host's own clock does.
    """
    first, second = a.clock_offset(count), b.clock_offset(count)
    return OffsetEstimate(
        offset_ns=second.offset_ns - first.offset_ns,
        bound_ns=second.bound_ns + first.bound_ns,
        at_ns=(first.at_ns + second.at_ns) // 2,
        min_delay_ns=first.min_delay_ns + second.min_delay_ns,
        samples=first.samples + second.samples,
        consistent=first.consistent and second.consistent,
    )


def connect(
    spec: str | HostSpec,
    options: SSHOptions | None = None,
    *,
    require_capture: bool = False,
) -> RemoteHost:
    """Log in to ``spec`` with a key and check protolab there; HostError if anything fails."""
    spec = spec if isinstance(spec, HostSpec) else HostSpec.parse(spec)
    options = options or SSHOptions()
    budget = options.connect_timeout_s + AGENT_START_S + 5
    try:
        connection, info = _LOOP.run(_login(spec, options), budget)
    except HostError:
        raise
    except TimeoutError:
        raise HostError(
            f"{spec}: no answer within {options.connect_timeout_s:g} s (host down, or filtered)"
        ) from None
    except (OSError, asyncssh.Error, ValueError, WireError) as error:
        raise _login_error(spec, options, error) from None
    host = RemoteHost(spec, options, connection, info)
    try:
        if info.version != __version__:
            raise HostError(
                f"{spec}: protolab {info.version} there, {__version__} here; "
                "install the same version on both hosts"
            )
        if require_capture:
            host.require_capture()
    except BaseException:
        host.close()
        raise
    return host


def _connect_arguments(spec: HostSpec, options: SSHOptions) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "host": spec.host,
        "preferred_auth": "publickey",
        "connect_timeout": options.connect_timeout_s,
        "keepalive_interval": 10,
        "keepalive_count_max": 3,
    }
    if spec.user:
        arguments["username"] = spec.user
    if spec.port:
        arguments["port"] = spec.port
    if options.config is not None:
        arguments["config"] = [str(options.config)]
    if options.known_hosts is not None:
        arguments["known_hosts"] = str(options.known_hosts)
    if options.client_keys is not None:
        arguments["client_keys"] = [str(path) for path in options.client_keys]
    if not options.use_agent:
        arguments["agent_path"] = None
    return arguments


async def _login(
    spec: HostSpec, options: SSHOptions
) -> tuple[asyncssh.SSHClientConnection, HostInfo]:
    connection = await asyncssh.connect(**_connect_arguments(spec, options))
    try:
        agent = await _Agent.start(connection, options.python, SHORT_AGENT_S)
        try:
            await agent.send({"op": "hello"})
            reply = await asyncio.wait_for(agent.receive(), AGENT_START_S)
            if reply is None or reply["op"] != "hello":
                if reply is not None:
                    raise WireError(f"expected hello, got {reply!r:.80}")
                status = await agent.wait_exit(CLOSE_GRACE_S)
                raise _agent_failure(str(spec), options.python, status, agent.stderr_tail())
            info = decode(HostInfo, reply.get("info"))
            with contextlib.suppress(OSError, asyncssh.Error):
                await agent.send({"op": "bye"})
        finally:
            await agent.close()
    except BaseException:
        connection.close()
        raise
    return connection, info


def _login_error(spec: HostSpec, options: SSHOptions, error: BaseException) -> HostError:
    """One line for a failed login (host key, auth, network, far end)."""
    if isinstance(error, asyncssh.HostKeyNotVerifiable):
        known = options.known_hosts or Path("~/.ssh/known_hosts").expanduser()
        if _listed(known, spec):
            return HostError(
                f"{spec}: host key mismatch: it offered a key other than the one {known} "
                "lists for it (reinstalled host, or someone in between); do not go on "
                "until you know why"
            )
        return HostError(
            f"{spec}: unknown host key: {spec.host} is not in {known}; check its "
            f"fingerprint and add it (ssh {spec} once, or ssh-keyscan)"
        )
    if isinstance(error, asyncssh.PermissionDenied):
        return HostError(
            f"{spec}: login refused: the server accepted none of the keys offered "
            "(key-based login only); add your public key to the user's "
            "~/.ssh/authorized_keys there"
        )
    if isinstance(error, ConnectionRefusedError):
        return HostError(f"{spec}: connection refused (no sshd on port {spec.port or 22})")
    if isinstance(error, socket.gaierror):
        return HostError(f"{spec}: unknown host ({error.strerror})")
    if isinstance(error, WireError):
        return HostError(f"{spec}: the agent's answer is not valid: {error}")
    if isinstance(error, asyncssh.Error):
        return HostError(f"{spec}: ssh: {one_line(error.reason)}")
    if isinstance(error, OSError) and error.strerror:
        return HostError(f"{spec}: {error.strerror}")
    return HostError(f"{spec}: {one_line(error)}")


def _listed(known_hosts: Path, spec: HostSpec) -> bool:
    """Does known_hosts hold any key for the host (then a refusal is a mismatch)?"""
    try:
        trusted = asyncssh.match_known_hosts(str(known_hosts), spec.host, spec.host, spec.port)
    except (OSError, ValueError):
        return False
    return bool(trusted[0])
