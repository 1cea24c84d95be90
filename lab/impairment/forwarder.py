"""The userspace impairment engine: a TUN-to-TUN packet forwarder.

It runs as its own process (``python -m lab.impairment.forwarder``) holding both
ends of the link: the TUN device in the client namespace and the one in the server
namespace. Every IP packet either side routes onto the link is read here, judged by
the seeded :class:`~lab.impairment.model.DirectionModel` of its direction, and then
dropped, held on a timer heap, corrupted, duplicated or written at once into the
other namespace. Working on whole IP packets is what makes loss real for TCP: a
dropped segment is retransmitted by the kernel, exactly as on a wire. It needs no
``sch_netem``.

Random decisions are drawn per flow (IP protocol and server port), so a protocol's
packets meet the same fate for the same seed whatever else crossed the link.

Every packet it sees is recorded (the ground truth): direction, time in, scheduled
and actual time out, size, fate, flags and its first header bytes. On SIGTERM it
finishes the packets it still holds, writes the record as ``.npz`` and exits.

Two engines run this loop: the compiled one (``impairment.engine = "compiled"``, the
default: :class:`CompiledForwarder`, the loop of ``_core.c`` with no Python object per
packet) and :class:`Forwarder`, the same loop in Python, kept for debugging. Both make
the same decisions for the same seed and write the same ``.npz``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import heapq
import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lab.impairment.core import DEFAULT_RT_PRIORITY, DEFAULT_SPIN_NS, CompiledModel, core
from lab.impairment.model import DirectionModel, flow_key
from lab.impairment.spec import Direction, ImpairmentSpec

#: Header bytes kept per packet: IPv4 (up to 60) is parsed later, vectorised.
HEADER_BYTES = 64
#: Packets read from one TUN fd before looking at the other fd and the timers.
READ_BATCH = 64
#: How long the engine keeps sending held packets after it was told to stop.
STOP_GRACE_NS = 2_000_000_000

FLAG_DUPLICATED = 1
FLAG_CORRUPTED = 2
FLAG_REORDERED = 4
FLAG_PENDING_AT_STOP = 8

_PR_SET_PDEATHSIG = 1
#: Environment: nanoseconds before a departure the compiled engine's writer stops sleeping
#: and spins (unset: core.DEFAULT_SPIN_NS; 0: sleep to the deadline, 1 ns timer slack).
SPIN_ENV = "PROTOLAB_ENGINE_SPIN_NS"
#: Environment: SCHED_FIFO priority of the compiled engine's writer threads (unset:
#: core.DEFAULT_RT_PRIORITY; 0: ordinary threads).
RT_PRIORITY_ENV = "PROTOLAB_ENGINE_RT_PRIORITY"


class _Record:
    """Column lists of the ground truth; appended to in the hot loop."""

    def __init__(self) -> None:
        self.direction: list[int] = []
        self.t_in: list[int] = []
        self.t_out: list[int] = []
        self.scheduled: list[int] = []
        self.dup_t_out: list[int] = []
        self.size: list[int] = []
        self.fate: list[int] = []
        self.flags: list[int] = []
        self.headers: list[bytes] = []

    def save(self, path: Path, meta: dict[str, object]) -> None:
        count = len(self.t_in)
        headers = np.zeros((count, HEADER_BYTES), dtype=np.uint8)
        if count:
            joined = b"".join(h.ljust(HEADER_BYTES, b"\0") for h in self.headers)
            headers[:] = np.frombuffer(joined, dtype=np.uint8).reshape(count, HEADER_BYTES)
        _save_record(
            path,
            {
                "direction": np.asarray(self.direction, dtype=np.uint8),
                "t_in_ns": np.asarray(self.t_in, dtype=np.int64),
                "t_out_ns": np.asarray(self.t_out, dtype=np.int64),
                "scheduled_ns": np.asarray(self.scheduled, dtype=np.int64),
                "dup_t_out_ns": np.asarray(self.dup_t_out, dtype=np.int64),
                "size": np.asarray(self.size, dtype=np.int32),
                "fate": np.asarray(self.fate, dtype=np.uint8),
                "flags": np.asarray(self.flags, dtype=np.uint8),
                "headers": headers,
            },
            meta,
        )


#: The ground truth's columns and their dtypes (groundtruth.py reads them).
RECORD_DTYPES: dict[str, type[np.generic]] = {
    "direction": np.uint8,
    "t_in_ns": np.int64,
    "t_out_ns": np.int64,
    "scheduled_ns": np.int64,
    "dup_t_out_ns": np.int64,
    "size": np.int32,
    "fate": np.uint8,
    "flags": np.uint8,
    "headers": np.uint8,
}


def _save_record(path: Path, columns: dict[str, np.ndarray], meta: dict[str, object]) -> None:
    """Write the ground truth as .npz, atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(".tmp.npz")
    arrays: dict[str, Any] = {**columns, "meta": np.asarray(json.dumps(meta))}
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _corrupt(packet: bytes, bit: int) -> bytes:
    """Flip one bit of the transport payload (after IP and L4 headers) so checksums catch it."""
    ihl = (packet[0] & 0x0F) * 4
    proto = packet[9]
    if proto == 6:
        l4 = (packet[ihl + 12] >> 4) * 4 if len(packet) > ihl + 12 else 0
    elif proto == 17:
        l4 = 8
    else:
        l4 = 0
    start = ihl + l4
    if len(packet) <= start:
        start = ihl  # no payload: hit the transport header instead
    if len(packet) <= start:
        return packet
    span_bits = (len(packet) - start) * 8
    position = bit % span_bits
    data = bytearray(packet)
    data[start + position // 8] ^= 1 << (position % 8)
    return bytes(data)


class _Stoppable:
    """A forwarder's stop: on SIGTERM, keep forwarding what it holds for the grace time."""

    _stop_at: int | None = None

    def request_stop(self, *_: object) -> None:
        if self._stop_at is None:
            self._stop_at = time.time_ns() + STOP_GRACE_NS


class Forwarder(_Stoppable):
    """The event loop: two TUN fds, one timer heap, one model per direction."""

    def __init__(
        self, fds: dict[Direction, tuple[int, int]], models: dict[Direction, DirectionModel]
    ) -> None:
        # fds[d] = (fd packets of direction d are read from, fd they are written to)
        self._routes = {
            read_fd: (write_fd, models[d], index, d is Direction.CLIENT_TO_SERVER)
            for index, (d, (read_fd, write_fd)) in enumerate(
                sorted(fds.items(), key=lambda item: item[0].value)
            )
        }
        self.direction_codes = {
            d.value: index for index, d in enumerate(sorted(fds, key=lambda d: d.value))
        }
        self._heap: list[tuple[int, int, int, bytes, int, bool]] = []
        self._sequence = 0
        self.record = _Record()
        self.write_errors = 0
        self._stop_at: int | None = None

    def run(self) -> None:
        # Signals wake select() through this pipe (PEP 475 would otherwise resume the wait).
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_write)
        read_fds = [*self._routes, wake_read]
        heap = self._heap
        now = time.time_ns
        while True:
            if self._stop_at is not None and (not heap or now() >= self._stop_at):
                break
            timeout: float | None = None
            if heap:
                # wake for the next departure, or for the end of the stop grace if sooner
                wake_at = heap[0][0] if self._stop_at is None else min(heap[0][0], self._stop_at)
                timeout = max(0.0, (wake_at - now()) / 1e9)
            elif self._stop_at is not None:
                break
            try:
                ready, _, _ = select.select(read_fds, [], [], timeout)
            except InterruptedError:
                continue
            for fd in ready:
                if fd == wake_read:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_read, 512)
                    continue
                self._read_batch(fd)
            if heap:
                self._send_due(now())
        self._mark_pending()

    def _read_batch(self, fd: int) -> None:
        write_fd, model, direction, to_server = self._routes[fd]
        clean = model.is_clean
        rec = self.record
        now = time.time_ns
        heap = self._heap
        for _ in range(READ_BATCH):
            try:
                packet = os.read(fd, 65536)
            except BlockingIOError:
                return
            t_in = now()
            # each flow draws from its own random streams (model.flow_key)
            flow = 0 if clean else flow_key(packet, to_server)
            verdict = model.decide(t_in, len(packet), flow)
            index = len(rec.t_in)
            rec.direction.append(direction)
            rec.t_in.append(t_in)
            rec.size.append(len(packet))
            rec.fate.append(verdict.fate)
            rec.headers.append(packet[:HEADER_BYTES])
            rec.scheduled.append(verdict.send_at_ns)
            rec.dup_t_out.append(-1)
            flags = FLAG_REORDERED if verdict.reordered else 0
            if verdict.fate:
                rec.t_out.append(-1)
                rec.flags.append(flags)
                continue
            if verdict.corrupt_bit >= 0:
                packet = _corrupt(packet, verdict.corrupt_bit)
                flags |= FLAG_CORRUPTED
            if verdict.duplicate_at_ns >= 0:
                flags |= FLAG_DUPLICATED
            rec.flags.append(flags)
            if verdict.send_at_ns <= t_in and not heap:
                rec.t_out.append(self._write(write_fd, packet))
            else:
                rec.t_out.append(-1)
                self._sequence += 1
                heapq.heappush(
                    heap, (verdict.send_at_ns, self._sequence, write_fd, packet, index, False)
                )
            if verdict.duplicate_at_ns >= 0:
                self._sequence += 1
                heapq.heappush(
                    heap, (verdict.duplicate_at_ns, self._sequence, write_fd, packet, index, True)
                )
                if verdict.duplicate_at_ns <= t_in:
                    self._send_due(now())

    def _write(self, fd: int, packet: bytes) -> int:
        try:
            os.write(fd, packet)
        except OSError:
            self.write_errors += 1
        return time.time_ns()

    def _send_due(self, now_ns: int) -> None:
        heap = self._heap
        rec = self.record
        while heap and heap[0][0] <= now_ns:
            _, _, fd, packet, index, is_copy = heapq.heappop(heap)
            sent = self._write(fd, packet)
            if is_copy:
                rec.dup_t_out[index] = sent
            else:
                rec.t_out[index] = sent

    def _mark_pending(self) -> None:
        for _, _, _, _, index, is_copy in self._heap:
            if not is_copy:
                self.record.flags[index] |= FLAG_PENDING_AT_STOP
        self._heap.clear()


