"""Benchmark ``lab analyze`` on a capture with many small flows.

Run: ``.venv/bin/python bench/analyze_flows.py [--flows 200000] [--keep FILE]
[--modes top0,default,json] [--json PATH]``

Builds a LINKTYPE_RAW pcap with numpy: ``--flows`` flows, interleaved in time, 60 %
TCP (SYN, SYN/ACK, data, ACK; one in a thousand also resends its data segment
200 ms later) and 40 % UDP (request, response, sometimes a second response). Then
runs ``lab analyze`` on it in a fresh interpreter per mode, stdout to a file:
``top0`` (``--top 0``, the table of every flow), ``default`` (the default table),
``json`` (``--json --top 0``), and prints wall time, peak RSS and output size,
checking the JSON against what the generator made. A script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_RAW = 101
T0 = 1_700_000_000_000_000_000
FIN, SYN, PSH, ACK = 0x01, 0x02, 0x08, 0x10
RETX_EVERY = 1000  # flows i with i % RETX_EVERY == 3 resend their data segment

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

MODES: dict[str, list[str]] = {
    "top0": ["--top", "0"],
    "default": [],
    "json": ["--json", "--top", "0"],
}


def _put(buf: U8, at: I64, values: npt.NDArray[np.integer], width: int, order: str) -> None:
    """Write ``width``-byte integers ``values`` at byte offsets ``at``."""
    v = values.astype(np.uint64)
    for k in range(width):
        shift = 8 * (width - 1 - k) if order == ">" else 8 * k
        buf[at + k] = ((v >> np.uint64(shift)) & np.uint64(0xFF)).astype(np.uint8)


@dataclass(frozen=True)
class Generated:
    """What the generator wrote: per flow its packets, IP bytes and resends."""

    packets: I64
    bytes: I64
    retransmissions: I64  # -1 for UDP flows
    is_tcp: npt.NDArray[np.bool_]


def generate(path: Path, flows: int, seed: int = 1) -> Generated:
    """Write the many-flow capture to ``path`` and return its per-flow truth."""
    rng = np.random.default_rng(seed)
    i = np.arange(flows, dtype=np.int64)
    tcp = i % 10 < 6
    retx = tcp & (i % RETX_EVERY == 3)
    udp3 = ~tcp & (i % 10 == 9)
    start = T0 + i * 20_000  # a new flow every 20 us: about 100 overlap at any time
    rtt = 1_000_000 + (i % 50) * 100_000
    client = 0x0A000000 + i  # 10.0.0.0 + i: a distinct 5-tuple per flow
    server = 0xC0A80001 + (i % 256)
    cport = 1024 + i % 60_000
    sport = np.where(tcp, 443, 53)
    isn_c = rng.integers(0, 1 << 32, flows)
    isn_s = rng.integers(0, 1 << 32, flows)
    data_len = rng.integers(1, 1400, flows)
    udp_len = rng.integers(16, 400, flows)

    # one row per packet: (flow, step), steps 0..4; a flow uses only some of them
    # TCP: 0 SYN, 1 SYN/ACK, 2 data, 3 resent data (retx only), 4 ACK of the data
    # UDP: 0 request, 1 response, 2 second response (udp3 only)
    steps = np.arange(5)
    uses = np.where(
        tcp[:, None],
        (steps != 3)[None, :] | retx[:, None],
        (steps < 2)[None, :] | ((steps == 2)[None, :] & udp3[:, None]),
    )
    f, s = np.nonzero(uses)
    from_client = np.where(tcp[f], np.isin(s, (0, 2, 3)), s == 0)
    gap = np.where(retx[f] & (s == 4), 200_000_000, 0)  # the ACK waits for the resend
    ts = start[f] + np.select(
        [s == 0, s == 1, s == 2, s == 3, s == 4],
        [0, rtt[f], rtt[f] + 10_000, rtt[f] + 200_010_000, 2 * rtt[f] + 10_000 + gap],
    )
    payload = np.where(
        tcp[f], np.where((s == 2) | (s == 3), data_len[f], 0), udp_len[f] + (s == 1) * 7
    )
    l4_len = np.where(tcp[f], 20, 8)
    pkt_len = (20 + l4_len + payload).astype(np.int64)

    order = np.lexsort((s, f, ts))
    f, s, ts, from_client = f[order], s[order], ts[order], from_client[order]
    payload, pkt_len = payload[order], pkt_len[order]

    rec_len = 16 + pkt_len
    starts = 24 + np.concatenate(([0], np.cumsum(rec_len)[:-1])).astype(np.int64)
    buf = np.zeros(24 + int(rec_len.sum()), dtype=np.uint8)
    header = np.array([PCAP_MAGIC_NS, 0x00040002, 0, 0, 262144, LINKTYPE_RAW], dtype="<u4")
    buf[:24] = np.frombuffer(header.tobytes(), dtype=np.uint8)
    _put(buf, starts, ts // 1_000_000_000, 4, "<")
    _put(buf, starts + 4, ts % 1_000_000_000, 4, "<")
    _put(buf, starts + 8, pkt_len, 4, "<")
    _put(buf, starts + 12, pkt_len, 4, "<")

    ip = starts + 16
    is_tcp = tcp[f]
    buf[ip] = 0x45
    _put(buf, ip + 2, pkt_len, 2, ">")
    _put(buf, ip + 4, (f * 5 + s) & 0xFFFF, 2, ">")
    buf[ip + 8] = 64
    buf[ip + 9] = np.where(is_tcp, 6, 17).astype(np.uint8)
    _put(buf, ip + 12, np.where(from_client, client[f], server[f]), 4, ">")
    _put(buf, ip + 16, np.where(from_client, server[f], client[f]), 4, ">")

    l4 = ip + 20
    _put(buf, l4, np.where(from_client, cport[f], sport[f]), 2, ">")
    _put(buf, l4 + 2, np.where(from_client, sport[f], cport[f]), 2, ">")
    u = ~is_tcp
    _put(buf, l4[u] + 4, 8 + payload[u], 2, ">")
    # random first payload words: no lab message counter
    _put(buf, l4[u] + 8, rng.integers(0, 1 << 32, int(u.sum())), 4, ">")

    t, ft, st = is_tcp, f[is_tcp], s[is_tcp]
    seq = np.select(
        [st == 0, st == 1, st == 4],
        [isn_c[ft], isn_s[ft], isn_s[ft] + 1],
        isn_c[ft] + 1,
    )
    ack = np.select(
        [st == 0, st == 1, st == 4],
        [0, isn_c[ft] + 1, isn_c[ft] + 1 + data_len[ft]],
        isn_s[ft] + 1,
    )
    flags = np.select([st == 0, st == 1, st == 4], [SYN, SYN | ACK, ACK], PSH | ACK)
    _put(buf, l4[t] + 4, seq & 0xFFFFFFFF, 4, ">")
    _put(buf, l4[t] + 8, ack & 0xFFFFFFFF, 4, ">")
    buf[l4[t] + 12] = 0x50
    buf[l4[t] + 13] = flags.astype(np.uint8)
    _put(buf, l4[t] + 14, np.full(int(t.sum()), 65535), 2, ">")
    buf.tofile(path)

    packets = np.bincount(f, minlength=flows).astype(np.int64)
    nbytes = np.bincount(f, weights=pkt_len, minlength=flows).astype(np.int64)
    return Generated(packets, nbytes, np.where(tcp, retx.astype(np.int64), -1), tcp)


def run_lab(path: Path, extra: list[str], out: Path) -> dict[str, float]:
    """``lab analyze`` in a fresh interpreter, stdout to ``out``: wall and CPU time
    (user + system, steadier than wall time on a shared machine), peak RSS."""
    t = time.perf_counter()
    with out.open("wb") as sink:
        subprocess.run(
            [sys.executable, "-m", "lab", "analyze", str(path), *extra],
            stdout=sink,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    wall = time.perf_counter() - t
    # RUSAGE_CHILDREN covers every child so far: each mode runs in its own wrapper
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "out_mb": out.stat().st_size / 1e6,
    }


_WRAPPER = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from analyze_flows import run_lab
print(json.dumps(run_lab(Path(sys.argv[2]), json.loads(sys.argv[3]), Path(sys.argv[4]))))
"""


