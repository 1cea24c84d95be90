"""TCP wire analysis (lab.analysis.wire): a hand-made connection whose every flag is
known, sequence-number wrap, the interval helpers against brute force, a 100k-segment
flow for speed, and a real lossy run cross-checked with tshark (root)."""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.analysis import _tcp
from lab.analysis.wire import analyze_run, analyze_tcp, analyze_tcp_frames
from lab.pcap import read_pcap
from lab.results import load_run

logging.getLogger("scapy").setLevel(logging.ERROR)

from scapy.layers.inet import IP, TCP, UDP  # noqa: E402
from scapy.packet import Raw  # noqa: E402

CLIENT, SERVER = "198.18.0.1", "198.18.0.2"
CP, SP = 55000, 50000
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
MSG = 100  # bytes per message, one message per segment in the story
TSHARK = shutil.which("tshark")


# --------------------------------------------------------------------------- builders


def write_pcap(path: Path, records: Sequence[tuple[int, bytes]], linktype: int = 101) -> Path:
    """Classic nanosecond pcap of (timestamp ns, IP packet bytes) records."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, linktype))
    for ts, data in records:
        out += struct.pack("<IIII", ts // 10**9, ts % 10**9, len(data), len(data)) + data
    path.write_bytes(bytes(out))
    return path


@dataclass(frozen=True)
class Seg:
    """One TCP segment of the story: who sent it, when each capture saw it."""

    from_client: bool
    t_client: float | None  # ms after T0 on the client's capture (None: not there)
    t_server: float | None
    seq: int  # relative to the sender's ISN
    ack: int  # relative to the receiver's ISN (0 when no ACK flag)
    flags: str
    size: int
    ip_id: int
    t_engine: float | None = None  # when the engine took it in (default: between)
    fate: str = "forwarded"

    def packet(self, isn_c: int, isn_s: int) -> bytes:
        src, dst, sport, dport = (
            (CLIENT, SERVER, CP, SP) if self.from_client else (SERVER, CLIENT, SP, CP)
        )
        own, peer = (isn_c, isn_s) if self.from_client else (isn_s, isn_c)
        ack = (peer + self.ack) % 2**32 if "A" in self.flags else 0
        pkt = IP(src=src, dst=dst, id=self.ip_id, flags="DF") / TCP(
            sport=sport,
            dport=dport,
            seq=(own + self.seq) % 2**32,
            ack=ack,
            flags=self.flags,
            window=500,
        )
        return bytes(pkt / Raw(b"m" * self.size)) if self.size else bytes(pkt)


def data(k: int, t_client: float, t_server: float | None, ip_id: int, **kw: object) -> Seg:
    """Message k's segment, client -> server."""
    return Seg(True, t_client, t_server, 1 + k * MSG, 1, "PA", MSG, ip_id, **kw)  # type: ignore[arg-type]


def ack(n: int, t_server: float, t_client: float | None, ip_id: int) -> Seg:
    """Server ACK of the first n messages."""
    return Seg(False, t_client, t_server, 1, 1 + n * MSG, "A", 0, ip_id)


