"""Benchmark: the lab's Sniffer against tcpdump at rising packet rates (run as root).

    sudo .venv/bin/python bench/capture.py [--rates 5000,20000,50000,100000] [--seconds 2]

Builds two namespaces ``lab-capb-c`` / ``lab-capb-s`` joined by a plain veth pair (the
lab's veth testbed, 198.18.0.1 - .2), sends 100-byte UDP payloads from the client
namespace at each target rate for a few seconds, and captures the client's veth (egress,
where every sent packet passes) with the lab's Sniffer and with tcpdump at the same time,
both filtered to the benchmark's flow. Prints sent, captured, kernel drops and CPU per
rate. The load is bounded (rate x seconds, at most 1 Mpps x 10 s) and the namespaces are
removed on exit, whatever happens (SIGTERM included). ``--json PATH`` also writes the
rows and the lab/tcpdump ratios as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from lab.capture import Sniffer, count_records
from lab.capture._linux import call_in_netns, setns
from lab.testbed import LINK_INTERFACE, SERVER_ADDRESS, namespace_names, open_veth_testbed

RUN_ID = "capb"
NS_C, NS_S = namespace_names(RUN_ID)
VETH_C = LINK_INTERFACE
ADDR_S = SERVER_ADDRESS
PORT = 9000
PAYLOAD = 100
BPF = f"udp and dst port {PORT}"
MAX_RATE = 1_000_000
MAX_SECONDS = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _sender(conn: Connection, rate: int, seconds: float, go: float) -> None:
    """Forked: enter the client namespace, send ``rate`` x ``seconds`` datagrams, paced."""
    setns(NS_C)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((ADDR_S, PORT))
    send = sock.send
    payload = bytes(PAYLOAD)
    total = int(rate * seconds)
    sent = errors = 0
    while time.time() < go:  # all senders start together
        time.sleep(0.0005)
    start = time.perf_counter()
    while sent + errors < total:
        elapsed = time.perf_counter() - start
        if elapsed > seconds + 1.0:  # bounded: give up what the loop could not reach
            break
        due = min(total, int(elapsed * rate) + 1)
        burst = min(due - sent - errors, 512)
        if burst <= 0:
            if rate < 20_000:
                time.sleep(0.0002)
            continue
        for _ in range(burst):
            try:
                send(payload)
                sent += 1
            except OSError:
                errors += 1
    conn.send((sent, errors, time.perf_counter() - start))
    conn.close()


@dataclass
class Row:
    rate: int
    sent: int
    send_errors: int
    achieved: float
    lab: int
    lab_kernel_packets: int
    lab_drops: int
    lab_cpu: float
    tcpdump: int
    tcpdump_drops: int
    tcpdump_cpu: float


def _start_tcpdump(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", NS_C, "tcpdump", "-i", VETH_C, "-n", "-s", "262144",
         "-B", "32768", "--time-stamp-precision=nano", "-w", str(path), BPF],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "listening on ...": it is capturing
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"tcpdump did not start: {line}{proc.stderr.read()}")
    return proc


def _run_rate(rate: int, seconds: float, senders: int, out: Path) -> Row:
    lab_path, td_path = out / f"lab-{rate}.pcap", out / f"tcpdump-{rate}.pcap"
    ctx = multiprocessing.get_context("fork")
    tcpdump = _start_tcpdump(td_path)
    try:
        with Sniffer(VETH_C, lab_path, netns=NS_C, bpf=BPF) as sniffer:
            assert sniffer.pid is not None
            time.sleep(0.2)
            lab_cpu0, td_cpu0, t0 = _cpu_seconds(sniffer.pid), _cpu_seconds(tcpdump.pid), 0.0
            go = time.time() + 0.3
            pipes, procs = [], []
            for _ in range(senders):
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_sender, args=(child, rate // senders, seconds, go))
                proc.start()
                child.close()
                pipes.append(parent)
                procs.append(proc)
            sent = errors = 0
            took = 0.0
            for parent, proc in zip(pipes, procs, strict=True):
                s, e, dt = parent.recv()
                proc.join()
                sent, errors, took = sent + s, errors + e, max(took, dt)
            t0 = go
            time.sleep(0.3)  # let both capturers catch up
            t1 = time.time()
            lab_cpu1, td_cpu1 = _cpu_seconds(sniffer.pid), _cpu_seconds(tcpdump.pid)
        stats = sniffer.stop()
        # libpcap's TPACKET_V3 ring hands over a partly filled block only after its
        # timeout (tcpdump: 1 s) and drops it on SIGINT: wait that out, to be fair.
        time.sleep(max(0.0, t1 + 1.2 - time.time()))
    finally:
        tcpdump.send_signal(signal.SIGINT)
        _out, td_err = tcpdump.communicate(timeout=30)
    match = re.search(r"(\d+) packets dropped by kernel", td_err)
    td_drops = int(match.group(1)) if match else -1
    listing = subprocess.run(
        ["tcpdump", "-nr", str(td_path)], capture_output=True, text=True, check=True
    )
    td_count = len(listing.stdout.splitlines())
    assert count_records(lab_path) == stats.packets
    window = t1 - t0
    return Row(
        rate=rate,
        sent=sent,
        send_errors=errors,
        achieved=sent / took if took else 0.0,
        lab=stats.packets,
        lab_kernel_packets=stats.kernel_packets,
        lab_drops=stats.kernel_drops,
        lab_cpu=100 * (lab_cpu1 - lab_cpu0) / window,
        tcpdump=td_count,
        tcpdump_drops=td_drops,
        tcpdump_cpu=100 * (td_cpu1 - td_cpu0) / window,
    )


def _print(rows: list[Row], seconds: float, senders: int) -> None:
    print(
        f"\n{PAYLOAD}-byte UDP payloads, {seconds:g} s per rate, {senders} sender process(es),"
        f" {os.cpu_count()} CPUs; captured on {VETH_C} (egress), filter '{BPF}'"
    )
    head = (
        f"{'target pps':>10} {'sent':>8} {'sent pps':>9} {'lab':>8} {'tcpdump':>8}"
        f" {'lab drops':>9} {'td drops':>8} {'lab CPU%':>8} {'td CPU%':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.rate:>10,} {r.sent:>8,} {r.achieved:>9,.0f} {r.lab:>8,} {r.tcpdump:>8,}"
            f" {r.lab_drops:>9,} {r.tcpdump_drops:>8,} {r.lab_cpu:>8.1f} {r.tcpdump_cpu:>8.1f}"
        )
    if any(r.send_errors for r in rows):
        print("send errors:", {r.rate: r.send_errors for r in rows if r.send_errors})


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the testbed's context manager: nothing is left


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _document(rows: list[Row], seconds: float, senders: int) -> dict[str, Any]:
    return {
        "benchmark": "capture",
        "settings": {
            "payload_bytes": PAYLOAD,
            "seconds_per_rate": seconds,
            "senders": senders,
            "interface": VETH_C,
            "filter": BPF,
            "cpus": os.cpu_count(),
        },
        "rows": [
            {
                **asdict(r),
                "captured_ratio": _ratio(r.lab, r.tcpdump),
                "cpu_ratio": _ratio(r.lab_cpu, r.tcpdump_cpu),
            }
            for r in rows
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rates", default="5000,20000,50000,100000")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--senders", type=int, default=1, help="sender processes per rate")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--keep", action="store_true", help="keep the pcap files")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_exit)
    if os.geteuid() != 0:
        print("bench/capture.py needs root (namespaces, packet sockets)", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",")]
    if any(not 0 < r <= MAX_RATE for r in rates) or not 0 < args.seconds <= MAX_SECONDS:
        print(f"rates must be 1..{MAX_RATE}, seconds 0..{MAX_SECONDS}", file=sys.stderr)
        return 2
    if shutil.which("tcpdump") is None:
        print("tcpdump is not installed", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    with open_veth_testbed(run_id=RUN_ID):
        # A receiver that never reads: datagrams are dropped at its socket, no ICMP back.
        sink = call_in_netns(NS_S, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        with contextlib.closing(sink):
            sink.bind((ADDR_S, PORT))
            for rate in rates:
                rows.append(_run_rate(rate, args.seconds, max(1, args.senders), args.out))
                print(f"  {rate:,} pps done", file=sys.stderr)
                if not args.keep:
                    for name in (f"lab-{rate}.pcap", f"tcpdump-{rate}.pcap"):
                        (args.out / name).unlink(missing_ok=True)
    _print(rows, args.seconds, max(1, args.senders))
    if args.json:
        tmp = args.json.with_name(f".{args.json.name}.tmp")
        document = _document(rows, args.seconds, max(1, args.senders))
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
