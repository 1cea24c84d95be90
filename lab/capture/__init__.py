"""Packet capture: AF_PACKET + TPACKET_V3 into nanosecond pcap, from a separate process.

:class:`Sniffer` captures one interface (optionally in a named network namespace);
:class:`CaptureStats` is what it reports. :mod:`lab.pcap` writes and reads
the files; ``lab sniff`` (:mod:`lab.cli._sniff`) draws its live summary.
"""

from lab.capture.flows import FlowCount, LiveCounters
from lab.capture.sniffer import CaptureStats, Sniffer
from lab.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    PcapInfo,
    count_records,
    iter_records,
    read_header,
)

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_RAW",
    "CaptureStats",
    "FlowCount",
    "LiveCounters",
    "PcapInfo",
    "Sniffer",
    "count_records",
    "iter_records",
    "read_header",
]
