"""The names one network's embedded DNS knows: what the engine updates as containers come and go.

Docker answers, on a user-defined network only, for each endpoint: the container name,
every --network-alias, and the short container id (12 hex digits); each also as
``NAME.NETWORK`` (libnetwork owns the network's name as a domain).  A name only resolves on
the networks the container is attached to: each network has its own NetworkView, so a
container on two networks is two endpoints in two views, and a view never sees the other.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from labkit import errors

__all__ = ["Endpoint", "IPAddress", "NetworkView"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# RFC 1123 host names, plus '_' (Docker allows it in container names) and '.' in aliases.
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?$")


@dataclass(frozen=True)
class Endpoint:
    """One container on one network."""

    name: str                      # container name, without Docker's leading '/'
    container_id: str              # full id; its first 12 characters resolve too
    ipv4: IPAddress | None = None
    ipv6: IPAddress | None = None
    aliases: tuple[str, ...] = ()

    def names(self) -> list[str]:
        out = [self.name, *self.aliases]
        if len(self.container_id) >= 12:
            out.append(self.container_id[:12])
        return [n.lower().rstrip(".") for n in out if n]


class NetworkView:
    """Names -> addresses (and back) for one network; update() swaps the whole table.

    Several answers for one name (aliases shared by containers) come back in round-robin
    order: each lookup rotates the list by one, as libnetwork shuffles its answers.
    Thread-safe (the engine may update from a worker thread while the loop answers).
    """

    def __init__(self, network: str, endpoints: Iterable[Endpoint] = ()) -> None:
        self.network = network.lower()
        self._lock = threading.Lock()
        self._names: dict[str, tuple[list[IPAddress], list[IPAddress]]] = {}
        self._ptr: dict[IPAddress, str] = {}
        self._turn: dict[tuple[str, int], int] = {}
        self.update(endpoints)

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        """Replace the table; raises InvalidArgumentError (table unchanged) on a bad name."""
        names: dict[str, tuple[list[IPAddress], list[IPAddress]]] = {}
        ptr: dict[IPAddress, str] = {}
        for ep in endpoints:
            for n in ep.names():
                if not _NAME.match(n):
                    raise errors.InvalidArgumentError(
                        "DNS name", f"{n!r} (of container {ep.name!r}) is not a valid host name")
                v4, v6 = names.setdefault(n, ([], []))
                if ep.ipv4 is not None and ep.ipv4 not in v4:
                    v4.append(ep.ipv4)
                if ep.ipv6 is not None and ep.ipv6 not in v6:
                    v6.append(ep.ipv6)
            # PTR answers the container name qualified by the network, as Docker does.
            for ip in (ep.ipv4, ep.ipv6):
                if ip is not None:
                    ptr[ip] = f"{ep.name.lower()}.{self.network}"
        with self._lock:
            self._names, self._ptr, self._turn = names, ptr, {}

    def _key(self, qname: str) -> str | None:
        qname = qname.lower().rstrip(".")
        if qname in self._names:
            return qname
        suffix = "." + self.network
        if qname.endswith(suffix) and qname[: -len(suffix)] in self._names:
            return qname[: -len(suffix)]
        return None

    def knows(self, qname: str) -> bool:
        with self._lock:
            return self._key(qname) is not None

    def lookup(self, qname: str, family: int) -> list[IPAddress] | None:
        """Addresses of ``family`` (4 or 6) in round-robin order; None if the name is unknown,
        [] if it is known but has no address of that family."""
        with self._lock:
            key = self._key(qname)
            if key is None:
                return None
            addrs = self._names[key][0 if family == 4 else 1]
            if len(addrs) < 2:
                return list(addrs)
            turn = self._turn.get((key, family), 0)
            self._turn[(key, family)] = (turn + 1) % len(addrs)
            return addrs[turn:] + addrs[:turn]

    def reverse(self, ip: IPAddress) -> str | None:
        with self._lock:
            return self._ptr.get(ip)
