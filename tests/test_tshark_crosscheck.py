"""The lab's TCP round-trip times and retransmission count against tshark 4.x and the
sender's kernel, on the same captures.

The lab reports three RTTs (definitions in :mod:`lab.analysis._tcp` and
``results/README.md``): the handshake RTT, Karn RTT samples (RFC 6298 §3) and ack RTT
samples (tshark's ``tcp.analysis.ack_rtt``, recomputed). What is asserted:

* handshake RTT = tshark's ``tcp.analysis.initial_rtt``, per connection;
* ack RTT = tshark's ``tcp.analysis.ack_rtt``, per ACK frame: the same acknowledged
  frame and the same nanoseconds, in both directions (at the receiver's side of a
  direction both time the local ACK delay, not a round trip);
* Karn vs ack RTT, the documented difference and nothing else: a Karn sample whose
  ACK number equals the segment's end is tshark's sample for that ACK; any other
  Karn sample comes from a cumulative ACK (tshark only times the segment ending at
  the ACK number); a tshark sample of a data segment sent from the capture point
  that Karn lacks is one Karn rejects (the bytes were retransmitted, or a
  retransmission left between the segment and its ACK: the ACK waited for a hole);
* retransmissions: tshark 4.x also marks its fast and spurious retransmissions
  ``tcp.analysis.retransmission`` (adding those counts double-counts), and labels a
  resend that leaves within one handshake RTT of the highest segment
  ``out_of_order``; the lab's set = retransmission ∪ out_of_order (disjoint) plus the
  one-byte resends of outstanding data that tshark calls keep-alives, and its size
  is the sender kernel's ``Tcp.RetransSegs`` over the connection's life (no TSO on
  the lab's TUN link: one packet per segment).
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pytest

from lab.analysis import offline
from lab.analysis._wire_offline import CaptureReport, tcp_segment_flags
from lab.pcap import read_pcap
from tests.conftest import lab_namespaces
from tests.test_wire import CP, MS, SP, T0, story_captures, write_pcap

logging.getLogger("scapy").setLevel(logging.ERROR)

from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.packet import Raw  # noqa: E402

TSHARK = shutil.which("tshark")
IPERF3 = shutil.which("iperf3")
TCPDUMP = shutil.which("tcpdump")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")

AckSamples = dict[int, tuple[int, int]]  # ACK frame -> (acknowledged frame, ns)


# --------------------------------------------------------------------------- tshark


def tshark_rows(pcap: Path, display_filter: str, *fields: str) -> list[list[str]]:
    """tshark's values of ``fields`` for the frames matching ``display_filter``."""
    assert TSHARK is not None
    args = [TSHARK, "-n", "-o", "tcp.analyze_sequence_numbers:TRUE", "-r", str(pcap)]
    args += ["-Y", display_filter, "-T", "fields"]
    for field in fields:
        args += ["-e", field]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines()]


def seconds_ns(text: str) -> int:
    """tshark's decimal seconds as exact nanoseconds."""
    return int(Decimal(text) * 1_000_000_000)


def tshark_ack_rtt(pcap: Path) -> AckSamples:
    rows = tshark_rows(
        pcap,
        "tcp.analysis.ack_rtt",
        "frame.number",
        "tcp.analysis.acks_frame",
        "tcp.analysis.ack_rtt",
    )
    return {int(a): (int(f), seconds_ns(r)) for a, f, r in rows}


def tshark_frames(pcap: Path, field: str) -> set[int]:
    return {int(row[0]) for row in tshark_rows(pcap, f"tcp.analysis.{field}", "frame.number")}


def tshark_initial_rtt(pcap: Path) -> dict[int, int]:
    """Initiator's port -> tshark's iRTT (ns)."""
    rows = tshark_rows(
        pcap,
        "tcp.analysis.initial_rtt && tcp.flags.syn == 0",
        "tcp.stream",
        "tcp.srcport",
        "tcp.dstport",
        "tcp.analysis.initial_rtt",
    )
    ports = {
        row[0]: int(row[1])
        for row in tshark_rows(
            pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 0", "tcp.stream", "tcp.srcport"
        )
    }
    return {ports[stream]: seconds_ns(rtt) for stream, _, _, rtt in rows if stream in ports}


def lab_ack_rtt(report: CaptureReport) -> AckSamples:
    ack = report.rtt_samples.loc[report.rtt_samples["kind"] == "ack"]
    return {
        int(a): (int(f), int(r))
        for a, f, r in zip(ack["ack_frame"], ack["frame"], ack["rtt_ns"], strict=True)
    }


