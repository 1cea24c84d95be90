"""``lab analyze FILE.pcap`` (lab.analysis.offline): flows of any capture, TCP and lab-UDP
figures, and damaged or foreign files that must end in one AnalysisError line at worst."""

from __future__ import annotations

import argparse
import json
import logging
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.analysis import offline
from lab.cli._analyze import register as register_analyze
from lab.errors import AnalysisError
from tests.test_wire import T0, ns, story_captures, write_pcap

logging.getLogger("scapy").setLevel(logging.ERROR)

from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.layers.l2 import ARP, Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402
from scapy.utils import wrpcap  # noqa: E402


def lab_udp(seq: int, src: str = "10.0.0.1", dst: str = "10.0.0.2") -> bytes:
    payload = struct.pack("!IIQ", seq, 48, T0) + bytes(32)
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst, id=seq)
    return bytes(ip / UDP(sport=40000, dport=50001) / Raw(payload))


def mixed_capture(tmp_path: Path) -> Path:
    """The TCP story (client side) + a lab UDP flow (6 lost, 3 late, 5 twice) + a DNS-like
    UDP flow + ICMP + a lab UDP flow over IPv6, interleaved in time."""
    client, _ = story_captures(tmp_path)
    data = client.read_bytes()[24:]
    records: list[tuple[int, bytes]] = []
    while data:
        sec, frac, cap, _ = struct.unpack_from("<IIII", data)
        records.append((sec * 10**9 + frac, data[16 : 16 + cap]))
        data = data[16 + cap :]
    for i, seq in enumerate([0, 1, 2, 4, 3, 5, 5, 7]):
        records.append((ns(1 + i), lab_udp(seq)))
    for i in range(3):
        dns = IP(src="10.0.0.9", dst="10.0.0.53") / UDP(sport=5353, dport=53) / Raw(b"\xab" * 30)
        records.append((ns(2 + i), bytes(dns)))
    records.append((ns(3), bytes(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())))
    for i in range(4):
        records.append((ns(4 + i), lab_udp(10 + i, "fd00::1", "fd00::2")))
    records.sort(key=lambda r: r[0])
    return write_pcap(tmp_path / "mixed.pcap", records)


def cli(args: list[str]) -> int:
    """``lab analyze`` through a parser built like lab.cli's."""
    parser = argparse.ArgumentParser(prog="lab")
    commands = parser.add_subparsers(dest="command", required=True)
    register_analyze(commands)
    parsed = parser.parse_args(["analyze", *args])
    result: int = parsed.handler(parsed)
    return result


def test_flows_of_a_mixed_capture(tmp_path: Path) -> None:
    report = offline.analyze_capture(mixed_capture(tmp_path))
    flows = {(r["proto"], r["a"], r["b_port"]): r for r in report.rows(None)}
    assert len(flows) == 5
    tcp = flows[("tcp", "198.18.0.1", 50000)]
    assert tcp["a_port"] == 55000 and tcp["packets"] == 12 + 9  # all of the client capture
    assert tcp["capture_at"] == "client"
    assert tcp["retransmissions"] == 2
    assert tcp["fast_retransmissions"] == 1
    assert tcp["dup_acks"] == 4 and tcp["out_of_order"] == 0
    assert tcp["handshake_rtt_ms"] == pytest.approx(10.02)
    assert tcp["karn_rtt_samples"] == 1 and tcp["karn_rtt_p50_ms"] == pytest.approx(10.05)
    # tshark's way: SYN 10.01, message 0 10.05, message 5 20.1 (from its first copy),
    # its spurious resend 10.05, FIN 10.05 (the client's ACKs time its own turnaround)
    assert tcp["ack_rtt_samples"] == 5 and tcp["ack_rtt_p50_ms"] == pytest.approx(10.05)
    lab = flows[("udp", "10.0.0.1", 50001)]
    assert lab["packets"] == 8 and lab["lab_seq_packets"] == 8
    assert (lab["lab_lost"], lab["lab_reordered"], lab["lab_duplicates"]) == (1, 1, 1)
    dns = flows[("udp", "10.0.0.9", 53)]
    assert dns["lab_lost"] is None  # its payload is no counter
    assert dns["retransmissions"] is None
    icmp = flows[("icmp", "10.0.0.1", None)]
    assert icmp["packets"] == 1 and icmp["a_port"] is None
    v6 = flows[("udp", "fd00::1", 50001)]
    assert v6["b"] == "fd00::2" and v6["lab_lost"] == 0 and v6["packets"] == 4
    assert report.stats.skipped == 0


def test_bidirectional_flow_and_initiator(tmp_path: Path) -> None:
    """Both directions are one flow; "a" is whoever sent the SYN, even if seen second."""
    syn_ack = IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=4000, flags="SA")
    syn = IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=4000, dport=80, flags="S")
    path = write_pcap(tmp_path / "b.pcap", [(T0, bytes(syn_ack)), (T0 + 5, bytes(syn))])
    (row,) = offline.analyze_capture(path).rows()
    assert (row["a"], row["a_port"], row["b"], row["b_port"]) == ("10.0.0.1", 4000, "10.0.0.2", 80)
    assert row["packets_ab"] == 1 and row["packets_ba"] == 1


