"""Packet capture into pcap from a separate process: AF_PACKET + TPACKET_V3, no dissection.

:class:`Sniffer` forks a capture process. The child enters the network namespace, opens
a packet socket, checks the interface, attaches the BPF filter, maps a TPACKET_V3 ring
and only then hooks the socket to the interface (bind to ETH_P_ALL) and reports
"ready"; so once :meth:`Sniffer.start` returns, every packet that crosses the interface
(both directions) and passes the filter reaches the ring. The child copies each ring
block to the pcap file as records with the kernel's nanosecond timestamps, without
looking inside the packets (unless a live summary was asked for, which reads a
5-tuple at fixed offsets).

:meth:`Sniffer.stop` asks the child to finish: it keeps capturing for a short grace
period (packets still in flight), unhooks the socket, waits for the kernel to hand back
the last partly filled block, reads PACKET_STATISTICS, closes the file and sends the
:class:`CaptureStats` back.
"""

from __future__ import annotations

import contextlib
import errno
import math
import multiprocessing
import os
import select
import signal
import socket
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, BinaryIO

from lab.capture import _linux
from lab.capture.flows import FlowTable, LiveCounters
from lab.errors import CaptureError, LabError, PrivilegeError
from lab.pcap import ARPHRD_LOOPBACK, file_header, linktype_for_arphrd

#: Largest snapshot length (libpcap's MAXIMUM_SNAPLEN).
MAX_SNAPLEN = 262144
#: Ring geometry: 1 MiB blocks (room for a maximal snapshot), 32 of them.
BLOCK_SIZE = 1 << 20
BLOCK_COUNT = 32
#: The kernel hands over a partly filled block after this long (ms).
RETIRE_MS = 20
#: On stop, keep capturing this long for packets still in flight (s).
STOP_GRACE_S = 0.02
#: How long start() waits for the child to report ready, stop() for its stats (s).
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class CaptureStats:
    """How a capture went. ``kernel_drops`` > 0 means the pcap misses packets."""

    path: Path | None
    interface: str
    netns: str | None
    packets: int  # written to the pcap
    bytes: int  # original (on-the-wire) length of those packets
    kernel_packets: int  # PACKET_STATISTICS tp_packets (passed the filter, incl. drops)
    kernel_drops: int  # PACKET_STATISTICS tp_drops: ring full, lost
    started_ns: int  # wall clock (CLOCK_REALTIME) when the socket was hooked
    stopped_ns: int  # ... and unhooked
    linktype: int
    cpu_seconds: float = 0.0  # user + system time of the capture process

    @property
    def duration_s(self) -> float:
        return max(0, self.stopped_ns - self.started_ns) / 1e9


@dataclass(frozen=True)
class _Config:
    interface: str
    pcap_path: Path | None
    netns: str | None
    bpf: str | None
    snaplen: int
    count: int | None
    summary_interval: float | None
    top_flows: int
    block_size: int
    block_count: int


def _where(cfg: _Config) -> str:
    return f" in network namespace '{cfg.netns}'" if cfg.netns else ""