#: 6 messages, 5 ms each way. Message 1's segment is dropped by the engine and fast
#: retransmitted after three duplicate ACKs; message 4's is held 2 ms longer and
#: arrives after message 5's (out of order); message 5's is resent by a timeout
#: after the server had acknowledged it (spurious).
STORY = [
    Seg(True, 0.0, 5.0, 0, 0, "S", 0, 1),
    Seg(False, 10.01, 5.01, 0, 1, "SA", 0, 0),
    Seg(True, 10.02, 15.02, 1, 1, "A", 0, 2),
    data(0, 20.0, 25.0, 3),
    ack(1, 25.05, 30.05, 100),
    data(1, 21.0, None, 4, fate="dropped-loss"),
    data(2, 22.0, 27.0, 5),
    ack(1, 27.05, 32.05, 101),  # dup 1
    data(3, 23.0, 28.0, 6),
    ack(1, 28.05, 33.05, 102),  # dup 2
    data(5, 25.0, 30.0, 8),
    ack(1, 30.05, 35.05, 103),  # dup 3
    data(4, 24.0, 31.0, 7),  # overtaken by message 5
    ack(1, 31.05, 36.05, 104),  # dup 4
    Seg(True, 35.06, 40.06, 1 + MSG, 1, "PA", MSG, 9),  # fast retransmission of 1
    ack(6, 40.1, 45.1, 105),
    Seg(True, 60.0, 65.0, 1 + 5 * MSG, 1, "PA", MSG, 10),  # RTO, spurious
    ack(6, 65.05, 70.05, 106),  # answers the duplicate: not a dup ACK (nothing outstanding)
    Seg(True, 72.0, 77.0, 1 + 6 * MSG, 1, "FA", 0, 11),
    Seg(False, 82.05, 77.05, 1, 2 + 6 * MSG, "FA", 0, 107),
    Seg(True, 82.06, 87.06, 2 + 6 * MSG, 2, "A", 0, 12),
]
T_RECV = [25.1, 40.1, 40.1, 40.1, 40.1, 40.1]  # server application, ms
T_SEND = [20.0, 21.0, 22.0, 23.0, 24.0, 25.0]


def ns(ms: float) -> int:
    return T0 + round(ms * MS)


def story_captures(
    tmp_path: Path,
    isn_c: int = 1_000_000,
    isn_s: int = 7_000_000,
    story: Sequence[Seg] = tuple(STORY),
) -> tuple[Path, Path]:
    """The story's client-side and server-side pcaps (each in capture order)."""
    paths = []
    for side in ("client", "server"):
        rows = [
            (ns(t), s.packet(isn_c, isn_s))
            for s in story
            if (t := s.t_client if side == "client" else s.t_server) is not None
        ]
        rows.sort(key=lambda r: r[0])
        paths.append(write_pcap(tmp_path / f"tcp-{side}.pcap", rows))
    return paths[0], paths[1]


def story_messages() -> pd.DataFrame:
    rows = [
        {
            "protocol": "tcp",
            "seq": k,
            "size": MSG,
            "t_send_ns": ns(T_SEND[k]),
            "t_recv_ns": ns(T_RECV[k]),
            "copies": 1,
            "owd_ns": ns(T_RECV[k]) - ns(T_SEND[k]),
        }
        for k in range(6)
    ]
    frame = pd.DataFrame(rows)
    return frame.astype({c: "Int64" for c in ("t_send_ns", "t_recv_ns", "owd_ns")})


def story_ground_truth(
    isn_c: int = 1_000_000, isn_s: int = 7_000_000, story: Sequence[Seg] = tuple(STORY)
) -> pd.DataFrame:
    """The engine's table for the story: in halfway between the captures, out on arrival."""
    rows = []
    for s in story:
        sent = s.t_client if s.from_client else s.t_server
        got = s.t_server if s.from_client else s.t_client
        assert sent is not None
        t_in = s.t_engine if s.t_engine is not None else sent + 2.5
        own, peer = (isn_c, isn_s) if s.from_client else (isn_s, isn_c)
        rows.append(
            {
                "direction": "client_to_server" if s.from_client else "server_to_client",
                "t_in_ns": ns(t_in),
                "t_out_ns": ns(got - 0.01) if got is not None else -1,
                "size": 40 + s.size,
                "fate": s.fate,
                "duplicated": False,
                "corrupted": False,
                "reordered": False,
                "ip_proto": 6,
                "ip_id": s.ip_id,
                "src_port": CP if s.from_client else SP,
                "dst_port": SP if s.from_client else CP,
                "tcp_seq": (own + s.seq) % 2**32,
                "tcp_ack": (peer + s.ack) % 2**32,
                "payload_len": s.size,
                "lab_seq": pd.NA,
            }
        )
    return pd.DataFrame(rows).astype({"lab_seq": "Int64"}).sort_values("t_in_ns")


# --------------------------------------------------------------------------- the story


