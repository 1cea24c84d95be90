"""Benchmark lab.pcap.read_pcap against tshark on a generated capture.

Run: ``.venv/bin/python bench/analysis.py [--packets 1000000] [--keep FILE] [--no-tshark]
[--json PATH]``

Builds a LINKTYPE_RAW pcap of UDP and TCP packets of mixed sizes with numpy (no
scapy: 1M packets take about a second), then times, each in a fresh subprocess,
``read_pcap`` (wall time, peak RSS, tracemalloc peak) and ``tshark -T fields`` on
the same file, and prints both and the ratio (``--json PATH`` also writes them as JSON).
``read_pcap`` runs three times and the fastest counts; tshark runs once. A script, not a
test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_RAW = 101
TSHARK_FIELDS = (
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "ip.id",
    "ip.proto",
    "ip.ttl",
    "udp.srcport",
    "udp.dstport",
    "udp.length",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.flags",
    "tcp.window_size_value",
    "tcp.len",
)

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


def _put(buf: U8, at: I64, values: npt.NDArray[np.integer], width: int, order: str) -> None:
    """Write ``width``-byte integers ``values`` at byte offsets ``at``."""
    v = values.astype(np.uint64)
    for k in range(width):
        shift = 8 * (width - 1 - k) if order == ">" else 8 * k
        buf[at + k] = ((v >> np.uint64(shift)) & np.uint64(0xFF)).astype(np.uint8)


def generate(path: Path, count: int, seed: int = 1) -> None:
    """Write a ``count``-packet LINKTYPE_RAW pcap: 60 % UDP, 40 % TCP, mixed sizes."""
    rng = np.random.default_rng(seed)
    is_udp = rng.random(count) < 0.6
    udp_payload = rng.integers(16, 400, count)
    tcp_payload = np.where(rng.random(count) < 0.3, 0, rng.integers(16, 1400, count))
    payload = np.where(is_udp, udp_payload, tcp_payload)
    l4_len = np.where(is_udp, 8, 20)
    pkt_len = (20 + l4_len + payload).astype(np.int64)
    rec_len = 16 + pkt_len
    starts = 24 + np.concatenate(([0], np.cumsum(rec_len)[:-1])).astype(np.int64)
    buf = np.zeros(24 + int(rec_len.sum()), dtype=np.uint8)

    header = np.array([PCAP_MAGIC_NS, 0x00040002, 0, 0, 262144, LINKTYPE_RAW], dtype="<u4")
    buf[:24] = np.frombuffer(header.tobytes(), dtype=np.uint8)

    ts_ns = 1_700_000_000_000_000_000 + np.cumsum(rng.integers(1_000, 50_000, count))
    _put(buf, starts, ts_ns // 1_000_000_000, 4, "<")
    _put(buf, starts + 4, ts_ns % 1_000_000_000, 4, "<")
    _put(buf, starts + 8, pkt_len, 4, "<")
    _put(buf, starts + 12, pkt_len, 4, "<")

    ip = starts + 16
    buf[ip] = 0x45
    _put(buf, ip + 2, pkt_len, 2, ">")
    _put(buf, ip + 4, np.arange(count) & 0xFFFF, 2, ">")
    buf[ip + 8] = 64
    buf[ip + 9] = np.where(is_udp, 17, 6).astype(np.uint8)
    _put(buf, ip + 12, np.full(count, 0x0A000001), 4, ">")
    _put(buf, ip + 16, np.full(count, 0x0A000002), 4, ">")

    l4 = ip + 20
    seq = np.arange(count, dtype=np.int64)
    _put(buf, l4, np.where(is_udp, 40000, 40001), 2, ">")
    _put(buf, l4 + 2, np.where(is_udp, 50000, 50001), 2, ">")
    u, t = l4[is_udp], l4[~is_udp]
    _put(buf, u + 4, (8 + payload[is_udp]), 2, ">")
    _put(buf, u + 8, seq[is_udp], 4, ">")  # lab message seq: first payload bytes
    _put(buf, t + 4, (seq[~is_udp] * 1000) & 0xFFFFFFFF, 4, ">")
    _put(buf, t + 8, (seq[~is_udp] * 7) & 0xFFFFFFFF, 4, ">")
    buf[t + 12] = 0x50
    buf[t + 13] = 0x18
    _put(buf, t + 14, np.full(t.size, 501), 2, ">")
    buf.tofile(path)


_CHILD = """
import json, sys, time, tracemalloc
from pathlib import Path
from lab.pcap import read_pcap

