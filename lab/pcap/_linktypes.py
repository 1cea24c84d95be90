"""Link types: their numbers and what the lab's capture writes for each Linux device type.

Numbers from https://www.tcpdump.org/linktypes.html. Both file formats read NULL (0),
ETHERNET (1, with 802.1Q / 802.1ad tags), RAW (101, and 12/14 as some systems write
it), LINUX_SLL (113), IPV4 (228), IPV6 (229) and LINUX_SLL2 (276): where the IP header
starts in each is :func:`lab.pcap._dissect.link_layer`, the only place that looks at
link-layer headers. Packets of any other link type read as "not IP" (counted, not
parsed). Nothing here imports numpy: the capture and the CLI import this module.
"""

from __future__ import annotations

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # raw IPv4 / IPv6, no link-layer header (TUN devices)
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
#: Link types whose packets start with the IP header (DLT_RAW differs between BSDs).
IP_ONLY = frozenset({LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6})

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

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)  # 802.1Q, 802.1ad, old QinQ


def linktype_for_arphrd(hatype: int) -> int | None:
    """The pcap link type an interface of ARPHRD type ``hatype`` captures as, or None."""
    return _ARPHRD_TO_LINKTYPE.get(hatype)


def linktype_of_field(value: int) -> int:
    """The link type in a classic pcap header's 32-bit LinkType field: its low 16 bits
    (the upper bits carry the FCS length, draft-ietf-opsawg-pcap §4)."""
    return value & 0xFFFF
