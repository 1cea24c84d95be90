"""A small pcapng writer for the tests, written from draft-ietf-opsawg-pcapng on its own
(it shares nothing with lab.pcap), able to write what a reader must survive: either
byte order, several sections, options, every block type, wrong lengths."""

from __future__ import annotations

import struct

SHB = 0x0A0D0D0A
IDB = 1
PB = 2
SPB = 3
NRB = 4
ISB = 5
EPB = 6
DSB = 0x0A
CUSTOM = 0x00000BAD
CUSTOM_NOCOPY = 0x40000BAD

OPT_COMMENT = 1
IF_NAME = 2
IF_TSRESOL = 9
IF_TSOFFSET = 14


def pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


class Pcapng:
    """Blocks appended in order; ``order`` is the current section's byte order."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.order = "<"
        self.ends: list[int] = []  # offset after each block

    @property
    def data(self) -> bytes:
        return bytes(self.out)

    def options(self, *opts: tuple[int, bytes]) -> bytes:
        if not opts:
            return b""
        body = b"".join(struct.pack(self.order + "HH", c, len(v)) + pad4(v) for c, v in opts)
        return body + struct.pack(self.order + "HH", 0, 0)

    def block(self, kind: int, body: bytes, *, length: int | None = None) -> int:
        """Append a block; ``length`` overrides the (leading) total length. Returns its offset."""
        body = pad4(body)
        total = 12 + len(body)
        at = len(self.out)
        self.out += struct.pack(self.order + "II", kind, total if length is None else length)
        self.out += body + struct.pack(self.order + "I", total)
        self.ends.append(len(self.out))
        return at

    def section(
        self, order: str = "<", *, major: int = 1, minor: int = 0, opts: bytes = b""
    ) -> int:
        self.order = order
        body = struct.pack(order + "IHHq", 0x1A2B3C4D, major, minor, -1) + opts
        return self.block(SHB, body)

    def interface(
        self,
        linktype: int,
        *,
        snaplen: int = 0,
        tsresol: int | None = None,
        tsoffset: int | None = None,
        name: bytes | None = None,
    ) -> int:
        opts: list[tuple[int, bytes]] = []
        if name is not None:
            opts.append((IF_NAME, name))
        if tsresol is not None:
            opts.append((IF_TSRESOL, bytes([tsresol])))
        if tsoffset is not None:
            opts.append((IF_TSOFFSET, struct.pack(self.order + "q", tsoffset)))
        body = struct.pack(self.order + "HHI", linktype, 0, snaplen) + self.options(*opts)
        return self.block(IDB, body)

    def packet(
        self,
        data: bytes,
        ts: int,
        *,
        iface: int = 0,
        origlen: int | None = None,
        caplen: int | None = None,
        comment: bytes | None = None,
    ) -> int:
        """An enhanced packet block; ``ts`` in the interface's units."""
        head = struct.pack(
            self.order + "IIIII",
            iface,
            ts >> 32,
            ts & 0xFFFFFFFF,
            len(data) if caplen is None else caplen,
            len(data) if origlen is None else origlen,
        )
        opts = self.options((OPT_COMMENT, comment)) if comment else b""
        return self.block(EPB, head + pad4(data) + opts)

    def simple(self, data: bytes, *, origlen: int | None = None) -> int:
        head = struct.pack(self.order + "I", len(data) if origlen is None else origlen)
        return self.block(SPB, head + data)

    def obsolete(self, data: bytes, ts: int, *, iface: int = 0) -> int:
        """An obsolete packet block (interface id and drops count are 16 bits)."""
        head = struct.pack(
            self.order + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)
        )
        return self.block(PB, head + data)

    def others(self) -> None:
        """One of each block a packet reader skips."""
        o = self.order
        nrb = struct.pack(o + "HH", 1, 8) + bytes([10, 0, 0, 1]) + b"hos\x00"
        self.block(NRB, nrb + struct.pack(o + "HH", 0, 0))
        self.block(ISB, struct.pack(o + "III", 0, 1, 2) + self.options((4, bytes(8))))
        self.block(CUSTOM, struct.pack(o + "I", 32473) + b"custom data")
        self.block(CUSTOM_NOCOPY, struct.pack(o + "I", 32473) + b"more")
        self.block(DSB, struct.pack(o + "II", 0x544C534B, 5) + b"CLIENT_RANDOM")
        self.block(0x12345678, b"a block type nobody knows")
