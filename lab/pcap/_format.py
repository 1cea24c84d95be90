"""Classic pcap (draft-ietf-opsawg-pcap): the file and record headers, the writer the
capture uses and a light record-by-record reader. No numpy here: the capture imports it.

The capture writes the nanosecond variant (magic ``0xa1b23c4d``, version 2.4,
little-endian), which tcpdump, tshark and scapy all read. The readers take both byte
orders, micro- and nanosecond timestamps and Kuznetzov's modified pcap. The fast reader
is :mod:`lab.pcap._classic`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lab.errors import AnalysisError
from lab.pcap._linktypes import linktype_of_field

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
_FILE_HEADER = struct.Struct("<IHHiIII")
#: Header of one record: ts_sec, ts_nsec, captured length, original length.
RECORD_HEADER = struct.Struct("<IIII")
FILE_HEADER_SIZE = _FILE_HEADER.size  # 24
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 16

# magic bytes as stored -> (byte order, nanosecond timestamps, record header length)
_MAGICS: dict[bytes, tuple[Literal["<", ">"], bool, int]] = {
    bytes.fromhex("d4c3b2a1"): ("<", False, 16),
    bytes.fromhex("a1b2c3d4"): (">", False, 16),
    bytes.fromhex("4d3cb2a1"): ("<", True, 16),
    bytes.fromhex("a1b23c4d"): (">", True, 16),
    bytes.fromhex("34cdb2a1"): ("<", False, 24),  # Kuznetzov's modified pcap
    bytes.fromhex("a1b2cd34"): (">", False, 24),
}
_MAX_CAPLEN = 262_144  # tcpdump's MAXIMUM_SNAPLEN; larger lengths mean a corrupt header


# --------------------------------------------------------------------------- writing


def file_header(snaplen: int, linktype: int) -> bytes:
    """The 24-byte header of a little-endian nanosecond pcap file."""
    return _FILE_HEADER.pack(PCAP_MAGIC_NS, 2, 4, 0, 0, snaplen, linktype)


def record_header(ts_sec: int, ts_nsec: int, caplen: int, origlen: int) -> bytes:
    """The 16-byte header of one record of a nanosecond pcap file."""
    return RECORD_HEADER.pack(ts_sec, ts_nsec, caplen, origlen)


# --------------------------------------------------------------------------- header


@dataclass(frozen=True)
class ClassicFormat:
    """What a classic pcap file header says, and what follows from it."""

    order: Literal["<", ">"]
    nanosecond: bool
    rec_len: int
    snaplen: int
    linktype: int

    @property
    def max_caplen(self) -> int:
        """Largest record length taken as genuine; anything above is a corrupt header."""
        return max(_MAX_CAPLEN, min(self.snaplen, 1 << 24))


def parse_header(head: bytes) -> ClassicFormat | None:
    """The format of a file starting with ``head`` (24 bytes or more), None if the
    magic number is not a classic pcap one."""
    magic = head[:4]
    if len(head) < FILE_HEADER_SIZE or magic not in _MAGICS:
        return None
    order, nanosecond, rec_len = _MAGICS[magic]
    snaplen, network = struct.unpack_from(order + "II", head, 16)
    return ClassicFormat(order, nanosecond, rec_len, snaplen, linktype_of_field(network))


# --------------------------------------------------------------------------- light reader


@dataclass(frozen=True)
class PcapInfo:
    """What a classic pcap file's header says."""

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
    fmt = _light_header(path, head)
    return PcapInfo(fmt.linktype, fmt.snaplen, fmt.nanosecond, fmt.order)


def _light_header(path: Path, head: bytes) -> ClassicFormat:
    if len(head) < FILE_HEADER_SIZE:
        raise AnalysisError(f"'{path}' is not a pcap file: too short ({len(head)} bytes)")
    fmt = parse_header(head)
    if fmt is None:
        raise AnalysisError(f"'{path}' is not a classic pcap file (magic {head[:4].hex()})")
    return fmt


def iter_records(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(timestamp_ns, original_length, data)`` for every record of a classic
    pcap file, one at a time (for checking small files; :func:`read_pcap` is the fast
    reader). A truncated last record (a capture that was killed mid-write) raises
    AnalysisError.
    """
    try:
        f = path.open("rb")
    except OSError as exc:
        raise AnalysisError(f"cannot read capture file '{path}': {exc.strerror}") from exc
    with f:
        fmt = _light_header(path, f.read(FILE_HEADER_SIZE))
        rec = struct.Struct(fmt.order + "IIII")
        scale = 1 if fmt.nanosecond else 1000
        index = 0
        while True:
            head = f.read(fmt.rec_len)
            if not head:
                return
            if len(head) < fmt.rec_len:
                raise AnalysisError(f"'{path}': record {index} is truncated")
            sec, frac, caplen, origlen = rec.unpack_from(head)
            data = f.read(caplen)
            if len(data) < caplen:
                raise AnalysisError(f"'{path}': record {index} is truncated")
            yield sec * 1_000_000_000 + frac * scale, origlen, data
            index += 1


def count_records(path: Path) -> int:
    """Number of records in a classic pcap file (checks it is complete)."""
    return sum(1 for _ in iter_records(path))
