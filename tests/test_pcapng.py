"""lab.pcap.read_pcap on pcapng: every block type, per-interface link types and timestamp
resolutions, several sections in either byte order, damage; then the same figures from
``lab analyze`` on a pcapng written by tshark and by dumpcap as on the classic pcap of
the same capture. Fuzzing: tests/test_pcap_parse.py."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lab.errors import AnalysisError
from lab.pcap import PcapFrame, _reader, read_pcap
from tests.pcapng_writer import ISB, NRB, Pcapng
from tests.test_analyze import mixed_capture
from tests.test_pcap_parse import (
    T0_NS,
    lab_payload,
    mixed_packets,
    rebuilt,
    row_fields,
    scapy_fields,
    write_pcap,
)

logging.getLogger("scapy").setLevel(logging.ERROR)

from scapy.layers.inet import IP, UDP  # noqa: E402
from scapy.layers.l2 import ARP, CookedLinux, Dot1Q, Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402
from scapy.utils import PcapNgWriter, wrpcap  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / ".venv" / "bin" / "lab"
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def ip_frames() -> list[bytes]:
    return [bytes(p) for p in rebuilt(mixed_packets())]


def udp(seq: int, extra: int = 10) -> bytes:
    return bytes(IP(id=seq % 65536) / UDP(sport=1, dport=2) / Raw(lab_payload(seq, b"y" * extra)))


def same_packets(a: PcapFrame, b: PcapFrame) -> None:
    pd.testing.assert_frame_equal(a.packets, b.packets)
    assert (a.stats.records, a.stats.packets, a.stats.skipped) == (
        b.stats.records,
        b.stats.packets,
        b.stats.skipped,
    )


# --------------------------------------------------------------------------- the basics


@pytest.mark.parametrize("order", ["<", ">"])
def test_same_table_as_the_classic_file(tmp_path: Path, order: str) -> None:
    frames = ip_frames()
    classic = read_pcap(write_pcap(tmp_path / "c.pcap", frames))
    ng = Pcapng()
    ng.section(order)
    ng.interface(101, snaplen=262144, tsresol=9)
    for i, data in enumerate(frames):
        ng.packet(data, T0_NS + i * 1000)
    path = tmp_path / "c.pcapng"
    path.write_bytes(ng.data)
    frame = read_pcap(path)
    same_packets(classic, frame)
    assert frame.file_format == "pcapng" and classic.file_format == "pcap"
    assert (frame.linktype, frame.nanosecond, frame.snaplen) == (101, True, 262144)
    assert frame.stats.reasons == {**classic.stats.reasons, "bad_block": 0}
    assert frame.stats.untimed == 0 and not frame.stats.truncated_tail


EXACT = 1_700_000_000_123_456_789  # ns


#: if_tsresol, if_tsoffset, timestamp as written, ns since the epoch, finer than µs
CLOCKS = [
    (None, None, EXACT // 1000, EXACT // 1000 * 1000, False),  # default: µs
    (6, None, EXACT // 1000, EXACT // 1000 * 1000, False),
    (3, None, EXACT // 10**6, EXACT // 10**6 * 10**6, False),
    (0, None, EXACT // 10**9, EXACT // 10**9 * 10**9, False),
    (9, None, EXACT, EXACT, True),
    (12, None, 123_456_789_999, 123_456_789, True),  # ps (64 bits: ~213 days): floor to ns
    (0x80 | 0, None, 1_700_000_000, 1_700_000_000 * 10**9, False),  # 2^0 s
    (0x80 | 10, None, (1_700_000_000 << 10) | 512, 1_700_000_000_500_000_000, False),
    (0x80 | 20, None, (1_700_000_000 << 20) | 3, 1_700_000_000 * 10**9 + 2861, True),
    (6, 1_600_000_000, 100_000_123, 1_600_000_100_000_123_000, False),  # if_tsoffset
    (9, -100, 200 * 10**9 + 5, 100 * 10**9 + 5, True),
]


@pytest.mark.parametrize("clock", CLOCKS)
def test_timestamp_resolution_and_offset(
    tmp_path: Path, clock: tuple[int | None, int | None, int, int, bool]
) -> None:
    tsresol, tsoffset, raw, expected, nanosecond = clock
    ng = Pcapng()
    ng.section()
    ng.interface(101, tsresol=tsresol, tsoffset=tsoffset, name=b"tun0")
    ng.packet(udp(1), raw)
    path = tmp_path / "t.pcapng"
    path.write_bytes(ng.data)
    frame = read_pcap(path)
    assert frame.packets["ts_ns"].tolist() == [expected]
    assert frame.nanosecond == nanosecond


def test_binary_resolution_finer_than_a_nanosecond(tmp_path: Path) -> None:
    """2^-32 s units: within 1 ns of the exact floor (the reader keeps 30 bits of fraction)."""
    raws = [(1_700_000_000 << 32) | f for f in (0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 123456789)]
    ng = Pcapng()
    ng.section(">")
    ng.interface(101, tsresol=0x80 | 32)
    for raw in raws:
        ng.packet(udp(1), raw)
    path = tmp_path / "b.pcapng"
    path.write_bytes(ng.data)
    got = read_pcap(path).packets["ts_ns"].tolist()
    exact = [(raw * 10**9) >> 32 for raw in raws]
    assert all(0 <= e - g <= 1 for g, e in zip(got, exact, strict=True))


def test_each_interface_has_its_own_link_type_and_clock(tmp_path: Path) -> None:
    pkts = rebuilt(mixed_packets()[:2])
    v4 = [bytes(p) for p in pkts]
    ng = Pcapng()
    ng.section()
    ng.interface(101, tsresol=9)  # 0: raw IP, ns
    ng.interface(1)  # 1: Ethernet, µs
    ng.interface(113, tsresol=3)  # 2: Linux cooked, ms
    ng.interface(0)  # 3: BSD loopback
    ng.interface(147)  # 4: a user link type: not IP
    ng.packet(v4[0], 5_000_000_001, iface=0)
    ng.packet(bytes(Ether() / pkts[1]), 5_000_001, iface=1)
    ng.packet(bytes(Ether() / ARP()), 5_000_002, iface=1)
    ng.packet(bytes(CookedLinux(proto=0x0800) / pkts[0]), 5_003, iface=2)
    ng.packet(struct.pack("<I", 2) + v4[1], 5_000_004, iface=3)
    ng.packet(b"\x45" + bytes(40), 5_000_005, iface=4)
    ng.packet(bytes(Ether() / Dot1Q(vlan=7) / pkts[0]), 5_000_006, iface=1)
    path = tmp_path / "i.pcapng"
    path.write_bytes(ng.data)
    frame = read_pcap(path)
    assert frame.linktype == 101  # the first interface's
    assert frame.packets["frame"].tolist() == [1, 2, 4, 5, 7]
    assert frame.packets["ts_ns"].tolist() == [
        5_000_000_001,
        5_000_001_000,
        5_003_000_000,
        5_000_004_000,
        5_000_006_000,
    ]
    assert frame.stats.reasons["non_ip"] == 2 and frame.stats.records == 7
    expected = [pkts[0], pkts[1], pkts[0], pkts[1], pkts[0]]
    assert [row_fields(frame, i) for i in range(5)] == [scapy_fields(p) for p in expected]


def test_sections_have_their_own_byte_order_and_interfaces(tmp_path: Path) -> None:
    ng = Pcapng()
    ng.section("<")
    ng.interface(101)
    ng.packet(udp(0), 1_000_000)
    ng.packet(udp(1), 2_000_000)
    ng.section(">")  # interface numbers start again
    ng.interface(1, tsresol=3)
    ng.interface(101, tsresol=9)
    ng.packet(bytes(Ether(type=0x0800)) + udp(2), 3_000, iface=0)
    ng.packet(udp(3), 4_000_000_000, iface=1)
    ng.section("<")
    ng.interface(101)
    ng.packet(udp(4), 5_000_000, iface=1)  # no interface 1 in this section
    ng.packet(udp(5), 6_000_000, iface=0)
    path = tmp_path / "s.pcapng"
    path.write_bytes(ng.data)
    frame = read_pcap(path)
    assert frame.packets["lab_seq"].tolist() == [0, 1, 2, 3, 5]
    assert frame.packets["frame"].tolist() == [1, 2, 3, 4, 6]
    assert frame.packets["ts_ns"].tolist() == [s * 10**9 for s in (1, 2, 3, 4, 6)]
    assert frame.stats.reasons["bad_block"] == 1 and frame.stats.records == 6


def test_simple_packet_blocks(tmp_path: Path) -> None:
    """No timestamp: the time of the packet block before (0 before any); interface 0's
    snap length and the block's own length cut the packet."""
    long = udp(3, extra=100)
    ng = Pcapng()
    ng.section()
    ng.interface(101, snaplen=60, tsresol=9)
    ng.simple(udp(0))  # before any timed packet: 0
    ng.packet(udp(1), 7_000)
    ng.simple(udp(2))  # 7_000
    ng.simple(long)  # cut to the snap length
    ng.simple(udp(4)[:28], origlen=len(udp(4)))  # the block holds 28 bytes
    ng.packet(udp(5), 9_000)
    ng.simple(udp(6))
    path = tmp_path / "spb.pcapng"
    path.write_bytes(ng.data)
    frame = read_pcap(path)
    p = frame.packets
    assert p["ts_ns"].tolist() == [0, 7_000, 7_000, 7_000, 7_000, 9_000, 9_000]
    assert p["lab_seq"].tolist()[:4] == [0, 1, 2, 3]
    assert p["caplen"].tolist() == [len(udp(0)), len(udp(1)), len(udp(2)), 60, 28, 54, 54]
    assert p["wirelen"].tolist()[3:5] == [len(long), len(udp(4))]
    assert pd.isna(p["lab_seq"].iloc[4])  # not captured
    assert frame.stats.untimed == 5 and frame.skipped == 0