@pytest.fixture(params=[1_000_000, 2**32 - 250, 2**32 - 1], ids=["plain", "wraps", "isn-max"])
def story(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, Path, int]:
    client, server = story_captures(tmp_path, isn_c=request.param)
    return client, server, request.param


def test_story_stats(story: tuple[Path, Path, int]) -> None:
    client, server, _ = story
    result = analyze_tcp(client, server, story_messages(), CP, SP)
    stats = result.stats.iloc[0]
    assert stats["segments"] == 21
    assert stats["data_segments"] == 8
    assert stats["retransmissions"] == 2
    assert stats["fast_retransmissions"] == 1
    assert stats["dup_acks"] == 4
    assert stats["out_of_order"] == 1
    assert stats["spurious"] == 1
    assert stats["handshake_rtt_ms"] == pytest.approx(10.02)
    assert stats["payload_bytes"] == 6 * MSG
    assert stats["retransmitted_bytes"] == 2 * MSG
    sent = [
        len(s.packet(1, 1))
        for s in STORY
        if (s.t_client if s.from_client else s.t_server) is not None
    ]
    assert stats["wire_bytes"] == sum(sent)
    assert stats["overhead_ratio"] == pytest.approx(sum(sent) / 600)
    # Karn: only message 0 gives a sample; 2..5 were acknowledged after the resend of 1
    assert stats["karn_rtt_samples"] == 1
    karn = result.rtt_samples.loc[result.rtt_samples["kind"] == "karn"]
    assert karn["rtt_ns"].tolist() == [round(10.05 * MS)]
    assert stats["karn_rtt_p50_ms"] == pytest.approx(10.05)


def test_story_segments_flags_per_side(story: tuple[Path, Path, int]) -> None:
    client, server, _ = story
    segs = analyze_tcp(client, server, story_messages(), CP, SP).segments
    assert set(segs["side"]) == {"client", "server"}
    cl = segs.loc[(segs["side"] == "client") & (segs["direction"] == "client_to_server")]
    sv = segs.loc[(segs["side"] == "server") & (segs["direction"] == "client_to_server")]
    # relative numbers whatever the ISN (RFC 9293 modulo arithmetic)
    assert cl["seq"].tolist() == [0, 1, 1, 101, 201, 301, 401, 501, 101, 501, 601, 602]
    assert cl.loc[cl["retransmission"], "seq"].tolist() == [101, 501]
    assert cl.loc[cl["fast_retransmission"], "seq"].tolist() == [101]
    assert cl.loc[cl["spurious"], "seq"].tolist() == [501]  # the receiver's verdict
    assert not cl["out_of_order"].any()  # a sender never sends out of order
    assert sv.loc[sv["out_of_order"], "seq"].tolist() == [401]
    assert sv.loc[sv["retransmission"], "seq"].tolist() == [101, 501]  # from the sender's view
    assert sv.loc[sv["spurious"], "seq"].tolist() == [501]
    acks = segs.loc[segs["direction"] == "server_to_client"]
    for side in ("client", "server"):
        mine = acks.loc[acks["side"] == side]
        assert mine.loc[mine["dup_ack"], "ack"].tolist() == [101] * 4
    assert segs["ack"].dtype == "Int64" and segs["ack"].isna().sum() == 2  # the SYNs


def test_story_head_of_line(story: tuple[Path, Path, int]) -> None:
    client, server, _ = story
    hol = analyze_tcp(client, server, story_messages(), CP, SP).hol.set_index("seq")
    assert hol["t_last_byte_ns"].tolist() == [ns(t) for t in (25, 40.06, 27, 28, 31, 30)]
    assert hol["t_first_tx_ns"].tolist() == [ns(t) for t in T_SEND]
    assert (hol.loc[1:, "t_complete_ns"] == ns(40.06)).all()
    assert hol["hol_wait_ns"].tolist() == [
        ns(T_RECV[k]) - ns(t) for k, t in enumerate((25, 40.06, 27, 28, 31, 30))
    ]
    assert hol["blocked"].tolist() == [False, False, True, True, True, True]
    assert hol.loc[2:, "wait_offset"].tolist() == [MSG] * 4  # message 1's bytes
    assert hol["first_byte"].tolist() == [k * MSG for k in range(6)]


