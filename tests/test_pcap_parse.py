"""lab.pcap.read_pcap on classic pcap: fields against scapy's dissection, file-format
variants, damaged files, and fuzzing (nothing but AnalysisError may ever escape).
pcapng: tests/test_pcapng.py."""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.errors import AnalysisError
from lab.pcap import PcapFrame, _reader, read_pcap
from tests.pcapng_writer import CUSTOM, DSB, EPB, IDB, ISB, NRB, PB, SPB, Pcapng

logging.getLogger("scapy").setLevel(logging.ERROR)

from scapy.layers.inet import IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop  # noqa: E402
from scapy.layers.l2 import ARP, CookedLinux, Dot1AD, Dot1Q, Ether  # noqa: E402
from scapy.packet import Packet, Raw  # noqa: E402
from scapy.utils import wrpcap  # noqa: E402

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
T0_NS = 1_700_000_000_123_456_789


def lab_payload(seq: int, extra: bytes = b"") -> bytes:
    """The lab's 16-byte message header (seq u32, length u32, send time u64) + data."""
    return struct.pack("!IIQ", seq, 16 + len(extra), T0_NS) + extra


def write_pcap(
    path: Path,
    frames: Sequence[bytes],
    *,
    linktype: int = 101,
    order: str = "<",
    nanosecond: bool = True,
    snaplen: int = 262144,
    caplen: int | None = None,
) -> Path:
    """A classic pcap with frame i stamped T0 + i µs; ``caplen`` cuts each packet."""
    magic = MAGIC_NS if nanosecond else MAGIC_US
    out = bytearray(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
    for i, frame in enumerate(frames):
        ts = T0_NS + i * 1000
        frac = ts % 10**9 if nanosecond else (ts % 10**9) // 1000
        data = frame if caplen is None else frame[:caplen]
        out += struct.pack(order + "IIII", ts // 10**9, frac, len(data), len(frame)) + data
    path.write_bytes(bytes(out))
    return path


def mixed_packets() -> list[Packet]:
    """One of each kind the lab produces or may meet."""
    return [
        IP(src="10.0.0.1", dst="10.0.0.2", id=4242, ttl=61)
        / UDP(sport=40000, dport=50000)
        / Raw(lab_payload(7, b"x" * 20)),
        IP(src="10.0.0.2", dst="10.0.0.1", id=9, ttl=64)
        / TCP(sport=50001, dport=40001, seq=123456789, ack=987654321, flags="PA", window=501)
        / Raw(lab_payload(8)),
        IP(src="10.0.0.1", dst="10.0.0.2", proto=253) / Raw(lab_payload(9, b"raw")),
        IP(src="192.168.1.1", dst="10.0.0.2", flags="DF") / TCP(flags="S", options=[("MSS", 1460)]),
        IP(src="10.0.0.3", dst="10.0.0.4") / UDP(sport=1, dport=2) / Raw(b"ab"),  # < 4 bytes
        IPv6(src="2001:db8::1", dst="fe80::2", hlim=7)
        / UDP(sport=3, dport=4)
        / Raw(lab_payload(10)),
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop()
        / TCP(sport=5, dport=6, seq=77, flags="A"),
        IP(src="10.0.0.5", dst="10.0.0.6", proto=1) / Raw(b"\x08\x00" + b"\x00" * 6),  # ICMP
    ]


def scapy_fields(pkt: Packet) -> dict[str, Any]:
    """The reference: what scapy's dissection says about each field."""
    ip = pkt[IP] if IP in pkt else pkt[IPv6]
    v4 = IP in pkt
    out: dict[str, Any] = {
        "ip_version": 4 if v4 else 6,
        "src": int.from_bytes(bytes(map(int, ip.src.split("."))), "big") if v4 else None,
        "dst": int.from_bytes(bytes(map(int, ip.dst.split("."))), "big") if v4 else None,
        "ip_id": ip.id if v4 else None,
        "ip_len": ip.len if v4 else ip.plen + 40,
        "ttl": ip.ttl if v4 else ip.hlim,
        "sport": None,
        "dport": None,
        "tcp_seq": None,
        "tcp_ack": None,
        "tcp_flags": None,
        "tcp_window": None,
        "udp_len": None,
        "lab_seq": None,
    }
    if TCP in pkt:
        tcp = pkt[TCP]
        out |= {
            "proto": 6,
            "sport": tcp.sport,
            "dport": tcp.dport,
            "tcp_seq": tcp.seq,
            "tcp_ack": tcp.ack,
            "tcp_flags": int(tcp.flags),
            "tcp_window": tcp.window,
            "payload_len": len(tcp.payload),
        }
    elif UDP in pkt:
        udp = pkt[UDP]
        data = bytes(udp.payload)
        out |= {
            "proto": 17,
            "sport": udp.sport,
            "dport": udp.dport,
            "udp_len": udp.len,
            "payload_len": len(data),
            "lab_seq": struct.unpack("!I", data[:4])[0] if len(data) >= 4 else None,
        }
    else:
        data = bytes(ip.payload)
        out |= {"proto": ip.proto, "payload_len": len(data)}
        if ip.proto == 253:
            out["lab_seq"] = struct.unpack("!I", data[:4])[0]
    return out


def row_fields(frame: PcapFrame, i: int) -> dict[str, Any]:
    row = frame.packets.iloc[i]
    return {k: (None if pd.isna(row[k]) else int(row[k])) for k in scapy_fields_keys()}


def scapy_fields_keys() -> list[str]:
    return list(scapy_fields(IP() / UDP() / Raw(b"abcd")))


def rebuilt(pkts: Sequence[Packet]) -> list[Packet]:
    """Packets as they are on the wire (lengths and checksums filled in)."""
    return [p.__class__(bytes(p)) for p in pkts]


# --------------------------------------------------------------------------- fields vs scapy


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nanosecond", [True, False])
def test_raw_linktype_fields_match_scapy(tmp_path: Path, order: str, nanosecond: bool) -> None:
    pkts = rebuilt(mixed_packets())
    path = write_pcap(
        tmp_path / "raw.pcap", [bytes(p) for p in pkts], order=order, nanosecond=nanosecond
    )
    frame = read_pcap(path)
    assert frame.linktype == 101 and frame.nanosecond == nanosecond
    assert len(frame.packets) == len(pkts) and frame.skipped == 0
    for i, pkt in enumerate(pkts):
        assert row_fields(frame, i) == scapy_fields(pkt), f"packet {i}: {pkt.summary()}"
    step = 1000
    expected_ts = [T0_NS + i * step for i in range(len(pkts))]
    if not nanosecond:
        expected_ts = [t // 1000 * 1000 for t in expected_ts]
    assert frame.packets["ts_ns"].tolist() == expected_ts
    assert frame.packets["frame"].tolist() == list(range(1, len(pkts) + 1))
    assert (frame.packets["caplen"] == frame.packets["wirelen"]).all()


def test_ethernet_vlan_and_non_ip_frames(tmp_path: Path) -> None:
    ip_pkts = rebuilt(mixed_packets()[:3])
    frames = [
        Ether() / ip_pkts[0],
        Ether() / ARP(),  # skipped: not IP
        Ether() / Dot1Q(vlan=10) / ip_pkts[1],
        Ether() / Dot1AD(vlan=20) / Dot1Q(vlan=30) / ip_pkts[2],
        Ether(type=0x88CC) / Raw(b"\x00" * 30),  # LLDP: skipped
    ]
    path = tmp_path / "eth.pcap"
    wrpcap(str(path), frames)  # scapy's own writer: little-endian, microseconds
    frame = read_pcap(path)
    assert frame.linktype == 1 and not frame.nanosecond
    assert frame.stats.reasons["non_ip"] == 2 and frame.skipped == 2
    assert frame.packets["frame"].tolist() == [1, 3, 4]
    for i, pkt in enumerate(ip_pkts):
        assert row_fields(frame, i) == scapy_fields(pkt)


def test_linux_cooked_capture(tmp_path: Path) -> None:
    pkts = rebuilt(mixed_packets()[:2])
    path = tmp_path / "sll.pcap"
    wrpcap(str(path), [CookedLinux(proto=0x0800) / p for p in pkts])
    frame = read_pcap(path)
    assert frame.linktype == 113
    for i, pkt in enumerate(pkts):
        assert row_fields(frame, i) == scapy_fields(pkt)


@pytest.mark.parametrize("linktype", [228, 229, 12])
def test_ip_only_linktypes(tmp_path: Path, linktype: int) -> None:
    pkts = rebuilt([p for p in mixed_packets() if (IPv6 in p) == (linktype == 229)])
    path = write_pcap(tmp_path / "l.pcap", [bytes(p) for p in pkts], linktype=linktype)
    frame = read_pcap(path)
    assert [row_fields(frame, i) for i in range(len(pkts))] == [scapy_fields(p) for p in pkts]


def test_null_linktype_both_host_orders(tmp_path: Path) -> None:
    pkt = rebuilt(mixed_packets()[:1])[0]
    frames = [struct.pack("<I", 2) + bytes(pkt), struct.pack(">I", 2) + bytes(pkt)]
    frame = read_pcap(write_pcap(tmp_path / "n.pcap", frames, linktype=0))
    assert len(frame.packets) == 2
    assert frame.packets["lab_seq"].tolist() == [7, 7]


def test_unknown_linktype_yields_no_rows(tmp_path: Path) -> None:
    frame = read_pcap(write_pcap(tmp_path / "u.pcap", [b"\x45" + b"\x00" * 40], linktype=147))
    assert frame.packets.empty and frame.stats.reasons["non_ip"] == 1


def test_ipv6_fragment_header_hides_later_fragments(tmp_path: Path) -> None:
    first = IPv6() / IPv6ExtHdrFragment(offset=0, m=1, nh=17) / UDP(sport=9, dport=10)
    later = IPv6() / IPv6ExtHdrFragment(offset=100, nh=17) / Raw(b"\x00" * 16)
    frame = read_pcap(write_pcap(tmp_path / "f6.pcap", [bytes(first), bytes(later)]))
    assert frame.packets["proto"].tolist() == [17, 17]
    assert frame.packets["sport"].tolist()[0] == 9
    assert pd.isna(frame.packets["sport"].iloc[1])


def test_ipv4_later_fragment_has_no_ports(tmp_path: Path) -> None:
    frag = IP(flags="MF", frag=10, proto=17) / Raw(b"\x00" * 16)
    frame = read_pcap(write_pcap(tmp_path / "f4.pcap", [bytes(frag)]))
    assert pd.isna(frame.packets["sport"].iloc[0]) and pd.isna(frame.packets["lab_seq"].iloc[0])


def test_address_strings(tmp_path: Path) -> None:
    pkts = rebuilt(mixed_packets())
    frame = read_pcap(write_pcap(tmp_path / "a.pcap", [bytes(p) for p in pkts]))
    src = frame.address_strings("src").tolist()
    dst = frame.address_strings("dst").tolist()
    assert src == [p[IP].src if IP in p else p[IPv6].src for p in pkts]
    assert dst == [p[IP].dst if IP in p else p[IPv6].dst for p in pkts]


def test_snaplen_cut_packets_keep_header_lengths(tmp_path: Path) -> None:
    pkts = rebuilt(mixed_packets()[:2])
    frame = read_pcap(write_pcap(tmp_path / "s.pcap", [bytes(p) for p in pkts], caplen=30))
    udp, tcp = frame.packets.iloc[0], frame.packets.iloc[1]
    assert (udp["caplen"], udp["wirelen"]) == (30, len(pkts[0]))
    assert udp["sport"] == 40000 and udp["payload_len"] == 36  # from the IP/UDP lengths
    assert pd.isna(udp["lab_seq"])  # its bytes were not captured
    assert pd.isna(tcp["tcp_seq"]) and tcp["ip_id"] == 9  # TCP header cut short


def test_dtypes_are_compact(tmp_path: Path) -> None:
    frame = read_pcap(write_pcap(tmp_path / "d.pcap", [bytes(p) for p in mixed_packets()]))
    dtypes = frame.packets.dtypes.astype(str).to_dict()
    assert dtypes["ts_ns"] == "int64" and dtypes["caplen"] == "uint32"
    assert dtypes["src"] == "UInt32" and dtypes["sport"] == "UInt16"
    assert dtypes["lab_seq"] == "UInt32" and dtypes["proto"] == "uint8"


# --------------------------------------------------------------------------- walking and chunks


def many_frames(count: int, *, mixed: bool) -> list[bytes]:
    out = []
    for i in range(count):
        extra = b"y" * ((i * 37) % 300 if mixed else 10)
        out.append(bytes(IP(id=i) / UDP(sport=1, dport=2) / Raw(lab_payload(i, extra))))
    return out


@pytest.mark.parametrize("mixed", [True, False])
@pytest.mark.parametrize("chunk", [64, 1000, 4096])
def test_chunking_does_not_change_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mixed: bool, chunk: int
) -> None:
    path = write_pcap(tmp_path / "m.pcap", many_frames(300, mixed=mixed))
    whole = read_pcap(path)
    monkeypatch.setattr(_reader, "_CHUNK", chunk)
    pieces = read_pcap(path)
    pd.testing.assert_frame_equal(whole.packets, pieces.packets)
    assert whole.packets["lab_seq"].tolist() == list(range(300))
    assert pieces.stats == whole.stats


def test_uniform_prefix_then_mixed_sizes(tmp_path: Path) -> None:
    frames = many_frames(200, mixed=False) + many_frames(50, mixed=True)
    frame = read_pcap(write_pcap(tmp_path / "u.pcap", frames))
    assert frame.packets["lab_seq"].tolist() == list(range(200)) + list(range(50))


def test_empty_capture_has_the_columns(tmp_path: Path) -> None:
    frame = read_pcap(write_pcap(tmp_path / "e.pcap", []))
    assert frame.packets.empty and frame.stats.records == 0
    assert "lab_seq" in frame.packets.columns and "ts_ns" in frame.packets.columns


# --------------------------------------------------------------------------- damage


@pytest.fixture
def valid_pcap(tmp_path: Path) -> Path:
    return write_pcap(tmp_path / "v.pcap", [bytes(p) for p in rebuilt(mixed_packets())])


def test_truncated_last_record_is_skipped_and_reported(valid_pcap: Path, tmp_path: Path) -> None:
    data = valid_pcap.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-5])
    frame = read_pcap(cut)
    n = len(mixed_packets())
    assert len(frame.packets) == n - 1
    assert frame.stats.truncated_tail and frame.stats.reasons["truncated"] == 1
    assert frame.stats.records == n and frame.skipped == 1


