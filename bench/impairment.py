"""Benchmark of the userspace impairment engine (a script, not a test; run as root).

Prints, in one run:
  * the highest UDP packet rate the engine forwards with <= 0.1 % self-loss, for 100-byte
    and 1400-byte packets, next to the same figure for a plain veth link without the engine,
    and their ratio;
  * the delay error at delay_ms = 20: how late packets leave versus the schedule (engine
    ground truth) and the one-way delay minus 20 ms seen by the receiving socket.

Counting uses the kernel's own counters in each namespace (Ip.InReceives at the server,
Udp.OutDatagrams at the client), so the receiving application's speed does not matter.
Every load is bounded: one second per step, a fixed list of steps.

    sudo .venv/bin/python bench/impairment.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import socket
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.exchanges._kernel import read_counters
from lab.impairment.groundtruth import load_ground_truth
from lab.scenario import parse_scenario
from lab.testbed import Testbed, _netns, open_testbed, open_veth_testbed

RATES: tuple[int, ...] = (20_000, 50_000, 100_000, 150_000, 200_000, 300_000)
STEP_S = 1.0
SELF_LOSS_LIMIT = 0.001
PORT = 50_999
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


def max_rate(link: Link, size: int, label: str) -> float:
    """Highest achieved rate whose self-loss stays within the limit."""
    best = 0.0
    for rate in RATES:
        sent, arrived, achieved = measure(link, size, rate)
        loss = 1 - arrived / sent if sent else 1.0
        ok = loss <= SELF_LOSS_LIMIT
        print(
            f"  {label:<7} {size:>5} B  target {rate:>7} pps  sent {achieved:>9.0f} pps"
            f"  self-loss {loss * 100:6.3f} %  {'ok' if ok else 'over limit'}",
            flush=True,
        )
        if not ok:
            break
        best = max(best, achieved)
        if achieved < rate * 0.9:
            break  # the sender itself is the limit now
    return best


def delay_error(samples: int) -> tuple[float, float, float, float]:
    """(mean, p99) of engine lateness and of socket OWD - 20 ms, in ms, at delay 20 ms."""
    spec = parse_scenario({"name": "bench", "impairment": {"delay_ms": 20}}).impairment
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
    socket_error = np.asarray(owd) / 1e6 - 20.0
    return (
        float(late.mean()),
        float(np.percentile(late, 99)),
        float(socket_error.mean()),
        float(np.percentile(socket_error, 99)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (CI smoke run)")
    args = parser.parse_args()
    global RATES  # noqa: PLW0603 - a smaller ladder for --quick
    if args.quick:
        RATES = (20_000, 50_000)
    clean = parse_scenario({"name": "bench"}).impairment
    results: dict[tuple[str, int], float] = {}
    with (
        tempfile.TemporaryDirectory() as folder,
        open_testbed(clean, 1, "cubic", Path(folder) / "gt.npz") as testbed,
    ):
        link = Link.of(testbed)
        sink = _sink(link.server_ns, link.server_address)
        for size in (100, 1400):
            results[("engine", size)] = max_rate(link, size, "engine")
        sink.close()
    with open_veth_testbed() as testbed:
        link = Link.of(testbed)
        sink = _sink(link.server_ns, link.server_address)
        for size in (100, 1400):
            results[("veth", size)] = max_rate(link, size, "veth")
        sink.close()
    late_mean, late_p99, owd_mean, owd_p99 = delay_error(1000 if args.quick else 3000)
    print("\nforwarding rate at <= 0.1 % self-loss (UDP, one sender process)")
    print(f"{'size':>6} {'engine pps':>12} {'veth pps':>12} {'ratio':>7}")
    for size in (100, 1400):
        engine, veth = results[("engine", size)], results[("veth", size)]
        ratio = engine / veth if veth else float("nan")
        print(f"{size:>5}B {engine:>12.0f} {veth:>12.0f} {ratio:>7.2f}")
    print("\ndelay error at delay_ms = 20")
    print(f"  engine lateness vs schedule: mean {late_mean:.3f} ms, p99 {late_p99:.3f} ms")
    print(f"  socket one-way delay - 20 ms: mean {owd_mean:.3f} ms, p99 {owd_p99:.3f} ms")


if __name__ == "__main__":
    main()
