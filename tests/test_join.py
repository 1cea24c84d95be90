"""Joining messages, captures and the engine's ground truth (lab.analysis.join): every
UDP loss and late TCP message gets a cause and evidence, or is flagged unexplained."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lab.analysis import join
from lab.analysis._wire_tcp import TcpWireAnalysis
from lab.analysis.wire import TABLES, analyze_run, analyze_tcp
from lab.errors import AnalysisError, ResultsError
from lab.pcap import read_pcap
from lab.results import FORMAT_VERSION, load_run, read_table
from tests.conftest import run_body
from tests.test_wire import (
    CLIENT,
    CP,
    MSG,
    SERVER,
    SP,
    STORY,
    T0,
    Seg,
    ack,
    data,
    ns,
    story_captures,
    story_ground_truth,
    story_messages,
    write_pcap,
)

logging.getLogger("scapy").setLevel(logging.ERROR)

from scapy.layers.inet import IP, UDP  # noqa: E402
from scapy.packet import Raw  # noqa: E402

UCP, USP = 56000, 50001


# --------------------------------------------------------------------------- TCP


def test_late_tcp_messages_are_tied_to_the_engine_drop(tmp_path: Path) -> None:
    client, server = story_captures(tmp_path)
    messages = story_messages()
    analysis = analyze_tcp(client, server, messages, CP, SP)
    late = join.explain_tcp_delays(
        messages, story_ground_truth(), analysis, CP, SP, late_ns=10 * 1_000_000
    ).set_index("seq")
    # message 0 was on time; 1 lost its own segment; 2..5 waited for message 1's bytes
    assert late.index.tolist() == [1, 2, 3, 4, 5]
    assert (late["cause"] == "dropped-loss").all()
    assert late["explained"].all()
    assert (late["kind"] == "late").all()
    own = late.loc[1, "evidence"]
    assert "engine dropped-loss seq 101 (100 B)" in own
    assert "fast retransmission sent 11.6 ms after the drop" in own  # 35.06 - 23.5
    assert "arrived at the server 16.6 ms after it" in own
    assert "waited 13.1 ms in the receiver" in late.loc[2, "evidence"]  # 40.1 - 27
    assert late.loc[2, "delay_ms"] == pytest.approx(18.1)


def test_a_server_capture_without_data_claims_nothing(tmp_path: Path) -> None:
    """The server's capture kept only the handshake (stopped early, ring full): no
    crash, and no claim either; the late messages are flagged, not explained."""
    story = [
        s if not s.from_client or s.size == 0 else dataclasses.replace(s, t_server=None)
        for s in STORY
    ]
    client, server = story_captures(tmp_path, story=story)
    messages = story_messages()
    analysis = analyze_tcp(client, server, messages, CP, SP)
    truth = story_ground_truth(story=story)
    late = join.explain_tcp_delays(messages, truth, analysis, CP, SP, late_ns=10 * 1_000_000)
    assert late["seq"].tolist() == [1, 2, 3, 4, 5]
    assert (late["cause"] == "unexplained").all() and not late["explained"].any()
    assert late["evidence"].str.contains("not in the server's capture").all()


def test_default_late_threshold_keeps_blocked_messages(tmp_path: Path) -> None:
    """Median one-way delay 16.6 ms: nothing is 2x late, but 2..5 were blocked."""
    client, server = story_captures(tmp_path)
    messages = story_messages()
    analysis = analyze_tcp(client, server, messages, CP, SP)
    assert join.late_threshold_ns(messages) == pytest.approx(2 * 16.6e6)
    late = join.explain_tcp_delays(messages, story_ground_truth(), analysis, CP, SP)
    assert late["seq"].tolist() == [2, 3, 4, 5]


def test_a_hole_the_engine_did_not_make_is_unexplained(tmp_path: Path) -> None:
    """The same capture with an engine that forwarded everything: the missing bytes
    were lost before the engine, and the join says so instead of guessing."""
    client, server = story_captures(tmp_path)
    messages = story_messages()
    analysis = analyze_tcp(client, server, messages, CP, SP)
    truth = story_ground_truth()
    truth["fate"] = "forwarded"
    late = join.explain_tcp_delays(messages, truth, analysis, CP, SP, late_ns=10e6)
    assert set(late["cause"]) == {"unexplained"}
    assert not late["explained"].any()
    assert "dropped and held nothing" in late["evidence"].iloc[0]


def test_reordering_is_explained_without_a_drop(tmp_path: Path) -> None:
    """Nothing lost; message 4's segment is held 2 ms longer and message 5's overtakes
    it: message 5 waits for message 4's bytes, and the engine's times show why."""
    story = [
        Seg(True, 0.0, 5.0, 0, 0, "S", 0, 1),
        Seg(False, 10.01, 5.01, 0, 1, "SA", 0, 0),
        Seg(True, 10.02, 15.02, 1, 1, "A", 0, 2),
        *(data(k, 20.0 + k, 25.0 + k, 3 + k) for k in range(4)),
        data(5, 25.0, 30.0, 8),
        data(4, 24.0, 31.0, 7),
        ack(6, 31.05, 36.05, 100),
    ]
    client, server = story_captures(tmp_path, story=story)
    messages = story_messages()
    messages["t_recv_ns"] = [ns(t) for t in (25.1, 26.1, 27.1, 28.1, 31.1, 31.1)]
    messages["owd_ns"] = messages["t_recv_ns"] - messages["t_send_ns"]
    analysis = analyze_tcp(client, server, messages, CP, SP)
    assert analysis.stats["out_of_order"].tolist() == [1]
    late = join.explain_tcp_delays(
        messages, story_ground_truth(story=story), analysis, CP, SP, late_ns=1e12
    )
    assert late["seq"].tolist() == [5]  # blocked 1.1 ms behind message 4
    assert late["cause"].tolist() == ["reordering"]
    assert late["explained"].tolist() == [True]
    assert "nothing dropped" in late["evidence"].iloc[0]


# --------------------------------------------------------------------------- TCP: the host


@dataclasses.dataclass
class Trip:
    """Where one message's segment was when (ms after T0)."""

    send: float  # the client application's send
    client: float  # on the client's capture
    engine: float  # the engine read it (t_in)
    sched: float  # when the engine's model said it should leave (scheduled_ns)
    out: float  # the engine wrote it (t_out)
    server: float  # on the server's capture
    recv: float  # the server application read it