def test_story_agrees_with_tshark(story: tuple[Path, Path, int]) -> None:
    """tshark on the hand-made client capture: its four classes map onto ours."""
    if TSHARK is None:
        pytest.skip("tshark not installed")
    client, server, _ = story
    segs = analyze_tcp(client, server, story_messages(), CP, SP).segments
    ours = segs.loc[segs["side"] == "client"]
    frames = tshark_frames(client)
    assert frames["retransmission"] | frames["out_of_order"] | frames[
        "spurious_retransmission"
    ] == set(ours.loc[ours["retransmission"], "frame"])
    # tshark also counts the ACK answering the spurious resend, with nothing outstanding
    # above it (RFC 5681 §2 (a) says it is not a duplicate ACK)
    answer = set(ours.loc[ours["ts_ns"] == ns(70.05), "frame"])
    assert frames["duplicate_ack"] == set(ours.loc[ours["dup_ack"], "frame"]) | answer
    assert frames["fast_retransmission"] == set(ours.loc[ours["fast_retransmission"], "frame"])


def test_relative_numbers_survive_the_wrap_inside_a_flow(tmp_path: Path) -> None:
    """Sequence numbers cross 2^32 in the middle of the data (ISN 2^32 - 250)."""
    client, server = story_captures(tmp_path, isn_c=2**32 - 250, isn_s=2**32 - 3)
    result = analyze_tcp(client, server, story_messages(), CP, SP)
    assert result.isn == {0: 2**32 - 250, 1: 2**32 - 3}
    fin = result.segments.loc[(result.segments["flags"] & 1) > 0]
    assert sorted(fin["seq"].unique().tolist()) == [1, 601]
    raw = read_pcap(client).packets
    assert raw["tcp_seq"].min() < 1000 < 2**32 - 1000 < raw["tcp_seq"].max()  # it did wrap


def test_missing_connection_is_an_analysis_error(tmp_path: Path) -> None:
    from lab.errors import AnalysisError

    client, server = story_captures(tmp_path)
    with pytest.raises(AnalysisError, match="no TCP segment"):
        analyze_tcp(client, server, story_messages(), CP + 1, SP)


def test_server_capture_missing_the_syn_still_aligns(tmp_path: Path) -> None:
    """The server-side capture starts late: the client's SYN fixes the ISN for both."""
    client, _ = story_captures(tmp_path)
    rows = [
        (ns(s.t_server), s.packet(1_000_000, 7_000_000))
        for s in STORY
        if s.t_server is not None and s.t_server > 20
    ]
    server = write_pcap(tmp_path / "late.pcap", sorted(rows, key=lambda r: r[0]))
    result = analyze_tcp(client, server, story_messages(), CP, SP)
    assert result.hol["t_last_byte_ns"].tolist() == [ns(t) for t in (25, 40.06, 27, 28, 31, 30)]


# --------------------------------------------------------------------------- helpers


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 60)), min_size=0, max_size=40),
    st.lists(st.integers(-10, 270), min_size=1, max_size=30),
)
def test_first_cover_matches_brute_force(
    intervals: list[tuple[int, int]], points: list[int]
) -> None:
    starts = np.array([s for s, _ in intervals], dtype=np.int64)
    ends = np.array([s + n for s, n in intervals], dtype=np.int64)
    keys = np.arange(len(intervals), dtype=np.int64)[::-1].copy()
    pts = np.array(points, dtype=np.int64)
    got = _tcp.first_cover(starts, ends, keys, pts)
    want = [
        min((int(k) for s, e, k in zip(starts, ends, keys, strict=True) if s <= p < e), default=-1)
        for p in pts
    ]
    assert got.tolist() == want


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(-5000, 2**20), max_size=50))
def test_unwrap_counts_through_2_32(isn: int, steps: list[int]) -> None:
    true = np.cumsum(np.array([1, *steps], dtype=np.int64))
    raw = (isn + true) % 2**32
    got = _tcp._unwrap(raw, np.zeros(raw.size, np.int64), np.full(raw.size, isn, np.int64))
    assert got.tolist() == true.tolist()


