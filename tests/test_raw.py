"""The RAW exchange: IP protocol 253, the lab's own header and checksum, no ports.

Unit tests (no root) pin the wire format, the checksum and the analysis joins; the
``requires_root`` tests run real protocol-253 packets between the testbed's namespaces.
"""

from __future__ import annotations

import math
import socket
import struct
from pathlib import Path

import pandas as pd
import pytest

from lab._protocols import IPPROTO_LAB_RAW
from lab.analysis import join
from lab.analysis.impairment import impairment_by_protocol, packets_of_exchange
from lab.exchanges._endpoint import EndpointSettings
from lab.exchanges._framing import MessageBuilder, filler
from lab.exchanges.raw import (
    RAW_HEADER_SIZE,
    RawMessageBuilder,
    _Receiver,
    check_size,
    checksum,
    ip_payload,
    verify,
)
from lab.impairment.forwarder import _corrupt, _Record
from lab.impairment.groundtruth import load_ground_truth
from lab.pcap import LAB_RAW_PROTO, read_pcap
from lab.results import load_run
from lab.runner import RunOutcome
from tests.conftest import QUICK_DRAIN, run_body, summary_row

CLIENT, SERVER = "198.18.0.1", "198.18.0.2"


def settings(size: int = 64, seed: int = 3, count: int = 10) -> EndpointSettings:
    return EndpointSettings(
        server_address=SERVER,
        client_address=CLIENT,
        port=0,
        count=count,
        size=size,
        rate=1000.0,
        echo=False,
        seed=seed,
        connect_timeout_s=1.0,
        run_timeout_s=1.0,
        drain_timeout_s=1.0,
    )


def ip_packet(payload: bytes, src: str = CLIENT, dst: str = SERVER, options: bytes = b"") -> bytes:
    """An IPv4 packet of protocol 253 as a raw socket returns it (checksum left 0)."""
    ihl = 5 + len(options) // 4
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        ihl * 4 + len(payload),
        1,
        0x4000,
        64,
        IPPROTO_LAB_RAW,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return header + options + payload


# --- wire format ---------------------------------------------------------------------------


def test_protocol_number_is_the_one_reserved_for_experiments_and_the_parser_knows() -> None:
    assert IPPROTO_LAB_RAW == LAB_RAW_PROTO == 253  # RFC 3692


def test_layout_seq_first_then_length_time_checksum_filler() -> None:
    message = bytes(RawMessageBuilder(64, seed=3).build(7, 123_456_789))
    assert len(message) == 64, "size means the same payload bytes as UDP"
    seq, length, t_send, crc = struct.unpack_from("!IIQI", message)
    assert (seq, length, t_send) == (7, 64, 123_456_789)
    assert crc == checksum(message)
    assert message[RAW_HEADER_SIZE:] == filler(3, 64)[4:]


def test_raw_payload_is_the_udp_payload_with_the_checksum_in_the_first_filler_bytes() -> None:
    udp = bytes(MessageBuilder(256, 9).build(5, 42))
    raw = bytes(RawMessageBuilder(256, 9).build(5, 42))
    assert udp[:16] == raw[:16] and udp[20:] == raw[20:] and udp[16:20] != raw[16:20]


def test_smallest_message_has_no_filler() -> None:
    message = bytes(RawMessageBuilder(20, 1).build(1, 2))
    assert len(message) == 20 and verify(message) == 1


@pytest.mark.parametrize("size", [16, 17, 19])
def test_sizes_without_room_for_the_checksum_are_refused(size: int) -> None:
    with pytest.raises(ValueError, match=r"raw needs workload.size >= 20"):
        check_size(size)
    with pytest.raises(ValueError, match=r"raw needs workload.size >= 20"):
        RawMessageBuilder(size, 1)


def test_verify_returns_the_seq_of_a_good_message() -> None:
    builder = RawMessageBuilder(100, 5)
    for seq in (0, 1, 2**32 - 1):
        assert verify(bytes(builder.build(seq, 10))) == seq