def hwm_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0

path, trace = sys.argv[1], sys.argv[2] == "1"
base = hwm_kb()
if trace:
    tracemalloc.start()
t = time.perf_counter()
frame = read_pcap(path)
wall = time.perf_counter() - t
peak_traced = tracemalloc.get_traced_memory()[1] if trace else 0
rss = hwm_kb()
print(json.dumps({"wall": wall, "rss_kb": rss, "base_kb": base, "traced": peak_traced,
                  "rows": len(frame.packets), "skipped": frame.skipped}))
"""


def run_lab(path: Path, trace: bool) -> dict[str, float]:
    """read_pcap in a fresh interpreter; wall time, peak RSS, optional tracemalloc peak."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), "1" if trace else "0"],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


_TSHARK_WRAPPER = """
import json, os, resource, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
lines = sum(1 for _ in proc.stdout)
proc.wait()
wall = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"wall": wall, "rss_kb": rss, "lines": lines}))
"""


def run_tshark(path: Path, tshark: str) -> dict[str, float]:
    """tshark -T fields on ``path`` (output counted, not kept): wall, peak RSS, lines.

    A small wrapper interpreter starts tshark, so the peak RSS it reports for
    its children is tshark's own and not inflated by this process.
    """
    cmd = [tshark, "-n", "-r", str(path), "-T", "fields"]
    for name in TSHARK_FIELDS:
        cmd += ["-e", name]
    out = subprocess.run(
        [sys.executable, "-c", _TSHARK_WRAPPER, *cmd], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _write_json(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="write the capture here and keep it")
    parser.add_argument("--no-tshark", action="store_true")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    document: dict[str, Any] = {"benchmark": "analysis", "packets": args.packets}

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.pcap"
        t = time.perf_counter()
        generate(path, args.packets)
        size_mb = path.stat().st_size / 1e6
        document["file_mb"] = size_mb
        print(
            f"generated {args.packets:,} packets, {size_mb:.1f} MB "
            f"in {time.perf_counter() - t:.2f} s"
        )

        lab = min((run_lab(path, trace=False) for _ in range(3)), key=lambda r: r["wall"])
        traced = run_lab(path, trace=True)
        print(
            f"lab read_pcap : {lab['wall']:.3f} s, peak RSS {lab['rss_kb'] / 1024:.0f} MiB "
            f"({(lab['rss_kb'] - lab['base_kb']) / 1024:.0f} MiB above the imported interpreter), "
            f"tracemalloc peak {traced['traced'] / 2**20:.0f} MiB, "
            f"{int(lab['rows']):,} rows, {int(lab['skipped'])} skipped"
        )
        document["lab"] = {**lab, "traced": traced["traced"], "runs": 3}
        document["tshark"] = None
        tshark = shutil.which("tshark")
        if args.no_tshark or tshark is None:
            print("tshark        : skipped" if args.no_tshark else "tshark        : not installed")
            if args.json:
                _write_json(args.json, document)
            return 0
        ts = run_tshark(path, tshark)
        document["tshark"] = {**ts, "fields": list(TSHARK_FIELDS)}
        document["speed_ratio"] = ts["wall"] / lab["wall"]
        document["rss_ratio"] = ts["rss_kb"] / lab["rss_kb"]
        print(
            f"tshark fields : {ts['wall']:.3f} s, peak RSS {ts['rss_kb'] / 1024:.0f} MiB, "
            f"{int(ts['lines']):,} lines"
        )
        print(
            f"ratio         : lab is {ts['wall'] / lab['wall']:.1f}x faster, "
            f"peak RSS tshark/lab = {ts['rss_kb'] / lab['rss_kb']:.2f}"
        )
    if args.json:
        _write_json(args.json, document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
