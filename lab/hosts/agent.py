"""The far end's agent: ``python -m lab.hosts.agent``, started over SSH, speaking JSON lines.

It runs on the far host under ``timeout --kill-after`` (see :mod:`lab.hosts.ssh`) and
reads one request per line on stdin, answering one JSON object per line on stdout:

- ``{"op": "hello"}`` -> ``{"op": "hello", "info": HostInfo}``: version, uid and
  capabilities, kernel, interface MTUs, so the controller can refuse early and say why.
- ``{"op": "clock"}`` -> ``{"op": "clock", "t2": ns, "t3": ns}``: the far half of an
  NTP-style four-timestamp exchange (:mod:`lab.hosts.clock`), CLOCK_REALTIME as the
  endpoints' own timestamps.
- ``{"op": "run", "protocol": ..., "role": ..., "settings": EndpointSettings}`` ->
  ``{"op": "started"}``, then ``{"op": "msg", "msg": [...]}`` for each control message
  the endpoint sends (``["ready"]``), and finally ``{"op": "result", "result":
  EndpointResult}``; the agent then exits. Meanwhile ``{"op": "msg", "msg":
  ["sender_done", ns]}`` or ``["stop"]`` reach the endpoint as they would over its pipe.
- ``{"op": "capture", "interface": name}`` -> ``{"op": "started", "path": pcap}``: the
  lab's sniffer on that interface, into a new private folder; ``{"op": "msg", "msg":
  ["stop"]}`` stops it -> ``{"op": "result", "result": {counts}}``; the controller then
  copies the pcap (SFTP) and says ``bye``: the folder is removed (also at the end of stdin).
- ``{"op": "netem", "interface": name, "args": [...]}`` -> ``{"op": "started"}`` once
  ``tc qdisc replace dev <name> root netem <args>`` took (or ``error``, with tc's reason);
  the qdisc is deleted again at ``bye`` or the end of stdin (the controller is gone).
- ``{"op": "bye"}``, or the end of stdin: exit. The end of stdin during a run means the
  controller is gone (closed, killed, Ctrl-C): the endpoint is abandoned at once.

The endpoint bodies run unchanged: they get a real :class:`multiprocessing.Connection`
whose other end two threads bridge to stdin and stdout. Nothing is pickled across the
network; the endpoint's own output (print, warnings) goes to stderr so it can never
corrupt the protocol.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

from lab._version import __version__
from lab.hosts._wire import (
    MAX_LINE_BYTES,
    WireError,
    control_message,
    decode,
    dumps_line,
    encode,
    loads_line,
)

__all__ = [
    "CAPTURE_COUNTS",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "PROTOCOLS",
    "HostInfo",
    "host_info",
    "main",
]

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
#: What ``run`` accepts: the exchanges' protocols and the latency probe.
PROTOCOLS = ("tcp", "udp", "raw", "probe")
#: Exit status when the controller went away mid-run.
_GONE = 3

_Body = Callable[[Any, Connection, Any], None]


@dataclass(frozen=True)
class HostInfo:
    """What a far host is: enough to refuse early and for the report to say where it ran."""

    version: str
    hostname: str
    kernel: str
    python: str
    uid: int
    cap_net_raw: bool
    cap_net_admin: bool
    mtu: dict[str, int]
    addresses: dict[str, list[str]]
    """Each interface's IPv4 addresses: the lab finds the one that holds the exchange's."""


def _effective_capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _mtus() -> dict[str, int]:
    mtus = {}
    for entry in sorted(Path("/sys/class/net").iterdir()):
        with contextlib.suppress(OSError, ValueError):
            mtus[entry.name] = int((entry / "mtu").read_text())
    return mtus


def _addresses() -> dict[str, list[str]]:
    """IPv4 addresses by interface name, from the kernel over netlink (pyroute2)."""
    from pyroute2 import IPRoute  # noqa: PLC0415

    found: dict[str, list[str]] = {}
    with contextlib.suppress(OSError), IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for entry in ipr.get_addr(family=socket.AF_INET):
            name = names.get(entry["index"])
            address = entry.get_attr("IFA_ADDRESS")
            if isinstance(name, str) and isinstance(address, str):
                found.setdefault(name, []).append(address)
    return found


def host_info() -> HostInfo:
    """This host's facts, as the controller asks for them."""
    caps = _effective_capabilities()
    uname = os.uname()
    return HostInfo(
        version=__version__,
        hostname=socket.gethostname(),
        kernel=f"{uname.sysname} {uname.release} {uname.machine}",
        python=sys.version.split()[0],
        uid=os.geteuid(),
        cap_net_raw=bool(caps >> CAP_NET_RAW & 1),
        cap_net_admin=bool(caps >> CAP_NET_ADMIN & 1),
        mtu=_mtus(),
        addresses=_addresses(),
    )