@dataclasses.dataclass
class Copy:
    """One client -> server segment of a paced story and the engine's record of it."""

    seg: Seg
    sched: float | None = None
    out: float | None = None
    corrupted: bool = False
    recorded: bool = True  # in the engine's record at all


def trips(n: int = 8) -> list[Trip]:
    """A clean 1 ms path: one message every 5 ms, each acknowledged before the next is
    sent; the engine's model holds each 0.8 ms and the engine writes it 0.02 ms later."""
    return [
        Trip(c - 0.1, c, c + 0.1, c + 0.9, c + 0.92, c + 1.0, c + 1.1)
        for c in (20.0 + 5 * k for k in range(n))
    ]


def paced(
    tmp_path: Path, plan: list[Trip], copies: dict[int, list[Copy]] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, TcpWireAnalysis]:
    """messages, ground truth (with scheduled_ns) and wire analysis of a paced story;
    ``copies`` replaces a message's single segment (drops, corruption, resends)."""
    copies = copies or {}
    story: list[Seg] = [
        Seg(True, 0.0, 1.0, 0, 0, "S", 0, 1),
        Seg(False, 2.01, 1.01, 0, 1, "SA", 0, 0),
        Seg(True, 2.02, 3.02, 1, 1, "A", 0, 2),
    ]
    engine: list[Copy] = []
    for k, t in enumerate(plan):
        mine = copies.get(k) or [
            Copy(data(k, t.client, t.server, 10 + k, t_engine=t.engine), t.sched, t.out)
        ]
        engine += mine
        story += [c.seg for c in mine]
        story.append(ack(k + 1, t.server + 0.05, t.server + 1.05, 100 + k))
    client, server = story_captures(tmp_path, story=story)
    truth = story_ground_truth(story=story)
    truth["scheduled_ns"] = truth["t_out_ns"]
    for c in engine:
        row = truth["ip_id"] == c.seg.ip_id
        if c.sched is not None:
            truth.loc[row, "scheduled_ns"] = ns(c.sched)
        if c.out is not None:
            truth.loc[row, "t_out_ns"] = ns(c.out)
        truth.loc[row, "corrupted"] = c.corrupted
    gone = [c.seg.ip_id for c in engine if not c.recorded]
    truth = truth.loc[~truth["ip_id"].isin(gone)]
    messages = pd.DataFrame(
        {
            "protocol": "tcp",
            "seq": range(len(plan)),
            "size": MSG,
            "t_send_ns": [ns(t.send) for t in plan],
            "t_recv_ns": [ns(t.recv) for t in plan],
            "copies": 1,
        }
    ).astype({"t_send_ns": "Int64", "t_recv_ns": "Int64"})
    messages["owd_ns"] = messages["t_recv_ns"] - messages["t_send_ns"]
    return messages, truth, analyze_tcp(client, server, messages, CP, SP)


