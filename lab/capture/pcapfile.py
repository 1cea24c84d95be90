"""Classic pcap files with nanosecond timestamps: the header, records, a light reader.

The capture writes the nanosecond variant of the classic format (magic ``0xa1b23c4d``,
version 2.4, little-endian), which tcpdump, tshark and scapy all read. The reader here
also accepts the microsecond variant and either byte order; it does not dissect, it
only yields ``(timestamp_ns, original_length, data)``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab.errors import AnalysisError

#: pcap link types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # raw IPv4 / IPv6, no link-layer header (TUN devices)

#: Linux ARPHRD_* device types the lab meets, and the link type each captures as.
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_NONE = 65534  # TUN (IFF_TUN): raw IP
ARPHRD_RAWIP = 519
_ARPHRD_TO_LINKTYPE = {
    ARPHRD_ETHER: LINKTYPE_ETHERNET,
    ARPHRD_LOOPBACK: LINKTYPE_ETHERNET,
    ARPHRD_NONE: LINKTYPE_RAW,
    ARPHRD_RAWIP: LINKTYPE_RAW,
}

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
_FILE_HEADER = struct.Struct("<IHHiIII")
#: Header of one record: ts_sec, ts_nsec, captured length, original length.
RECORD_HEADER = struct.Struct("<IIII")
FILE_HEADER_SIZE = _FILE_HEADER.size  # 24
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 16


def linktype_for_arphrd(hatype: int) -> int | None:
    """The pcap link type an interface of ARPHRD type ``hatype`` captures as, or None."""
    return _ARPHRD_TO_LINKTYPE.get(hatype)


def file_header(snaplen: int, linktype: int) -> bytes:
    """The 24-byte header of a little-endian nanosecond pcap file."""
    return _FILE_HEADER.pack(PCAP_MAGIC_NS, 2, 4, 0, 0, snaplen, linktype)


def record_header(ts_sec: int, ts_nsec: int, caplen: int, origlen: int) -> bytes:
    """The 16-byte header of one record of a nanosecond pcap file."""
    return RECORD_HEADER.pack(ts_sec, ts_nsec, caplen, origlen)


@dataclass(frozen=True)
class PcapInfo:
    """What a pcap file's header says."""

    linktype: int
    snaplen: int
    nanosecond: bool
    byteorder: str  # "<" or ">"


def read_header(path: Path) -> PcapInfo:
    """Read and check the header of a classic pcap file (AnalysisError if it is not one)."""
    try:
        with path.open("rb") as f:
            head = f.read(FILE_HEADER_SIZE)
    except OSError as exc:
        raise AnalysisError(f"cannot read capture file '{path}': {exc.strerror}") from exc
    return _parse_header(path, head)


def _parse_header(path: Path, head: bytes) -> PcapInfo:
    if len(head) < FILE_HEADER_SIZE:
        raise AnalysisError(f"'{path}' is not a pcap file: too short ({len(head)} bytes)")
    for order in ("<", ">"):
        (magic,) = struct.unpack_from(order + "I", head)
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            _m, _maj, _min, _tz, _sig, snaplen, linktype = struct.unpack(order + "IHHiIII", head)
            return PcapInfo(linktype & 0x0FFFFFFF, snaplen, magic == PCAP_MAGIC_NS, order)
    raise AnalysisError(f"'{path}' is not a classic pcap file (magic {head[:4].hex()})")


def iter_records(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(timestamp_ns, original_length, data)`` for every record of a pcap file.

    A truncated last record (a capture that was killed mid-write) raises AnalysisError.
    """
    try:
        f = path.open("rb")
    except OSError as exc:
        raise AnalysisError(f"cannot read capture file '{path}': {exc.strerror}") from exc
    with f:
        info = _parse_header(path, f.read(FILE_HEADER_SIZE))
        rec = struct.Struct(info.byteorder + "IIII")
        scale = 1 if info.nanosecond else 1000
        index = 0
        while True:
            head = f.read(rec.size)
            if not head:
                return
            if len(head) < rec.size:
                raise AnalysisError(f"'{path}': record {index} is truncated")
            sec, frac, caplen, origlen = rec.unpack(head)
            data = f.read(caplen)
            if len(data) < caplen:
                raise AnalysisError(f"'{path}': record {index} is truncated")
            yield sec * 1_000_000_000 + frac * scale, origlen, data
            index += 1


def count_records(path: Path) -> int:
    """Number of records in a pcap file (checks it is complete)."""
    return sum(1 for _ in iter_records(path))
