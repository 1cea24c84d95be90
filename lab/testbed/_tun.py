"""TUN devices: the two ends of the lab's link.

A TUN device hands the userspace forwarder every IP packet its namespace routes to
it, and injects whatever the forwarder writes as if it arrived on a wire. The file
descriptor keeps working after the device is created inside another namespace, so
one forwarder process holds both ends of the link.
"""

from __future__ import annotations

import fcntl
import os
import struct

from lab.testbed import _netns

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000


def open_tun(netns: str, ifname: str) -> int:
    """Create TUN device ``ifname`` inside ``netns``; return its non-blocking fd."""
    with _netns.inside(netns):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            request = struct.pack("16sH", ifname.encode(), _IFF_TUN | _IFF_NO_PI)
            fcntl.ioctl(fd, _TUNSETIFF, request)
        except OSError:
            os.close(fd)
            raise
    return fd