def explain(tmp_path: Path, plan: list[Trip], **kw: dict[int, list[Copy]]) -> pd.DataFrame:
    tmp_path.mkdir(parents=True, exist_ok=True)
    messages, truth, analysis = paced(tmp_path, plan, **kw)
    return join.explain_tcp_delays(messages, truth, analysis, CP, SP).set_index("seq")


def shifted(t: Trip, **after: float) -> Trip:
    """``t`` with each named point (and every point after it) moved later by ms."""
    names = [f.name for f in dataclasses.fields(Trip)]
    values = dataclasses.asdict(t)
    for name, ms in after.items():
        for later in names[names.index(name) :]:
            values[later] += ms
    return Trip(**values)


def test_a_clean_paced_story_has_nothing_late(tmp_path: Path) -> None:
    assert explain(tmp_path, trips()).empty


def test_the_engine_reading_late_is_the_host(tmp_path: Path) -> None:
    """The engine read the segment 5 ms after the client's capture saw it: no engine
    decision, the engine process was not running (host scheduling)."""
    plan = trips()
    plan[7] = shifted(plan[7], engine=5.0)
    late = explain(tmp_path, plan)
    assert late.index.tolist() == [7]
    row = late.loc[7]
    assert (row["cause"], row["blame"], row["explained"]) == ("host-scheduling", "host", True)
    assert row["evidence"].startswith("the engine read its last byte 5.1 ms after the client")
    assert "client -> engine 5.1, engine hold 0.8, engine late 0.0" in row["evidence"]


def test_the_engine_writing_after_its_schedule_is_the_host(tmp_path: Path) -> None:
    """Same departure, two records: the model scheduled it on time and the engine wrote
    it 5 ms late (host), or the model held it 5 ms longer (the impairment)."""
    plan = trips()
    plan[7] = shifted(plan[7], out=5.0)
    late = explain(tmp_path / "late", plan)
    assert (late.loc[7, "cause"], late.loc[7, "blame"]) == ("host-scheduling", "host")
    assert "wrote its last byte 5.0 ms after its own schedule" in late.loc[7, "evidence"]
    held = dataclasses.replace(plan[7], sched=plan[7].sched + 5.0)
    late = explain(tmp_path / "held", [*plan[:7], held])
    assert (late.loc[7, "cause"], late.loc[7, "blame"]) == ("engine-delay", "impairment")
    assert "engine held its last byte 5.8 ms as its model scheduled" in late.loc[7, "evidence"]


def test_the_server_side_seeing_it_late_is_the_host(tmp_path: Path) -> None:
    plan = trips()
    plan[7] = shifted(plan[7], server=5.0)
    row = explain(tmp_path, plan).loc[7]
    assert row["cause"] == "host-scheduling"
    assert "reached the server's capture 5.1 ms after the engine wrote it" in row["evidence"]


def test_a_late_read_is_the_receiving_application(tmp_path: Path) -> None:
    plan = trips()
    plan[7] = shifted(plan[7], recv=5.0)
    row = explain(tmp_path, plan).loc[7]
    assert (row["cause"], row["blame"]) == ("receiver-app", "host")
    assert "read by the application 5.1 ms later (usual 0.1 ms)" in row["evidence"]


def test_a_late_first_send_is_the_window_only_with_data_in_flight(tmp_path: Path) -> None:
    """Message 7 left the client 2.5 ms after the application's send. Message 6 was
    acknowledged 2.95 ms before: nothing for TCP to wait for, so the host. Sent 4 ms
    earlier, message 6 was still in flight: the sender's window."""
    plan = trips()
    plan[7] = dataclasses.replace(plan[7], send=plan[7].client - 2.5)
    row = explain(tmp_path / "idle", plan).loc[7]
    assert (row["cause"], row["blame"]) == ("host-scheduling", "host")
    assert "with nothing in flight" in row["evidence"]
    plan[7] = dataclasses.replace(plan[7], send=plan[7].client - 4.0)
    row = explain(tmp_path / "busy", plan).loc[7]
    assert (row["cause"], row["blame"]) == ("sender-backlog", "sender")
    assert "(100 B in flight: window-limited sender)" in row["evidence"]