def test_hundred_thousand_segments_are_fast() -> None:
    """A 100k-segment connection with 1 % loss: seconds, not minutes (no per-packet loop)."""
    n, size = 100_000, 1000
    rng = np.random.default_rng(5)
    seq = 1 + size * np.arange(n, dtype=np.int64)
    t = T0 + np.arange(n, dtype=np.int64) * 10_000
    lost = rng.random(n) < 0.01
    # client side: every segment, plus a resend of each lost one 2 ms later
    c_seq = np.concatenate((seq, seq[lost]))
    c_t = np.concatenate((t, t[lost] + 2 * MS))
    c_id = np.arange(c_seq.size) % 65536
    order = np.argsort(c_t, kind="stable")
    ack_t = t + MS
    client = _frame(c_t[order], c_seq[order], c_id[order], size)
    acks = _frame(ack_t, np.ones(n, np.int64), np.arange(n) % 65536, 0, to_server=False)
    acks["tcp_ack"] = ((seq + size + 999) % 2**32).astype(np.uint32)
    both = pd.concat([client, acks]).sort_values("ts_ns", kind="stable", ignore_index=True)
    server = both.loc[~np.isin(both["ts_ns"], t[lost]) | (both["sport"] == SP)]
    messages = pd.DataFrame(
        {"protocol": "tcp", "seq": np.arange(n), "size": size, "t_recv_ns": t + 3 * MS}
    )
    started = time.perf_counter()
    result = analyze_tcp_frames(both, server.reset_index(drop=True), messages, CP, SP)
    elapsed = time.perf_counter() - started
    assert result.stats["retransmissions"].iloc[0] == int(lost.sum())
    assert len(result.hol) == n
    assert elapsed < 20, f"{elapsed:.1f} s for 100k segments"


def _frame(
    ts: np.ndarray, rel_seq: np.ndarray, ip_id: np.ndarray, size: int, to_server: bool = True
) -> pd.DataFrame:
    """A PcapFrame-like packets table of TCP segments (ISN 999)."""
    n = ts.size
    return pd.DataFrame(
        {
            "frame": np.arange(1, n + 1),
            "ts_ns": ts,
            "ip_id": pd.array(ip_id, dtype="UInt16"),
            "ip_len": np.full(n, 40 + size),
            "proto": np.full(n, 6, dtype=np.uint8),
            "sport": pd.array(np.full(n, CP if to_server else SP), dtype="UInt16"),
            "dport": pd.array(np.full(n, SP if to_server else CP), dtype="UInt16"),
            "tcp_seq": pd.array((rel_seq + 999) % 2**32, dtype="UInt32"),
            "tcp_ack": pd.array(np.full(n, 1000), dtype="UInt32"),
            "tcp_flags": pd.array(np.full(n, 0x18 if size else 0x10), dtype="UInt16"),
            "tcp_window": pd.array(np.full(n, 500), dtype="UInt16"),
            "payload_len": pd.array(np.full(n, size), dtype="UInt32"),
        }
    )


# --------------------------------------------------------------------------- tshark, for real


def _nothing_outstanding(segments: pd.DataFrame, frame: int) -> bool:
    """Does the server -> client ACK at ``frame`` acknowledge all the client had sent?"""
    row = segments.loc[segments["frame"] == frame].iloc[0]
    sent = segments.loc[(segments["frame"] < frame) & (segments["direction"] == "client_to_server")]
    syn_fin = ((sent["flags"].astype(int) & 0x03) > 0).astype(int)
    highest = int((sent["seq"].astype(int) + sent["len"].astype(int) + syn_fin).max())
    return row["direction"] == "server_to_client" and int(row["ack"]) >= highest


