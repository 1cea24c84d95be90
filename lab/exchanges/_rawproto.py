"""The RAW message header as a scapy layer, so captures dissect as ``IP / LabRaw / Raw``.

For reading captures and for tests only: the exchange itself packs bytes with
:mod:`struct` (:mod:`lab.exchanges.raw`), and importing this module registers nothing.
Call :func:`register` once to have scapy decode IP protocol 253 as :class:`LabRaw`.
"""

from __future__ import annotations

from scapy.fields import IntField, LongField, XIntField
from scapy.layers.inet import IP
from scapy.packet import Packet, bind_layers

from lab._protocols import IPPROTO_LAB_RAW
from lab.exchanges.raw import CHECKSUM, CHECKSUM_OFFSET, checksum


class LabRaw(Packet):
    """seq, length, send time and CRC-32; the filler follows as the payload."""

    name = "LabRaw"
    fields_desc = [  # noqa: RUF012  # scapy's declarative class attribute
        IntField("seq", 0),
        IntField("length", None),
        LongField("t_send_ns", 0),
        XIntField("chksum", None),
    ]

    def post_build(self, packet: bytes, payload: bytes) -> bytes:
        """Fill in ``length`` and ``chksum`` when left unset, as scapy does for UDP."""
        whole = bytearray(packet + payload)
        if self.length is None:
            whole[4:8] = len(whole).to_bytes(4, "big")
        if self.chksum is None:
            CHECKSUM.pack_into(whole, CHECKSUM_OFFSET, checksum(whole))
        return bytes(whole)

    def checksum_ok(self) -> bool:
        """Whether the message as dissected passes the lab's checksum."""
        whole = bytes(self)
        return bool(CHECKSUM.unpack_from(whole, CHECKSUM_OFFSET)[0] == checksum(whole))

    def mysummary(self) -> str:
        return str(self.sprintf("LabRaw seq=%LabRaw.seq% len=%LabRaw.length%"))


def register() -> None:
    """Decode IP protocol 253 as :class:`LabRaw` (and set it when building ``IP()/LabRaw()``)."""
    bind_layers(IP, LabRaw, proto=IPPROTO_LAB_RAW)