def test_every_single_bit_flip_is_caught() -> None:
    message = bytes(RawMessageBuilder(64, 3).build(11, 99))
    for bit in range(len(message) * 8):
        flipped = bytearray(message)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert verify(flipped) is None, f"bit {bit} flipped unnoticed"


def test_truncated_or_short_payloads_fail() -> None:
    message = bytes(RawMessageBuilder(64, 3).build(11, 99))
    assert verify(message[:-1]) is None, "length field disagrees with the packet"
    assert verify(message[:19]) is None
    assert verify(b"") is None


def test_engine_corruption_of_a_raw_packet_is_always_detected() -> None:
    """The engine flips a bit anywhere after the IP header for protocol 253 (no L4 header)."""
    packet = ip_packet(bytes(RawMessageBuilder(40, 2).build(3, 4)))
    for bit in range(0, 40 * 8 * 3, 7):  # bit indices wrap around the payload
        corrupted = _corrupt(packet, bit)
        assert corrupted[:20] == packet[:20], "the IP header is left alone"
        assert verify(ip_payload(corrupted)) is None


def test_ip_payload_strips_the_ip_header_with_options() -> None:
    payload = bytes(RawMessageBuilder(32, 1).build(8, 9))
    assert ip_payload(ip_packet(payload)) == payload
    assert ip_payload(ip_packet(payload, options=b"\x01\x01\x01\x00")) == payload


def test_receiver_keeps_only_the_peers_good_packets() -> None:
    receiver = _Receiver(CLIENT, settings(size=64, seed=3))
    good = bytes(RawMessageBuilder(64, 3).build(4, 5))
    accepted = receiver.accept(ip_packet(good), CLIENT)
    assert accepted is not None and accepted[1:] == (4, True)
    assert receiver.accept(ip_packet(good, src="198.18.0.9"), "198.18.0.9") is None
    bad = bytearray(good)
    bad[30] ^= 0x10
    assert receiver.accept(ip_packet(bytes(bad)), CLIENT) is None
    other_filler = bytes(RawMessageBuilder(64, 4).build(5, 5))  # sealed, wrong filler
    accepted = receiver.accept(ip_packet(other_filler), CLIENT)
    assert accepted is not None and accepted[1:] == (5, False)
    assert (receiver.foreign, receiver.checksum_errors) == (1, 1)


def test_scapy_layer_dissects_and_builds_the_same_bytes() -> None:
    from scapy.layers.inet import IP
    from scapy.packet import Raw

    from lab.exchanges._rawproto import LabRaw, register

    register()
    message = bytes(RawMessageBuilder(64, 3).build(7, 123))
    dissected = IP(ip_packet(message))
    assert dissected.proto == 253
    layer = dissected[LabRaw]
    assert (layer.seq, layer.length, layer.t_send_ns) == (7, 64, 123)
    assert layer.checksum_ok()
    built = bytes(LabRaw(seq=7, t_send_ns=123) / Raw(filler(3, 64)[4:]))
    assert built == message
    assert bytes(IP(dst=SERVER) / LabRaw())[9] == 253, "IP()/LabRaw() sets protocol 253"


# --- analysis ------------------------------------------------------------------------------


def ground_truth_table() -> pd.DataFrame:
    """Three protocols' packets; RAW has no ports."""
    rows = [
        # proto, sport, dport, direction, lab_seq, fate, corrupted
        (253, None, None, "client_to_server", 0, "forwarded", False),
        (253, None, None, "client_to_server", 1, "dropped-loss", False),
        (253, None, None, "client_to_server", 2, "forwarded", True),
        (253, None, None, "client_to_server", 3, "dropped-queue", False),
        (253, None, None, "server_to_client", 0, "forwarded", False),
        (17, 49152, 50001, "client_to_server", 1, "forwarded", False),
        (17, 49152, 50001, "client_to_server", 2, "dropped-loss", False),
        (6, 49153, 50000, "client_to_server", None, "dropped-loss", False),
    ]
    frame = pd.DataFrame(
        rows,
        columns=["ip_proto", "src_port", "dst_port", "direction", "lab_seq", "fate", "corrupted"],
    )
    t_in = [1_000_000 * i + 100 for i in range(len(frame))]
    return frame.assign(
        t_in_ns=pd.array(t_in, dtype="Int64"),
        t_out_ns=pd.array([None] * len(frame), dtype="Int64"),
        scheduled_ns=pd.array([None] * len(frame), dtype="Int64"),
        ip_id=pd.array(range(len(frame)), dtype="Int64"),
        size=100,
        src_port=frame["src_port"].astype("Int64"),
        dst_port=frame["dst_port"].astype("Int64"),
        lab_seq=frame["lab_seq"].astype("Int64"),
        direction=frame["direction"].astype("category"),
        fate=pd.Categorical(frame["fate"], ["forwarded", "dropped-loss", "dropped-queue"]),
        duplicated=False,
        reordered=False,
    )


