"""Benchmark of the userspace impairment engine (a script, not a test; run as root).

Prints, in one run:
  * the highest UDP packet rate the engine forwards with <= 0.1 % self-loss, for 100-byte
    and 1400-byte packets, next to the same figure for a plain veth link without the engine,
    and their ratio;
  * the delay error at delay_ms = 20, at 1000 and 50,000 packets/s: how late packets leave
    versus the schedule (engine ground truth) and the one-way delay minus 20 ms seen by the
    receiving socket; beside it, at the same time, a C program that sleeps to 1 ms deadlines
    (bench/lateness_probe.c, compiled with gcc into a temporary folder) measures how late
    this machine wakes any sleeper, and the engine's p99 is given as a ratio to the probe's.

Counting uses the kernel's own counters in each namespace (Ip.InReceives at the server,
Udp.OutDatagrams at the client), so the receiving application's speed does not matter.
Every load is bounded: one second per step, a fixed list of steps, then ``--refine``
bisection steps between the last rate that passed and the first that failed.

With ``--sockperf`` the same search runs with sockperf as a C sender (``sockperf
throughput -m <size - 28> --mps <rate>``, 100- and 1400-byte IP packets, to the same unread
socket), first one process, then two side by side sharing the rate (100 B): on a veth
pair the receiving stack runs inside the sender's own send calls, so one sender's CPU is
veth's limit, and two show what the link itself carries. The same sockperf searches then
run over the TUN floor (``bench/_floor.py``: the engine's two TUN devices forwarded by
``bench/tun_floor.c``, a read and a write per packet, nothing decided), so each compiled
engine figure also has a ratio to what the TUN design itself allows.

With ``--iperf3`` the same search runs with iperf3 as a C sender (``iperf3 -u -l 64``
and ``-l 1400``: 92- and 1428-byte IP packets) through ``ip netns exec``: a one-off
server (``iperf3 -s -1``) inside the server namespace per step, which reads every
datagram (the Python steps leave them unread). Loss again from the kernels' counters:
Udp.OutDatagrams at the client against Ip.InReceives minus Tcp.InSegs (iperf3's control
connection) at the server; the server's Udp.InDatagrams would not do, Linux counts it
when the application reads a datagram, so whatever is still queued when iperf3 closes
its socket would pass for lost.
``--json PATH`` also writes every figure as JSON.

Both engines are measured (``--engines compiled,python``): the compiled core
(``impairment.engine = "compiled"``, the default; its rows are the JSON's ``forwarding``
and ``delay``, so bench/report.py shows them) and the Python reference engine
(``forwarding_python_engine``, ``delay_python_engine``). For each engine step the
engine process's CPU time (/proc/<pid>/stat) gives CPU seconds per million packets.

``--differential N`` first checks the compiled model against the Python reference on
N synthetic packets per scenario (lab/impairment/differential.py: every knob, both
directions) and times both; it needs no root and can run alone (``--differential-only``).

The delay test also runs the compiled engine with spinning off (``compiled-sleep``:
``PROTOLAB_ENGINE_SPIN_NS=0`` for its engine, which then sleeps to each deadline), so the
lateness and the CPU of spinning the last microseconds are measured against sleeping.

``--only forwarding`` or ``--only delay`` runs one half (``--delay-rates`` picks the
delay test's rates). The delay rows also give the engine's CPU (all its threads) while
the sender sent, as a share of one CPU. The compiled engine's timing knobs come from
the environment, as the forwarder reads them: ``PROTOLAB_ENGINE_SPIN_NS`` (default
50000) and ``PROTOLAB_ENGINE_RT_PRIORITY`` (default 1; 0 for ordinary writer threads).

    sudo .venv/bin/python bench/impairment.py [--quick] [--refine 2] [--iperf3] [--sockperf]
        [--engines compiled,python] [--differential 1000000] [--json PATH]
        [--only all|forwarding|delay] [--delay-rates 1000,50000]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import multiprocessing
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _cc import compile_c
from _floor import LINK as FLOOR
from _floor import compile_floor, running_floor

from lab.exchanges._kernel import read_counters
from lab.impairment.differential import run_all as run_differential
from lab.impairment.forwarder import SPIN_ENV
from lab.impairment.groundtruth import load_ground_truth
from lab.scenario import parse_scenario
from lab.testbed import Testbed, _netns, open_testbed, open_veth_testbed

RATES: tuple[int, ...] = (20_000, 50_000, 100_000, 150_000, 200_000, 300_000)
STEP_S = 1.0
SELF_LOSS_LIMIT = 0.001
PORT = 50_999
SIZES = (100, 1400)
DELAY_MS = 20
#: iperf3: packets/s ladder, UDP payloads (-l) and seconds per step (an integer for -t).
IPERF3_RATES: tuple[int, ...] = (50_000, 100_000, 200_000, 300_000, 500_000, 800_000)
IPERF3_LENGTHS = (64, 1400)
IPERF3_STEP_S = 1
#: sockperf (a C++ sender that paces by busy-waiting): packets/s ladders, one sender
#: process and two side by side (the two-sender steps at 100 B only: the link's own
#: capacity, past what one sender's CPU can push through a veth pair).
SOCKPERF_RATES: tuple[int, ...] = (100_000, 200_000, 300_000, 400_000, 500_000, 600_000, 800_000)
SOCKPERF_PAIR_RATES: tuple[int, ...] = (200_000, 400_000, 600_000, 800_000, 1_000_000, 1_200_000)
SOCKPERF_STEP_S = 1
#: senders and their sizes in the order the comparisons list them
SENDER_SIZES: tuple[tuple[str, int], ...] = (
    *(("python", size) for size in SIZES),
    *(("sockperf", size) for size in SIZES),
    ("sockperf-x2", SIZES[0]),
    *(("iperf3", length + 28) for length in IPERF3_LENGTHS),
)
IPERF3_PORT = 50_998
SO_TIMESTAMPNS = 35  # linux/socket.h; Python 3.11 does not export it
SO_RCVBUFFORCE = 33  # the same
#: the delay test's rates (packets/s) and seconds of sending at each
DELAY_RATES: tuple[int, ...] = (1000, 50_000)
DELAY_SECONDS = {1000: 3.0, 50_000: 2.0}
DELAY_TRIES = 3
PROBE_SOURCE = Path(__file__).resolve().parent / "lateness_probe.c"
ENGINES = ("compiled", "python")
#: the link name of each engine in steps and searches ("engine" is the default engine's)
ENGINE_LINK = {"compiled": "engine", "python": "engine-python"}
#: the delay test's third engine: the compiled one with spinning off (SPIN_ENV=0), which
#: sleeps to each deadline instead of waking 50 us early and spinning the rest
SLEEP_ONLY = "compiled-sleep"
_CLK_TCK = os.sysconf("SC_CLK_TCK")

StepResult = tuple[int, int, float, float | None]
"""(sent, arrived, achieved send rate, engine CPU seconds or None without an engine)."""


def _cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _with_cpu(
    pid: int | None, step: Callable[[int], tuple[int, int, float]], rate: int
) -> StepResult:
    """Run one step; with an engine process, also the CPU time it spent meanwhile."""
    before = _cpu_seconds(pid) if pid else 0.0
    sent, arrived, achieved = step(rate)
    return sent, arrived, achieved, (_cpu_seconds(pid) - before) if pid else None


@dataclass(frozen=True)
class Link:
    client_ns: str
    server_ns: str
    server_address: str

    @classmethod
    def of(cls, testbed: Testbed) -> Link:
        return cls(testbed.client.netns, testbed.server.netns, testbed.server.address)


def _blast(netns: str, address: str, size: int, rate: int, seconds: float) -> None:
    """Send ``rate`` UDP datagrams/s for ``seconds`` (bounded), from inside ``netns``."""
    _netns.enter(netns)
    payload = bytes(size - 28)  # IP 20 + UDP 8 headers: ``size`` is the IP packet size
    count = int(rate * seconds)
    batch = max(1, rate // 1000)  # pace per millisecond
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        start = time.perf_counter()
        sent = 0
        send = sender.sendto
        target = (address, PORT)
        while sent < count:
            for _ in range(min(batch, count - sent)):
                try:
                    send(payload, target)
                except BlockingIOError:
                    continue
                sent += 1
            ahead = start + sent / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)


def _counters_in(netns: str) -> dict[str, int]:
    with _netns.inside(netns):
        return read_counters()


def _sink(netns: str, address: str) -> socket.socket:
    """A bound UDP socket nobody reads: datagrams are counted, no ICMP unreachable."""
    with _netns.inside(netns):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sink.bind((address, PORT))
    return sink


def measure(link: Link, size: int, rate: int) -> tuple[int, int, float]:
    """(sent, arrived, achieved send rate) of one bounded step."""
    before_c, before_s = _counters_in(link.client_ns), _counters_in(link.server_ns)
    context = multiprocessing.get_context("fork")
    started = time.perf_counter()
    sender = context.Process(
        target=_blast, args=(link.client_ns, link.server_address, size, rate, STEP_S)
    )
    sender.start()
    sender.join(STEP_S * 10)
    elapsed = time.perf_counter() - started
    if sender.is_alive():
        sender.kill()
    time.sleep(0.3)  # let queues drain
    after_c, after_s = _counters_in(link.client_ns), _counters_in(link.server_ns)
    sent = after_c["Udp.OutDatagrams"] - before_c["Udp.OutDatagrams"]
    arrived = after_s["Ip.InReceives"] - before_s["Ip.InReceives"]
    return sent, arrived, sent / elapsed


def _udp_arrived(counters: dict[str, int]) -> int:
    """Packets the server's IP layer received that are not the control connection's."""
    return counters["Ip.InReceives"] - counters["Tcp.InSegs"]


def _listening(pid: int, address: str, port: int) -> bool:
    """Does process ``pid`` (in its own namespace) listen on TCP ``address:port``?"""
    wanted = f"{socket.inet_aton(address)[::-1].hex().upper()}:{port:04X}"
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1] == wanted and line.split()[3] == "0A" for line in lines)


def measure_sockperf(link: Link, size: int, senders: int, rate: int) -> tuple[int, int, float]:
    """One step of ``senders`` sockperf processes sharing ``rate`` packets/s of ``size``-byte
    IP packets, to the sink nobody reads: (sent, arrived, achieved send rate).

    ``sockperf throughput`` needs no server and stops by itself after -t seconds (it idles
    about 2 s before sending, so the rate is its own count over its own sending time).
    """
    before_c, before_s = _counters_in(link.client_ns), _counters_in(link.server_ns)
    command = ["ip", "netns", "exec", link.client_ns, "sockperf", "throughput",
               "-i", link.server_address, "-p", str(PORT), "-m", str(size - 28),
               "-t", str(SOCKPERF_STEP_S), "--mps", str(rate // senders),
               "--dontwarmup"]  # fmt: skip
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(senders)
    ]
    outputs: list[str] = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=SOCKPERF_STEP_S + 20)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    for process, output in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"sockperf: exit {process.returncode}: {output.strip()[-300:]}")
    seconds = max(_sockperf_seconds(output) for output in outputs)
    time.sleep(0.3)  # let queues drain
    after_c, after_s = _counters_in(link.client_ns), _counters_in(link.server_ns)
    sent = after_c["Udp.OutDatagrams"] - before_c["Udp.OutDatagrams"]
    arrived = after_s["Ip.InReceives"] - before_s["Ip.InReceives"]
    return sent, arrived, sent / seconds


def _sockperf_seconds(output: str) -> float:
    """The sending time from sockperf's "Total of N messages sent in T sec" line."""
    for line in output.splitlines():
        words = line.split()
        if "Total" in words and "sent" in words and words[-1] == "sec":
            return float(words[-2])
    raise RuntimeError(f"sockperf printed no total: {output.strip()[-300:]}")


