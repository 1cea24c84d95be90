"""``lab analyze`` on captures with many flows: every flow's figures against what the
generator made, the all-flows-at-once analysis against each flow analysed alone,
and the JSON / plain-table output against the per-row formatting it replaced.

No timing here: ``bench/analyze_flows.py`` measures the speed (200,000 flows).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import itertools
import json
import math
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lab.analysis import _wire_offline, offline
from lab.cli import _analyze as analyze_cli
from lab.pcap import PcapFrame, read_pcap

T0 = 1_700_000_000_000_000_000
US = 1_000
MS = 1_000_000
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
SEG = 100  # payload bytes of a TCP data segment
FLOWS = 20_000
KINDS = 50  # flow i is of kind i % KINDS (see _kind)


# --------------------------------------------------------------------------- generator


@dataclass
class Expected:
    """One flow as the generator made it (client = "a", the initiator)."""

    proto: str
    a: str
    a_port: int | None
    b: str
    b_port: int | None
    packets: int = 0
    bytes: int = 0
    packets_ab: int = 0
    first_ns: int = 0
    last_ns: int = 0
    tcp: dict[str, Any] = field(default_factory=dict)  # TCP figures
    lab: dict[str, int] = field(default_factory=dict)  # lab message seq figures


def _kind(i: int) -> str:
    k = i % KINDS
    if k == 0:
        return "tcp_retx"
    if k == 1:
        return "tcp_fast"
    if k == 2:
        return "lab_udp"
    if k == 3:
        return "icmp"
    if k in (4, 5):
        return "udp6"
    if k == 6:
        return "tcp6"
    if k < 30:
        return "tcp"
    return "udp3" if k % 4 == 0 else "udp"


class Capture:
    """Records of many interleaved flows and what each flow should show."""

    def __init__(self) -> None:
        self.records: list[tuple[int, int, bytes]] = []  # (ts, order, packet)
        self.flows: dict[str, Expected] = {}

    def add(self, flow: Expected, ts: int, packet: bytes, from_a: bool) -> None:
        self.records.append((ts, len(self.records), packet))
        if flow.packets == 0:
            flow.first_ns = ts
        flow.packets += 1
        flow.bytes += len(packet)
        flow.packets_ab += from_a
        flow.first_ns = min(flow.first_ns, ts)
        flow.last_ns = max(flow.last_ns, ts)

    def write(self, path: Path) -> Path:
        out = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 101))
        for ts, _, data in sorted(self.records):
            out += struct.pack("<IIII", ts // 10**9, ts % 10**9, len(data), len(data)) + data
        path.write_bytes(bytes(out))
        return path


def _ip(src: str, dst: str, proto: int, body: bytes, ident: int) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 6:
        return struct.pack("!IHBB", 0x60000000, len(body), proto, 64) + s.packed + d.packed + body
    head = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(body), ident & 0xFFFF, 0, 64, proto, 0)
    return head + s.packed + d.packed + body


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int, *, payload: int = 0) -> bytes:
    head = struct.pack(
        "!HHIIBBHHH", sport, dport, seq % 2**32, ack % 2**32, 0x50, flags, 8192, 0, 0
    )
    return head + bytes(payload)


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def _tcp_flow(cap: Capture, i: int, kind: str, t: int, rtt: int) -> None:
    """SYN, SYN/ACK, ACK, data from the client, seen at the client; retx: the data
    resent after 200 ms; fast: five segments, the second lost, three duplicate
    ACKs, the fast retransmit. The ISNs sit near 2^32 for some flows (wrap)."""
    v6 = kind == "tcp6"
    client = f"fd00::{i + 1:x}" if v6 else str(ipaddress.IPv4Address(0x0A000001 + i))
    server = "fd00:1::1" if v6 else f"192.168.{(i // 250) % 250}.{1 + i % 250}"
    cport, sport = 1024 + i % 60_000, 443
    flow = cap.flows[client] = Expected("tcp", client, cport, server, sport)
    isn_c = (2**32 - 150) if i % 3 == 0 else 1_000 + 7 * i
    isn_s = 5_000_000 + 11 * i
    ident = iter(range(i * 64, i * 64 + 64))

    def c2s(ts: int, seq: int, ack: int, flags: int, payload: int = 0) -> None:
        body = _tcp(cport, sport, isn_c + seq, isn_s + ack, flags, payload=payload)
        cap.add(flow, ts, _ip(client, server, 6, body, next(ident)), True)

    def s2c(ts: int, seq: int, ack: int, flags: int) -> None:
        body = _tcp(sport, cport, isn_s + seq, isn_c + ack, flags)
        cap.add(flow, ts, _ip(server, client, 6, body, next(ident)), False)

    c2s(t, 0, 0, SYN)
    s2c(t + rtt, 0, 1, SYN | ACK)
    c2s(t + rtt + 10 * US, 1, 1, ACK)
    hs = rtt + 10 * US
    d = t + rtt + 20 * US
    figures: dict[str, Any] = {
        "capture_at": "client",
        "handshake_rtt_ms": hs / 1e6,
        "retransmissions": 0,
        "fast_retransmissions": 0,
        "dup_acks": 0,
        "out_of_order": 0,
        "spurious": 0,
    }
    if kind in ("tcp", "tcp6"):
        c2s(d, 1, 1, PSH | ACK, SEG)
        s2c(d + rtt, 1, 1 + SEG, ACK)
        # ack RTT: the SYN and the data segment (the client's ACK times the server's
        # SYN/ACK, a direction not sent from the capture point)
        figures |= {"karn": [rtt], "ack": [rtt, rtt]}
    elif kind == "tcp_retx":
        c2s(d, 1, 1, PSH | ACK, SEG)
        c2s(d + 200 * MS, 1, 1, PSH | ACK, SEG)
        s2c(d + 200 * MS + rtt, 1, 1 + SEG, ACK)
        # Karn: no sample from resent data; ack RTT times it from its first copy
        figures |= {"retransmissions": 1, "karn": [], "ack": [rtt, 200 * MS + rtt]}
    else:  # tcp_fast
        for k in range(5):
            c2s(d + k * 10 * US, 1 + k * SEG, 1, PSH | ACK, SEG)
        a = d + rtt
        s2c(a, 1, 1 + SEG, ACK)  # the first segment; the second was lost
        for k in range(1, 4):
            s2c(a + k * 10 * US, 1, 1 + SEG, ACK)  # third to fifth: duplicate ACKs
        resent = a + 40 * US
        c2s(resent, 1 + SEG, 1, PSH | ACK, SEG)
        s2c(resent + rtt, 1, 1 + 5 * SEG, ACK)
        figures |= {
            "retransmissions": 1,
            "fast_retransmissions": 1,
            "dup_acks": 3,
            # Karn: the first segment only (the others waited for the resend)
            "karn": [rtt],
            # ack RTT: SYN, first segment, and the last one (the final ACK ends there)
            "ack": [rtt, rtt, resent + rtt - (d + 4 * 10 * US)],
        }
    flow.tcp = figures


def _lab_payload(seq: int) -> bytes:
    return struct.pack("!IIQ", seq, 48, T0) + bytes(32)


def _udp_flow(cap: Capture, i: int, kind: str, t: int, rtt: int) -> None:
    v6 = kind == "udp6"
    client = f"fd00::{i + 1:x}" if v6 else str(ipaddress.IPv4Address(0x0A000001 + i))
    server = "fd00:1::53" if v6 else f"192.168.{(i // 250) % 250}.{1 + i % 250}"
    cport, sport = 2000 + i % 50_000, 53 if kind != "lab_udp" else 50001
    flow = cap.flows[client] = Expected("udp", client, cport, server, sport)
    if kind == "lab_udp":
        # messages 0..9: 5 lost, 4 before 3 (reordered), 7 twice (duplicate)
        seqs = [0, 1, 2, 4, 3, 6, 7, 7, 8, 9]
        for k, seq in enumerate(seqs):
            body = _udp(cport, sport, _lab_payload(seq))
            cap.add(flow, t + k * 50 * US, _ip(client, server, 17, body, seq), True)
        flow.lab = {"lab_seq_packets": 10, "lab_lost": 1, "lab_reordered": 1, "lab_duplicates": 1}
        return
    # not a counter: one request (one value), responses far apart (span > 2 * count + 16)
    request = _udp(cport, sport, struct.pack("!I", 0xDEAD0000 + i % 4096) + bytes(20 + i % 40))
    cap.add(flow, t, _ip(client, server, 17, request, 1), True)
    answers = 2 if kind == "udp3" else 1
    for k in range(answers):
        reply = _udp(sport, cport, struct.pack("!I", 7_000_000 * k + i) + bytes(60 + k))
        cap.add(flow, t + rtt + k * 30 * US, _ip(server, client, 17, reply, 2 + k), False)


def _icmp_flow(cap: Capture, i: int, t: int, rtt: int) -> None:
    client = str(ipaddress.IPv4Address(0x0A000001 + i))
    server = "192.168.250.1"
    flow = cap.flows[client] = Expected("icmp", client, None, server, None)
    echo = struct.pack("!BBHHH", 8, 0, 0, i & 0xFFFF, 1) + bytes(56)
    reply = struct.pack("!BBHHH", 0, 0, 0, i & 0xFFFF, 1) + bytes(56)
    cap.add(flow, t, _ip(client, server, 1, echo, 1), True)
    cap.add(flow, t + rtt, _ip(server, client, 1, reply, 2), False)


def many_flows(flows: int | list[int]) -> Capture:
    """Flows 0 .. ``flows`` - 1 (or those listed), flow i starting at 20 i us, so
    about a hundred overlap."""
    cap = Capture()
    for i in range(flows) if isinstance(flows, int) else flows:
        t = T0 + i * 20 * US
        rtt = 1 * MS + (i % 7) * 250 * US
        kind = _kind(i)
        if kind.startswith("tcp"):
            _tcp_flow(cap, i, kind, t, rtt)
        elif kind == "icmp":
            _icmp_flow(cap, i, t, rtt)
        else:
            _udp_flow(cap, i, kind, t, rtt)
    return cap


@dataclass(frozen=True)
class Big:
    path: Path
    cap: Capture
    report: _wire_offline.CaptureReport


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Big:
    cap = many_flows(FLOWS)
    path = cap.write(tmp_path_factory.mktemp("many") / "flows.pcap")
    return Big(path, cap, offline.analyze_capture(path))


@pytest.fixture
def analysed(big: Big, monkeypatch: pytest.MonkeyPatch) -> Big:
    """``big``, and the CLI handler given its report instead of analysing again."""
    monkeypatch.setattr(offline, "analyze_capture", lambda path: big.report)
    return big


# --------------------------------------------------------------------------- figures


def _median_ms(values: list[int]) -> float | None:
    return float(np.median(values)) / 1e6 if values else None


def test_every_flow_has_the_generators_figures(big: Big) -> None:
    cap, report = big.cap, big.report
    assert report.stats.skipped == 0 and report.stats.packets == len(cap.records)
    assert len(report.flows) == FLOWS
    rows = {row["a"]: row for row in report.rows(None)}
    assert rows.keys() == cap.flows.keys()
    kinds_seen = set()
    for client, want in cap.flows.items():
        row = rows[client]
        assert (row["proto"], row["a"], row["a_port"], row["b"], row["b_port"]) == (
            want.proto,
            want.a,
            want.a_port,
            want.b,
            want.b_port,
        )
        assert row["packets"] == want.packets and row["bytes"] == want.bytes
        assert row["packets_ab"] == want.packets_ab
        assert row["packets_ba"] == want.packets - want.packets_ab
        assert row["start_ns"] == want.first_ns
        assert row["duration_s"] == (want.last_ns - want.first_ns) / 1e9
        if want.tcp:
            tcp = dict(want.tcp)
            karn, ack = tcp.pop("karn"), tcp.pop("ack")
            hs = tcp.pop("handshake_rtt_ms")
            assert {k: row[k] for k in tcp} == tcp, client
            assert row["handshake_rtt_ms"] == pytest.approx(hs, abs=1e-9)
            assert row["karn_rtt_samples"] == len(karn)
            assert row["ack_rtt_samples"] == len(ack)
            for name, samples in (("karn_rtt_p50_ms", karn), ("ack_rtt_p50_ms", ack)):
                expected = _median_ms(samples)
                if expected is None:
                    assert row[name] is None, (client, name)
                else:
                    assert row[name] == pytest.approx(expected, abs=1e-9), (client, name)
            kinds_seen.add((row["retransmissions"], row["fast_retransmissions"]))
        else:
            assert row["retransmissions"] is None and row["capture_at"] is None
        for name in ("lab_seq_packets", "lab_lost", "lab_reordered", "lab_duplicates"):
            assert row[name] == want.lab.get(name), (client, name)
    assert kinds_seen == {(0, 0), (1, 0), (1, 1)}
    assert sum(r["retransmissions"] or 0 for r in rows.values()) == 2 * FLOWS // KINDS
    # largest first, as the table and JSON show them
    sizes = report.flows[["bytes", "packets"]].to_numpy()
    assert all(tuple(a) >= tuple(b) for a, b in itertools.pairwise(sizes))


def test_rtt_samples_of_every_flow(big: Big) -> None:
    cap, samples = big.cap, big.report.rtt_samples
    counted = samples.loc[samples["counted"]]
    tcp_flows = [f for f in cap.flows.values() if f.tcp]
    assert (counted["kind"] == "karn").sum() == sum(len(f.tcp["karn"]) for f in tcp_flows)
    assert (counted["kind"] == "ack").sum() == sum(len(f.tcp["ack"]) for f in tcp_flows)
    # every ack sample pairs a frame with a later one of the same flow
    assert (samples["ack_frame"] > samples["frame"]).all()
    assert (samples["rtt_ns"] >= 0).all()


# --------------------------------------------------------------------------- per flow


def _flow_of_each_packet(frame: PcapFrame) -> list[tuple[Any, ...]]:
    """A bidirectional 5-tuple per packet, by plain Python (the reference)."""
    p = frame.packets
    v6 = {int(r): k for k, r in enumerate(frame.ipv6_rows)}
    keys = []
    columns = zip(p["src"], p["dst"], p["proto"], p["sport"], p["dport"], strict=True)
    for row, (src4, dst4, proto, sport, dport) in enumerate(columns):
        src, dst = str(src4), str(dst4)
        if row in v6:
            src, dst = bytes(frame.src6[v6[row]]).hex(), bytes(frame.dst6[v6[row]]).hex()
        ends = sorted([(src, str(sport)), (dst, str(dport))])
        keys.append((int(proto), *ends[0], *ends[1]))
    return keys


def _subframe(frame: PcapFrame, rows: list[int]) -> PcapFrame:
    """The packets at ``rows`` as a capture of their own (frame numbers kept)."""
    rows_a = np.asarray(rows, dtype=np.int64)
    v6_pos = {int(r): k for k, r in enumerate(frame.ipv6_rows)}
    v6_new = [k for k, r in enumerate(rows) if r in v6_pos]
    v6_old = [v6_pos[rows[k]] for k in v6_new]
    return dataclasses.replace(
        frame,
        packets=frame.packets.iloc[rows_a].reset_index(drop=True),
        ipv6_rows=np.asarray(v6_new, dtype=np.int64),
        src6=frame.src6[v6_old].reshape(-1, 16),
        dst6=frame.dst6[v6_old].reshape(-1, 16),
    )


def test_all_flows_at_once_equal_each_flow_alone(tmp_path: Path) -> None:
    """Keyed by flow number, no figure of one flow can leak into another: the table
    of all flows equals the tables of each flow analysed in a capture of its own."""
    chosen = [*range(12), *range(28, 36)]  # every kind
    path = many_flows(chosen).write(tmp_path / "few.pcap")
    frame = read_pcap(path)
    flows, samples = _wire_offline.analyze_frame(frame)
    segments = _wire_offline.tcp_segment_flags(frame)

    groups: dict[tuple[Any, ...], list[int]] = {}
    for row, key in enumerate(_flow_of_each_packet(frame)):
        groups.setdefault(key, []).append(row)
    assert len(groups) == len(flows) == len(chosen)
    alone_rows, alone_samples, alone_segments = [], [], []
    for rows in groups.values():
        sub = _subframe(frame, rows)
        one, its_samples = _wire_offline.analyze_frame(sub)
        assert len(one) == 1
        alone_rows.append(one)
        alone_samples.append(its_samples.assign(first_frame=int(sub.packets["frame"].iloc[0])))
        if sub.packets["proto"].iloc[0] == 6:
            alone_segments.append(_wire_offline.tcp_segment_flags(sub))

    def records(table: pd.DataFrame) -> list[dict[str, Any]]:
        rows = [
            {str(k): _plain_reference(v) for k, v in row.items()}
            for row in table.to_dict(orient="records")
        ]
        return sorted(rows, key=lambda r: (r["a"], r["a_port"] or 0, r["b"], r["b_port"] or 0))

    together = records(flows)
    assert together == records(pd.concat(alone_rows, ignore_index=True))
    assert {r["proto"] for r in together} == {"tcp", "udp", "icmp"}
    assert {r["retransmissions"] for r in together} == {None, 0, 1}

    # the RTT samples: the same, flow numbers aside
    columns = ["dir", "kind", "ts_ns", "rtt_ns", "frame", "ack_frame", "counted"]
    ours = samples[columns].sort_values(["ack_frame", "kind", "frame"], ignore_index=True)
    theirs = pd.concat(alone_samples, ignore_index=True)[columns]
    theirs = theirs.sort_values(["ack_frame", "kind", "frame"], ignore_index=True)
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)

    # and every TCP segment's flags
    flag_columns = [c for c in _wire_offline.SEGMENT_FLAG_COLUMNS if c != "flow"]
    ours_seg = segments[flag_columns].sort_values("frame", ignore_index=True)
    theirs_seg = pd.concat(alone_segments, ignore_index=True)[flag_columns]
    theirs_seg = theirs_seg.sort_values("frame", ignore_index=True)
    pd.testing.assert_frame_equal(ours_seg, theirs_seg, check_dtype=False)


# --------------------------------------------------------------------------- output


def _cli(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab")
    analyze_cli.register(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(["analyze", *args])
    result: int = parsed.handler(parsed)
    return result


def _plain_reference(value: Any) -> Any:
    """The old per-value conversion of ``CaptureReport.rows``."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def test_rows_and_json_equal_the_per_value_conversion(
    analysed: Big, capsys: pytest.CaptureFixture[str]
) -> None:
    path, report = analysed.path, analysed.report
    reference = [
        {str(k): _plain_reference(v) for k, v in row.items()}
        for row in report.flows.to_dict(orient="records")
    ]
    rows = report.rows(None)
    assert rows == reference
    assert [list(r) for r in rows[:1]] == [list(_wire_offline.FLOW_COLUMNS)]
    for value_types in ({type(v) for v in r.values()} for r in rows[:200]):
        assert value_types <= {int, float, str, bool, type(None)}

    assert _cli([str(path), "--json", "--top", "0"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert doc == offline.report_dict(report, None)
    assert doc["flows_total"] == FLOWS and len(doc["flows"]) == FLOWS
    lines = out.splitlines()  # one line per flow
    start = lines.index('  "flows": [') + 1
    assert lines[start + FLOWS :] == ["  ]", "}"]
    assert json.loads(lines[start].rstrip(",")) == reference[0]
    assert json.loads(lines[start + FLOWS - 1]) == reference[-1]

    assert _cli([str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["flows"] == reference[: offline.DEFAULT_TOP]


COLUMNS = analyze_cli.TABLE_COLUMNS


def _cells_reference(row: dict[str, Any], columns: Any = COLUMNS) -> list[str]:
    """The old per-row formatting of a table row (rich's cells, unescaped)."""

    def end(host: str, port: Any) -> str:
        text = f"[{host}]" if ":" in host else host
        return text if port is None else f"{text}:{port}"

    cells = []
    for _, source, fmt, _ in columns:
        if isinstance(source, tuple):
            cells.append(end(str(row[source[0]]), row[source[1]]))
        else:
            value = row[source]
            cells.append("–" if value is None else (fmt or "{}").format(value))
    return cells


def test_the_plain_table_shows_every_flow(
    analysed: Big, capsys: pytest.CaptureFixture[str]
) -> None:
    """--top 0 on 20,000 flows: every flow, one aligned line each, the cells the rich
    table would show; a small --top keeps the rich table."""
    path, report = analysed.path, analysed.report
    assert _cli([str(path), "--top", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path} — {FLOWS} flow(s), {report.stats.packets} packet(s)"
    header, rule, body = lines[1], lines[2], lines[3 : 3 + FLOWS]
    assert header.split() == " ".join(c[0] for c in analyze_cli.TABLE_COLUMNS).split()
    assert set(rule) == {"-", " "}
    assert lines[3 + FLOWS :] == [
        f"{FLOWS} of {FLOWS} flow(s) shown",
        f"{report.stats.records} record(s), {report.stats.packets} IP packet(s), 0 skipped",
    ]
    # columns are aligned: every line as long as the header (the last column is right-justified)
    assert {len(line) for line in body} == {len(header)}
    expected = [_cells_reference(row) for row in report.rows(None)]
    assert [line.split() for line in body] == expected
    # each column as wide as its widest cell or title, no wider
    widths = [max(len(c[0]), *(len(r[k]) for r in expected)) for k, c in enumerate(COLUMNS)]
    assert [len(dashes) for dashes in rule.split()] == widths

    many = analyze_cli.RICH_MAX_ROWS + 1
    assert _cli([str(path), "--top", str(many)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f", largest {many} shown") and len(lines) == 3 + many + 2

    assert _cli([str(path), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "largest 5 shown" in out and "┃" in out  # the rich table
    assert expected[0][1] in out


def test_a_closed_pipe_ends_quietly(big: Big) -> None:
    """``lab analyze --top 0 FILE | head -1``: no traceback once the reader is gone."""
    path = big.path
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "analyze", str(path), "--top", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert first.startswith(str(path).encode()) and b"Traceback" not in err


def test_table_widths_of_awkward_values() -> None:
    """Widths come from the extremes of numbers: negative, -0.0, infinite, rounding
    up to a new digit, missing, IPv6 and port-less endpoints all stay aligned."""
    flows = pd.DataFrame(
        {
            "host": ["10.0.0.1", "fd00::1234:5678", "192.168.100.200", "1.2.3.4"],
            "port": pd.array([5, 65535, None, 80], dtype="Int64"),
            "n": pd.array([0, None, 123456789, -7], dtype="Int64"),
            "x": [-0.0004, float("inf"), 9.9996, float("nan")],
            "y": [-12.5, -0.0, 3.0, -float("inf")],
            "z": [float("nan")] * 4,
            "text": ["tcp", None, "lab-raw", "udp"],
        }
    )
    columns = (
        ("end", ("host", "port"), None, False),
        ("n", "n", None, True),
        ("x", "x", "{:.3f}", True),
        ("y", "y", "{:.1f}", True),
        ("z", "z", "{:.3f}", True),
        ("text", "text", None, False),
    )
    lines = "".join(_wire_offline.table_lines(flows, columns)).splitlines()
    rows = [{str(k): _plain_reference(v) for k, v in r.items()} for r in flows.to_dict("records")]
    expected = [_cells_reference(r, columns) for r in rows]
    widths = [max(len(c[0]), *(len(r[k]) for r in expected)) for k, c in enumerate(columns)]
    assert [len(dashes) for dashes in lines[1].split()] == widths
    assert [line.split() for line in lines[2:]] == expected
    assert expected[0][:3] == ["10.0.0.1:5", "0", "-0.000"]
    assert expected[1][0] == "[fd00::1234:5678]:65535" and expected[1][2] == "inf"
    assert expected[2][2] == "10.000" and expected[2][0] == "192.168.100.200"
    # the text column is left-justified and last: no trailing blanks
    assert all(not line.endswith(" ") for line in lines)
    cut = len("  ".join("x" * w for w in widths[:-1])) + 2
    assert [line[cut:] for line in lines[2:]] == ["tcp", "–", "lab-raw", "udp"]