def messages_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "protocol": ["raw"] * 5 + ["udp"] * 3,
            "seq": [0, 1, 2, 3, 4, 0, 1, 2],
            "copies": [1, 0, 0, 0, 0, 1, 1, 0],
            "t_send_ns": [1_000_000 * i for i in range(8)],
        }
    )


def lost_explained(
    messages: pd.DataFrame, ground_truth: pd.DataFrame, protocol: str, ports: tuple[int, int]
) -> pd.DataFrame:
    """The explained.csv rows of ``protocol``'s lost messages (the runner's one join)."""
    rows = join.explain_udp_losses(
        messages,
        ground_truth,
        *ports,
        client_packets=None,
        server_packets=None,
        protocol=protocol,
    )
    return rows.loc[rows["kind"] == "lost"].reset_index(drop=True)


def test_packets_of_raw_ignore_ports() -> None:
    packets = packets_of_exchange(ground_truth_table(), "raw", 0)
    assert len(packets) == 5 and (packets["ip_proto"] == 253).all()
    assert len(packets_of_exchange(ground_truth_table(), "udp", 50001)) == 2


def test_raw_losses_are_explained_by_drops_and_corruption() -> None:
    explained = lost_explained(messages_table(), ground_truth_table(), "raw", (0, 0))
    assert list(explained["seq"]) == [1, 2, 3, 4]
    assert list(explained["cause"][:3]) == ["dropped-loss", "corrupted", "dropped-queue"]
    assert list(explained["blame"][:3]) == ["impairment"] * 3
    assert list(explained["explained"]) == [True, True, True, False], "seq 4 never reached it"


def test_udp_losses_are_told_apart_from_raw_by_their_ports() -> None:
    udp = lost_explained(messages_table(), ground_truth_table(), "udp", (49152, 50001))
    assert list(udp["seq"]) == [2] and udp["explained"].all()
    assert list(udp["cause"]) == ["dropped-loss"]


def test_impairment_by_protocol_has_a_raw_row_per_direction() -> None:
    exchanges = pd.DataFrame({"protocol": ["udp", "raw"], "server_port": [50001, 0]})
    table = impairment_by_protocol(ground_truth_table(), exchanges)
    raw = table[table["protocol"] == "raw"].set_index("direction")
    assert raw.loc["client_to_server", "packets"] == 4
    assert raw.loc["client_to_server", "dropped_loss"] == 1
    assert raw.loc["client_to_server", "dropped_queue"] == 1
    assert raw.loc["client_to_server", "corrupted"] == 1
    assert raw.loc["server_to_client", "packets"] == 1


def test_ground_truth_reads_lab_seq_of_raw_packets(tmp_path: Path) -> None:
    record = _Record()
    for seq in (5, 6):
        packet = ip_packet(bytes(RawMessageBuilder(64, 1).build(seq, 0)))
        record.direction.append(0)
        record.t_in.append(1)
        record.t_out.append(2)
        record.scheduled.append(1)
        record.dup_t_out.append(-1)
        record.size.append(len(packet))
        record.fate.append(0)
        record.flags.append(0)
        record.headers.append(packet[:64])
    path = tmp_path / "gt.npz"
    record.save(path, {"directions": {"client_to_server": 0, "server_to_client": 1}})
    truth, _ = load_ground_truth(path)
    assert list(truth["lab_seq"]) == [5, 6]
    assert list(truth["payload_len"]) == [64, 64]
    assert truth["src_port"].isna().all() and truth["dst_port"].isna().all()


