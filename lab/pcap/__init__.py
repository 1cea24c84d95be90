"""Capture files, read and written in one place: classic pcap and pcapng.

Reading (:func:`read_pcap`, what ``lab analyze`` and the run analysis use): a classic
pcap (either byte order, micro- or nanosecond, Kuznetzov's variant) or a pcapng file
(several sections in either byte order, interfaces with their own link types and
timestamp resolutions, enhanced / simple / obsolete packet blocks) becomes one
:class:`PcapFrame`: one row per IP packet, fields gathered with numpy, damage skipped
and counted in :class:`PcapStats`, only unusable files raising
:class:`~lab.errors.AnalysisError`.

Writing (the capture's :class:`~lab.capture.Sniffer`): :func:`file_header` and
:func:`record_header` / :data:`RECORD_HEADER` of a nanosecond classic pcap;
:func:`linktype_for_arphrd` picks the link type of a Linux interface.
:func:`iter_records`, :func:`read_header` and :func:`count_records` check such a file
record by record.

Modules behind this API: ``_format`` (classic headers, writer, light reader),
``_linktypes`` (link-type numbers), ``_classic`` and ``_pcapng`` (the fast readers),
``_dissect`` (link, IP and transport layers with numpy, the table), ``_reader``
(:func:`read_pcap`). Importing this package stays cheap (no numpy, no pandas: the
capture and the CLI import it); :func:`read_pcap`, :class:`PcapFrame`,
:class:`PcapStats` and :data:`LAB_RAW_PROTO` load the readers on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from lab.pcap._format import (
    FILE_HEADER_SIZE,
    PCAP_MAGIC_NS,
    PCAP_MAGIC_US,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    PcapInfo,
    count_records,
    file_header,
    iter_records,
    read_header,
    record_header,
)
from lab.pcap._linktypes import (
    ARPHRD_ETHER,
    ARPHRD_LOOPBACK,
    ARPHRD_NONE,
    ARPHRD_RAWIP,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    linktype_for_arphrd,
)

if TYPE_CHECKING:
    from lab.pcap._dissect import LAB_RAW_PROTO, PcapFrame, PcapStats
    from lab.pcap._reader import read_pcap

#: Names whose modules need numpy and pandas, loaded when first asked for.
_LAZY = {
    "LAB_RAW_PROTO": "lab.pcap._dissect",
    "PcapFrame": "lab.pcap._dissect",
    "PcapStats": "lab.pcap._dissect",
    "read_pcap": "lab.pcap._reader",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lab.pcap' has no attribute {name!r}")


__all__ = [
    "ARPHRD_ETHER",
    "ARPHRD_LOOPBACK",
    "ARPHRD_NONE",
    "ARPHRD_RAWIP",
    "FILE_HEADER_SIZE",
    "LAB_RAW_PROTO",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "PCAP_MAGIC_NS",
    "PCAP_MAGIC_US",
    "RECORD_HEADER",
    "RECORD_HEADER_SIZE",
    "PcapFrame",
    "PcapInfo",
    "PcapStats",
    "count_records",
    "file_header",
    "iter_records",
    "linktype_for_arphrd",
    "read_header",
    "read_pcap",
    "record_header",
]