def test_a_corrupted_copy_is_no_arrival(tmp_path: Path) -> None:
    """The engine flipped a bit of message 7's segment: the server's capture holds it
    (checksums are checked later), the kernel discards it, and the message waits for
    the retransmission. The corruption, not the reading application, made it late."""
    plan = trips()
    c = plan[7].client
    plan[7] = dataclasses.replace(plan[7], recv=c + 5.1)
    resent = data(7, c + 4.0, c + 5.0, 60, t_engine=c + 4.1)
    copies = {
        7: [
            Copy(data(7, c, c + 1.0, 17, t_engine=c + 0.1), c + 0.9, c + 0.92, corrupted=True),
            Copy(resent, c + 4.9, c + 4.92),
        ]
    }
    row = explain(tmp_path, plan, copies=copies).loc[7]
    assert (row["cause"], row["blame"]) == ("corrupted", "impairment")
    assert row["evidence"].startswith("engine corrupted seq 701 (100 B); retransmission sent")
    assert "resend 4.0" in row["evidence"]


def test_an_engine_drop_wins_over_host_noise(tmp_path: Path) -> None:
    """Message 7's segment was dropped; its retransmission then waited 10 ms for the
    engine to read it. The drop is why it was resent at all: it names the delay."""
    plan = trips()
    c = plan[7].client
    plan[7] = dataclasses.replace(plan[7], server=c + 13.95, recv=c + 14.0)
    dropped = data(7, c, None, 17, t_engine=c + 0.1, fate="dropped-loss")
    resent = data(7, c + 3.0, c + 13.95, 60, t_engine=c + 13.0)
    copies = {7: [Copy(dropped), Copy(resent, c + 13.85, c + 13.87)]}
    row = explain(tmp_path, plan, copies=copies).loc[7]
    assert (row["cause"], row["blame"]) == ("dropped-loss", "impairment")
    assert "resend 3.0, client -> engine 10.0" in row["evidence"]


def test_a_copy_missing_from_the_engine_record_is_unexplained(tmp_path: Path) -> None:
    plan = trips()
    plan[7] = shifted(plan[7], engine=5.0)
    c = plan[7].client
    copies = {7: [Copy(data(7, c, plan[7].server, 17, t_engine=c + 5.1), recorded=False)]}
    row = explain(tmp_path, plan, copies=copies).loc[7]
    assert (row["cause"], row["blame"], row["explained"]) == ("unexplained", "unknown", False)
    assert "the copy that reached the server is not in the engine's record" in row["evidence"]
    assert "unmeasured 6.0" in row["evidence"]


def test_waiting_for_bytes_the_host_delayed_is_the_host(tmp_path: Path) -> None:
    """Message 6 leaves the engine 8 ms late, after message 7: message 7 waits for it.
    If the engine's model held message 6 (scheduled it after message 7), that is
    reordering by the impairment; if the engine merely wrote it late, the host."""
    plan = trips()
    plan[6] = shifted(plan[6], out=8.0)
    plan[7] = dataclasses.replace(plan[7], recv=plan[6].server + 0.1)
    late = explain(tmp_path / "late", plan)
    assert late["cause"].to_dict() == {6: "host-scheduling", 7: "host-scheduling"}
    assert (
        "for earlier bytes (offset 600) the engine scheduled out before" in late.loc[7, "evidence"]
    )
    plan[6] = dataclasses.replace(plan[6], sched=plan[6].sched + 8.0)
    late = explain(tmp_path / "held", plan)
    assert late["cause"].to_dict() == {6: "engine-delay", 7: "reordering"}
    assert set(late["blame"]) == {"impairment"}


def test_a_resend_overtaking_a_copy_the_engine_held_is_no_loss(tmp_path: Path) -> None:
    """Message 6's first copy is held 30 ms by the engine's model (jitter): the client
    resends it after 20 ms, the resend arrives first, and message 7 waits for it.
    Nothing was lost: the engine's hold delayed both; with the same timing but the
    engine writing the first copy 30 ms after its schedule, the host did."""
    plan = trips()
    c = plan[6].client
    first = data(6, c, c + 31.0, 16, t_engine=c + 0.1)
    resent = data(6, c + 20.0, c + 21.0, 60, t_engine=c + 20.1)
    plan[6] = dataclasses.replace(plan[6], server=c + 21.0, recv=c + 21.1)
    plan[7] = dataclasses.replace(plan[7], recv=c + 21.1)
    held = {6: [Copy(first, c + 30.9, c + 30.92), Copy(resent, c + 20.9, c + 20.92)]}
    late = explain(tmp_path / "held", plan, copies=held)
    assert late["cause"].to_dict() == {6: "engine-delay", 7: "reordering"}
    assert (
        "resent 20.0 ms after its first copy, which the engine held longer"
        in late.loc[6, "evidence"]
    )
    woke = {6: [Copy(first, c + 0.9, c + 30.92), Copy(resent, c + 20.9, c + 20.92)]}
    late = explain(tmp_path / "woke", plan, copies=woke)
    assert late["cause"].to_dict() == {6: "host-scheduling", 7: "host-scheduling"}
    assert late.loc[6, "evidence"].startswith("resent 20.0 ms after its first copy, which was late")