def measure_iperf3(link: Link, length: int, rate: int) -> tuple[int, int, float]:
    """One iperf3 -u -l ``length`` step at ``rate`` packets/s: (sent, arrived, send rate).

    The server is a one-off (-1) inside the server namespace and exits after this test;
    if anything goes wrong it is killed here (and the testbed's teardown kills whatever
    is left in its namespaces). The client is bounded by -t and a subprocess timeout.
    """
    before_c, before_s = _counters_in(link.client_ns), _counters_in(link.server_ns)
    server = subprocess.Popen(
        ["ip", "netns", "exec", link.server_ns, "iperf3", "-s", "-1",
         "-B", link.server_address, "-p", str(IPERF3_PORT), "--rcv-timeout", "3000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 5.0
        while not _listening(server.pid, link.server_address, IPERF3_PORT):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("iperf3 server did not start listening")
            time.sleep(0.02)
        client = subprocess.run(
            ["ip", "netns", "exec", link.client_ns, "iperf3", "-c", link.server_address,
             "-p", str(IPERF3_PORT), "-u", "-l", str(length),
             "-b", str(rate * length * 8), "-t", str(IPERF3_STEP_S),
             "--connect-timeout", "3000", "-J"],
            capture_output=True,
            text=True,
            timeout=IPERF3_STEP_S + 20,
            check=False,
        )  # fmt: skip
        report: dict[str, Any] = json.loads(client.stdout) if client.stdout.strip() else {}
        if client.returncode != 0 or "error" in report:
            message = report.get("error") or client.stderr.strip() or f"exit {client.returncode}"
            raise RuntimeError(f"iperf3 client: {message}")
        seconds = float(report["end"]["sum"]["seconds"]) or float(IPERF3_STEP_S)
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()
    time.sleep(0.3)  # let queues drain
    after_c, after_s = _counters_in(link.client_ns), _counters_in(link.server_ns)
    sent = after_c["Udp.OutDatagrams"] - before_c["Udp.OutDatagrams"]
    arrived = _udp_arrived(after_s) - _udp_arrived(before_s)
    return sent, arrived, sent / seconds


@dataclass
class Step:
    sender: str
    link: str
    size: int
    target_pps: int
    achieved_pps: float
    sent: int
    arrived: int
    self_loss: float
    ok: bool
    engine_cpu_s: float | None = None
    #: engine CPU seconds per million packets that crossed it (None on plain veth)
    cpu_s_per_mpkt: float | None = None


@dataclass
class Search:
    """The highest achieved rate within the self-loss limit, and why the search stopped."""

    sender: str
    link: str
    size: int
    best_pps: float = 0.0
    #: CPU seconds per million packets at the best passing step (engine links only)
    cpu_s_per_mpkt: float | None = None
    #: "loss": a higher rate lost too much; "sender": the sender fell short of its target
    #: (the link may carry more); "ladder": the top of the ladder passed.
    stopped_by: str = "ladder"
    steps: list[Step] = field(default_factory=list)


def search_rate(
    step: Callable[[int], StepResult],
    ladder: tuple[int, ...],
    refine: int,
    *,
    sender: str,
    link: str,
    size: int,
) -> Search:
    """Climb ``ladder``; then bisect ``refine`` times between the last pass and first failure."""
    found = Search(sender, link, size)

    def run(rate: int) -> Step:
        sent, arrived, achieved, cpu = step(rate)
        loss = 1 - arrived / sent if sent else 1.0
        # a few datagrams more than sent (control traffic) is no negative loss
        loss = max(loss, 0.0)
        per_mpkt = cpu / arrived * 1e6 if cpu is not None and arrived else None
        result = Step(
            sender,
            link,
            size,
            rate,
            achieved,
            sent,
            arrived,
            loss,
            loss <= SELF_LOSS_LIMIT,
            cpu,
            per_mpkt,
        )
        found.steps.append(result)
        cpu_text = f"  engine CPU {per_mpkt:6.2f} s/Mpkt" if per_mpkt is not None else ""
        print(
            f"  {sender:<7} {link:<13} {size:>5} B  target {rate:>7} pps"
            f"  sent {achieved:>9.0f} pps  self-loss {loss * 100:6.3f} %"
            f"  {'ok' if result.ok else 'over limit'}{cpu_text}",
            flush=True,
        )
        return result

    def keep(result: Step) -> None:
        if result.achieved_pps >= found.best_pps:
            found.best_pps = result.achieved_pps
            found.cpu_s_per_mpkt = result.cpu_s_per_mpkt

    passed = 0
    failed = 0
    for rate in ladder:
        result = run(rate)
        if not result.ok:
            found.stopped_by, failed = "loss", rate
            break
        passed = rate
        keep(result)
        if result.achieved_pps < rate * 0.9:
            found.stopped_by = "sender"  # the sender itself is the limit now
            return found
    if failed:
        for _ in range(refine):
            middle = (passed + failed) // 2
            if failed - passed < max(2_000, passed // 20):
                break  # within 5 %: good enough
            result = run(middle)
            if result.ok:
                passed = middle
                keep(result)
            else:
                failed = middle
    return found


def compile_probe(folder: Path) -> Path:
    """bench/lateness_probe.c compiled into ``folder`` (raises when it cannot be)."""
    return compile_c(PROBE_SOURCE, folder)


def _probe_result(probe: subprocess.Popen[str] | None) -> dict[str, Any] | None:
    """The probe's JSON once it has finished (it stops by itself after its seconds)."""
    if probe is None:
        return None
    try:
        out, err = probe.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        probe.kill()
        probe.communicate()
        return {"error": "the probe did not finish"}
    if probe.returncode != 0:
        return {"error": err.strip() or f"exit {probe.returncode}"}
    result: dict[str, Any] = json.loads(out)
    return result


@contextlib.contextmanager
def _spinning(on: bool) -> Iterator[None]:
    """The engine started in the body spins before deadlines as configured (``on``) or
    not at all (SPIN_ENV=0: it sleeps to each deadline); the environment is restored."""
    before = os.environ.get(SPIN_ENV)
    if not on:
        os.environ[SPIN_ENV] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SPIN_ENV, None)
        else:
            os.environ[SPIN_ENV] = before


def delay_error(
    samples: int, engine: str = "compiled", rate: int = 1000, probe: Path | None = None
) -> dict[str, Any]:
    """Engine lateness against its schedule and socket OWD - 20 ms, in ms, at delay 20 ms.

    ``rate`` packets/s from one Python sender (sent in per-millisecond batches above
    1000/s). With ``probe`` (the compiled lateness_probe), it runs on the host for as
    long as the sender sends, so both meet the same machine at the same time.
    """
    # room for every packet in flight (netem's default limit, 1000, would drop at 50k/s)
    queue_limit = max(1000, rate * DELAY_MS // 1000 * 4)
    model = "compiled" if engine == SLEEP_ONLY else engine
    spec = parse_scenario(
        {
            "name": "bench",
            "impairment": {"delay_ms": DELAY_MS, "engine": model, "queue_limit": queue_limit},
        }
    ).impairment
    batch = max(1, rate // 1000)
    seconds = samples / rate
    running: subprocess.Popen[str] | None = None
    with tempfile.TemporaryDirectory() as folder:
        truth_path = Path(folder) / "gt.npz"
        with (
            _spinning(engine != SLEEP_ONLY),
            open_testbed(spec, 1, "cubic", truth_path) as testbed,
        ):
            with _netns.inside(testbed.server.netns):
                receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                # read after the send: room for every datagram (root may force it)
                receiver.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, max(8 << 20, samples << 11))
                # the kernel stamps each datagram on arrival: reading late costs nothing
                receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                receiver.bind((testbed.server.address, PORT))
                receiver.settimeout(1.0)
            with _netns.inside(testbed.client.netns):
                sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
            target = (testbed.server.address, PORT)
            try:
                if probe is not None:
                    running = subprocess.Popen(
                        [str(probe), f"{seconds:.3f}"],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                engine_pid = testbed.engine.pid if testbed.engine else None
                cpu_before = _cpu_seconds(engine_pid) if engine_pid else 0.0
                start = time.perf_counter()
                seq = 0
                while seq < samples:  # a steady load, paced per batch
                    for _ in range(min(batch, samples - seq)):
                        sender.sendto(time.time_ns().to_bytes(8, "big"), target)
                        seq += 1
                    ahead = start + seq / rate - time.perf_counter()
                    if ahead > 0:
                        time.sleep(ahead)
                sending_s = time.perf_counter() - start
                engine_cpu = _cpu_seconds(engine_pid) - cpu_before if engine_pid else None
                probed = _probe_result(running)
            finally:
                if running is not None and running.poll() is None:
                    running.kill()
                    running.communicate()
            owd: list[int] = []
            with contextlib.suppress(TimeoutError):
                while len(owd) < samples:
                    data, ancillary, _, _ = receiver.recvmsg(64, 64)
                    for level, kind, value in ancillary:
                        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                            secs, nanoseconds = struct.unpack("qq", value[:16])
                            arrived = secs * 1_000_000_000 + nanoseconds
                            owd.append(arrived - int.from_bytes(data[:8], "big"))
            sender.close()
            receiver.close()
        truth, _ = load_ground_truth(truth_path)
    c2s = truth[(truth["direction"] == "client_to_server") & (truth["t_out_ns"] > 0)]
    late = (c2s["t_out_ns"] - c2s["scheduled_ns"]).to_numpy() / 1e6
    # Wake-ups: packets whose writer was free at their deadline (the write before ended
    # by then), the lateness a timer alone explains, as the probe measures it. The rest
    # queued behind earlier writes: above ~1,000 pps the sender's bursts arrive faster
    # than the engine can write (each write runs the receiver's whole UDP path).
    t_out, scheduled = c2s["t_out_ns"].to_numpy(), c2s["scheduled_ns"].to_numpy()
    free = np.concatenate(([True], t_out[:-1] <= scheduled[1:]))
    wake_late = late[free]
    wake_p99 = float(np.percentile(wake_late, 99)) if len(wake_late) else float("nan")
    socket_error = np.asarray(owd) / 1e6 - DELAY_MS
    late_p99 = float(np.percentile(late, 99))
    probe_p99 = probed.get("p99_ms") if probed else None
    return {
        "engine": engine,
        "rate_pps": rate,
        "queue_limit": queue_limit,
        "samples": samples,
        "forwarded": len(late),
        "received": len(owd),
        "engine_late_mean_ms": float(late.mean()),
        "engine_late_p50_ms": float(np.percentile(late, 50)),
        "engine_late_p99_ms": late_p99,
        "engine_late_max_ms": float(late.max()),
        "wake_share": float(free.mean()),
        "engine_wake_late_p99_ms": wake_p99,
        "arrival_gap_p50_us": float(np.median(np.diff(c2s["t_in_ns"].to_numpy())) / 1e3),
        "write_gap_p50_us": float(np.median(np.diff(t_out)) / 1e3),
        "socket_error_mean_ms": float(socket_error.mean()),
        "socket_error_p99_ms": float(np.percentile(socket_error, 99)),
        "probe": probed,
        # the engine's CPU (all threads) while the sender sent, as a share of one CPU
        "engine_cpu_share": engine_cpu / sending_s if engine_cpu is not None else None,
        # how much of the tail is the engine's own: 1.0 = as late as any sleeper here
        "late_p99_over_probe_p99": late_p99 / probe_p99 if probe_p99 else None,
        "wake_late_p99_over_probe_p99": wake_p99 / probe_p99 if probe_p99 else None,
    }


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the testbeds' context managers: nothing is left


def _write_json(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _differential(packets: int) -> list[dict[str, Any]]:
    """The compiled model against the Python reference, timed; mismatches must be 0."""
    print(f"differential: compiled core vs Python reference, {packets:,} packets per scenario")
    rows: list[dict[str, Any]] = []
    for outcome in run_differential(packets):
        python_rate = outcome.packets / outcome.python_s if outcome.python_s else float("nan")
        compiled_rate = outcome.packets / outcome.compiled_s if outcome.compiled_s else float("nan")
        print(
            f"  {outcome.name:<26} mismatches {outcome.mismatches}"
            f"  python {python_rate / 1e6:6.2f} M decisions/s"
            f"  compiled {compiled_rate / 1e6:6.2f} M decisions/s"
            f"  {outcome.first_mismatch}",
            flush=True,
        )
        rows.append(
            {
                "scenario": outcome.name,
                "packets": outcome.packets,
                "mismatches": outcome.mismatches,
                "first_mismatch": outcome.first_mismatch or None,
                "python_decisions_per_s": python_rate,
                "compiled_decisions_per_s": compiled_rate,
                "counts": outcome.counts,
            }
        )
    return rows


def _comparisons(
    by_key: dict[tuple[str, str, int], Search], engine_link: str, engine: str
) -> list[dict[str, Any]]:
    """Engine against plain veth, per sender and size, for one engine."""
    rows: list[dict[str, Any]] = []
    for sender, size in SENDER_SIZES:
        found, veth = by_key.get((sender, engine_link, size)), by_key.get((sender, "veth", size))
        if found is None or veth is None:
            continue
        ratio = found.best_pps / veth.best_pps if veth.best_pps else float("nan")
        floor = by_key.get((sender, FLOOR, size))
        rows.append(
            {
                "engine": engine,
                "sender": sender,
                "size": size,
                "engine_pps": found.best_pps,
                "engine_stopped_by": found.stopped_by,
                "engine_cpu_s_per_mpkt": found.cpu_s_per_mpkt,
                "veth_pps": veth.best_pps,
                "veth_stopped_by": veth.stopped_by,
                "ratio": ratio,
                # the TUN floor (sockperf only): what any TUN forwarder reaches here
                "floor_pps": floor.best_pps if floor else None,
                "floor_stopped_by": floor.stopped_by if floor else None,
                "floor_cpu_s_per_mpkt": floor.cpu_s_per_mpkt if floor else None,
                "ratio_to_floor": found.best_pps / floor.best_pps
                if floor and floor.best_pps
                else None,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (CI smoke run)")
    parser.add_argument(
        "--refine", type=int, default=2, help="bisection steps after the ladder (default 2)"
    )
    parser.add_argument("--iperf3", action="store_true", help="also with iperf3 as the sender")
    parser.add_argument(
        "--sockperf",
        action="store_true",
        help="also with sockperf as the sender (one process, then two side by side)",
    )
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="comma-separated engines to measure (default: compiled,python)",
    )
    parser.add_argument(
        "--differential",
        type=int,
        default=0,
        metavar="N",
        help="first compare the compiled model with the Python one on N packets per scenario",
    )
    parser.add_argument(
        "--differential-only", action="store_true", help="only the differential check (no root)"
    )
    parser.add_argument(
        "--only",
        choices=("all", "forwarding", "delay"),
        default="all",
        help="only the forwarding-rate searches or only the delay/lateness test (default: all)",
    )
    parser.add_argument(
        "--delay-rates",
        default=",".join(str(r) for r in DELAY_RATES),
        help="comma-separated packet rates of the delay test (default: 1000,50000)",
    )
    parser.add_argument(
        "--delay-tries",
        type=int,
        default=DELAY_TRIES,
        help=f"tries of the delay test per engine and rate (default {DELAY_TRIES}; the p99"
        " ratio of one try moves with the machine, the median of several less)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _raise_exit)
    engines = [e for e in args.engines.split(",") if e]
    if unknown := [e for e in engines if e not in ENGINES]:
        parser.error(f"--engines: unknown {unknown}, expected some of {ENGINES}")
    differential = _differential(args.differential) if args.differential > 0 else None
    if args.differential_only:
        if args.json:
            _write_json(args.json, {"benchmark": "impairment", "differential": differential})
        if differential and any(row["mismatches"] for row in differential):
            raise SystemExit(1)
        return
    global RATES, IPERF3_RATES, SOCKPERF_RATES, SOCKPERF_PAIR_RATES  # noqa: PLW0603 - --quick
    if args.quick:
        RATES = (20_000, 50_000)
        IPERF3_RATES = (50_000, 100_000)
        SOCKPERF_RATES = (100_000, 200_000)
        SOCKPERF_PAIR_RATES = (200_000, 400_000)
    use_iperf3 = args.iperf3 and shutil.which("iperf3") is not None
    iperf3_error: str | None = None if use_iperf3 or not args.iperf3 else "iperf3 not installed"
    use_sockperf = args.sockperf and shutil.which("sockperf") is not None
    sockperf_error = None if use_sockperf or not args.sockperf else "sockperf not installed"
    refine = max(0, args.refine)
    searches: list[Search] = []

    def run_sockperf(link: Link, name: str, pid: int | None) -> None:
        nonlocal sockperf_error
        if not use_sockperf or sockperf_error is not None:
            return
        plans = [(size, 1, SOCKPERF_RATES) for size in SIZES]
        plans.append((SIZES[0], 2, SOCKPERF_PAIR_RATES))
        try:
            for size, senders, ladder in plans:
                sockperf_step = functools.partial(measure_sockperf, link, size, senders)
                searches.append(
                    search_rate(
                        functools.partial(_with_cpu, pid, sockperf_step),
                        ladder,
                        refine,
                        sender="sockperf" if senders == 1 else f"sockperf-x{senders}",
                        link=name,
                        size=size,
                    )
                )
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
            sockperf_error = f"{type(e).__name__}: {e}"
            print(f"  sockperf skipped: {sockperf_error}", flush=True)

    def run_all(link: Link, name: str, pid: int | None) -> None:
        nonlocal iperf3_error
        for size in SIZES:
            searches.append(
                search_rate(
                    functools.partial(_with_cpu, pid, functools.partial(measure, link, size)),
                    RATES,
                    refine,
                    sender="python",
                    link=name,
                    size=size,
                )
            )
        if name != ENGINE_LINK["python"]:
            # the compiled engine and veth only: the Python engine is far below one sender
            run_sockperf(link, name, pid)
        if use_iperf3 and iperf3_error is None:
            try:
                for length in IPERF3_LENGTHS:
                    iperf3_step = functools.partial(measure_iperf3, link, length)
                    searches.append(
                        search_rate(
                            functools.partial(_with_cpu, pid, iperf3_step),
                            IPERF3_RATES,
                            refine,
                            sender="iperf3",
                            link=name,
                            size=length + 28,
                        )
                    )
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
                iperf3_error = f"{type(e).__name__}: {e}"
                print(f"  iperf3 skipped: {iperf3_error}", flush=True)

    for engine in engines if args.only != "delay" else ():
        clean = parse_scenario({"name": "bench", "impairment": {"engine": engine}}).impairment
        with (
            tempfile.TemporaryDirectory() as folder,
            open_testbed(clean, 1, "cubic", Path(folder) / "gt.npz") as testbed,
        ):
            link = Link.of(testbed)
            sink = _sink(link.server_ns, link.server_address)
            run_all(link, ENGINE_LINK[engine], testbed.engine.pid if testbed.engine else None)
            sink.close()
    if args.only != "delay":
        with open_veth_testbed() as testbed:
            link = Link.of(testbed)
            sink = _sink(link.server_ns, link.server_address)
            run_all(link, "veth", None)
            sink.close()
    if args.only != "delay" and use_sockperf and sockperf_error is None:
        # the TUN floor with the C sender only: what the TUN design allows (bench/_floor.py)
        with (
            tempfile.TemporaryDirectory() as folder,
            running_floor(compile_floor(Path(folder))) as (testbed, floor_pid),
        ):
            link = Link.of(testbed)
            sink = _sink(link.server_ns, link.server_address)
            run_sockperf(link, FLOOR, floor_pid)
            sink.close()
    probe_error: str | None = None
    probe_folder = contextlib.ExitStack()
    try:
        probe: Path | None = compile_probe(
            Path(probe_folder.enter_context(tempfile.TemporaryDirectory()))
        )
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        probe, probe_error = None, f"lateness probe not built: {error}"
        print(probe_error, flush=True)
    scale = 1 / 3 if args.quick else 1.0
    rates = [int(r) for r in args.delay_rates.split(",") if r] if args.only != "forwarding" else []
    delay_samples = {rate: int(rate * DELAY_SECONDS.get(rate, 2.0) * scale) for rate in rates}
    with probe_folder:
        # try by try, each engine and rate once per try: a burst of other work on the
        # machine then lands in one try of each, not in every try of one
        delays = [
            delay_error(delay_samples[rate], engine, rate, probe) | {"try": attempt + 1}
            for attempt in range(max(1, args.delay_tries))
            for engine in [*engines, *([SLEEP_ONLY] if "compiled" in engines else [])]
            for rate in rates
        ]
    by_key = {(s.sender, s.link, s.size): s for s in searches}
    forwarding = {e: _comparisons(by_key, ENGINE_LINK[e], e) for e in engines}
    print("\nforwarding rate at <= 0.1 % self-loss (UDP)")
    print(
        f"{'engine':<9} {'sender':<11} {'size':>6} {'engine pps':>12} {'veth pps':>12}"
        f" {'ratio':>7} {'CPU s/Mpkt':>11}  veth limit  {'TUN floor':>10} {'/ floor':>7}"
    )
    for engine in engines:
        for row in forwarding[engine]:
            cpu = row["engine_cpu_s_per_mpkt"]
            print(
                f"{engine:<9} {row['sender']:<11} {row['size']:>5}B {row['engine_pps']:>12.0f}"
                f" {row['veth_pps']:>12.0f} {row['ratio']:>7.2f}"
                f" {'-' if cpu is None else f'{cpu:.2f}':>11}  {row['veth_stopped_by']:<10}"
                + (
                    f"  {row['floor_pps']:>10.0f} {row['ratio_to_floor']:>7.2f}"
                    if row["ratio_to_floor"] is not None
                    else ""
                )
            )
    if iperf3_error:
        print(f"iperf3: {iperf3_error}")
    if sockperf_error:
        print(f"sockperf: {sockperf_error}")
    print(f"\ndelay error at delay_ms = {DELAY_MS} (Python sender), lateness probe beside it")
    for row in delays:
        probed = row["probe"] or {}
        ratio = row["late_p99_over_probe_p99"]
        print(
            f"  try {row['try']} {row['engine']:<9} {row['rate_pps']:>6} pps  engine lateness:"
            f" mean {row['engine_late_mean_ms']:.3f} ms, p99 {row['engine_late_p99_ms']:.3f} ms;"
            f" socket one-way delay - {DELAY_MS} ms: mean {row['socket_error_mean_ms']:.3f} ms,"
            f" p99 {row['socket_error_p99_ms']:.3f} ms ({row['received']}/{row['samples']});"
            f" probe p99 {probed.get('p99_ms', float('nan')):.3f} ms"
            f" ({probed.get('error', 'ok')}); engine p99 / probe p99"
            f" {'-' if ratio is None else f'{ratio:.2f}'}; wake-ups {row['wake_share']:.0%}:"
            f" p99 {row['engine_wake_late_p99_ms']:.3f} ms; arrivals / writes"
            f" {row['arrival_gap_p50_us']:.2f} / {row['write_gap_p50_us']:.2f} us apart"
        )

    def delay_json(engine: str) -> dict[str, Any] | None:
        """The engine's row at 1000 packets/s (the historical ``delay`` keys and more)."""
        return next(
            (r for r in delays if r["engine"] == engine and r["rate_pps"] == DELAY_RATES[0]), None
        )

    if args.json:
        main_engine = engines[0]
        _write_json(
            args.json,
            {
                "benchmark": "impairment",
                "engines": engines,
                "settings": {
                    "python_rates": list(RATES),
                    "iperf3_rates": list(IPERF3_RATES) if use_iperf3 else None,
                    "step_s": STEP_S,
                    "iperf3_step_s": IPERF3_STEP_S,
                    "iperf3_lengths": list(IPERF3_LENGTHS),
                    "sockperf_rates": list(SOCKPERF_RATES) if use_sockperf else None,
                    "sockperf_pair_rates": list(SOCKPERF_PAIR_RATES) if use_sockperf else None,
                    "sockperf_step_s": SOCKPERF_STEP_S,
                    "refine": refine,
                    "self_loss_limit": SELF_LOSS_LIMIT,
                    "sizes": list(SIZES),
                    "delay_ms": DELAY_MS,
                    "delay_rate_pps": DELAY_RATES[0],
                    "delay_samples": delay_samples.get(DELAY_RATES[0]),
                    "delay_rates": list(DELAY_RATES),
                    "delay_samples_per_rate": {str(r): n for r, n in delay_samples.items()},
                    "delay_tries": max(1, args.delay_tries),
                    "probe_period_us": 1000,
                },
                # the first engine measured (compiled by default) under the historical keys
                "forwarding": forwarding[main_engine],
                "forwarding_python_engine": forwarding.get("python"),
                "iperf3_error": iperf3_error,
                "sockperf_error": sockperf_error,
                "delay": delay_json(main_engine),
                "delay_python_engine": delay_json("python"),
                # every engine at every rate, each with the lateness probe run beside it
                "delays": delays,
                "probe_error": probe_error,
                "differential": differential,
                "steps": [asdict(step) for s in searches for step in s.steps],
            },
        )


if __name__ == "__main__":
    main()
