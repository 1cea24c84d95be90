"""Benchmark of the userspace impairment engine (a script, not a test; run as root).

Prints, in one run:
  * the highest UDP packet rate the engine forwards with <= 0.1 % self-loss, for 100-byte
    and 1400-byte packets, next to the same figure for a plain veth link without the engine,
    and their ratio;
  * the delay error at delay_ms = 20: how late packets leave versus the schedule (engine
    ground truth) and the one-way delay minus 20 ms seen by the receiving socket.

Counting uses the kernel's own counters in each namespace (Ip.InReceives at the server,
Udp.OutDatagrams at the client), so the receiving application's speed does not matter.
Every load is bounded: one second per step, a fixed list of steps, then ``--refine``
bisection steps between the last rate that passed and the first that failed.

With ``--iperf3`` the same search runs with iperf3 as a C sender (``iperf3 -u -l 64``,
92-byte IP packets) through ``ip netns exec``: a one-off server (``iperf3 -s -1``) inside
the server namespace per step, which reads every datagram (the Python steps leave them
unread). Loss again from the kernels' counters: Udp.OutDatagrams at the client against
Ip.InReceives minus Tcp.InSegs (iperf3's control connection) at the server; the server's
Udp.InDatagrams would not do, Linux counts it when the application reads a datagram, so
whatever is still queued when iperf3 closes its socket would pass for lost.
``--json PATH`` also writes every figure as JSON.

    sudo .venv/bin/python bench/impairment.py [--quick] [--refine 2] [--iperf3] [--json PATH]
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lab.exchanges._kernel import read_counters
from lab.impairment.groundtruth import load_ground_truth
from lab.scenario import parse_scenario
from lab.testbed import Testbed, _netns, open_testbed, open_veth_testbed

RATES: tuple[int, ...] = (20_000, 50_000, 100_000, 150_000, 200_000, 300_000)
STEP_S = 1.0
SELF_LOSS_LIMIT = 0.001
PORT = 50_999
SIZES = (100, 1400)
DELAY_MS = 20
#: iperf3: packets/s ladder, UDP payload (-l) and seconds per step (an integer for -t).
IPERF3_RATES: tuple[int, ...] = (50_000, 100_000, 200_000, 300_000, 500_000, 800_000)
IPERF3_LENGTH = 64
IPERF3_SIZE = IPERF3_LENGTH + 28  # the IP packet
IPERF3_STEP_S = 1
IPERF3_PORT = 50_998
SO_TIMESTAMPNS = 35  # linux/socket.h; Python 3.11 does not export it


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


def measure_iperf3(link: Link, rate: int) -> tuple[int, int, float]:
    """One iperf3 -u step at ``rate`` packets/s: (sent, arrived, achieved send rate).

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
             "-p", str(IPERF3_PORT), "-u", "-l", str(IPERF3_LENGTH),
             "-b", str(rate * IPERF3_LENGTH * 8), "-t", str(IPERF3_STEP_S),
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


@dataclass
class Search:
    """The highest achieved rate within the self-loss limit, and why the search stopped."""

    sender: str
    link: str
    size: int
    best_pps: float = 0.0
    #: "loss": a higher rate lost too much; "sender": the sender fell short of its target
    #: (the link may carry more); "ladder": the top of the ladder passed.
    stopped_by: str = "ladder"
    steps: list[Step] = field(default_factory=list)