def test_summary_separates_the_impairment_from_the_host() -> None:
    explained = pd.DataFrame(
        {
            "protocol": ["tcp"] * 5,
            "seq": range(5),
            "kind": "late",
            "cause": [
                "dropped-loss",
                "host-scheduling",
                "receiver-app",
                "sender-backlog",
                "unexplained",
            ],
            "blame": ["impairment", "host", "host", "sender", "unknown"],
            "explained": [True, True, True, True, False],
        }
    )
    row = join.explain_summary(explained).iloc[0]
    assert (row["impairment"], row["host"], row["sender"], row["unexplained"]) == (1, 2, 1, 1)
    assert list(join.explain_summary(explained).columns) == list(join.SUMMARY_COLUMNS)


# --------------------------------------------------------------------------- UDP


def udp_packet(seq: int) -> bytes:
    payload = seq.to_bytes(4, "big") + (64).to_bytes(4, "big") + bytes(56)
    return bytes(IP(src=CLIENT, dst=SERVER, id=seq) / UDP(sport=UCP, dport=USP) / Raw(payload))


def udp_story(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame, Path, Path]:
    """10 datagrams; 2 dropped by the engine, 5 corrupted, 7 forwarded but never
    delivered, 9 sent but never seen by the engine, 8 never left the client."""
    lost = {2, 5, 7, 8, 9}
    messages = pd.DataFrame(
        {
            "protocol": "udp",
            "seq": range(10),
            "size": 64,
            "t_send_ns": [ns(k) for k in range(10)],
            "copies": [0 if k in lost else 1 for k in range(10)],
        }
    ).astype({"t_send_ns": "Int64"})
    rows = []
    for k in range(10):
        if k in (8, 9):
            continue
        rows.append(
            {
                "direction": "client_to_server",
                "t_in_ns": ns(k + 0.5),
                "t_out_ns": -1 if k == 2 else ns(k + 1),
                "fate": "dropped-loss" if k == 2 else "forwarded",
                "corrupted": k == 5,
                "ip_proto": 17,
                "ip_id": k,
                "src_port": UCP,
                "dst_port": USP,
                "lab_seq": k,
            }
        )
    truth = pd.DataFrame(rows).astype({"src_port": "Int64", "dst_port": "Int64"})
    client = write_pcap(
        tmp_path / "udp-client.pcap", [(ns(k), udp_packet(k)) for k in range(10) if k != 8]
    )
    server = write_pcap(
        tmp_path / "udp-server.pcap",
        [(ns(k + 1), udp_packet(k)) for k in range(10) if k not in (2, 8, 9)],
    )
    return messages, truth, client, server


def test_udp_losses_each_get_a_cause(tmp_path: Path) -> None:
    messages, truth, client, server = udp_story(tmp_path)
    table = join.explain_udp_losses(
        messages,
        truth,
        UCP,
        USP,
        client_packets=read_pcap(client).packets,
        server_packets=read_pcap(server).packets,
    ).set_index("seq")
    assert table["cause"].to_dict() == {
        2: "dropped-loss",
        5: "corrupted",
        7: "receiver-kernel",
        8: "unexplained",
        9: "unexplained",
    }
    assert table["explained"].to_dict() == {2: True, 5: True, 7: False, 8: False, 9: False}
    assert table.loc[2, "evidence"] == "engine dropped-loss it 0.5 ms after the send (ip_id 2)"
    assert "captured at the server" in table.loc[7, "evidence"]
    assert "captured leaving the client, lost before the engine" in table.loc[9, "evidence"]
    assert "not captured on the client's interface" in table.loc[8, "evidence"]
    assert (table["kind"] == "lost").all() and (table["protocol"] == "udp").all()


def test_udp_losses_without_captures(tmp_path: Path) -> None:
    messages, truth, _, _ = udp_story(tmp_path)
    table = join.explain_udp_losses(messages, truth, UCP, USP).set_index("seq")
    assert table.loc[9, "cause"] == "unexplained"
    assert "no client capture" in table.loc[9, "evidence"]


