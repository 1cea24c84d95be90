"""IP protocol numbers the lab speaks, in one place (IANA "Assigned Internet Protocol Numbers")."""

from __future__ import annotations

from typing import Final

__all__ = ["IPPROTO_LAB_RAW", "IPPROTO_TCP", "IPPROTO_UDP"]

IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
#: The RAW exchange's protocol: 253 is reserved for experimentation and testing (RFC 3692).
IPPROTO_LAB_RAW: Final = 253
