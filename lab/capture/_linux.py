"""Linux plumbing for the capture: AF_PACKET constants, setns, BPF, the TPACKET_V3 ring.

Nothing here dissects a packet. The ring is the kernel's PACKET_MMAP interface, version
3: the kernel fills fixed-size blocks of packets in a shared memory area and hands a
block to user space once it is full or its retire timer expires, so the reader makes
one system call per block instead of one per packet.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import mmap
import os
import re
import shutil
import socket
import struct
import subprocess
from collections.abc import Callable
from typing import TypeVar

from lab._netns import call_in, enter
from lab.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, RECORD_HEADER

T = TypeVar("T")

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
CLONE_NEWNET = 0x40000000

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40

#: Where `ip netns` keeps its named namespaces.

_BPF_RET_K = 0x06
_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_REQ3 = struct.Struct("=7I")  # struct tpacket_req3
_BLOCK_HDR = struct.Struct("=III")  # block_status, num_pkts, offset_to_first_pkt (at +8)
_BLOCK_STATUS_OFFSET = 8
#: struct tpacket3_hdr up to tp_mac, then hv1 (rxhash / vlan tci, vlan tpid).
_PKT_HDR = struct.Struct("=IIIIIIHH")
_PKT_VLAN = struct.Struct("=IHH")  # at +32: tp_rxhash|tp_vlan_tci (u32), tp_vlan_tpid, pad
_STATS3 = struct.Struct("=III")  # tpacket_stats_v3: tp_packets, tp_drops, tp_freeze_q_cnt


def _insert_vlan(
    mm: mmap.mmap, off: int, status: int, data: bytes, *, snap: int, plen: int
) -> tuple[bytes, int, int]:
    """Put back the 802.1Q tag the NIC / kernel stripped (Ethernet only), as libpcap does."""
    if len(data) < 12:
        return data, snap, plen
    tci_word, tpid, _pad = _PKT_VLAN.unpack_from(mm, off + 32)
    if not status & TP_STATUS_VLAN_TPID_VALID:
        tpid = 0x8100
    tag = struct.pack("!HH", tpid, tci_word & 0xFFFF)
    return data[:12] + tag + data[12:], snap + 4, plen + 4


class FilterError(Exception):
    """libpcap / tcpdump refused a filter expression; the message is its reason."""


setns = enter  # the lab's one way into a namespace (lab._netns)
call_in_netns = call_in


def _scapy_compile(expr: str, linktype: int) -> bytes:
    # Imported late: only a capture with a filter needs scapy (and libpcap).
    from scapy.arch.common import compile_filter, free_filter  # noqa: PLC0415
    from scapy.error import Scapy_Exception  # noqa: PLC0415

    try:
        prog = compile_filter(expr, linktype=linktype)
    except Scapy_Exception as exc:
        text = str(exc)
        match = re.search(r"\((.*)\)\s*$", text)
        raise FilterError(match.group(1) if match else text) from None
    try:
        return ctypes.string_at(prog.bf_insns, prog.bf_len * _INSN.size)
    finally:
        free_filter(prog)


def _tcpdump_compile(expr: str, linktype: int) -> bytes:
    tcpdump = shutil.which("tcpdump") or "/usr/bin/tcpdump"
    dlt = {LINKTYPE_RAW: "RAW", LINKTYPE_ETHERNET: "EN10MB"}[linktype]
    proc = subprocess.run(
        [tcpdump, "-ddd", "-y", dlt, expr], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "rejected"
        raise FilterError(reason.removeprefix("tcpdump: "))
    lines = proc.stdout.split("\n")
    count = int(lines[0])
    out = bytearray()
    for line in lines[1 : 1 + count]:
        code, jt, jf, k = (int(x) for x in line.split())
        out += _INSN.pack(code, jt, jf, k & 0xFFFFFFFF)
    return bytes(out)


def preload_filter_compiler() -> None:
    """Import scapy's filter compiler now (a forked child then inherits it, already loaded)."""
    with contextlib.suppress(ImportError):
        import scapy.arch.common  # noqa: F401, PLC0415