def test_udp_losses_a_host_counter_accounts_for(tmp_path: Path) -> None:
    """With the kernel's count of them, two places a datagram vanishes are the host's:
    the server socket's full buffer (7: forwarded, captured at the server, not read)
    and the client TUN's full queue (9: captured leaving the client, never read by the
    engine). Counts that fall short of the losses claim nothing."""
    messages, truth, client, server = udp_story(tmp_path)
    packets = {
        "client_packets": read_pcap(client).packets,
        "server_packets": read_pcap(server).packets,
    }
    table = join.explain_udp_losses(
        messages, truth, UCP, USP, receive_drops=1, engine_overload=1, **packets
    ).set_index("seq")
    assert table.loc[[7, 9], "cause"].tolist() == ["receiver-buffer", "engine-overload"]
    assert table.loc[[7, 9], "blame"].tolist() == ["host", "host"]
    assert table.loc[[7, 9], "explained"].all()
    assert (
        "dropped 1 datagrams on a full receive buffer (server.Udp.RcvbufErrors)"
        in table.loc[7, "evidence"]
    )
    assert (
        "TUN device dropped 1 packets the engine did not read in time" in table.loc[9, "evidence"]
    )
    assert (table.loc[8, "cause"], table.loc[2, "blame"]) == ("unexplained", "impairment")
    none = join.explain_udp_losses(
        messages, truth, UCP, USP, receive_drops=0, engine_overload=0, **packets
    ).set_index("seq")
    assert none.loc[[7, 9], "cause"].tolist() == ["receiver-kernel", "unexplained"]
    assert "server.Udp.RcvbufErrors: 0" in none.loc[7, "evidence"]


def test_nothing_lost_gives_an_empty_table(tmp_path: Path) -> None:
    messages, truth, _, _ = udp_story(tmp_path)
    messages["copies"] = 1
    table = join.explain_udp_losses(messages, truth, UCP, USP)
    assert table.empty and list(table.columns) == list(join.EXPLAINED_COLUMNS)


def three_messages(protocol: str, size: int, copies: list[int]) -> pd.DataFrame:
    """messages.csv rows for seq 0, 1, 2 sent 1 ms apart."""
    return pd.DataFrame(
        {
            "protocol": protocol,
            "seq": [0, 1, 2],
            "size": size,
            "t_send_ns": pd.array([ns(k) for k in range(3)], dtype="Int64"),
            "copies": copies,
        }
    )


