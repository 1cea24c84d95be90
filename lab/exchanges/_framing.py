"""The lab's message format, the same for TCP, UDP and RAW.

Every message starts with a 16-byte header: sequence number, total length, and the
sender's clock (CLOCK_REALTIME, ns) when it handed the message to its socket. The
rest is a filler derived from the scenario seed, so the receiver can check that every
byte arrived intact. TCP is a byte stream with no message boundaries: the length field
is what lets the receiver cut the stream back into messages.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

HEADER = struct.Struct("!IIQ")  # seq, length, t_send_ns
HEADER_SIZE = HEADER.size


def filler(seed: int, size: int) -> bytes:
    """The bytes after the header; the same for every message of a run."""
    return random.Random(seed).randbytes(max(0, size - HEADER_SIZE))


class MessageBuilder:
    """Reuses one buffer so framing costs no allocation per message."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self._buffer = bytearray(HEADER_SIZE) + filler(seed, size)

    def build(self, seq: int, t_send_ns: int) -> bytearray:
        HEADER.pack_into(self._buffer, 0, seq, self.size, t_send_ns)
        return self._buffer


def parse_header(message: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """(seq, length, t_send_ns) of a message."""
    seq, length, t_send = HEADER.unpack_from(message, 0)
    return int(seq), int(length), int(t_send)


class StreamReassembler:
    """Cuts a TCP byte stream back into the lab's length-prefixed messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """Yield every message completed by ``chunk``, in stream order."""
        buffer = self._buffer
        buffer += chunk
        offset = 0
        while len(buffer) - offset >= HEADER_SIZE:
            _, length, _ = HEADER.unpack_from(buffer, offset)
            if length < HEADER_SIZE:
                raise ValueError(f"corrupt stream: message length {length} at offset {offset}")
            if len(buffer) - offset < length:
                break
            yield bytes(buffer[offset : offset + length])
            offset += length
        del buffer[:offset]

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message still waiting for the rest."""
        return len(self._buffer)