def test_simple_packet_block_without_interface_is_a_bad_block(tmp_path: Path) -> None:
    ng = Pcapng()
    ng.section()
    ng.simple(udp(0))
    path = tmp_path / "x.pcapng"
    path.write_bytes(ng.data)
    frame = read_pcap(path)
    assert frame.packets.empty and frame.stats.reasons["bad_block"] == 1
    assert frame.linktype == -1


def test_obsolete_packet_blocks(tmp_path: Path) -> None:
    ng = Pcapng()
    ng.section(">")
    ng.interface(1)
    ng.interface(101, tsresol=9)
    ng.obsolete(udp(8), 123_456_789, iface=1)
    ng.packet(udp(9), 5, iface=1)
    path = tmp_path / "pb.pcapng"
    path.write_bytes(ng.data)
    p = read_pcap(path).packets
    assert p["lab_seq"].tolist() == [8, 9] and p["ts_ns"].tolist() == [123_456_789, 5]


def test_other_blocks_and_options_change_nothing(tmp_path: Path) -> None:
    frames = ip_frames()
    plain, busy = Pcapng(), Pcapng()
    plain.section()
    plain.interface(101, tsresol=9)
    busy.section(opts=busy.options((1, b"a comment"), (2, b"x86_64"), (3, b"Linux")))
    busy.others()
    busy.interface(101, tsresol=9, name=b"a-rather-long-interface-name")
    for i, data in enumerate(frames):
        plain.packet(data, T0_NS + i)
        busy.packet(data, T0_NS + i, comment=b"note" * i)
        busy.others()
    a, b = tmp_path / "a.pcapng", tmp_path / "b.pcapng"
    a.write_bytes(plain.data)
    b.write_bytes(busy.data)
    same_packets(read_pcap(a), read_pcap(b))