def test_a_message_sent_as_fragments_shares_the_fate_of_a_lost_fragment(tmp_path: Path) -> None:
    """3000-byte datagrams cross a 1500-byte link as three IP fragments; only the
    first carries the ports and the message seq, yet losing the second loses the
    message. The engine's record (its own writer) labels every fragment."""
    from scapy.layers.inet import fragment

    from lab.analysis.impairment import impairment_by_protocol
    from lab.impairment.forwarder import HEADER_BYTES, _Record
    from lab.impairment.groundtruth import load_ground_truth

    record = _Record()
    for seq in range(3):
        payload = seq.to_bytes(4, "big") + (3000).to_bytes(4, "big") + bytes(2992)
        datagram = IP(src=CLIENT, dst=SERVER, id=200 + seq) / UDP(sport=UCP, dport=USP)
        for k, piece in enumerate(fragment(datagram / Raw(payload), fragsize=1480)):
            dropped = (seq, k) == (1, 1)
            t_in = ns(seq + 0.1 * k)
            record.direction.append(0)
            record.t_in.append(t_in)
            record.t_out.append(-1 if dropped else t_in + 1000)
            record.scheduled.append(t_in)
            record.dup_t_out.append(-1)
            record.size.append(len(piece))
            record.fate.append(1 if dropped else 0)
            record.flags.append(0)
            record.headers.append(bytes(piece)[:HEADER_BYTES])  # what the engine keeps
    record.save(tmp_path / "gt.npz", {"directions": {"client_to_server": 0, "server_to_client": 1}})
    truth, _ = load_ground_truth(tmp_path / "gt.npz")
    assert truth["lab_seq"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert truth["frag_offset"].tolist()[:3] == [0, 1480, 2960]
    assert truth["more_fragments"].tolist()[:3] == [True, True, False]
    assert (truth["dst_port"] == USP).all()
    messages = three_messages("udp", 3000, copies=[1, 0, 1])
    (lost,) = join.explain_udp_losses(messages, truth, UCP, USP).itertuples()
    assert (lost.seq, lost.cause, lost.explained) == (1, "dropped-loss", True)
    exchanges = pd.DataFrame({"protocol": ["udp"], "server_port": [USP]})
    counts = impairment_by_protocol(truth, exchanges).set_index("direction")
    assert counts.loc["client_to_server", "packets"] == 9
    assert counts.loc["client_to_server", "dropped_loss"] == 1


def test_raw_losses_are_explained_like_udp() -> None:
    """RAW (IP protocol 253) has no ports: its datagrams are the client's protocol-253
    packets, told apart from the echo by direction."""
    messages = three_messages("raw", 64, copies=[1, 0, 0])
    truth = pd.DataFrame(
        {
            "direction": ["client_to_server"] * 3 + ["server_to_client"],
            "t_in_ns": [ns(k + 0.5) for k in range(3)] + [ns(3)],
            "t_out_ns": [ns(1), -1, ns(3), ns(4)],
            "fate": ["forwarded", "dropped-queue", "forwarded", "dropped-loss"],
            "corrupted": [False, False, False, False],
            "ip_proto": 253,
            "ip_id": [0, 1, 2, 3],
            "src_port": pd.array([None] * 4, dtype="Int64"),
            "dst_port": pd.array([None] * 4, dtype="Int64"),
            "lab_seq": [0, 1, 2, 2],
        }
    )
    table = join.explain_udp_losses(messages, truth, 0, 0, protocol="raw").set_index("seq")
    # seq 2 was forwarded to the server (the drop of its echo is the other direction)
    assert table["cause"].to_dict() == {1: "dropped-queue", 2: "receiver-kernel"}
    assert (table["protocol"] == "raw").all()


def test_summary_counts_explained_and_causes() -> None:
    explained = pd.DataFrame(
        {
            "protocol": ["udp", "udp", "udp", "tcp"],
            "seq": [1, 2, 3, 4],
            "kind": ["lost", "lost", "lost", "late"],
            "cause": ["dropped-loss", "dropped-loss", "unexplained", "sender-backlog"],
            "explained": [True, True, False, True],
        }
    )
    summary = join.explain_summary(explained).set_index("protocol")
    assert summary.loc["udp", "messages"] == 3
    assert summary.loc["udp", "unexplained"] == 1
    assert summary.loc["udp", "explained_pct"] == pytest.approx(200 / 3)
    assert summary.loc["udp", "causes"] == "dropped-loss: 2, unexplained: 1"
    assert summary.loc["tcp", "explained"] == 1


# --------------------------------------------------------------------------- a results folder


def fake_run(tmp_path: Path) -> Path:
    """A results folder made of the TCP and UDP stories."""
    folder = tmp_path / "run"
    capture = folder / "capture"
    capture.mkdir(parents=True)
    meta = {"format_version": FORMAT_VERSION, "complete": True}
    (folder / "meta.json").write_text(json.dumps(meta))
    story_captures(capture)
    udp_messages, udp_truth, _, _ = udp_story(capture)
    messages = pd.concat([story_messages(), udp_messages], ignore_index=True)
    messages.to_csv(folder / "messages.csv", index=False)
    truth = pd.concat([story_ground_truth(), udp_truth], ignore_index=True)
    truth.to_csv(folder / "impairment.csv", index=False)
    pd.DataFrame(
        {"protocol": ["tcp", "udp"], "client_port": [CP, UCP], "server_port": [SP, USP]}
    ).to_csv(folder / "exchanges.csv", index=False)
    return folder


def test_analyze_run_returns_every_table(tmp_path: Path) -> None:
    tables = analyze_run(fake_run(tmp_path))
    assert tuple(tables) == TABLES
    assert tables["tcp_stats"]["retransmissions"].tolist() == [2]
    assert len(tables["hol"]) == 6
    explained = tables["explained"]
    assert set(explained["protocol"]) == {"tcp", "udp"}
    summary = tables["explained_summary"].set_index("protocol")
    assert summary.loc["tcp", "explained"] == 4  # the 4 blocked messages
    assert summary.loc["udp", "messages"] == 5
    # every table round-trips through CSV as the lead writes them
    for name, frame in tables.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)