def test_partial_record_header_is_skipped(valid_pcap: Path, tmp_path: Path) -> None:
    partial = tmp_path / "p.pcap"
    partial.write_bytes(valid_pcap.read_bytes() + b"\x01\x02\x03")
    frame = read_pcap(partial)
    assert len(frame.packets) == len(mixed_packets())
    assert frame.stats.truncated_tail and frame.skipped == 1


def test_impossible_record_length_stops_the_walk(valid_pcap: Path, tmp_path: Path) -> None:
    data = bytearray(valid_pcap.read_bytes())
    first_len = struct.unpack_from("<I", data, 24 + 8)[0]
    second = 24 + 16 + first_len
    struct.pack_into("<I", data, second + 8, 0xFFFFFFF0)
    bad = tmp_path / "g.pcap"
    bad.write_bytes(bytes(data))
    frame = read_pcap(bad)
    assert len(frame.packets) == 1
    assert frame.stats.garbage_offset == second
    assert frame.stats.reasons["garbage"] == 1


def test_garbage_ip_headers_are_skipped(tmp_path: Path) -> None:
    frames = [b"", b"\x45", b"\x41" + b"\x00" * 30, b"\x75" + b"\x00" * 40, b"\x60" + b"\x00" * 10]
    frame = read_pcap(write_pcap(tmp_path / "b.pcap", frames))
    assert frame.packets.empty and frame.stats.reasons["bad_ip"] == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "only 6 bytes"),
        (b"\x00" * 24, "magic number 00000000"),
        (b"\x0a\x0d\x0d\x0a" + b"\x00" * 40, "not a pcapng file"),
        (b"\x0a\x0d\x0d\x0a" + b"\x00" * 10, "not a pcapng file"),
    ],
)
def test_not_a_pcap_is_an_analysis_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(AnalysisError, match=message):
        read_pcap(path)