def test_unreadable_packet_blocks_are_counted(tmp_path: Path) -> None:
    ng = Pcapng()
    ng.section()
    ng.interface(101)
    ng.packet(udp(0), 1)
    ng.packet(udp(1), 2, caplen=len(udp(1)) + 20)  # more than the block holds
    ng.packet(udp(2), 3, iface=3)  # never described
    ng.packet(udp(3), 4)
    path = tmp_path / "b.pcapng"
    path.write_bytes(ng.data)
    frame = read_pcap(path)
    assert frame.packets["frame"].tolist() == [1, 4]
    assert frame.stats.reasons["bad_block"] == 2 and frame.stats.records == 4


# --------------------------------------------------------------------------- runs and chunks


def busy_file() -> bytes:
    """Runs of equal blocks (the vectorised walk), mixed sizes, every block kind, three
    sections, both byte orders."""
    ng = Pcapng()
    ng.section("<")
    ng.interface(101, tsresol=9)
    for i in range(300):
        ng.packet(udp(i), T0_NS + i)
    ng.packet(udp(300, extra=99), T0_NS + 300)
    for i in range(301, 400):
        ng.packet(udp(i), T0_NS + i)
    ng.others()
    for i in range(400, 450):
        ng.packet(udp(i, extra=i % 37), T0_NS + i)
    ng.simple(udp(450))
    ng.section(">")
    ng.interface(1)
    ng.interface(101, tsresol=9)
    for i in range(451, 700):
        ng.packet(bytes(Ether(type=0x0800)) + udp(i), T0_NS // 1000 + i)
        if i % 97 == 0:
            ng.block(NRB, struct.pack(">HH", 0, 0))
    ng.obsolete(udp(700), T0_NS + 700, iface=1)
    return ng.data


@pytest.mark.parametrize("chunk", [64, 1000, 4096])
def test_chunking_does_not_change_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    path = tmp_path / "m.pcapng"
    path.write_bytes(busy_file())
    whole = read_pcap(path)
    assert whole.packets["lab_seq"].tolist() == list(range(701))
    assert whole.skipped == 0 and whole.stats.untimed == 1
    monkeypatch.setattr(_reader, "_CHUNK", chunk)
    pieces = read_pcap(path)
    pd.testing.assert_frame_equal(whole.packets, pieces.packets)
    assert pieces.stats == whole.stats


def test_every_truncation_of_a_valid_file(tmp_path: Path) -> None:
    ng = Pcapng()
    ng.section()
    ng.interface(101, tsresol=9)
    for i, data in enumerate(ip_frames()):
        ng.packet(data, i)
        if i == 2:
            ng.block(ISB, struct.pack("<III", 0, 0, 0))
    ng.simple(udp(99))
    data = ng.data
    shb_end = ng.ends[0]
    path = tmp_path / "t.pcapng"
    counts = []
    for length in range(shb_end, len(data) + 1):
        path.write_bytes(data[:length])
        frame = read_pcap(path)
        counts.append(len(frame.packets))
        assert frame.stats.truncated_tail == (length not in ng.ends), length
        assert frame.stats.records == frame.stats.packets + frame.stats.skipped
    assert counts == sorted(counts) and counts[-1] == len(ip_frames()) + 1
    for length in range(shb_end):
        path.write_bytes(data[:length])
        with pytest.raises(AnalysisError):
            read_pcap(path)


# --------------------------------------------------------------------------- damage


def small_file() -> Pcapng:
    ng = Pcapng()
    ng.section()
    ng.interface(101)
    for i in range(4):
        ng.packet(udp(i), i)
    return ng


def write(tmp_path: Path, data: bytes | bytearray) -> Path:
    path = tmp_path / "d.pcapng"
    path.write_bytes(bytes(data))
    return path


def test_truncated_packet_block_is_counted(tmp_path: Path) -> None:
    frame = read_pcap(write(tmp_path, small_file().data[:-7]))
    assert frame.packets["lab_seq"].tolist() == [0, 1, 2]
    assert frame.stats.truncated_tail and frame.stats.reasons["truncated"] == 1
    assert frame.stats.records == 4


def test_truncated_other_block_is_no_record(tmp_path: Path) -> None:
    ng = small_file()
    ng.block(ISB, bytes(40))
    frame = read_pcap(write(tmp_path, ng.data[:-10]))
    assert len(frame.packets) == 4 and frame.stats.records == 4
    assert frame.stats.truncated_tail and frame.skipped == 0


def test_partial_block_header_is_a_truncated_record(tmp_path: Path) -> None:
    frame = read_pcap(write(tmp_path, small_file().data + b"\x06\x00\x00"))
    assert len(frame.packets) == 4 and frame.stats.reasons["truncated"] == 1


@pytest.mark.parametrize(
    "damage",
    [
        "trailer",  # trailing length differs from the leading one
        "misaligned",  # not a multiple of 4
        "zero",  # would never advance
        "huge",  # larger than any block
        "short_epb",  # too short for an enhanced packet block's fields
    ],
)
def test_impossible_block_stops_the_walk(tmp_path: Path, damage: str) -> None:
    ng = small_file()
    data = bytearray(ng.data)
    at = ng.ends[3]  # the third packet block
    length = struct.unpack_from("<I", data, at + 4)[0]
    if damage == "trailer":
        struct.pack_into("<I", data, at + length - 4, length + 4)
    else:
        new = {"misaligned": length + 2, "zero": 0, "huge": 1 << 30, "short_epb": 24}[damage]
        struct.pack_into("<I", data, at + 4, new)
        if damage == "short_epb":  # a consistent but too-short block
            data[at + 20 : at + 24] = struct.pack("<I", 24)
            data[at + 24 : at + length] = b""
    frame = read_pcap(write(tmp_path, data))
    assert frame.packets["lab_seq"].tolist() == [0, 1]
    assert frame.stats.garbage_offset == at and frame.stats.reasons["garbage"] == 1
    assert frame.stats.records == 3


@pytest.mark.parametrize("damage", ["magic", "version", "length"])
def test_bad_later_section_header_stops_the_walk(tmp_path: Path, damage: str) -> None:
    ng = small_file()
    at = ng.section(">", major=2 if damage == "version" else 1)
    ng.interface(101)
    ng.packet(udp(9), 9)
    data = bytearray(ng.data)
    if damage == "magic":
        data[at + 8 : at + 12] = b"\x00\x11\x22\x33"
    elif damage == "length":
        data[at + 4 : at + 8] = struct.pack(">I", 20)
    frame = read_pcap(write(tmp_path, data))
    assert len(frame.packets) == 4 and frame.stats.garbage_offset == at


def first_section(**changes: Any) -> bytes:
    ng = Pcapng()
    ng.section(major=changes.get("major", 1))
    data = bytearray(ng.data)
    if "length" in changes:
        data[4:8] = struct.pack("<I", changes["length"])
    if "trailer" in changes:
        data[-4:] = struct.pack("<I", changes["trailer"])
    return bytes(data)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x0a\x0d\x0d\x0a", "not a pcapng file \\(only 4 bytes"),
        (b"\x0a\x0d\x0d\x0a" + bytes(40), "not a pcapng file \\(byte-order magic 00000000"),
        (first_section(major=2), "unreadable pcapng section header \\(version 2.0"),
        (first_section(length=20), "block length 20"),
        (first_section(length=30), "block length 30"),
        (first_section(trailer=32), "trailing copy 32"),
        (first_section(length=64), "cut short \\(28 of 64 bytes\\)"),
    ],
)
def test_bad_first_section_header_is_one_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    with pytest.raises(AnalysisError, match=message):
        read_pcap(write(tmp_path, content))


