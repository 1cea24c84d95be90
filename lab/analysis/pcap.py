"""The capture reader under its older name: everything here is :mod:`lab.pcap`'s.

Import from :mod:`lab.pcap` in new code.
"""

from lab.pcap import (
    LAB_RAW_PROTO,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    PcapFrame,
    PcapStats,
    read_pcap,
)

__all__ = [
    "LAB_RAW_PROTO",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "PcapFrame",
    "PcapStats",
    "read_pcap",
]