def measure(path: Path, mode: str, out: Path) -> dict[str, float]:
    """One mode in its own wrapper process, so its peak RSS is its own."""
    here = str(Path(__file__).resolve().parent)
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, here, str(path), json.dumps(MODES[mode]), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def check_json(doc: dict[str, Any], truth: Generated) -> list[str]:
    """Differences between ``lab analyze --json --top 0`` and the generator's truth."""
    problems = []
    if doc["flows_total"] != truth.packets.size:
        problems.append(f"flows_total {doc['flows_total']} != {truth.packets.size}")
    rows = doc["flows"]
    # the client of flow i is 10.0.0.0 + i: the flow's number from its "a" address
    index = np.array([int.from_bytes(bytes(map(int, r["a"].split("."))), "big") for r in rows])
    index -= 0x0A000000
    got_packets = np.array([r["packets"] for r in rows])
    got_bytes = np.array([r["bytes"] for r in rows])
    got_retx = np.array([-1 if (v := r["retransmissions"]) is None else v for r in rows])
    if not np.array_equal(np.sort(index), np.arange(truth.packets.size)):
        problems.append("flows do not map one to one onto the generated flows")
        return problems
    for name, got, want in (
        ("packets", got_packets, truth.packets[index]),
        ("bytes", got_bytes, truth.bytes[index]),
        ("retransmissions", got_retx, truth.retransmissions[index]),
    ):
        bad = int((got != want).sum())
        if bad:
            problems.append(f"{name}: {bad} flow(s) differ")
    return problems


def _write_json(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--flows", type=int, default=200_000)
    parser.add_argument("--keep", type=Path, help="write the capture here and keep it")
    parser.add_argument("--modes", default="top0,default,json", help="comma-separated")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; known: {sorted(MODES)}")
    document: dict[str, Any] = {"benchmark": "analyze_flows", "flows": args.flows}
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "flows.pcap"
        t = time.perf_counter()
        truth = generate(path, args.flows)
        document["packets"] = int(truth.packets.sum())
        document["file_mb"] = path.stat().st_size / 1e6
        print(
            f"generated {args.flows:,} flows, {document['packets']:,} packets, "
            f"{document['file_mb']:.1f} MB in {time.perf_counter() - t:.2f} s"
        )
        for mode in modes:
            out = Path(tmp) / f"{mode}.out"
            figures = measure(path, mode, out)
            document[mode] = figures
            line = (
                f"{mode:8s} lab analyze {' '.join(MODES[mode]) or '(default)':18s} "
                f"{figures['wall_s']:7.2f} s (CPU {figures['cpu_s']:6.2f} s)  "
                f"peak RSS {figures['rss_mb']:6.0f} MB  "
                f"output {figures['out_mb']:6.1f} MB"
            )
            if mode == "json":
                problems = check_json(json.loads(out.read_text(encoding="utf-8")), truth)
                line += "  checked: " + ("ok" if not problems else "; ".join(problems))
                status |= bool(problems)
            print(line, flush=True)
    if args.json:
        _write_json(args.json, document)
    return status


if __name__ == "__main__":
    sys.exit(main())