def lab_initial_rtt(report: CaptureReport) -> dict[int, int]:
    flows = report.flows.loc[report.flows["handshake_rtt_ms"].notna()]
    return {
        int(port): round(ms * 1e6)
        for port, ms in zip(flows["a_port"], flows["handshake_rtt_ms"], strict=True)
    }


# --------------------------------------------------------------------------- hand-made


@needs_tshark
@pytest.mark.parametrize("isn", [1_000_000, 2**32 - 250], ids=["plain", "wraps"])
def test_story_rtts_are_tsharks(tmp_path: Path, isn: int) -> None:
    """test_wire's story, client side: SYN answered after 10.01 ms; message 0 acked
    after 10.05 ms; message 1 lost and fast-retransmitted, the ACK of everything comes
    20.1 ms after message 5; message 5 resent spuriously and acked again; FIN."""
    client, _ = story_captures(tmp_path, isn_c=isn)
    report = offline.analyze_capture(client)
    assert lab_ack_rtt(report) == tshark_ack_rtt(client)
    assert lab_initial_rtt(report) == tshark_initial_rtt(client) == {CP: round(10.02 * MS)}
    samples = report.rtt_samples
    mine = samples.loc[samples["counted"]]
    # tshark's way: the cumulative ACK times message 5 from its first copy (20.1 ms),
    # its spurious resend gets the next ACK of the same number (10.05 ms)
    ack = sorted(mine.loc[mine["kind"] == "ack", "rtt_ns"])
    assert ack == [round(x * MS) for x in (10.01, 10.05, 10.05, 10.05, 20.1)]
    # Karn: message 0 only (2..5 waited for the resend of 1; 5 was resent)
    assert mine.loc[mine["kind"] == "karn", "rtt_ns"].tolist() == [round(10.05 * MS)]
    # the client's ACKs of the server's SYN/ACK and FIN time its own turnaround
    other = samples.loc[(samples["kind"] == "ack") & ~samples["counted"], "rtt_ns"]
    assert sorted(other) == [round(0.01 * MS)] * 2


@needs_tshark
@pytest.mark.parametrize("isn", [1_000_000, 3_000_000_000], ids=["low", "high"])
def test_ack_number_of_a_bare_rst_counts_as_tshark_reads_it(tmp_path: Path, isn: int) -> None:
    """tshark compares the acknowledgment field of every segment, also of a RST without
    the ACK flag (field 0) with the peer's listed segments modulo 2^32: a client ISN in
    the upper half of the sequence space makes 0 look "ahead" of them, so they are
    dropped and the later ACK times nothing. The lab reads it the same way."""

    def pkt(from_client: bool, seq: int, ack: int, flags: str, size: int = 0) -> bytes:
        c, s = ("198.18.0.1", CP), ("198.18.0.2", SP)
        (src, sport), (dst, dport) = (c, s) if from_client else (s, c)
        own, peer = (isn, 5_000) if from_client else (5_000, isn)
        header = TCP(sport=sport, dport=dport, seq=(own + seq) % 2**32, flags=flags)
        header.ack = (peer + ack) % 2**32 if "A" in flags else 0
        layer = IP(src=src, dst=dst) / header
        return bytes(layer / Raw(b"d" * size)) if size else bytes(layer)

    story = [
        pkt(True, 0, 0, "S"),
        pkt(False, 0, 1, "SA"),
        pkt(True, 1, 1, "A"),
        pkt(True, 1, 1, "PA", 100),
        pkt(False, 1, 0, "R"),  # bare RST from the server: acknowledgment field 0
        pkt(False, 1, 101, "A"),
    ]
    path = write_pcap(tmp_path / "rst.pcap", [(T0 + k * MS, p) for k, p in enumerate(story)])
    theirs = tshark_ack_rtt(path)
    assert lab_ack_rtt(offline.analyze_capture(path)) == theirs
    assert (6 in theirs) == (isn < 2**31)


# --------------------------------------------------------------------------- for real


@dataclass(frozen=True)
class LossyCapture:
    pcap: Path
    retrans_segs: int  # the client kernel's Tcp.RetransSegs over the whole exchange


