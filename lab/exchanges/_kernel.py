"""Kernel counters of the calling thread's namespace (/proc/net/snmp, /proc/net/netstat).

They are the kernel's own view of an exchange: TCP retransmissions, UDP checksum
errors (what corruption turns into), receive-buffer drops. Read inside an endpoint
before and after its exchange; the difference belongs to that exchange.
"""

from __future__ import annotations

from pathlib import Path

_FILES = ("/proc/net/snmp", "/proc/net/netstat")
_KEEP = {
    "Tcp": (
        "ActiveOpens",
        "PassiveOpens",
        "InSegs",
        "OutSegs",
        "RetransSegs",
        "InErrs",
        "InCsumErrors",
    ),
    "Udp": ("InDatagrams", "NoPorts", "InErrors", "OutDatagrams", "RcvbufErrors", "InCsumErrors"),
    "TcpExt": (
        "TCPLostRetransmit",
        "TCPFastRetrans",
        "TCPSlowStartRetrans",
        "TCPTimeouts",
        "TCPSACKReorder",
        "TCPDSACKRecv",
        "TCPOFOQueue",
        "TCPSpuriousRTOs",
    ),
    "Ip": ("InReceives", "InHdrErrors", "InDelivers", "OutRequests"),
}


def read_counters() -> dict[str, int]:
    """Selected counters as ``{"Tcp.RetransSegs": n, ...}``."""
    counters: dict[str, int] = {}
    for name in _FILES:
        lines = Path(name).read_text().splitlines()
        for header, values in zip(lines[::2], lines[1::2], strict=False):
            group, _, keys = header.partition(":")
            wanted = _KEEP.get(group)
            if not wanted:
                continue
            for key, value in zip(keys.split(), values.partition(":")[2].split(), strict=False):
                if key in wanted:
                    counters[f"{group}.{key}"] = int(value)
    return counters


def difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Per-counter increase during an exchange."""
    return {key: after[key] - before.get(key, 0) for key in after}