# --- real packets (root) -------------------------------------------------------------------


def run_raw(tmp_path: Path, body: str, name: str = "raw") -> RunOutcome:
    return run_body(tmp_path, body, name)


def _raw_messages(outcome: RunOutcome) -> pd.DataFrame:
    return outcome.messages[outcome.messages["protocol"] == "raw"]


def _raw_truth(outcome: RunOutcome, direction: str = "client_to_server") -> pd.DataFrame:
    truth = load_run(outcome.path).table("impairment")
    return truth[(truth["ip_proto"] == 253) & (truth["direction"] == direction)]


@pytest.mark.requires_root
def test_a_raw_socket_sees_every_protocol_253_packet_of_its_namespace(tmp_path: Path) -> None:
    """No ports: the server's socket also gets a local stranger's packet; no own outgoing."""
    from lab.impairment.spec import ImpairmentSpec
    from lab.testbed import _netns, open_testbed

    good = bytes(RawMessageBuilder(64, 3).build(1, 2))
    with open_testbed(ImpairmentSpec(), 1, "cubic", tmp_path / "gt.npz") as testbed:
        with _netns.inside(testbed.server.netns):
            server = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_LAB_RAW)
            server.bind((testbed.server.address, 0))
            stranger = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_LAB_RAW)
            stranger.bind(("127.0.0.1", 0))
        with _netns.inside(testbed.client.netns):
            client = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_LAB_RAW)
            client.bind((testbed.client.address, 0))
        with server, stranger, client:
            server.settimeout(1.0)
            client.settimeout(0.3)
            stranger.sendto(good, (testbed.server.address, 0))
            client.sendto(good, (testbed.server.address, 0))
            receiver = _Receiver(testbed.client.address, settings(64, 3))
            accepted = []
            for _ in range(2):
                packet, (source, port) = server.recvfrom(65_535)
                assert port == 0
                accepted.append(receiver.accept(packet, source))
            assert receiver.foreign == 1, "the stranger's packet reached the server's socket"
            assert [a[1:] for a in accepted if a is not None] == [(1, True)]
            with pytest.raises(TimeoutError):
                client.recvfrom(65_535)  # a raw socket does not see its own outgoing packets


@pytest.mark.requires_root
@pytest.mark.slow
def test_clean_link_raw_delivers_everything_next_to_tcp_and_udp(
    tmp_path: Path, no_leftover_namespaces: None
) -> None:
    count = 2000
    outcome = run_raw(
        tmp_path,
        f'protocols = ["tcp", "udp", "raw"]\n[workload]\ncount = {count}\nsize = 256\n'
        "rate = 4000\n",
    )
    for protocol in ("tcp", "udp", "raw"):
        row = summary_row(outcome, protocol)
        assert row["delivered"] == count, protocol
        assert row["duplicates"] == 0 and row["out_of_order"] == 0
    raw = _raw_messages(outcome)
    assert raw["intact"].all()
    assert list(raw.sort_values("arrival_index")["seq"]) == list(range(count))
    run = load_run(outcome.path)
    exchanges = run.table("exchanges").set_index("protocol")
    assert exchanges.loc["raw", "server_port"] == 0 and exchanges.loc["raw", "client_port"] == 0
    truth = _raw_truth(outcome)
    assert sorted(truth["lab_seq"].astype(int)) == list(range(count))
    assert (truth["payload_len"] == 256).all(), "size: the same payload bytes as UDP"
    by_protocol = run.table("impairment_by_protocol")
    assert set(by_protocol["protocol"]) == {"tcp", "udp", "raw"}
    capture = read_pcap(run.pcap("raw", "server")).packets
    capture = capture[capture["proto"] == 253]
    assert sorted(capture["lab_seq"].astype(int)) == list(range(count))
    assert run.meta["complete"] is True