class _Capture:
    """The child's side: socket, ring, file. Built by :meth:`open`, run by :meth:`run`."""

    def __init__(self, cfg: _Config) -> None:
        self.cfg = cfg
        self.sock: socket.socket | None = None
        self.ring: _linux.Ring | None = None
        self.file: BinaryIO | None = None
        self.linktype = 0
        self.packets = 0
        self.bytes = 0
        self.kernel_packets = 0
        self.kernel_drops = 0
        self.started_ns = 0
        self.stopped_ns = 0
        self.error: str | None = None
        self.flows: FlowTable | None = None

    # -- set-up -------------------------------------------------------------------
    def open(self) -> None:
        cfg = self.cfg
        if cfg.netns:
            try:
                _linux.setns(cfg.netns)
            except FileNotFoundError:
                raise CaptureError(f"network namespace '{cfg.netns}' does not exist") from None
            except PermissionError:
                raise PrivilegeError(
                    f"entering network namespace '{cfg.netns}' needs root (CAP_SYS_ADMIN)"
                ) from None
            except OSError as exc:
                raise CaptureError(
                    f"cannot enter network namespace '{cfg.netns}': {exc.strerror}"
                ) from None
        try:
            # Protocol 0: the socket receives nothing until it is bound to ETH_P_ALL.
            self.sock = sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise PrivilegeError(
                f"capturing on '{cfg.interface}' needs root or CAP_NET_RAW"
            ) from None
        try:
            sock.bind((cfg.interface, 0))
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENXIO, None) or "name too long" in str(exc):
                raise CaptureError(
                    f"interface '{cfg.interface}' does not exist{_where(cfg)}"
                ) from None
            raise CaptureError(f"cannot bind to interface '{cfg.interface}': {exc}") from None
        hatype = sock.getsockname()[3]
        linktype = linktype_for_arphrd(hatype)
        if linktype is None:
            raise CaptureError(
                f"interface '{cfg.interface}' has a link type the capture does not support"
                f" (ARPHRD {hatype})"
            )
        self.linktype = linktype
        try:
            code = _linux.compile_bpf(cfg.bpf, linktype, cfg.snaplen)
        except _linux.FilterError as exc:
            raise CaptureError(f"bad capture filter '{cfg.bpf}': {exc}") from None
        try:
            _linux.attach_bpf(sock, code)
        except OSError as exc:
            raise CaptureError(f"bad capture filter '{cfg.bpf}': {exc.strerror}") from None
        try:
            self.ring = _linux.Ring(sock, cfg.block_size, cfg.block_count, RETIRE_MS)
        except OSError as exc:
            raise CaptureError(f"cannot set up the capture ring: {exc.strerror}") from None
        if cfg.pcap_path is not None:
            try:
                self.file = cfg.pcap_path.open("wb")
                self.file.write(file_header(cfg.snaplen, linktype))
                self.file.flush()
            except OSError as exc:
                raise CaptureError(
                    f"cannot write capture file '{cfg.pcap_path}': {exc.strerror}"
                ) from None
        if hatype == ARPHRD_LOOPBACK:
            # Loopback shows every packet twice (out, then in): keep one, as libpcap does.
            with contextlib.suppress(OSError):
                sock.setsockopt(_linux.SOL_PACKET, _linux.PACKET_IGNORE_OUTGOING, 1)
        if cfg.summary_interval is not None:
            self.flows = FlowTable(linktype)
        try:
            sock.bind((cfg.interface, _linux.ETH_P_ALL))
        except OSError as exc:
            raise CaptureError(f"cannot capture on '{cfg.interface}': {exc.strerror}") from None
        self.started_ns = time.time_ns()

    # -- the loop -----------------------------------------------------------------
    def _take_blocks(self, remaining: int) -> int:
        """Copy every ready block to the file; returns the packets taken."""
        ring = self.ring
        assert ring is not None
        observe = self.flows.observe if self.flows is not None else None
        taken = 0
        while remaining > taken and ring.ready():
            chunks: list[bytes] = []
            n, nbytes = ring.take(remaining - taken, chunks, observe)
            ring.release()
            if self.file is not None and self.error is None:
                try:
                    self.file.write(b"".join(chunks))
                    self.file.flush()
                except OSError as exc:
                    self.error = f"writing '{self.cfg.pcap_path}' failed: {exc.strerror}"
            taken += n
            self.packets += n
            self.bytes += nbytes
        return taken

    def _read_kernel_stats(self) -> None:
        assert self.sock is not None
        with contextlib.suppress(OSError):
            packets, drops = _linux.read_stats(self.sock)
            self.kernel_packets += packets
            self.kernel_drops += drops

    def counters(self) -> LiveCounters:
        self._read_kernel_stats()
        if self.flows is not None:
            protocols, flows, seen = self.flows.snapshot(self.cfg.top_flows)
        else:
            protocols, flows, seen = (), (), 0
        return LiveCounters(
            elapsed_s=((self.stopped_ns or time.time_ns()) - self.started_ns) / 1e9,
            packets=self.packets,
            bytes=self.bytes,
            kernel_packets=self.kernel_packets,
            kernel_drops=self.kernel_drops,
            protocols=protocols,
            flows=flows,
            flows_seen=seen,
        )

    def run(self, conn: Connection, stop_requested: list[bool]) -> None:
        cfg = self.cfg
        sock, ring = self.sock, self.ring
        assert sock is not None and ring is not None
        remaining = cfg.count if cfg.count is not None else math.inf
        sockfd, connfd = sock.fileno(), conn.fileno()
        poller = select.poll()
        poller.register(sockfd, select.POLLIN | select.POLLERR)
        poller.register(connfd, select.POLLIN | select.POLLHUP | select.POLLERR)
        interval = cfg.summary_interval
        next_report = time.monotonic() + interval if interval is not None else math.inf
        stop = False
        while not stop:
            remaining -= self._take_blocks(int(min(remaining, 2**62)))
            if remaining <= 0 or stop_requested[0]:
                break
            timeout = 100.0
            if interval is not None:
                timeout = max(0.0, min(timeout, (next_report - time.monotonic()) * 1000))
            for fd, events in poller.poll(timeout):
                if fd == connfd:
                    if events & select.POLLIN:
                        try:
                            stop = conn.recv() == "stop" or stop
                        except (EOFError, OSError):
                            stop = True
                    elif events & (select.POLLHUP | select.POLLERR):
                        stop = True  # the parent is gone
                elif events & select.POLLERR:
                    with contextlib.suppress(OSError):  # e.g. ENETDOWN: clear it
                        sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if interval is not None and time.monotonic() >= next_report:
                next_report = time.monotonic() + interval
                with contextlib.suppress(OSError):
                    conn.send(("counters", self.counters()))
        self._finish(remaining)

    def _finish(self, remaining: float) -> None:
        """Grace period, unhook, hand-back of the last block, statistics."""
        sock, ring = self.sock, self.ring
        assert sock is not None and ring is not None
        if remaining > 0:
            grace_end = time.monotonic() + STOP_GRACE_S
            while remaining > 0 and time.monotonic() < grace_end:
                remaining -= self._take_blocks(int(min(remaining, 2**62)))
                time.sleep(0.002)
        # Unhook: no packet enters the ring after this (the kernel waits for those
        # being delivered right now).
        try:
            sock.bind((self.cfg.interface, 0))
        except OSError:  # gone or renamed: a filter that takes nothing does the same
            with contextlib.suppress(OSError):
                _linux.attach_bpf(sock, _linux.compile_bpf(None, self.linktype, 0))
        self.stopped_ns = time.time_ns()
        if remaining > 0:
            deadline = time.monotonic() + max(1.0, 10 * RETIRE_MS / 1000)
            while remaining > 0:
                if ring.ready():
                    remaining -= self._take_blocks(int(min(remaining, 2**62)))
                elif ring.pending_in_kernel() == 0 or time.monotonic() > deadline:
                    break
                else:
                    time.sleep(RETIRE_MS / 4000)
        self._read_kernel_stats()

    def close(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
        if self.ring is not None:
            self.ring.close()
        if self.sock is not None:
            self.sock.close()

    def stats(self) -> CaptureStats:
        cpu = os.times()
        return CaptureStats(
            path=self.cfg.pcap_path,
            interface=self.cfg.interface,
            netns=self.cfg.netns,
            packets=self.packets,
            bytes=self.bytes,
            kernel_packets=self.kernel_packets,
            kernel_drops=self.kernel_drops,
            started_ns=self.started_ns,
            stopped_ns=self.stopped_ns,
            linktype=self.linktype,
            cpu_seconds=cpu.user + cpu.system,
        )


def _release_inherited_fds(keep: set[int]) -> None:
    """Point every descriptor the fork inherited (but ``keep`` and 0-2) at /dev/null.

    The parent's TUN devices, sockets and files must not stay open for as long as the
    capture runs. The numbers stay taken, so a stale Python object closing "its" fd
    later can never close one of ours.
    """
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd != devnull and fd not in keep:
                with contextlib.suppress(OSError):  # the listdir's own, already gone
                    os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _child_main(conn: Connection, cfg: _Config) -> None:
    """Entry point of the capture process (forked)."""
    # the parent was killed: nobody is left to tell, and nothing to print
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, EOFError):
        _capture_child(conn, cfg)


