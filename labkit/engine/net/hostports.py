"""Host ports for published container ports: reservations (a bound socket) and -P's allocator.

Docker, with its default userland proxy, holds every published host port open in a
docker-proxy process, so a second ``-p 8080:..`` or any host program already on that port
makes the bind fail: "Bind for 0.0.0.0:8080 failed: port is already allocated".  labkit
forwards with nftables DNAT only (no proxy process), yet keeps the same guarantee by
holding a bound, non-listening socket per published port (a "reservation"): any other
bind(2) of that address gets EADDRINUSE, and our own bind fails the same way when the
port is already taken on the host.  No SO_REUSEADDR on purpose: with it, Linux lets two
non-listening sockets share an address (inet_csk_bind_conflict), which would let a
server started later take the port too.  The socket never listens: DNAT in prerouting /
output rewrites packets before any socket lookup, so it never receives traffic.

Sockets are made inside the given network namespace (``with netns(path)`` moves only the
calling thread, STYLE C9); a socket keeps its namespace for life, so bind and close run
anywhere.

-P picks ephemeral host ports the way libnetwork's portallocator does: the range is the
kernel's ``net.ipv4.ip_local_port_range`` (read inside the namespace), falling back to
Docker's 49153-65535 when it cannot be read; ports are handed out in order after the last
one given, wrapping around, skipping ports in use.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from labkit import errors
from labkit.ns.netns import netns as _enter_netns
from labkit.ns.netns import netns_path

__all__ = ["DOCKER_RANGE", "PortAllocator", "Reservation", "bind_error", "local_port_range", "reserve"]

# libnetwork/portallocator: DefaultPortRangeStart / DefaultPortRangeEnd
DOCKER_RANGE = (49153, 65535)
_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


def bind_error(host_ip: str, host_port: int, proto: str, why: str) -> errors.ConflictError:
    """Docker's words for a port that cannot be published (daemon/libnetwork portmapper)."""
    shown = f"[{host_ip}]" if ":" in host_ip else host_ip
    return errors.ConflictError(
        f"Bind for {shown}:{host_port} failed: port is already allocated",
        hint=f"{proto} port {host_port}: {why}; pick another host port or stop its user",
    )


@dataclass
class Reservation:
    """A bound socket holding ``host_ip:host_port/proto``; ``close()`` releases it."""

    host_ip: str
    host_port: int
    proto: str
    sock: socket.socket

    def close(self) -> None:
        self.sock.close()


def _socket(family: int, kind: int, ns: str | None) -> socket.socket:
    if ns is None:
        return socket.socket(family, kind)
    with _enter_netns(netns_path(ns)):
        return socket.socket(family, kind)


def reserve(host_ip: str, host_port: int, proto: str, *, ns: str | None = None) -> Reservation:
    """Bind ``host_ip:host_port/proto`` (``host_ip`` "0.0.0.0" or "::" for every address).

    Raises ConflictError in Docker's words when the port is already bound in ``ns``.
    """
    addr = ipaddress.ip_address(host_ip)
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = _socket(family, kind, ns)
    try:
        if family == socket.AF_INET6:
            # "::" reserves IPv6 only: the IPv4 mapping is reserved separately on 0.0.0.0.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host_ip, host_port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise bind_error(host_ip, host_port, proto, "bind: address already in use") from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise errors.InvalidArgumentError(
                "host ip", f"{host_ip} is not an address of this host",
                hint="publish on one of the host's addresses, or leave the ip out") from None
        raise errors.from_errno(err.errno or errno.EIO, "bind", f"{host_ip}:{host_port}") from None
    return Reservation(host_ip, host_port, proto, sock)


def local_port_range(ns: str | None = None) -> tuple[int, int]:
    """The kernel's ephemeral range in ``ns`` (ip-sysctl.rst), else Docker's default."""
    try:
        if ns is None:
            text = Path(_RANGE_FILE).read_text()
        else:
            # /proc/sys/net follows the opening thread's network namespace.
            with _enter_netns(netns_path(ns)):
                text = Path(_RANGE_FILE).read_text()
        lo, hi = (int(x) for x in text.split())
    except (OSError, ValueError, errors.LabkitError):
        return DOCKER_RANGE
    if not 0 < lo <= hi <= 65535:
        return DOCKER_RANGE
    return lo, hi


class PortAllocator:
    """Ephemeral host ports for -P: in order after the last one, wrapping, skipping busy ones."""

    def __init__(self, port_range: tuple[int, int], *, ns: str | None = None) -> None:
        self.lo, self.hi = port_range
        self.ns = ns
        self._last = {"tcp": self.lo - 1, "udp": self.lo - 1}

    def allocate(self, host_ip: str, proto: str, taken: set[int]) -> Reservation:
        """Reserve the next free port (not in ``taken``, bindable); ConflictError when none is."""
        size = self.hi - self.lo + 1
        start = self._last[proto]
        for step in range(1, size + 1):
            port = self.lo + (start - self.lo + step) % size
            if port in taken:
                continue
            try:
                res = reserve(host_ip, port, proto, ns=self.ns)
            except errors.ConflictError:
                continue
            self._last[proto] = port
            return res
        raise errors.ConflictError(
            f"no free {proto} host port in {self.lo}-{self.hi} on {host_ip}",
            hint="unpublish something or widen net.ipv4.ip_local_port_range")