def test_explain_run_reads_the_host_counters(tmp_path: Path) -> None:
    """exchanges.csv's server.Udp.RcvbufErrors and meta.json's TUN tx_dropped."""
    folder = fake_run(tmp_path)
    exchanges = read_table(folder / "exchanges.csv")
    exchanges["server.Udp.RcvbufErrors"] = [0, 1]
    exchanges.to_csv(folder / "exchanges.csv", index=False)
    link = {"rx_packets": 0, "tx_packets": 0, "rx_dropped": 0}
    meta = {
        "format_version": FORMAT_VERSION,
        "link_stats": {"client": {**link, "tx_dropped": 1}, "server": {**link, "tx_dropped": 0}},
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    udp = join.explain_run(folder).query("protocol == 'udp'").set_index("seq")
    assert udp["cause"].to_dict() == {
        2: "dropped-loss",
        5: "corrupted",
        7: "receiver-buffer",
        8: "unexplained",
        9: "engine-overload",
    }


def test_analyze_run_without_ground_truth_or_tcp(tmp_path: Path) -> None:
    folder = fake_run(tmp_path)
    (folder / "impairment.csv").unlink()
    exchanges = read_table(folder / "exchanges.csv")
    exchanges.loc[exchanges["protocol"] == "udp"].to_csv(folder / "exchanges.csv", index=False)
    tables = analyze_run(folder)
    assert tables["tcp_segments"].empty and tables["explained"].empty
    assert list(tables["hol"].columns) == [
        "seq", "first_byte", "last_byte", "t_first_tx_ns", "t_last_byte_ns",
        "t_complete_ns", "t_recv_ns", "hol_wait_ns", "blocked", "wait_offset",
    ]  # fmt: skip
    with pytest.raises(AnalysisError, match="no ground truth"):
        join.explain_run(folder)


def test_analyze_run_on_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="not a results folder"):
        analyze_run(tmp_path)  # no meta.json
    (tmp_path / "meta.json").write_text(json.dumps({"format_version": FORMAT_VERSION}))
    with pytest.raises(AnalysisError, match=r"messages\.csv: missing"):
        analyze_run(tmp_path)  # a results folder without its tables


def test_timestamps_stay_exact_through_csv(tmp_path: Path) -> None:
    """ns timestamps do not fit a float64; read_table keeps them exact."""
    path = tmp_path / "t.csv"
    pd.DataFrame({"t_ns": [T0 + 123, None]}, dtype="Int64").to_csv(path, index=False)
    assert read_table(path)["t_ns"].iloc[0] == T0 + 123


# --------------------------------------------------------------------------- for real

LOSSY = """
name = "join-lossy"
seed = 5
protocols = ["tcp", "udp"]
[workload]
count = 2000
size = 512
rate = 1000
[impairment]
delay_ms = 5
loss = 5
[timeouts]
drain_s = 1.0   # the lost datagrams never come; 1 s is far past this link's hold
"""


@pytest.mark.requires_root
@pytest.mark.slow
def test_real_lossy_run_is_explained(tmp_path: Path, no_leftover_namespaces: None) -> None:
    """>= 99 % of UDP losses explained by the engine; most late TCP messages too."""
    from lab.runner import run_scenario
    from lab.scenario import load_scenario
    from tests.conftest import write_scenario

    path = write_scenario(tmp_path, LOSSY)
    outcome = run_scenario(load_scenario(path), path, tmp_path / "results", render=False)
    tables = analyze_run(outcome.path)
    summary = tables["explained_summary"].set_index(["protocol", "kind"])
    print("\n" + tables["explained_summary"].to_string())
    udp = summary.loc[("udp", "lost")]
    lost = int((outcome.messages.query("protocol == 'udp'")["copies"] == 0).sum())
    assert udp["messages"] == lost > 0
    assert udp["explained_pct"] >= 99.0, tables["explained"].query("not explained")
    tcp = summary.loc[("tcp", "late")]
    assert tcp["messages"] > 0
    assert tcp["explained_pct"] >= 90.0, tables["explained"].query("not explained")
    late = tables["explained"].query("protocol == 'tcp'")
    # the losses TCP recovered from show up as engine drops with their retransmission
    dropped = late.loc[late["cause"] == "dropped-loss", "evidence"]
    assert len(dropped) > 0 and dropped.str.contains("retransmission sent").all()
    assert (tables["hol"]["blocked"]).sum() > 0


CLEAN = """
seed = 1
protocols = ["tcp", "udp"]
[workload]
pattern = "stream"
count = 1500
size = 256
rate = 1000
"""


@pytest.mark.requires_root
@pytest.mark.slow
def test_host_noise_on_a_clean_link_is_explained(
    tmp_path: Path, no_leftover_namespaces: None
) -> None:
    """The quickstart's clean link (same rate and size) with two busy loops competing
    for the CPUs: whatever arrives late is the host's doing and explained as such;
    nothing is unexplained and nothing blames the impairment (there is none)."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        outcome = run_body(tmp_path, CLEAN, name="join-host-noise")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    run = load_run(outcome.path)
    explained = run.table("explained")
    summary = run.table("explained_summary")
    print("\n" + summary.to_string())
    assert summary["unexplained"].sum() == 0, explained.query("not explained").to_string()
    assert (explained["blame"] != "impairment").all(), explained.to_string()
    assert set(explained["protocol"]) <= {"tcp"}  # a clean link loses no datagram