class _Output:
    """The protocol's stdout: whole lines, one writer at a time; a dead reader ends us."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = dumps_line(message)
        with self._lock:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:  # EPIPE: the controller is gone
                os._exit(_GONE)


def _claim_stdout() -> _Output:
    """Keep the real stdout for the protocol; fd 1 becomes stderr for everything else."""
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    return _Output(fd)


def _read_request(stdin: IO[bytes]) -> tuple[dict[str, Any] | None, int]:
    """The next request and when its line arrived (None at the end of stdin)."""
    line = stdin.readline(MAX_LINE_BYTES + 1)
    arrived = time.time_ns()
    if not line:
        return None, arrived
    if not line.endswith(b"\n"):
        raise WireError("request line too long or cut short")
    return loads_line(line), arrived


def _endpoint_body(protocol: str, role: str) -> _Body:
    """The same serve/run_client the local run forks (imported only when needed: slow)."""
    words = role.split("-")
    side = "server" if "server" in words else "client" if "client" in words else None
    if side is None:
        raise WireError(f"role {role!r} names neither server nor client")
    # imported here, not at the top: ``hello`` and ``clock`` answer without pandas & co
    from lab.exchanges import endpoint_body  # noqa: PLC0415

    try:
        return endpoint_body(protocol, side)
    except (ValueError, KeyError):
        raise WireError(f"protocol {protocol!r} has no exchange") from None


def _run(request: dict[str, Any], stdin: IO[bytes], out: _Output) -> int:
    """Run one endpoint, bridged to stdin/stdout, and send its result (then exit)."""
    from lab.exchanges import _kernel  # noqa: PLC0415
    from lab.exchanges._endpoint import EndpointResult, EndpointSettings  # noqa: PLC0415

    protocol, role = request.get("protocol"), request.get("role")
    if protocol not in PROTOCOLS or not isinstance(role, str) or not role:
        raise WireError(f"run: bad protocol {protocol!r} or role {role!r}")
    settings = decode(EndpointSettings, request.get("settings"))
    body = _endpoint_body(protocol, role)
    ours, theirs = Pipe()
    out.send({"op": "started", "pid": os.getpid()})

    def inbound() -> None:  # controller -> endpoint; the end of stdin ends us
        try:
            while True:
                message, _ = _read_request(stdin)
                if message is None:
                    os._exit(_GONE)
                if message["op"] == "msg":
                    ours.send(tuple(control_message(message.get("msg"))))
        except Exception as error:
            print(f"agent: bad request from the controller: {error}", file=sys.stderr)
            os._exit(_GONE)

    def outbound() -> None:  # endpoint -> controller, the result last
        while True:
            try:
                message = ours.recv()
            except EOFError:
                return
            if message[0] == "result":
                try:
                    out.send({"op": "result", "result": encode(message[1])})
                except WireError as error:
                    out.send({"op": "error", "error": f"result: {error}"})
                return
            out.send({"op": "msg", "msg": control_message(list(message))})

    threading.Thread(target=inbound, name="agent-in", daemon=True).start()
    sender = threading.Thread(target=outbound, name="agent-out", daemon=True)
    sender.start()
    result = EndpointResult(role=role)
    try:
        before = _kernel.read_counters()
        result.started_ns = time.time_ns()
        body(settings, theirs, result)
        result.ended_ns = time.time_ns()
        counters = _kernel.difference(_kernel.read_counters(), before)
        result.counters = {**counters, **result.counters}
    except Exception as error:  # reported to the controller, which raises ExchangeError
        result.error = f"{type(error).__name__}: {error}"
        result.error += "\n" + traceback.format_exc(limit=4)
    theirs.send(("result", result))
    sender.join()
    return 0


#: What a capture's result carries: the sniffer's counts (:class:`CaptureStats` fields).
CAPTURE_COUNTS = (
    "packets",
    "bytes",
    "kernel_packets",
    "kernel_drops",
    "started_ns",
    "stopped_ns",
    "linktype",
)


def _capture(request: dict[str, Any], stdin: IO[bytes], out: _Output) -> int:
    """Capture on one interface until told to stop; keep the pcap until ``bye``."""
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from lab.capture.sniffer import Sniffer  # noqa: PLC0415

    interface = request.get("interface")
    if not isinstance(interface, str) or not (Path("/sys/class/net") / interface).is_dir():
        raise WireError(f"capture: no interface {interface!r} here")
    folder = Path(tempfile.mkdtemp(prefix="protolab-capture-"))  # 0700, new: nobody else's
    try:
        sniffer = Sniffer(interface, folder / "capture.pcap")
        sniffer.start()
        out.send({"op": "started", "pid": os.getpid(), "path": str(folder / "capture.pcap")})
        try:
            while True:  # until "stop" (or the controller is gone)
                message, _ = _read_request(stdin)
                if message is None:
                    return _GONE
                if message["op"] == "msg" and control_message(message.get("msg"))[0] == "stop":
                    break
        finally:
            stats = sniffer.stop()
        out.send({"op": "result", "result": {k: getattr(stats, k) for k in CAPTURE_COUNTS}})
        while (message := _read_request(stdin)[0]) is not None and message["op"] != "bye":
            pass  # the controller copies the file meanwhile
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


#: netem's words and numbers only: the arguments travel as an argv, never through a shell.
_NETEM_ARG = re.compile(r"^[A-Za-z0-9_.%-]{1,32}$")


def _netem(request: dict[str, Any], stdin: IO[bytes], out: _Output) -> int:
    """Hold a netem qdisc on one interface for as long as the controller is there."""
    import subprocess  # noqa: PLC0415

    interface, args = request.get("interface"), request.get("args")
    if not isinstance(interface, str) or not (Path("/sys/class/net") / interface).is_dir():
        raise WireError(f"netem: no interface {interface!r} here")
    if (
        not isinstance(args, list)
        or not args
        or args[0] != "netem"
        or not all(isinstance(a, str) and _NETEM_ARG.match(a) for a in args)
    ):
        raise WireError(f"netem: not netem arguments: {args!r:.120}")
    # a TERM (``timeout``, the controller) must still run the deletion below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(_GONE))
    added = subprocess.run(
        ["tc", "qdisc", "replace", "dev", interface, "root", *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if added.returncode != 0:
        why = added.stderr.strip().splitlines()[0] if added.stderr.strip() else "tc failed"
        if "qdisc kind is unknown" in why:
            why = f"this kernel has no sch_netem ({why})"
        out.send({"op": "error", "error": f"tc netem on {interface}: {why}"})
        return 2
    try:
        out.send({"op": "started", "pid": os.getpid()})
        while (message := _read_request(stdin)[0]) is not None and message["op"] != "bye":
            pass  # held while the run goes on
        return 0
    finally:
        subprocess.run(
            ["tc", "qdisc", "del", "dev", interface, "root"],
            capture_output=True,
            timeout=10,
            check=False,
        )


def serve(stdin: IO[bytes], out: _Output) -> int:
    """Answer requests until ``bye``, the end of stdin, or the end of a ``run``."""
    while True:
        try:
            request, arrived = _read_request(stdin)
            if request is None or request["op"] == "bye":
                return 0
            op = request["op"]
            if op == "clock":
                out.send({"op": "clock", "t2": arrived, "t3": time.time_ns()})
            elif op == "hello":
                out.send({"op": "hello", "info": encode(host_info())})
            elif op == "run":
                return _run(request, stdin, out)
            elif op == "capture":
                return _capture(request, stdin, out)
            elif op == "netem":
                return _netem(request, stdin, out)
            else:
                raise WireError(f"unknown op {op!r}")
        except WireError as error:
            out.send({"op": "error", "error": str(error)})
            return 2


def main() -> int:
    """Entry point of ``python -m lab.hosts.agent``."""
    out = _claim_stdout()
    return serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    status = main()
    sys.stderr.flush()
    # not sys.exit: the stdin thread may hold stdin's lock, which would abort the
    # interpreter's shutdown; everything the controller needs is written already
    os._exit(status)