def _capture_child(conn: Connection, cfg: _Config) -> None:
    _release_inherited_fds({conn.fileno()})
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us
    stop_requested = [False]

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        stop_requested[0] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    # No PR_SET_PDEATHSIG: it fires when the *thread* that forked us ends. A parent
    # that dies closes its end of the pipe, and the loop stops on that instead.
    cap = _Capture(cfg)
    try:
        try:
            cap.open()
        except LabError as exc:
            kind = "privilege" if isinstance(exc, PrivilegeError) else "capture"
            conn.send(("error", kind, str(exc)))
            return
        except Exception as exc:
            conn.send(("error", "capture", f"capture on '{cfg.interface}' failed: {exc!r}"))
            return
        conn.send(("ready", cap.linktype))
        try:
            cap.run(conn, stop_requested)
        except Exception as exc:
            cap.error = cap.error or f"capture on '{cfg.interface}' failed: {exc!r}"
    finally:
        cap.close()
    with contextlib.suppress(OSError):
        if cfg.summary_interval is not None and cap.sock is not None:
            conn.send(("counters", cap.counters()))
        conn.send(("stats", cap.stats(), cap.error))


class Sniffer:
    """Context manager. Captures on one interface, optionally inside a named network namespace.

    ``pcap_path`` None captures without writing (counting only). ``count`` ends the
    capture by itself after that many packets (see :meth:`wait`). ``summary_interval``
    (seconds) makes the child tally flows and report :class:`LiveCounters` that often
    (read them with :meth:`poll`); leave it None when nobody reads them.
    """

    def __init__(
        self,
        interface: str,
        pcap_path: Path | None,
        *,
        netns: str | None = None,
        bpf: str | None = None,
        snaplen: int = MAX_SNAPLEN,
        count: int | None = None,
        summary_interval: float | None = None,
        top_flows: int = 10,
        ring_blocks: int = BLOCK_COUNT,
    ) -> None:
        if not interface:
            raise CaptureError("no interface given to capture on")
        if not 1 <= snaplen <= MAX_SNAPLEN:
            raise CaptureError(f"snapshot length {snaplen} is out of range 1..{MAX_SNAPLEN}")
        if count is not None and count < 1:
            raise CaptureError(f"packet count must be at least 1, not {count}")
        if summary_interval is not None and summary_interval <= 0:
            raise CaptureError("summary interval must be positive")
        self._cfg = _Config(
            interface=interface,
            pcap_path=Path(pcap_path) if pcap_path is not None else None,
            netns=netns,
            bpf=bpf,
            snaplen=snaplen,
            count=count,
            summary_interval=summary_interval,
            top_flows=top_flows,
            block_size=BLOCK_SIZE,
            block_count=max(2, ring_blocks),
        )
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._linktype = 0
        self._counters: LiveCounters | None = None
        self._final: CaptureStats | None = None
        self._error: str | None = None
        self._stopped = False

    # -- properties ---------------------------------------------------------------
    @property
    def interface(self) -> str:
        return self._cfg.interface

    @property
    def pcap_path(self) -> Path | None:
        return self._cfg.pcap_path

    @property
    def linktype(self) -> int:
        """pcap link type (valid after start())."""
        return self._linktype

    @property
    def pid(self) -> int | None:
        """Process id of the capture child while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def counters(self) -> LiveCounters | None:
        """The latest live counters received (see :meth:`poll`)."""
        return self._counters

    @property
    def running(self) -> bool:
        return self._proc is not None and self._final is None

    @property
    def finished(self) -> bool:
        """The child has ended by itself (count reached) or died; stop() collects it."""
        if self._final is not None:
            return True
        return self._proc is not None and not self._proc.is_alive()

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        """Start capturing; returns once the capture receives (or raises LabError)."""
        if self._proc is not None:
            raise CaptureError(f"capture on '{self.interface}' was already started")
        if self._cfg.bpf:
            _linux.preload_filter_compiler()
        ctx = multiprocessing.get_context("fork")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        # SIGINT and SIGTERM blocked across the fork: the child sets its own handlers
        # before either can arrive (the parent's would raise KeyboardInterrupt there).
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            proc = ctx.Process(
                target=_child_main,
                args=(child_conn, self._cfg),
                name=f"lab-capture-{self.interface}",
                daemon=True,
            )
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        child_conn.close()
        self._proc, self._conn = proc, parent_conn
        msg = self._recv(START_TIMEOUT_S)
        if msg is not None and msg[0] == "ready":
            self._linktype = int(msg[1])
            return
        self._reap()
        if msg is None:
            raise CaptureError(
                f"capture on '{self.interface}' did not start (exit code {proc.exitcode})"
            )
        if msg[0] == "error" and msg[1] == "privilege":
            raise PrivilegeError(str(msg[2]))
        raise CaptureError(str(msg[2]) if msg[0] == "error" else f"unexpected {msg[0]!r}")

    def _recv(self, timeout: float) -> tuple[Any, ...] | None:
        conn = self._conn
        if conn is None or conn.closed:
            return None
        try:
            if not conn.poll(timeout):
                return None
            msg = conn.recv()
        except (EOFError, OSError):
            return None
        if not isinstance(msg, tuple):
            return None
        return msg

    def _handle(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "counters":
            self._counters = msg[1]
        elif msg[0] == "stats":
            self._final = msg[1]
            self._error = msg[2]

    def poll(self, timeout: float = 0.0) -> LiveCounters | None:
        """Wait up to ``timeout`` s for a report from the child; the latest counters."""
        msg = self._recv(timeout) if self._final is None else None
        while msg is not None:
            self._handle(msg)
            msg = self._recv(0.0) if self._final is None else None
        return self._counters

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the capture ends by itself (``count`` reached); True if it did."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while self._final is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            msg = self._recv(min(left, 0.5))
            if msg is not None:
                self._handle(msg)
            elif self._proc is None or not self._proc.is_alive():
                return True  # died without a report: stop() says so
        return True

    def stop(self) -> CaptureStats:
        """Stop, drain, close the pcap; the statistics. Idempotent."""
        if self._proc is None:
            raise CaptureError(f"capture on '{self.interface}' was not started")
        self._stopped = True
        if self._final is None:
            if self._conn is not None and not self._conn.closed:
                with contextlib.suppress(OSError, ValueError):
                    self._conn.send("stop")
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self._final is None and time.monotonic() < deadline:
                msg = self._recv(deadline - time.monotonic())
                if msg is None:
                    break
                self._handle(msg)
        self._reap()
        if self._final is None:
            raise CaptureError(
                f"capture on '{self.interface}' ended without reporting"
                f" (exit code {self._proc.exitcode})"
            )
        if self._error:
            raise CaptureError(self._error)
        return self._final

    def _reap(self) -> None:
        proc = self._proc
        if proc is not None:
            proc.join(5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> Sniffer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is None or self._stopped:
            return
        try:
            self.stop()
        except LabError:
            if exc_type is None:
                raise