def compile_bpf(expr: str | None, linktype: int, snaplen: int) -> bytes:
    """Classic BPF bytecode (packed ``struct sock_filter`` array) for ``expr``.

    Without an expression the program accepts everything. Every accepting ``ret`` is set
    to ``snaplen``, so the kernel truncates packets to it, as libpcap does.
    """
    if not expr or not expr.strip():
        return _INSN.pack(_BPF_RET_K, 0, 0, snaplen)
    try:
        code = _scapy_compile(expr, linktype)
    except (ImportError, OSError):  # no libpcap through ctypes: ask tcpdump
        code = _tcpdump_compile(expr, linktype)
    out = bytearray(code)
    for off in range(0, len(out), _INSN.size):
        op, jt, jf, k = _INSN.unpack_from(out, off)
        if op == _BPF_RET_K and k != 0:
            _INSN.pack_into(out, off, op, jt, jf, snaplen)
    return bytes(out)


def attach_bpf(sock: socket.socket, code: bytes) -> None:
    """SO_ATTACH_FILTER: the kernel copies the program, the buffer may go after."""
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(code) // _INSN.size, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def read_stats(sock: socket.socket) -> tuple[int, int]:
    """PACKET_STATISTICS ``(tp_packets, tp_drops)`` since the last call (the read resets)."""
    raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS3.size)
    packets, drops, _freeze = _STATS3.unpack(raw.ljust(_STATS3.size, b"\0"))
    return packets, drops


class Ring:
    """A TPACKET_V3 receive ring mapped from a packet socket (set up before bind)."""

    def __init__(
        self, sock: socket.socket, block_size: int, block_count: int, retire_ms: int
    ) -> None:
        self.block_size = block_size
        self.block_count = block_count
        frame_size = 2048
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        req = _REQ3.pack(
            block_size,
            block_count,
            frame_size,
            block_size // frame_size * block_count,
            retire_ms,
            0,
            0,
        )
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.map = mmap.mmap(
            sock.fileno(),
            block_size * block_count,
            mmap.MAP_SHARED,
            mmap.PROT_READ | mmap.PROT_WRITE,
        )
        self.index = 0

    def ready(self) -> bool:
        """Whether the next block belongs to user space."""
        off = self.index * self.block_size + _BLOCK_STATUS_OFFSET
        (status,) = struct.unpack_from("=I", self.map, off)
        return bool(status & TP_STATUS_USER)

    def pending_in_kernel(self) -> int:
        """Packets in the next block while the kernel still owns it (racy unless idle)."""
        _status, num, _first = _BLOCK_HDR.unpack_from(
            self.map, self.index * self.block_size + _BLOCK_STATUS_OFFSET
        )
        return int(num)

    def take(
        self,
        limit: int,
        chunks: list[bytes],
        observe: Callable[[bytes, int], None] | None = None,
    ) -> tuple[int, int]:
        """Append the next (ready) block's packets to ``chunks`` as pcap records.

        At most ``limit`` packets are taken (the rest of the block is discarded: the
        capture has its count). ``observe(data, original_length)`` sees each packet.
        Returns ``(packets, bytes)`` (bytes as on the wire). Does not release the block.
        """
        mm = self.map
        base = self.index * self.block_size
        _status, num, off = _BLOCK_HDR.unpack_from(mm, base + _BLOCK_STATUS_OFFSET)
        off += base
        num = min(num, limit)
        unpack = _PKT_HDR.unpack_from
        pack = RECORD_HEADER.pack
        append = chunks.append
        nbytes = 0
        for _ in range(num):
            nxt, sec, nsec, snap, plen, status, mac, _net = unpack(mm, off)
            start = off + mac
            data = mm[start : start + snap]
            if status & TP_STATUS_VLAN_VALID:
                data, snap, plen = _insert_vlan(mm, off, status, data, snap=snap, plen=plen)
            append(pack(sec, nsec, snap, plen))
            append(data)
            if observe is not None:
                observe(data, plen)
            nbytes += plen
            off += nxt
        return num, nbytes

    def release(self) -> None:
        """Hand the current block back to the kernel and move to the next one."""
        off = self.index * self.block_size + _BLOCK_STATUS_OFFSET
        struct.pack_into("=I", self.map, off, TP_STATUS_KERNEL)
        self.index = (self.index + 1) % self.block_count

    def close(self) -> None:
        self.map.close()


def has_cap_net_raw() -> bool:
    """Whether this process may open packet sockets (root or CAP_NET_RAW effective)."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 13))
    except OSError:
        pass
    return False