def _retrans_segs(netns: str) -> int:
    text = subprocess.run(
        ["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    names, values = (line.split() for line in text.splitlines() if line.startswith("Tcp:"))
    return int(values[names.index("RetransSegs")])


def _wait_for_line(stream: IO[str] | None, pattern: str, timeout: float) -> str:
    """Read lines until one contains ``pattern``; fail after ``timeout`` seconds."""
    assert stream is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            break
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if pattern in line:
            return line
    raise AssertionError(f"no {pattern!r} within {timeout} s: {''.join(seen)!r}")


#: Client socket states that may still send a retransmission (all but TIME-WAIT and
#: FIN-WAIT-2, where everything the client sent has been acknowledged).
_BUSY = {"SYN-SENT", "ESTAB", "FIN-WAIT-1", "CLOSE-WAIT", "CLOSING", "LAST-ACK"}


def _wait_client_quiet(netns: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["ip", "netns", "exec", netns, "ss", "-Htan"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        if not {line.split()[0] for line in out.splitlines() if line.strip()} & _BUSY:
            return
        time.sleep(0.1)
    raise AssertionError(f"client sockets still busy after {timeout} s")


def _wait_listening(netns: str, port: int, timeout: float) -> None:
    """Wait until a socket of ``netns`` listens on TCP ``port`` (iperf3 buffers its
    "Server listening" line when writing to a pipe)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["ip", "netns", "exec", netns, "ss", "-Htln", f"sport = :{port}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


@contextlib.contextmanager
def _process(argv: list[str], **kwargs: object) -> Iterator[subprocess.Popen[str]]:
    """A process we started, ended by its own pid if it is still running."""
    proc = subprocess.Popen(argv, text=True, **kwargs)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def lossy_iperf3(tmp_path_factory: pytest.TempPathFactory) -> LossyCapture:
    """iperf3 (cubic, 2 s) through 5 % loss each way and 10 ms delay each way, captured
    by tcpdump on the client's end of the link (the data sender's side)."""
    if TSHARK is None or IPERF3 is None or TCPDUMP is None:
        pytest.skip("needs tshark, iperf3 and tcpdump")
    from lab.impairment.spec import ImpairmentSpec
    from lab.testbed import LINK_INTERFACE, SERVER_ADDRESS, namespace_names, open_testbed

    folder = tmp_path_factory.mktemp("crosscheck")
    pcap = folder / "client.pcap"
    spec = ImpairmentSpec(delay_ms=10, loss=5)
    with open_testbed(spec, 7, "cubic", folder / "ground-truth.npz") as testbed:
        run_id = testbed.run_id
        client, server = testbed.client.netns, testbed.server.netns
        before = _retrans_segs(client)
        dump_argv = ["ip", "netns", "exec", client, TCPDUMP, "-n", "-i", LINK_INTERFACE]
        dump_argv += ["-s", "128", "-B", "4096", "--immediate-mode"]
        dump_argv += ["--time-stamp-precision", "nano", "-w", str(pcap)]
        serve_argv = ["ip", "netns", "exec", server, IPERF3, "-s", "-1", "-B", SERVER_ADDRESS]
        with (
            _process(dump_argv, stderr=subprocess.PIPE) as dump,
            _process(serve_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as serve,
        ):
            _wait_for_line(dump.stderr, "listening on", 15)
            _wait_listening(server, 5201, 15)
            send_argv = ["ip", "netns", "exec", client, IPERF3, "-c", SERVER_ADDRESS]
            subprocess.run(
                [*send_argv, "-t", "2", "-C", "cubic"],
                capture_output=True,
                text=True,
                check=True,
                timeout=40,
            )
            serve.wait(timeout=15)
            _wait_client_quiet(client, 15)
            after = _retrans_segs(client)
            time.sleep(0.2)
            dump.send_signal(signal.SIGINT)
            _, report = dump.communicate(timeout=15)
    assert not set(namespace_names(run_id)) & lab_namespaces(), "testbed left behind"
    dropped = re.search(r"(\d+) packets? dropped by kernel", report)
    assert dropped is not None and int(dropped.group(1)) == 0, report
    return LossyCapture(pcap, after - before)


@pytest.mark.requires_root
@pytest.mark.slow
def test_rtts_against_tshark_on_a_lossy_iperf3_capture(
    lossy_iperf3: LossyCapture, no_leftover_namespaces: None
) -> None:
    pcap = lossy_iperf3.pcap
    report = offline.analyze_capture(pcap)
    theirs = tshark_ack_rtt(pcap)
    ours = lab_ack_rtt(report)
    assert ours == theirs, sorted(set(ours.items()) ^ set(theirs.items()))[:10]
    assert lab_initial_rtt(report) == tshark_initial_rtt(pcap)
    assert set(report.flows["capture_at"].dropna()) == {"client"}

    segs = tcp_segment_flags(read_pcap(pcap)).set_index("frame")
    samples = report.rtt_samples
    karn = samples.loc[samples["kind"] == "karn"]
    karn_pairs = set(zip(karn["frame"], karn["ack_frame"], strict=True))
    assert len(karn) >= 50, "a 2 s bulk transfer gives hundreds of samples"

    # a Karn sample is tshark's, unless its ACK is cumulative past the segment
    ack_number = segs.loc[karn["ack_frame"], "ack"].to_numpy(dtype=np.float64)
    seg_end = segs.loc[karn["frame"], "seq_end"].to_numpy(dtype=np.float64)
    exact = ack_number == seg_end
    assert (ack_number[~exact] > seg_end[~exact]).all()
    for f, a, rtt, same in zip(
        karn["frame"], karn["ack_frame"], karn["rtt_ns"], exact, strict=True
    ):
        if same:
            assert theirs[a] == (f, rtt), (f, a)
        else:
            assert theirs.get(a, (None, 0))[0] != f

    # a tshark sample Karn lacks (data sent from here) is one Karn rejects
    retx = segs.loc[segs["retransmission"]]
    rejected = 0
    for a, (f, _) in theirs.items():
        seg = segs.loc[f]
        if not (seg["sent_here"] and seg["len"] > 0) or (f, a) in karn_pairs:
            continue
        same_way = retx.loc[(retx["flow"] == seg["flow"]) & (retx["dir"] == seg["dir"])]
        overlaps = (same_way["seq"] < seg["seq_end"]) & (same_way["seq_end"] > seg["seq"])
        between = (same_way.index > f) & (same_way.index < a)
        assert seg["retransmission"] or overlaps.any() or between.any(), (f, a)
        rejected += 1

    counted = samples.loc[samples["counted"]]
    tshark_all = np.array([r for _, r in theirs.values()], dtype=np.float64)
    print(
        "\nRTT p50 ms: handshake "
        + ", ".join(f"{v:.3f}" for v in report.flows["handshake_rtt_ms"].dropna())
        + f"; Karn {karn['rtt_ns'].median() / 1e6:.3f} ({len(karn)} samples)"
        + f"; ack RTT sent here {counted.loc[counted['kind'] == 'ack', 'rtt_ns'].median() / 1e6:.3f}"
        + f"; tshark ack_rtt, all frames {np.median(tshark_all) / 1e6:.3f} ({tshark_all.size});"
        + f" Karn-only (cumulative ACKs) {int((~exact).sum())},"
        + f" tshark-only data sent here (Karn-rejected) {rejected}"
    )


@pytest.mark.requires_root
@pytest.mark.slow
def test_retransmissions_against_tshark_and_the_kernel(
    lossy_iperf3: LossyCapture, no_leftover_namespaces: None
) -> None:
    pcap = lossy_iperf3.pcap
    segs = tcp_segment_flags(read_pcap(pcap))
    here = segs.loc[segs["sent_here"]]
    ours = set(here.loc[here["retransmission"], "frame"])
    retx, fast, spurious, ooo, keepalive = (
        tshark_frames(pcap, name)
        for name in (
            "retransmission",
            "fast_retransmission",
            "spurious_retransmission",
            "out_of_order",
            "keep_alive",
        )
    )
    assert len(ours) >= 3, "5 % loss over 2 s of bulk data costs retransmissions"
    # tshark 4.x: a fast or spurious retransmission is also a "retransmission"
    assert fast <= retx and spurious <= retx
    assert not retx & ooo
    theirs = (retx | ooo) & set(here["frame"])
    assert theirs <= ours, sorted(theirs - ours)
    assert ours - theirs <= keepalive, sorted(ours - theirs - keepalive)
    assert len(ours) == lossy_iperf3.retrans_segs
    print(
        f"\nlab {len(ours)} = tshark retransmission {len(retx & theirs)} (fast "
        f"{len(fast & theirs)}, spurious {len(spurious & theirs)} among them) + "
        f"out_of_order {len(ooo & theirs)} + keep_alive {len(ours - theirs)}; "
        f"kernel RetransSegs {lossy_iperf3.retrans_segs}"
    )


def test_segment_flags_of_a_capture_without_tcp(tmp_path: Path) -> None:
    pkt = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / Raw(b"x"))
    table = tcp_segment_flags(read_pcap(write_pcap(tmp_path / "none.pcap", [(T0, pkt)])))
    assert table.empty and list(table.columns)[:3] == ["frame", "flow", "dir"]
    assert isinstance(table, pd.DataFrame)