class CompiledForwarder(_Stoppable):
    """:class:`Forwarder`'s loop in C (``_core.Engine``): no Python object per packet.

    Each direction is forwarded by its own reader and writer threads in C; ``run``
    waits with the GIL released and comes back only when a signal has written to the
    wake pipe (Python's handlers then run, e.g. :meth:`request_stop`) or when every
    direction has stopped; held packets live on C heaps, the record in C arrays.
    """

    def __init__(
        self,
        fds: dict[Direction, tuple[int, int]],
        models: dict[Direction, CompiledModel],
        spin_ns: int = 0,
        rt_priority: int = 0,
    ) -> None:
        ordered = sorted(fds, key=lambda d: d.value)
        self.direction_codes = {d.value: index for index, d in enumerate(ordered)}
        self._routes = tuple(
            (fds[d][0], fds[d][1], models[d].c_model, d is Direction.CLIENT_TO_SERVER)
            for d in ordered
        )
        self._spin_ns = spin_ns
        self._rt_priority = rt_priority
        self._engine: object | None = None
        self._stop_at: int | None = None

    @property
    def write_errors(self) -> int:
        return 0 if self._engine is None else int(getattr(self._engine, "write_errors", 0))

    def run(self) -> None:
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_write)
        engine = core().Engine(self._routes, wake_read, self._spin_ns, self._rt_priority)
        self._engine = engine
        while not engine.run(-1 if self._stop_at is None else self._stop_at):
            pass

    def save(self, path: Path, meta: dict[str, object]) -> None:
        """The record, in the same .npz format as :meth:`_Record.save`."""
        raw: dict[str, bytes] = {} if self._engine is None else self._engine.record()  # type: ignore[attr-defined]
        columns: dict[str, np.ndarray] = {}
        for name, dtype in RECORD_DTYPES.items():
            # a column with no packet yet comes back as None (a NULL buffer in the core)
            column = np.frombuffer(raw.get(name) or b"", dtype=dtype).copy()
            columns[name] = column.reshape(-1, HEADER_BYTES) if name == "headers" else column
        _save_record(path, columns, meta)


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM us if ``lab run`` dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the forwarder process; config arrives as JSON on argv."""
    parser = argparse.ArgumentParser(prog="lab-forwarder")
    parser.add_argument("--config", required=True, help="JSON: fds, seed, impairment, output")
    parser.add_argument("--run-id", required=True, help="testbed id, so cleanup can find us")
    args = parser.parse_args(argv)
    config = json.loads(args.config)
    if config.get("die_with_parent"):
        _die_with_parent()
    spec = ImpairmentSpec.model_validate(config["impairment"])
    seed = int(config["seed"])
    client_fd, server_fd = int(config["client_fd"]), int(config["server_fd"])
    fds = {
        Direction.CLIENT_TO_SERVER: (client_fd, server_fd),
        Direction.SERVER_TO_CLIENT: (server_fd, client_fd),
    }
    forwarder: Forwarder | CompiledForwarder
    if spec.engine == "compiled":
        compiled = {d: CompiledModel(spec.for_direction(d), seed, d) for d in Direction}
        forwarder = CompiledForwarder(
            fds,
            compiled,
            int(os.environ.get(SPIN_ENV) or DEFAULT_SPIN_NS),
            int(os.environ.get(RT_PRIORITY_ENV) or DEFAULT_RT_PRIORITY),
        )
    else:
        models = {d: DirectionModel(spec.for_direction(d), seed, d) for d in Direction}
        forwarder = Forwarder(fds, models)
    signal.signal(signal.SIGTERM, forwarder.request_stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to `lab`, which stops us
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # whatever we inherited
    try:
        os.write(sys.stdout.fileno(), b"ready\n")  # unbuffered: nothing left to flush at exit
    except BrokenPipeError:  # `lab` is gone before we started: nothing to forward for
        return 0
    started = time.time_ns()
    forwarder.run()
    meta = {
        "started_ns": started,
        "stopped_ns": time.time_ns(),
        "seed": seed,
        "directions": forwarder.direction_codes,
        "write_errors": forwarder.write_errors,
        "header_bytes": HEADER_BYTES,
        "engine": spec.engine,
    }
    if isinstance(forwarder, CompiledForwarder):
        forwarder.save(Path(config["output"]), meta)
    else:
        forwarder.record.save(Path(config["output"]), meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
