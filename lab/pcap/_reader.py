"""``read_pcap``: open a capture file, tell classic pcap from pcapng, read it."""

from __future__ import annotations

from pathlib import Path

from lab.errors import AnalysisError
from lab.pcap import _classic, _format, _pcapng
from lab.pcap._dissect import PcapFrame

#: Bytes read at a time; a record or block cut by a chunk end waits for the next one.
_CHUNK = 8 << 20


def read_pcap(path: str | Path, *, tcp_options: bool = False) -> PcapFrame:
    """Read a classic pcap or a pcapng file into a :class:`PcapFrame`.

    ``tcp_options`` also reads the TCP options the TCP analysis draws (window scale,
    SACK blocks: :data:`~lab.pcap._dissect.TCP_OPTION_COLUMNS`); off by default, as
    they are nine more columns per packet.

    Raises AnalysisError for an unreadable file, an empty or short one, an unknown
    magic number or a pcapng file whose first section header cannot be read;
    anything wrong after the file header is skipped and counted instead
    (:class:`PcapStats`). The file is read in chunks, so memory stays near the size
    of the resulting table whatever the packet sizes.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(_format.FILE_HEADER_SIZE)
            if head[:4] == _pcapng.PCAPNG_MAGIC:
                return _pcapng.read(fh, head, path, _CHUNK, tcp_options=tcp_options)
            fmt = _format.parse_header(head)
            if fmt is None:
                raise AnalysisError(f"{path}: {_not_a_capture(head)}")
            return _classic.read(fh, fmt, _CHUNK, tcp_options=tcp_options)
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read capture: {exc.strerror or exc}") from exc


def _not_a_capture(head: bytes) -> str:
    if len(head) < _format.FILE_HEADER_SIZE:
        what = "empty" if not head else f"only {len(head)} bytes"
        return f"not a pcap file ({what}; the file header alone is 24)"
    return f"not a pcap or pcapng file (magic number {head[:4].hex()})"