def tshark_frames(pcap: Path) -> dict[str, set[int]]:
    """Frame numbers tshark flags with each tcp.analysis field."""
    assert TSHARK is not None
    out = {}
    for name in (
        "retransmission",
        "fast_retransmission",
        "spurious_retransmission",
        "out_of_order",
        "duplicate_ack",
    ):
        listed = subprocess.run(
            [
                TSHARK,
                "-n",
                "-r",
                str(pcap),
                "-Y",
                f"tcp.analysis.{name}",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        out[name] = {int(x) for x in listed}
    return out


LOSSY_TCP = """
name = "wire-lossy"
seed = 11
protocols = ["tcp"]
[workload]
count = 1500
size = 512
rate = 1000
[impairment]
delay_ms = 5
loss = 5
"""


@pytest.mark.requires_root
@pytest.mark.slow
def test_lossy_run_agrees_with_tshark(tmp_path: Path, no_leftover_namespaces: None) -> None:
    """The lab's flags on the client-side (sender's) capture against tshark 4.x.

    Measured differences, all by definition, none by error:

    * retransmissions: tshark splits a sender's resends into "retransmission" (which
      includes its fast retransmissions), "spurious_retransmission" and, when one
      leaves within the handshake RTT of the segment that last advanced the sequence,
      "out_of_order" (a timing guess: at the sender nothing is out of order). Their
      union equals our set exactly; tolerance: 1 frame or 2 %.
    * fast retransmissions: ours follow RFC 5681 (>= 3 duplicate ACKs, during that
      run, within max(RTT, 20 ms) of the last one); tshark takes >= 2 duplicate ACKs
      whose number equals the resent seq, within 20 ms; Linux (RACK, SACK recovery
      per RFC 6675) counts every resend outside the Loss state, often after 1-2
      duplicate ACKs. So ours <= tshark's + SACK hole fills, and both <= the
      kernel's TCPFastRetrans. Checked: every tshark fast retransmission is one of
      our retransmissions and followed >= 2 of our duplicate ACKs.
    * duplicate ACKs: identical on the client capture but for ACKs with no data
      outstanding (a D-SACK for a spurious resend of the final FIN segment, seen in
      about 1 run in 5), which RFC 5681 §2 (a) excludes. On the server capture tshark
      also counts ACKs answering a duplicate segment (D-SACK, RFC 2883) which RFC
      5681 §2 (a) excludes (no data outstanding above them): ours <= tshark's.
    * spurious: tshark judges at the capture point; on the sender's capture a resend
      is almost never of data already acknowledged there, so it reports ~0. Ours is
      the receiver's view (the data had arrived and been ACKed before the resend
      arrived) and matches tshark on the server capture and the sender kernel's
      D-SACK count (TCPDSACKRecv) within 1.
    * the sender's kernel: our client -> server retransmissions = the client's
      Tcp.RetransSegs (no TSO on the TUN); the server's own resends (a FIN) are not in it.
    """
    if TSHARK is None:
        pytest.skip("tshark not installed")
    from lab.runner import run_scenario
    from lab.scenario import load_scenario
    from tests.conftest import write_scenario

    path = write_scenario(tmp_path, LOSSY_TCP)
    outcome = run_scenario(load_scenario(path), path, tmp_path / "results", render=False)
    tables = analyze_run(outcome.path)
    segs, stats = tables["tcp_segments"], tables["tcp_stats"].iloc[0]
    run = load_run(outcome.path)
    client = tshark_frames(run.pcap("tcp", "client"))
    server = tshark_frames(run.pcap("tcp", "server"))
    ours_c = segs.loc[segs["side"] == "client"]
    ours_s = segs.loc[segs["side"] == "server"]
    retx = set(ours_c.loc[ours_c["retransmission"], "frame"])
    assert stats["retransmissions"] >= 5, "5 % loss should cost some retransmissions"

    theirs = client["retransmission"] | client["out_of_order"] | client["spurious_retransmission"]
    assert len(retx ^ theirs) <= max(1, 0.02 * len(retx)), (
        sorted(retx - theirs),
        sorted(theirs - retx),
    )
    assert client["retransmission"] <= retx
    counters = run.table("exchanges").set_index("protocol").loc["tcp"]
    # the client kernel counts its own resends: compare the client -> server ones (a
    # server FIN resent after the counters were read is on the wire, not in them)
    sent_by_client = ours_c["retransmission"] & (ours_c["direction"] == "client_to_server")
    assert int(sent_by_client.sum()) == counters["client.Tcp.RetransSegs"]

    assert client["fast_retransmission"] <= retx
    c2s = ours_c.reset_index(drop=True)
    dup_before = _dup_run_before(c2s)
    for frame in client["fast_retransmission"]:
        assert dup_before[frame] >= 2, frame
    fast = set(ours_c.loc[ours_c["fast_retransmission"], "frame"])
    assert all(dup_before[f] >= 3 for f in fast)
    assert stats["fast_retransmissions"] <= counters["client.TcpExt.TCPFastRetrans"]

    ours_dup = set(ours_c.loc[ours_c["dup_ack"], "frame"])
    assert ours_dup <= client["duplicate_ack"]
    # tshark's only extras: ACKs with no data outstanding above them (RFC 5681 §2 (a)),
    # e.g. a D-SACK answering a spurious resend of the final FIN segment
    for frame in client["duplicate_ack"] - ours_dup:
        assert _nothing_outstanding(ours_c, frame), frame
    assert set(ours_s.loc[ours_s["dup_ack"], "frame"]) <= server["duplicate_ack"]

    assert len(client["spurious_retransmission"]) <= 1
    assert abs(stats["spurious"] - len(server["spurious_retransmission"])) <= 1
    assert abs(stats["spurious"] - counters["client.TcpExt.TCPDSACKRecv"]) <= 1
    print(
        f"\nlab: retx {stats['retransmissions']} fast {stats['fast_retransmissions']} "
        f"dupack {stats['dup_acks']} spurious {stats['spurious']}; tshark client: "
        + ", ".join(f"{k} {len(v)}" for k, v in client.items())
        + "; tshark server: "
        + ", ".join(f"{k} {len(v)}" for k, v in server.items())
        + f"; kernel RetransSegs {counters['client.Tcp.RetransSegs']} "
        f"TCPFastRetrans {counters['client.TcpExt.TCPFastRetrans']} "
        f"TCPDSACKRecv {counters['client.TcpExt.TCPDSACKRecv']}"
    )


def _dup_run_before(side: pd.DataFrame) -> dict[int, int]:
    """For each client -> server frame: duplicate ACKs received in a row just before."""
    run, out = 0, {}
    for row in side.itertuples():
        if row.direction == "server_to_client":
            run = run + 1 if row.dup_ack else 0
        else:
            out[int(row.frame)] = run
    return out


def test_udp_only_capture_has_no_tcp(tmp_path: Path) -> None:
    """A capture without the connection (UDP only) is reported, not crashed on."""
    from lab.errors import AnalysisError

    pkt = bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=CP, dport=SP) / Raw(b"x" * 20))
    path = write_pcap(tmp_path / "u.pcap", [(T0, pkt)])
    with pytest.raises(AnalysisError):
        analyze_tcp(path, path, story_messages(), CP, SP)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2**40), st.integers(-(2**50), 2**50)), min_size=1, max_size=30
    ),
    st.lists(
        st.tuples(st.integers(0, 2**40), st.integers(-(2**50), 2**50)), min_size=1, max_size=30
    ),
)
def test_joint_keys_order_like_the_pairs_whatever_their_size(
    a: list[tuple[int, int]], b: list[tuple[int, int]]
) -> None:
    # lab analyze numbers every flow of a capture: group ids and offsets may be large,
    # and the keys of two arrays searched in each other must compare like the pairs
    def arrays(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        return np.array([g for g, _ in pairs], np.int64), np.array([v for _, v in pairs], np.int64)

    a_key, b_key = _tcp._joint_keys(arrays(a), arrays(b))
    pairs, keys = a + b, [*a_key.tolist(), *b_key.tolist()]
    for i in range(len(pairs)):
        for j in range(len(pairs)):
            assert (pairs[i] < pairs[j]) == (keys[i] < keys[j])