def test_unreadable_paths_are_analysis_errors(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match="cannot read"):
        read_pcap(tmp_path / "missing.pcap")
    with pytest.raises(AnalysisError, match="cannot read"):
        read_pcap(tmp_path)


# --------------------------------------------------------------------------- fuzzing


def _read_or_analysis_error(path: Path) -> PcapFrame | None:
    try:
        frame = read_pcap(path)
    except AnalysisError:
        return None
    stats = frame.stats
    assert stats.packets == len(frame.packets)
    assert stats.records == stats.packets + stats.skipped
    assert stats.skipped == sum(stats.reasons.values())
    assert frame.ipv6_rows.size == int((frame.packets["ip_version"] == 6).sum())
    frame.address_strings("src")
    return frame


_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_VALID = b"".join(
    [
        struct.pack("<IHHiIII", MAGIC_NS, 2, 4, 0, 0, 262144, 101),
        *(
            struct.pack("<IIII", 1, i, len(b), len(b)) + b
            for i, b in enumerate(bytes(p) for p in rebuilt(mixed_packets()))
        ),
    ]
)
_HEADERS = [
    struct.pack(o + "IHHiIII", m, 2, 4, 0, 0, 65535, lt)
    for o in "<>"
    for m in (MAGIC_US, MAGIC_NS)
    for lt in (0, 1, 101, 113, 228, 229, 276)
]