def test_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli([str(mixed_capture(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "198.18.0.1:55000" in out and "[fd00::1]:40000" in out
    assert "5 flow(s)" in out
    assert "0 skipped" in out


def test_json_and_top(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli([str(mixed_capture(tmp_path)), "--json", "--top", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["flows_total"] == 5 and len(doc["flows"]) == 2
    assert doc["flows"][0]["bytes"] >= doc["flows"][1]["bytes"]
    assert doc["skipped"] == 0 and doc["linktype"] == 101
    assert cli([str(mixed_capture(tmp_path)), "--json", "--top", "0"]) == 0
    assert len(json.loads(capsys.readouterr().out)["flows"]) == 5
    with pytest.raises(AnalysisError, match="--top"):
        cli([str(mixed_capture(tmp_path)), "--top", "-1"])


def test_non_ip_frames_are_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "eth.pcap"
    frames = [
        Ether() / ARP(),
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / Raw(b"abcd"),
        Ether(type=0x88CC) / Raw(b"lldp"),
    ]
    wrpcap(str(path), frames)
    report = offline.analyze_capture(path)
    assert report.stats.reasons["non_ip"] == 2 and len(report.flows) == 1
    assert cli([str(path)]) == 0
    assert "non_ip: 2" in capsys.readouterr().out


def test_odd_link_type_gives_no_flows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_pcap(tmp_path / "user.pcap", [(T0, b"\x01\x02\x03" * 20)], linktype=147)
    assert cli([str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["flows"] == [] and doc["skipped_reasons"]["non_ip"] == 1


def test_truncated_capture_reports_the_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = mixed_capture(tmp_path).read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(whole[: len(whole) - 30])
    assert cli([str(path)]) == 0
    out = capsys.readouterr().out
    assert "truncated: 1" in out and "cut short" in out


def test_garbage_record_header_stops_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = bytearray(mixed_capture(tmp_path).read_bytes())
    whole[24 + 8 : 24 + 12] = struct.pack("<I", 0x7FFFFFFF)  # first record's caplen
    path = tmp_path / "garbage.pcap"
    path.write_bytes(bytes(whole))
    assert cli([str(path)]) == 0
    assert "garbage at byte 24" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\xd4\xc3\xb2", "only 3 bytes"),
        (b"\x0a\x0d\x0d\x0a" + bytes(40), "pcapng"),
        (b"GIF89a" + bytes(40), "magic number"),
        (bytes(range(256)) * 4, "magic number"),
    ],
)
def test_unsupported_files_are_one_line_errors(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(AnalysisError, match=message):
        cli([str(path)])


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match="cannot read"):
        cli([str(tmp_path / "nope.pcap")])
    with pytest.raises(AnalysisError, match="cannot read"):
        cli([str(tmp_path)])


def _valid_capture() -> bytes:
    records = [(ns(i), lab_udp(i)) for i in range(4)]
    records += [
        (ns(5), bytes(IP(src="10.0.0.1", dst="10.0.0.2", id=7) / TCP(flags="S", seq=5))),
        (ns(6), bytes(IP(src="10.0.0.2", dst="10.0.0.1") / TCP(flags="SA", sport=80, dport=20))),
        (ns(7), bytes(IPv6(src="::1", dst="::2") / TCP(flags="A") / Raw(b"x" * 9))),
    ]
    out = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 101))
    for ts, data in records:
        out += struct.pack("<IIII", ts // 10**9, ts % 10**9, len(data), len(data)) + data
    return bytes(out)


VALID = _valid_capture()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    edits=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=12),
    cut=st.integers(0, len(VALID)),
    json_out=st.booleans(),
)
def test_fuzzed_captures_never_crash(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edits: list[tuple[int, int]],
    cut: int,
    json_out: bool,
) -> None:
    data = bytearray(VALID)
    for at, value in edits:
        data[at] = value
    path = tmp_path / "fuzz.pcap"
    path.write_bytes(bytes(data[:cut]))
    try:
        status = cli([str(path), *(["--json"] if json_out else [])])
    except AnalysisError as error:
        assert "\n" not in str(error)
    else:
        assert status == 0
        out = capsys.readouterr().out
        if json_out:
            json.loads(out)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(min_size=0, max_size=600))
def test_random_bytes_after_a_valid_header(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "tail.pcap"
    path.write_bytes(VALID[:24] + tail)
    try:
        report = offline.analyze_capture(path)
    except AnalysisError:
        return
    assert report.stats.records == report.stats.packets + report.stats.skipped


def test_registered_in_the_lab_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``lab analyze`` through lab.cli.main once the lead has registered it."""
    from lab import cli as lab_cli

    parser = lab_cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "analyze" not in commands.choices:
        pytest.fail("lab.cli does not register `analyze`")
    assert lab_cli.main(["analyze", str(mixed_capture(tmp_path))]) == 0
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"nope" * 10)
    assert lab_cli.main(["analyze", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "magic number" in err