def search_rate(
    step: Callable[[int], tuple[int, int, float]],
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
        sent, arrived, achieved = step(rate)
        loss = 1 - arrived / sent if sent else 1.0
        # a few datagrams more than sent (control traffic) is no negative loss
        loss = max(loss, 0.0)
        result = Step(
            sender, link, size, rate, achieved, sent, arrived, loss, loss <= SELF_LOSS_LIMIT
        )
        found.steps.append(result)
        print(
            f"  {sender:<7} {link:<7} {size:>5} B  target {rate:>7} pps"
            f"  sent {achieved:>9.0f} pps  self-loss {loss * 100:6.3f} %"
            f"  {'ok' if result.ok else 'over limit'}",
            flush=True,
        )
        return result

    passed = 0
    failed = 0
    for rate in ladder:
        result = run(rate)
        if not result.ok:
            found.stopped_by, failed = "loss", rate
            break
        passed = rate
        found.best_pps = max(found.best_pps, result.achieved_pps)
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
                found.best_pps = max(found.best_pps, result.achieved_pps)
            else:
                failed = middle
    return found


def delay_error(samples: int) -> tuple[float, float, float, float]:
    """(mean, p99) of engine lateness and of socket OWD - 20 ms, in ms, at delay 20 ms."""
    spec = parse_scenario({"name": "bench", "impairment": {"delay_ms": DELAY_MS}}).impairment
    with tempfile.TemporaryDirectory() as folder:
        truth_path = Path(folder) / "gt.npz"
        with open_testbed(spec, 1, "cubic", truth_path) as testbed:
            with _netns.inside(testbed.server.netns):
                receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
                # the kernel stamps each datagram on arrival: reading late costs nothing
                receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                receiver.bind((testbed.server.address, PORT))
                receiver.settimeout(1.0)
            with _netns.inside(testbed.client.netns):
                sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            start = time.perf_counter()
            for seq in range(samples):  # 1000 packets/s: a light, steady load
                sender.sendto(time.time_ns().to_bytes(8, "big"), (testbed.server.address, PORT))
                ahead = start + (seq + 1) / 1000 - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            owd: list[int] = []
            with contextlib.suppress(TimeoutError):
                while len(owd) < samples:
                    data, ancillary, _, _ = receiver.recvmsg(64, 64)
                    for level, kind, value in ancillary:
                        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                            seconds, nanoseconds = struct.unpack("qq", value[:16])
                            arrived = seconds * 1_000_000_000 + nanoseconds
                            owd.append(arrived - int.from_bytes(data[:8], "big"))
            sender.close()
            receiver.close()
        truth, _ = load_ground_truth(truth_path)
    c2s = truth[(truth["direction"] == "client_to_server") & (truth["t_out_ns"] > 0)]
    late = (c2s["t_out_ns"] - c2s["scheduled_ns"]).to_numpy() / 1e6
    socket_error = np.asarray(owd) / 1e6 - DELAY_MS
    return (
        float(late.mean()),
        float(np.percentile(late, 99)),
        float(socket_error.mean()),
        float(np.percentile(socket_error, 99)),
    )


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the testbeds' context managers: nothing is left


def _write_json(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (CI smoke run)")
    parser.add_argument(
        "--refine", type=int, default=2, help="bisection steps after the ladder (default 2)"
    )
    parser.add_argument("--iperf3", action="store_true", help="also with iperf3 as the sender")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _raise_exit)
    global RATES, IPERF3_RATES  # noqa: PLW0603 - smaller ladders for --quick
    if args.quick:
        RATES = (20_000, 50_000)
        IPERF3_RATES = (50_000, 100_000)
    use_iperf3 = args.iperf3 and shutil.which("iperf3") is not None
    iperf3_error: str | None = None if use_iperf3 or not args.iperf3 else "iperf3 not installed"
    refine = max(0, args.refine)
    clean = parse_scenario({"name": "bench"}).impairment
    searches: list[Search] = []

    def run_all(link: Link, name: str) -> None:
        nonlocal iperf3_error
        for size in SIZES:
            searches.append(
                search_rate(
                    functools.partial(measure, link, size),
                    RATES,
                    refine,
                    sender="python",
                    link=name,
                    size=size,
                )
            )
        if use_iperf3 and iperf3_error is None:
            try:
                searches.append(
                    search_rate(
                        functools.partial(measure_iperf3, link),
                        IPERF3_RATES,
                        refine,
                        sender="iperf3",
                        link=name,
                        size=IPERF3_SIZE,
                    )
                )
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
                iperf3_error = f"{type(e).__name__}: {e}"
                print(f"  iperf3 skipped: {iperf3_error}", flush=True)

    with (
        tempfile.TemporaryDirectory() as folder,
        open_testbed(clean, 1, "cubic", Path(folder) / "gt.npz") as testbed,
    ):
        link = Link.of(testbed)
        sink = _sink(link.server_ns, link.server_address)
        run_all(link, "engine")
        sink.close()
    with open_veth_testbed() as testbed:
        link = Link.of(testbed)
        sink = _sink(link.server_ns, link.server_address)
        run_all(link, "veth")
        sink.close()
    delay_samples = 1000 if args.quick else 3000
    late_mean, late_p99, owd_mean, owd_p99 = delay_error(delay_samples)
    by_key = {(s.sender, s.link, s.size): s for s in searches}
    comparisons: list[dict[str, Any]] = []
    print("\nforwarding rate at <= 0.1 % self-loss (UDP, one sender process)")
    print(f"{'sender':<7} {'size':>6} {'engine pps':>12} {'veth pps':>12} {'ratio':>7}  veth limit")
    for sender, size in [("python", size) for size in SIZES] + [("iperf3", IPERF3_SIZE)]:
        engine, veth = by_key.get((sender, "engine", size)), by_key.get((sender, "veth", size))
        if engine is None or veth is None:
            continue
        ratio = engine.best_pps / veth.best_pps if veth.best_pps else float("nan")
        print(
            f"{sender:<7} {size:>5}B {engine.best_pps:>12.0f} {veth.best_pps:>12.0f}"
            f" {ratio:>7.2f}  {veth.stopped_by}"
        )
        comparisons.append(
            {
                "sender": sender,
                "size": size,
                "engine_pps": engine.best_pps,
                "engine_stopped_by": engine.stopped_by,
                "veth_pps": veth.best_pps,
                "veth_stopped_by": veth.stopped_by,
                "ratio": ratio,
            }
        )
    if iperf3_error:
        print(f"iperf3: {iperf3_error}")
    print(f"\ndelay error at delay_ms = {DELAY_MS}")
    print(f"  engine lateness vs schedule: mean {late_mean:.3f} ms, p99 {late_p99:.3f} ms")
    print(f"  socket one-way delay - {DELAY_MS} ms: mean {owd_mean:.3f} ms, p99 {owd_p99:.3f} ms")
    if args.json:
        _write_json(
            args.json,
            {
                "benchmark": "impairment",
                "settings": {
                    "python_rates": list(RATES),
                    "iperf3_rates": list(IPERF3_RATES) if use_iperf3 else None,
                    "step_s": STEP_S,
                    "iperf3_step_s": IPERF3_STEP_S,
                    "iperf3_length": IPERF3_LENGTH,
                    "refine": refine,
                    "self_loss_limit": SELF_LOSS_LIMIT,
                    "sizes": list(SIZES),
                    "delay_ms": DELAY_MS,
                    "delay_rate_pps": 1000,
                    "delay_samples": delay_samples,
                },
                "forwarding": comparisons,
                "iperf3_error": iperf3_error,
                "delay": {
                    "engine_late_mean_ms": late_mean,
                    "engine_late_p99_ms": late_p99,
                    "socket_error_mean_ms": owd_mean,
                    "socket_error_p99_ms": owd_p99,
                },
                "steps": [asdict(step) for s in searches for step in s.steps],
            },
        )


if __name__ == "__main__":
    main()