@_FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes(tmp_path_factory: pytest.TempPathFactory, blob: bytes) -> None:
    path = tmp_path_factory.mktemp("fz") / "r.pcap"
    path.write_bytes(blob)
    _read_or_analysis_error(path)


@_FUZZ
@given(st.sampled_from(_HEADERS), st.binary(max_size=3000))
def test_fuzz_valid_header_random_records(
    tmp_path_factory: pytest.TempPathFactory, header: bytes, body: bytes
) -> None:
    path = tmp_path_factory.mktemp("fz") / "h.pcap"
    path.write_bytes(header + body)
    assert _read_or_analysis_error(path) is not None


@_FUZZ
@given(st.integers(0, len(_VALID)))
def test_fuzz_truncations(tmp_path_factory: pytest.TempPathFactory, length: int) -> None:
    path = tmp_path_factory.mktemp("fz") / "t.pcap"
    path.write_bytes(_VALID[:length])
    frame = _read_or_analysis_error(path)
    if length >= 24:
        assert frame is not None


@_FUZZ
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(1, 255)), max_size=8))
def test_fuzz_flipped_bytes(
    tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(_VALID)
    for pos, mask in flips:
        data[pos] ^= mask
    path = tmp_path_factory.mktemp("fz") / "f.pcap"
    path.write_bytes(bytes(data))
    _read_or_analysis_error(path)


def test_every_truncation_of_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    counts = []
    for length in range(24, len(_VALID) + 1):
        path.write_bytes(_VALID[:length])
        frame = read_pcap(path)
        counts.append(len(frame.packets))
        assert frame.stats.truncated_tail == (length not in _record_ends())
    assert counts == sorted(counts) and counts[-1] == len(mixed_packets())


def _record_ends() -> set[int]:
    ends, off = {24}, 24
    while off < len(_VALID):
        off += 16 + struct.unpack_from("<I", _VALID, off + 8)[0]
        ends.add(off)
    return ends


# --------------------------------------------------------------------------- pcapng fuzzing


def _valid_pcapng() -> bytes:
    """Two sections (both byte orders), interfaces of several link types and clocks,
    every packet block kind, blocks to skip."""
    frames = [bytes(p) for p in rebuilt(mixed_packets())]
    ng = Pcapng()
    ng.section("<")
    ng.interface(101, tsresol=9)
    ng.interface(1, snaplen=64)
    for i, b in enumerate(frames):
        ng.packet(b, T0_NS + i)
        ng.packet(bytes(Ether(type=0x0800)) + b, i, iface=1)
    ng.others()
    ng.simple(frames[0])
    ng.section(">")
    ng.interface(101, tsresol=0x80 | 20, tsoffset=-5)
    for i, b in enumerate(frames):
        ng.obsolete(b, i)
        ng.simple(b)
    return ng.data


_VALID_NG = _valid_pcapng()
_NG_HEADERS = []
for _order in "<>":
    for _lt in (0, 1, 101, 113, 147, 228, 229, 276):
        _ng = Pcapng()
        _ng.section(_order)
        _ng.interface(_lt, tsresol=9 if _lt % 2 else None)
        _NG_HEADERS.append(_ng.data)


def _read_ng(path: Path, chunk: int = 0) -> PcapFrame | None:
    """Read (only AnalysisError may escape); with ``chunk``, also read in chunks of
    that size, which must change nothing."""
    frame = _read_or_analysis_error(path)
    if frame is not None:
        assert frame.file_format == "pcapng"
        assert frame.stats.untimed <= frame.stats.records
    if frame is not None and chunk:
        saved = _reader._CHUNK
        _reader._CHUNK = chunk
        try:
            again = read_pcap(path)
        finally:
            _reader._CHUNK = saved
        pd.testing.assert_frame_equal(frame.packets, again.packets)
        assert frame.stats == again.stats
    return frame


@_FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_pcapng_magic_then_random_bytes(
    tmp_path_factory: pytest.TempPathFactory, blob: bytes
) -> None:
    path = tmp_path_factory.mktemp("fz") / "r.pcapng"
    path.write_bytes(b"\x0a\x0d\x0d\x0a" + blob)
    _read_or_analysis_error(path)


@_FUZZ
@given(st.sampled_from(_NG_HEADERS), st.binary(max_size=3000))
def test_fuzz_pcapng_valid_header_random_blocks(
    tmp_path_factory: pytest.TempPathFactory, header: bytes, body: bytes
) -> None:
    path = tmp_path_factory.mktemp("fz") / "h.pcapng"
    path.write_bytes(header + body)
    assert _read_ng(path) is not None


_BLOCK_KINDS = st.sampled_from([0x0A0D0D0A, IDB, PB, SPB, NRB, ISB, EPB, DSB, CUSTOM, 99])


@_FUZZ
@given(
    st.sampled_from(_NG_HEADERS),
    st.lists(
        st.tuples(
            _BLOCK_KINDS,
            st.binary(max_size=120),
            st.one_of(st.none(), st.integers(0, 300)),
        ),
        max_size=12,
    ),
)
def test_fuzz_pcapng_block_sequences(
    tmp_path_factory: pytest.TempPathFactory,
    header: bytes,
    blocks: list[tuple[int, bytes, int | None]],
) -> None:
    """Well-formed framing around random bodies (sometimes a wrong length): the walk
    reaches every block kind with nonsense inside."""
    ng = Pcapng()
    ng.order = "<" if header[8:12] == bytes.fromhex("4d3c2b1a") else ">"
    ng.out += header
    for kind, body, length in blocks:
        ng.block(kind, body, length=length)
    path = tmp_path_factory.mktemp("fz") / "b.pcapng"
    path.write_bytes(ng.data)
    assert _read_ng(path, chunk=64) is not None


@_FUZZ
@given(st.integers(0, len(_VALID_NG)))
def test_fuzz_pcapng_truncations(tmp_path_factory: pytest.TempPathFactory, length: int) -> None:
    path = tmp_path_factory.mktemp("fz") / "t.pcapng"
    path.write_bytes(_VALID_NG[:length])
    frame = _read_ng(path)
    if length >= 28:
        assert frame is not None


@_FUZZ
@given(st.lists(st.tuples(st.integers(0, len(_VALID_NG) - 1), st.integers(1, 255)), max_size=8))
def test_fuzz_pcapng_flipped_bytes(
    tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(_VALID_NG)
    for pos, mask in flips:
        data[pos] ^= mask
    path = tmp_path_factory.mktemp("fz") / "f.pcapng"
    path.write_bytes(bytes(data))
    _read_ng(path, chunk=100)


def test_valid_pcapng_fuzz_seed_reads_whole(tmp_path: Path) -> None:
    path = tmp_path / "v.pcapng"
    path.write_bytes(_VALID_NG)
    frame = read_pcap(path)
    n = len(mixed_packets())
    assert len(frame.packets) == 4 * n + 1 and frame.skipped == 0
    assert frame.stats.untimed == n + 1


def test_large_random_capture_matches_numpy_reference(tmp_path: Path) -> None:
    """1,000 UDP packets of random sizes: every lab_seq and length comes back."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(0, 500, 1000)
    frames = [
        bytes(IP(id=i % 65536) / UDP(sport=7, dport=8) / Raw(lab_payload(i, b"z" * int(s))))
        for i, s in enumerate(sizes)
    ]
    frame = read_pcap(write_pcap(tmp_path / "big.pcap", frames))
    assert frame.packets["lab_seq"].tolist() == list(range(1000))
    assert frame.packets["payload_len"].tolist() == [16 + int(s) for s in sizes]
    assert frame.packets["udp_len"].tolist() == [24 + int(s) for s in sizes]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_fields_match_tshark(tmp_path: Path) -> None:
    """Second opinion on the same file: Wireshark's dissectors."""
    pkts = rebuilt(mixed_packets())
    path = write_pcap(tmp_path / "ts.pcap", [bytes(p) for p in pkts])
    fields = ["ip.id", "ip.ttl", "tcp.srcport", "udp.srcport", "tcp.seq_raw", "tcp.ack_raw"]
    cmd = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=,"]
    for name in fields:
        cmd += ["-e", name]
    lines = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    frame = read_pcap(path).packets
    assert len(lines) == len(frame)
    for line, (_, row) in zip(lines, frame.iterrows(), strict=True):
        ip_id, ttl, tcp_port, udp_port, seq, ack = line.split(",")
        if ip_id:
            assert int(ip_id, 0) == row["ip_id"]
        if ttl:
            assert int(ttl) == row["ttl"]
        port = tcp_port or udp_port
        assert (int(port) if port else None) == (None if pd.isna(row["sport"]) else row["sport"])
        if seq:
            assert (int(seq), int(ack)) == (row["tcp_seq"], row["tcp_ack"])
