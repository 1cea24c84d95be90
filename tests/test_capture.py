"""Tests of lab.capture: the pcap format, the flow tally, and (as root) real captures.

The root tests use the lab's veth testbed (namespaces ``lab-capt-c`` / ``lab-capt-s``
joined by a plain veth pair, 198.18.0.1 - .2) plus a TUN device in ``lab-capt-c``
(198.18.101.1/30) whose file descriptor the test holds, so writing raw IPv4 packets to
it injects them into that namespace. Everything is removed afterwards, even on failure.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from lab.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW, Sniffer, count_records, read_header
from lab.capture._linux import FilterError, call_in_netns, compile_bpf
from lab.capture.flows import FlowTable, packet_key
from lab.cli._sniff import PRIVILEGE_MESSAGE
from lab.errors import AnalysisError, CaptureError
from lab.pcap import file_header, iter_records, record_header
from lab.testbed import (
    CLIENT_ADDRESS,
    LINK_INTERFACE,
    SERVER_ADDRESS,
    namespace_names,
    open_veth_testbed,
)

REPO = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)  # the interpreter running the tests (the venv one)
IS_ROOT = os.geteuid() == 0

RUN_ID = "capt"
NS_A, NS_B = namespace_names(RUN_ID)
VETH_A = VETH_B = LINK_INTERFACE  # the same name at both ends, one in each namespace
TUN = "lab-capt-tun"
ADDR_A, ADDR_B = CLIENT_ADDRESS, SERVER_ADDRESS
TUN_ADDR, TUN_PEER = "198.18.101.1", "198.18.101.2"

F = TypeVar("F", bound=Callable[..., object])


def root_only(test: F) -> F:
    """``requires_root``, and skipped here and now unless we are root."""
    skip = pytest.mark.skipif(not IS_ROOT, reason="needs root (namespaces, packet sockets)")
    marked: F = pytest.mark.requires_root(skip(test))
    return marked


TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


# --------------------------------------------------------------------------- helpers
def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A raw IPv4/UDP packet (UDP checksum 0: allowed for IPv4)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    head = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        0,
        0x4000,
        64,
        17,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    words = struct.unpack("!10H", head)
    csum = sum(words)
    csum = (csum & 0xFFFF) + (csum >> 16)
    csum = (csum & 0xFFFF) + (csum >> 16)
    head = head[:10] + struct.pack("!H", ~csum & 0xFFFF) + head[12:]
    return head + udp


@dataclass
class Testbed:
    __test__ = False  # not a test class

    tun_fd: int

    @staticmethod
    def udp_socket(ns: str) -> socket.socket:
        return call_in_netns(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))


def _open_tun() -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", TUN.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    os.set_blocking(fd, False)
    return fd


@pytest.fixture(scope="module")
def testbed() -> Iterator[Testbed]:
    with open_veth_testbed(run_id=RUN_ID):
        tun_fd = call_in_netns(NS_A, _open_tun)
        try:
            _ip("-n", NS_A, "addr", "add", f"{TUN_ADDR}/30", "dev", TUN)
            _ip("-n", NS_A, "link", "set", TUN, "up")
            yield Testbed(tun_fd)
        finally:
            os.close(tun_fd)


def _tcpdump_count(path: Path) -> int:
    proc = subprocess.run(["tcpdump", "-nr", str(path)], capture_output=True, text=True, check=True)
    return len(proc.stdout.splitlines())


def _tshark_count(path: Path) -> int:
    proc = subprocess.run(
        ["tshark", "-n", "-r", str(path)], capture_output=True, text=True, check=True
    )
    return len(proc.stdout.splitlines())


# --------------------------------------------------------------------------- no root
def test_pcap_header_and_records_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    packets = [(1_700_000_000, 123_456_789, b"\x45" + bytes(27)), (1_700_000_001, 5, b"ab")]
    with path.open("wb") as f:
        f.write(file_header(65535, LINKTYPE_RAW))
        for sec, nsec, data in packets:
            f.write(record_header(sec, nsec, len(data), len(data) + 10))
            f.write(data)
    info = read_header(path)
    assert (info.linktype, info.snaplen, info.nanosecond) == (LINKTYPE_RAW, 65535, True)
    got = list(iter_records(path))
    assert got == [(s * 10**9 + ns, len(d) + 10, d) for s, ns, d in packets]
    with path.open("ab") as f:  # a half-written record is reported, not ignored
        f.write(record_header(1, 1, 100, 100) + b"short")
    with pytest.raises(AnalysisError, match="truncated"):
        count_records(path)


def test_not_a_pcap(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(b"not a pcap file at all, honestly")
    with pytest.raises(AnalysisError, match="not a classic pcap"):
        read_header(path)


def test_flow_keys_raw_and_ethernet() -> None:
    pkt = _ipv4_udp("198.18.0.1", "198.18.0.2", 1234, 53, b"hello")
    assert packet_key(pkt, LINKTYPE_RAW) == (
        4, 17, socket.inet_aton("198.18.0.1"), 1234, socket.inet_aton("198.18.0.2"), 53,
    )  # fmt: skip
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + pkt
    assert packet_key(eth, LINKTYPE_ETHERNET) == packet_key(pkt, LINKTYPE_RAW)
    arp = b"\xff" * 6 + b"\x04" * 6 + b"\x08\x06" + bytes(28)
    assert packet_key(arp, LINKTYPE_ETHERNET)[:2] == (0, 0x0806)
    assert packet_key(b"", LINKTYPE_RAW)[1] == -1
    table = FlowTable(LINKTYPE_RAW, max_flows=2)
    for sport in (1, 2, 3, 3):
        table.observe(_ipv4_udp("198.18.0.1", "198.18.0.2", sport, 53, b"x"), 29)
    protocols, flows, seen = table.snapshot(top=5)
    assert protocols == (("UDP", 4, 116),)
    assert seen == 3  # two flows, plus the per-protocol overflow row
    assert {(f.label(), f.packets) for f in flows} == {
        ("198.18.0.1:1 > 198.18.0.2:53", 1),
        ("198.18.0.1:2 > 198.18.0.2:53", 1),
        ("(other flows)", 2),
    }


def test_compile_bpf_sets_snaplen_and_rejects_bad_filters() -> None:
    code = compile_bpf("udp port 53", LINKTYPE_RAW, 1500)
    insns = [struct.unpack_from("=HBBI", code, i) for i in range(0, len(code), 8)]
    rets = [k for op, _jt, _jf, k in insns if op == 0x06]
    assert set(rets) == {0, 1500}
    assert compile_bpf(None, LINKTYPE_ETHERNET, 99) == struct.pack("=HBBI", 0x06, 0, 0, 99)
    with pytest.raises(FilterError, match="syntax error"):
        compile_bpf("tcp port", LINKTYPE_RAW, 1500)


def test_sniff_refuses_without_privilege() -> None:
    cmd = [str(PYTHON), "-m", "lab", "sniff", "-i", "lo"]
    if IS_ROOT:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    elif not os.access(PYTHON, os.X_OK):
        pytest.skip(f"{PYTHON} is not executable by this user")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert PRIVILEGE_MESSAGE in lines[0]


# --------------------------------------------------------------------------- root
def _send_udp(sock: socket.socket, dst: str, port: int, n: int, tag: bytes = b"lab") -> None:
    for i in range(n):
        sock.sendto(tag + i.to_bytes(4, "big"), (dst, port))


@root_only
def test_filtered_burst_is_captured_exactly(testbed: Testbed, tmp_path: Path) -> None:
    n, others = 500, 40
    sock = testbed.udp_socket(NS_A)
    ingress = tmp_path / "b.pcap"
    egress = tmp_path / "a.pcap"
    try:
        with (
            Sniffer(VETH_B, ingress, netns=NS_B, bpf="udp and dst port 40001") as rx,
            Sniffer(VETH_A, egress, netns=NS_A, bpf="udp") as tx,
        ):
            _send_udp(sock, ADDR_B, 40001, n)
            _send_udp(sock, ADDR_B, 40002, others)
        rx_stats, tx_stats = rx.stop(), tx.stop()
    finally:
        sock.close()
    assert (rx_stats.packets, rx_stats.kernel_drops) == (n, 0)
    assert rx_stats.kernel_packets == n
    assert (tx_stats.packets, tx_stats.kernel_drops) == (n + others, 0)
    assert rx_stats.linktype == LINKTYPE_ETHERNET
    assert rx_stats.started_ns < rx_stats.stopped_ns
    assert read_header(ingress).linktype == LINKTYPE_ETHERNET

    from scapy.layers.inet import UDP
    from scapy.utils import rdpcap

    pkts = rdpcap(str(ingress))
    assert len(pkts) == n
    assert all(p.haslayer(UDP) and p[UDP].dport == 40001 for p in pkts)
    payloads = [bytes(p[UDP].payload) for p in pkts]
    assert payloads == [b"lab" + i.to_bytes(4, "big") for i in range(n)]  # in order
    times = [ts for ts, _len, _data in iter_records(ingress)]
    assert times == sorted(times)
    assert rx_stats.started_ns <= times[0] and times[-1] <= rx_stats.stopped_ns
    assert _tcpdump_count(ingress) == n
    assert _tshark_count(ingress) == n
    assert _tcpdump_count(egress) == n + others


@root_only
def test_first_packet_after_start_is_captured(testbed: Testbed, tmp_path: Path) -> None:
    sock = testbed.udp_socket(NS_A)
    try:
        for i in range(5):
            path = tmp_path / f"race{i}.pcap"
            sniffer = Sniffer(VETH_B, path, netns=NS_B, bpf="udp port 40003")
            sniffer.start()
            sock.sendto(b"first", (ADDR_B, 40003))  # nothing between start() and this
            stats = sniffer.stop()
            assert stats.packets == 1, f"attempt {i}: {stats}"
            [(_ts, _len, data)] = list(iter_records(path))
            assert data.endswith(b"first")
    finally:
        sock.close()


@root_only
def test_tun_capture_is_raw_ip_both_directions(testbed: Testbed, tmp_path: Path) -> None:
    n = 100
    path = tmp_path / "tun.pcap"
    out_sock = testbed.udp_socket(NS_A)
    try:
        with Sniffer(TUN, path, netns=NS_A, bpf="udp") as sniffer:
            for i in range(n):  # inbound: injected through the TUN file descriptor
                os.write(testbed.tun_fd, _ipv4_udp(TUN_PEER, TUN_ADDR, 5000, 40004, b"in%d" % i))
            for i in range(n):  # outbound: routed out of the namespace through the TUN
                out_sock.sendto(b"out%d" % i, (TUN_PEER, 40005))
        stats = sniffer.stop()
    finally:
        out_sock.close()
        while select.select([testbed.tun_fd], [], [], 0)[0]:  # what the stack sent out
            os.read(testbed.tun_fd, 65536)
    assert (stats.packets, stats.kernel_drops, stats.linktype) == (2 * n, 0, LINKTYPE_RAW)
    assert read_header(path).linktype == LINKTYPE_RAW

    from scapy.layers.inet import IP, UDP
    from scapy.utils import rdpcap

    pkts = rdpcap(str(path))
    assert len(pkts) == 2 * n
    assert all(p.haslayer(IP) for p in pkts)
    assert sum(p[UDP].dport == 40004 for p in pkts) == n
    assert sum(p[UDP].dport == 40005 and p[IP].src == TUN_ADDR for p in pkts) == n
    assert _tcpdump_count(path) == 2 * n
    assert _tshark_count(path) == 2 * n


@root_only
def test_capture_holds_no_parent_fds_and_survives_a_vanishing_interface(
    testbed: Testbed, tmp_path: Path
) -> None:
    name = "lab-capt-tun2"

    def open_tun2() -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        return fd

    fd = call_in_netns(NS_A, open_tun2)
    try:
        _ip("-n", NS_A, "link", "set", name, "up")
        with Sniffer(name, tmp_path / "t.pcap", netns=NS_A) as sniffer:
            for i in range(3):
                os.write(fd, _ipv4_udp(TUN_PEER, TUN_ADDR, 1, 2, b"%d" % i))
            os.close(fd)  # the device goes away now, not when the capture ends
            fd = -1
            gone = subprocess.run(
                ["ip", "-n", NS_A, "link", "show", name], capture_output=True, check=False
            )
            assert gone.returncode != 0, "the capture process kept the TUN device alive"
        stats = sniffer.stop()
    finally:
        if fd >= 0:
            os.close(fd)
    assert stats.packets == 3
    assert count_records(tmp_path / "t.pcap") == 3


@root_only
def test_count_ends_the_capture(testbed: Testbed, tmp_path: Path) -> None:
    path = tmp_path / "count.pcap"
    sock = testbed.udp_socket(NS_A)
    try:
        sniffer = Sniffer(VETH_B, path, netns=NS_B, bpf="udp port 40006", count=10)
        sniffer.start()
        _send_udp(sock, ADDR_B, 40006, 50)
        assert sniffer.wait(10.0)
        stats = sniffer.stop()
    finally:
        sock.close()
    assert stats.packets == 10
    assert count_records(path) == 10


@root_only
def test_kernel_drops_are_reported(testbed: Testbed, tmp_path: Path) -> None:
    """A reader that stalls loses packets: the statistics must say how many."""
    n = 30_000
    path = tmp_path / "drops.pcap"
    sock = testbed.udp_socket(NS_A)
    sniffer = Sniffer(VETH_A, path, netns=NS_A, bpf="udp port 40009", ring_blocks=2)
    try:
        sniffer.start()
        assert sniffer.pid is not None
        os.kill(sniffer.pid, signal.SIGSTOP)  # the ring (2 MiB) fills up and overflows
        try:
            _send_udp(sock, ADDR_B, 40009, n)
        finally:
            os.kill(sniffer.pid, signal.SIGCONT)
        stats = sniffer.stop()
    finally:
        sock.close()
    assert stats.kernel_drops > 0
    assert stats.kernel_packets == n  # tp_packets counts the dropped ones too
    assert stats.packets + stats.kernel_drops == n
    assert count_records(path) == stats.packets


@root_only
def test_capture_errors(testbed: Testbed, tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"^interface 'lab-capt-nope' does not exist$"):
        Sniffer("lab-capt-nope", tmp_path / "x.pcap").start()
    with pytest.raises(CaptureError, match=rf"in network namespace '{NS_B}'"):
        Sniffer(TUN, None, netns=NS_B).start()  # exists in the other namespace only
    with pytest.raises(CaptureError, match=r"^bad capture filter 'tcp port': .*syntax error"):
        Sniffer(VETH_A, None, netns=NS_A, bpf="tcp port").start()
    with pytest.raises(CaptureError, match=r"^network namespace 'lab-capt-none' does not"):
        Sniffer("lo", None, netns="lab-capt-none").start()
    with pytest.raises(CaptureError, match=r"^cannot write capture file"):
        Sniffer(VETH_A, tmp_path / "no" / "dir.pcap", netns=NS_A).start()
    assert not Path("/run/netns/lab-capt-none").exists()  # never created by mistake


def _start_live_sniff(args: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [str(PYTHON), "-m", "lab", "sniff", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job is
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            line = proc.stderr.readline()
            if line.startswith("capturing on"):
                return proc
            if not line:
                break
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"lab sniff did not start: {out} {err}")


@root_only
def test_ctrl_c_leaves_a_complete_pcap(testbed: Testbed, tmp_path: Path) -> None:
    n = 300
    path = tmp_path / "live.pcap"
    sock = testbed.udp_socket(NS_A)
    proc = _start_live_sniff(
        ["-i", VETH_B, "--netns", NS_B, "-f", "udp port 40007", "-w", str(path)]
    )
    try:
        _send_udp(sock, ADDR_B, 40007, n)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        out, err = proc.communicate(timeout=30)
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert count_records(path) == n
    assert _tcpdump_count(path) == n
    assert f"{n} packets written to {path}" in out
    assert "UDP" in out  # the per-protocol summary (not a terminal: printed once)


@root_only
def test_live_sniff_count_and_errors(testbed: Testbed, tmp_path: Path) -> None:
    path = tmp_path / "count.pcap"
    sock = testbed.udp_socket(NS_A)
    proc = _start_live_sniff(
        ["-i", VETH_B, "--netns", NS_B, "-f", "udp port 40008", "-c", "7", "-w", str(path)]
    )
    try:
        _send_udp(sock, ADDR_B, 40008, 20)
        _out, err = proc.communicate(timeout=30)
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert count_records(path) == 7
    for args, message in (
        (["-i", "lab-capt-nope"], "lab: interface 'lab-capt-nope' does not exist"),
        (["-i", "lo", "-f", "udp port"], "lab: bad capture filter 'udp port': "),
    ):
        bad = subprocess.run(
            [str(PYTHON), "-m", "lab", "sniff", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert bad.returncode == 2
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), bad.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