@pytest.mark.requires_root
@pytest.mark.slow
def test_raw_random_loss_is_binomial_and_every_loss_is_an_engine_drop(tmp_path: Path) -> None:
    n, p = 6000, 0.05
    outcome = run_raw(
        tmp_path,
        f'protocols = ["udp", "raw"]\nseed = 21\n[workload]\ncount = {n}\nsize = 64\n'
        "rate = 10000\n[impairment]\nloss = 5\n[impairment.server_to_client]\nloss = 0\n"
        + QUICK_DRAIN,
    )
    lost = int(summary_row(outcome, "raw")["lost"])
    half_width = 2.576 * math.sqrt(n * p * (1 - p))  # 99 % normal approximation
    assert n * p - half_width <= lost <= n * p + half_width, f"lost {lost} of {n}"
    truth = _raw_truth(outcome)
    dropped = set(truth.loc[truth["fate"] == "dropped-loss", "lab_seq"].astype(int))
    raw = _raw_messages(outcome)
    assert dropped == set(raw.loc[raw["copies"] == 0, "seq"])
    explained = (
        load_run(outcome.path).table("explained").query("protocol == 'raw' and kind == 'lost'")
    )
    assert len(explained) == lost and explained["explained"].all()
    assert (explained["cause"] == "dropped-loss").all()


@pytest.mark.requires_root
@pytest.mark.slow
def test_raw_checksum_catches_corruption_the_kernel_lets_through(tmp_path: Path) -> None:
    outcome = run_raw(
        tmp_path,
        'protocols = ["udp", "raw"]\nseed = 4\n[workload]\ncount = 3000\nsize = 256\n'
        "rate = 3000\n[impairment]\ncorrupt = 3\n" + QUICK_DRAIN,
    )
    truth = _raw_truth(outcome)
    corrupted = set(truth.loc[truth["corrupted"], "lab_seq"].astype(int))
    assert corrupted, "the engine corrupted some RAW packets"
    raw = _raw_messages(outcome)
    delivered = raw[raw["copies"] > 0]
    assert delivered["intact"].all(), "no corrupted message counted as an intact delivery"
    assert not corrupted & set(delivered["seq"]), "every corrupted packet was discarded"
    assert set(raw.loc[raw["copies"] == 0, "seq"]) == corrupted
    run = load_run(outcome.path)
    exchanges = run.table("exchanges").set_index("protocol")
    assert exchanges.loc["raw", "server.App.RawChecksumErrors"] == len(corrupted)
    assert exchanges.loc["raw", "server.App.RawForeignPackets"] == 0
    assert exchanges.loc["raw", "server.Raw.Drops"] == 0
    explained = run.table("explained").query("protocol == 'raw' and kind == 'lost'")
    assert len(explained) == len(corrupted)
    assert explained["explained"].all() and (explained["cause"] == "corrupted").all()
    assert int(summary_row(outcome, "udp")["lost"]) > 0, "UDP's kernel checksum discards them too"


@pytest.mark.requires_root
@pytest.mark.slow
def test_raw_echo_checks_both_directions(tmp_path: Path) -> None:
    count = 2000
    outcome = run_raw(
        tmp_path,
        f'protocols = ["raw"]\nseed = 8\n[workload]\npattern = "echo"\ncount = {count}\n'
        "size = 128\nrate = 2000\n[impairment]\ncorrupt = 3\n" + QUICK_DRAIN,
    )
    there = _raw_truth(outcome)
    back = _raw_truth(outcome, "server_to_client")
    lost_there = set(there.loc[there["corrupted"], "lab_seq"].astype(int))
    lost_back = set(back.loc[back["corrupted"], "lab_seq"].astype(int))
    raw = _raw_messages(outcome)
    assert set(raw.loc[raw["copies"] == 0, "seq"]) == lost_there
    echoed = set(raw.loc[raw["rtt_ns"].notna(), "seq"])
    assert echoed == set(range(count)) - lost_there - lost_back
    run = load_run(outcome.path)
    exchanges = run.table("exchanges").set_index("protocol")
    assert exchanges.loc["raw", "client.App.RawChecksumErrors"] == len(lost_back)
    assert exchanges.loc["raw", "client.App.RawForeignPackets"] == 0, (
        "the client's socket never sees its own outgoing packets"
    )