def test_section_header_alone_is_an_empty_capture(tmp_path: Path) -> None:
    frame = read_pcap(write(tmp_path, first_section()))
    assert frame.packets.empty and frame.stats.records == 0 and frame.linktype == -1
    assert "lab_seq" in frame.packets.columns


# --------------------------------------------------------------------------- other writers


def test_scapy_pcapng_writer(tmp_path: Path) -> None:
    """A second, independent writer: scapy's (µs, one interface per link type)."""
    pkts = rebuilt(mixed_packets())
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i / 8
    classic, ng = tmp_path / "s.pcap", tmp_path / "s.pcapng"
    wrpcap(str(classic), pkts)
    writer = PcapNgWriter(str(ng))
    for p in pkts:
        writer.write(p)
    writer.close()
    a, b = read_pcap(classic), read_pcap(ng)
    same_packets(a, b)


def tshark(*args: str) -> None:
    subprocess.run(["tshark", *args], check=True, capture_output=True)


def lab_analyze(path: Path, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """``lab analyze --json --top 0 --rtt-csv`` on ``path``: the report and the CSV."""
    csv = tmp_path / f"{path.name}.rtt.csv"
    out = subprocess.run(
        [str(LAB), "analyze", "--json", "--top", "0", "--rtt-csv", str(csv), str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out), csv.read_text()


def assert_same_analysis(classic: Path, ng: Path, tmp_path: Path) -> dict[str, Any]:
    """``lab analyze`` says the same of both files (but their names)."""
    a, a_rtt = lab_analyze(classic, tmp_path)
    b, b_rtt = lab_analyze(ng, tmp_path)
    assert b["skipped_reasons"].pop("bad_block") == 0
    a.pop("file")
    b.pop("file")
    assert a == b
    assert a_rtt == b_rtt
    return a


def ethernet_capture(tmp_path: Path) -> Path:
    frames = [Ether() / p for p in rebuilt(mixed_packets())]
    frames.insert(2, Ether() / ARP())
    frames.append(Ether() / Dot1Q(vlan=5) / rebuilt(mixed_packets())[0])
    for i, f in enumerate(frames):
        f.time = 1_700_000_000 + i / 1000
    path = tmp_path / "eth.pcap"
    wrpcap(str(path), frames)  # µs
    return path


@needs_tshark
@pytest.mark.parametrize("which", ["mixed", "ethernet"])
def test_lab_analyze_of_a_tshark_pcapng(tmp_path: Path, which: str) -> None:
    """``tshark -F pcapng`` of a capture: the same table and the same ``lab analyze``."""
    classic = mixed_capture(tmp_path) if which == "mixed" else ethernet_capture(tmp_path)
    ng = tmp_path / f"{which}.pcapng"
    tshark("-r", str(classic), "-F", "pcapng", "-w", str(ng))
    assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    same_packets(read_pcap(classic), read_pcap(ng))
    report = assert_same_analysis(classic, ng, tmp_path)
    if which == "mixed":
        tcp = next(f for f in report["flows"] if f["proto"] == "tcp")
        assert tcp["retransmissions"] == 2 and tcp["karn_rtt_samples"] == 1
        assert report["flows_total"] == 5


# --------------------------------------------------------------------------- dumpcap (root)

TRAFFIC = r"""
import socket, struct, threading, time

def lab(seq):
    return struct.pack("!IIQ", seq, 48, time.time_ns()) + bytes(32)

srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()

def serve():
    conn, _ = srv.accept()
    while True:
        data = conn.recv(65536)
        if not data:
            break
        conn.sendall(data[:100])
    conn.close()

thread = threading.Thread(target=serve)
thread.start()
client = socket.create_connection(srv.getsockname())
for _ in range(40):
    client.sendall(bytes(3000))
    time.sleep(0.002)
client.shutdown(socket.SHUT_WR)
while client.recv(65536):
    pass
client.close()
thread.join()

rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 0))
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for seq in (0, 1, 2, 4, 3, 5, 5, 7):
    tx.sendto(lab(seq), rx.getsockname())
rx6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
rx6.bind(("::1", 0))
tx6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for seq in range(5):
    tx6.sendto(lab(seq), rx6.getsockname()[:2])
tx.sendto(b"nobody listens", ("127.0.0.1", 9))
"""


@pytest.fixture
def lab_netns() -> Iterator[str]:
    """A fresh network namespace with only ``lo`` up, removed afterwards whatever happens."""
    name = f"lab-pcapng-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_netns(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def start_dumpcap(ns: str, out: Path, *interfaces: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = out.with_suffix(".log")
    args: list[str] = []
    for name in interfaces:
        args += ["-i", name]
    with log.open("wb") as err:
        proc = subprocess.Popen(
            in_netns(ns, "dumpcap", *args, "-w", str(out)),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    return proc, log


def wait_for_capture(ns: str, logs: list[Path]) -> None:
    """Send throw-away datagrams until every dumpcap has counted a packet."""
    probe = "import socket; socket.socket(2, 2).sendto(b'probe', ('127.0.0.1', 7))"
    deadline = time.monotonic() + 20
    while not all("Packets: " in log.read_text(errors="replace") for log in logs):
        if time.monotonic() > deadline:
            raise AssertionError("dumpcap did not start: " + logs[0].read_text())
        subprocess.run(in_netns(ns, sys.executable, "-c", probe), check=True)
        time.sleep(0.3)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.requires_root
@needs_tshark
@pytest.mark.skipif(shutil.which("dumpcap") is None, reason="dumpcap not installed")
def test_lab_analyze_of_a_dumpcap_pcapng(tmp_path: Path, lab_netns: str) -> None:
    """dumpcap on ``lo`` of a fresh lab namespace, and on ``lo`` + ``any`` (two
    interfaces of different link types in one file), while TCP and UDP (IPv4 and IPv6)
    cross it: ``lab analyze`` of the pcapng says what it says of the classic pcap
    tshark makes of it."""
    lo, both = tmp_path / "lo.pcapng", tmp_path / "both.pcapng"
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        procs.append(start_dumpcap(lab_netns, lo, "lo"))
        procs.append(start_dumpcap(lab_netns, both, "lo", "any"))
        wait_for_capture(lab_netns, [log for _, log in procs])
        subprocess.run(in_netns(lab_netns, sys.executable, "-c", TRAFFIC), check=True, timeout=60)
        time.sleep(0.5)
    finally:
        for proc, _ in procs:
            stop(proc)

    classic = tmp_path / "lo.pcap"
    tshark("-r", str(lo), "-F", "nsecpcap", "-w", str(classic))
    frame = read_pcap(lo)
    assert frame.file_format == "pcapng" and frame.linktype == 1  # Ethernet on lo
    same_packets(read_pcap(classic), frame)
    report = assert_same_analysis(classic, lo, tmp_path)
    tcp = next(f for f in report["flows"] if f["proto"] == "tcp")
    assert tcp["packets"] > 40 and tcp["handshake_rtt_ms"] is not None
    udp4 = [f for f in report["flows"] if f["proto"] == "udp" and f["b_port"] not in (7, 9)]
    lab4 = next(f for f in udp4 if f["lab_seq_packets"] == 8)  # not the probes
    assert (lab4["lab_lost"], lab4["lab_duplicates"]) == (1, 1)
    assert any(f["b"] == "::1" and f["lab_seq_packets"] == 5 for f in report["flows"])

    # two interfaces, two link types (tshark cannot write that as classic pcap): every
    # row as tshark's dissection of the same file has it
    merged = read_pcap(both)
    assert merged.linktype == 1
    fields = ["frame.number", "frame.interface_id", "frame.time_epoch", "frame.len"]
    fields += ["frame.cap_len", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "frame.encap_type"]
    cmd = ["tshark", "-n", "-r", str(both), "-Y", "ip or ipv6", "-T", "fields"]
    cmd += ["-E", "occurrence=f", "-E", "separator=/t"]
    for name in fields:
        cmd += ["-e", name]
    lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
    seen = [dict(zip(fields, line.split("\t"), strict=True)) for line in lines]
    assert {row["frame.interface_id"] for row in seen} == {"0", "1"}
    assert len({row["frame.encap_type"] for row in seen}) == 2  # Ethernet, Linux cooked
    p = merged.packets
    assert p["frame"].tolist() == [int(row["frame.number"]) for row in seen]
    sec_frac = [row["frame.time_epoch"].split(".") for row in seen]
    assert p["ts_ns"].tolist() == [int(s) * 10**9 + int(f.ljust(9, "0")) for s, f in sec_frac]
    assert p["wirelen"].tolist() == [int(row["frame.len"]) for row in seen]
    assert p["caplen"].tolist() == [int(row["frame.cap_len"]) for row in seen]
    assert merged.address_strings("src").tolist() == [
        row["ip.src"] or row["ipv6.src"] for row in seen
    ]
    assert merged.address_strings("dst").tolist() == [
        row["ip.dst"] or row["ipv6.dst"] for row in seen
    ]
