"""The container's loopback: up, as Docker leaves it in "none" and bridge sandboxes.

A new network namespace starts with ``lo`` down (network_namespaces(7)); Docker's sandboxes
have it up.  netdevice(7): SIOCGIFFLAGS / SIOCSIFFLAGS on any socket of the namespace, with
``struct ifreq`` = 16-byte name + short flags.  The setns happens in a worker thread
(labkit.ns.netns moves only the calling thread and restores it), never in the event loop.
"""

from __future__ import annotations

import fcntl
import socket
import struct

from labkit.ns.netns import netns

__all__ = ["loopback_up"]

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = struct.Struct("16sh22x")  # sizeof(struct ifreq) is 40 on 64-bit


def loopback_up(pid: int) -> None:
    """Bring ``lo`` up in the network namespace of ``pid``."""
    with netns(f"/proc/{pid}/ns/net"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            raw = fcntl.ioctl(s, SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0))
            flags = _IFREQ.unpack(raw)[1]
            fcntl.ioctl(s, SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | IFF_UP))
        finally:
            s.close()
