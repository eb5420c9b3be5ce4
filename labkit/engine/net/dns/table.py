"""The names one network's embedded DNS knows: what the engine updates as containers come and go.

Docker answers, on a user-defined network only, for each endpoint: the container name,
every --network-alias, and the short container id (12 hex digits); each also as
``NAME.NETWORK`` (libnetwork owns the network's name as a domain).  A name only resolves on
the networks the container is attached to: each network has its own NetworkView, so a
container on two networks is two endpoints in two views, and a view never sees the other.

On a swarm network a view also holds the network's *service records* (set_services, fed
from the node's assignment snapshot by labkit.engine.swarm.discovery): a service's name
and aliases -> its virtual IP (endpoint mode vip) or all its running tasks' addresses
(dnsrr), ``tasks.NAME`` -> all its running tasks' addresses, wherever they run.  Service
names win over container names and aliases: a task container carries its service's name
as a network alias (as in Docker), which alone would resolve to the tasks on this node
only; the service record knows them all.  Reverse lookups go the other way: a container
of this node answers by its own name first, a remote task by the name the records give.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from labkit import errors

__all__ = ["Endpoint", "IPAddress", "NetworkView", "valid_name"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# RFC 1123 host names, plus '_' (Docker allows it in container names) and '.' in aliases.
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?$")


def valid_name(name: str) -> bool:
    """Whether ``name`` may be a key of a view (case and a trailing dot aside)."""
    return bool(_NAME.match(name.lower().rstrip(".")))


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


def _address(a: str | IPAddress) -> IPAddress:
    try:
        return ipaddress.ip_address(a)
    except ValueError:
        raise errors.InvalidArgumentError("address", f"{a!r} is not an IP address") from None


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
        self._services: dict[str, list[IPAddress]] = {}
        self._service_ptr: dict[IPAddress, str] = {}
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

    def set_services(self, records: Mapping[str, Iterable[str]],
                     reverse: Mapping[str, str] | None = None) -> None:
        """Replace the service records in one step: ``records`` name -> addresses (the
        order given is the first answer's; several addresses rotate per answer),
        ``reverse`` address -> the name its PTR answers (qualified with the network here).
        Raises InvalidArgumentError (records unchanged) on a bad name or address."""
        names: dict[str, list[IPAddress]] = {}
        for name, addrs in records.items():
            key = name.lower().rstrip(".")
            if not _NAME.match(key):
                raise errors.InvalidArgumentError(
                    "DNS name", f"{name!r} (a service record) is not a valid host name")
            out = names.setdefault(key, [])
            for a in addrs:
                ip = _address(a)
                if ip not in out:
                    out.append(ip)
        ptr: dict[IPAddress, str] = {}
        for a, name in (reverse or {}).items():
            key = name.lower().rstrip(".")
            if not _NAME.match(key):
                raise errors.InvalidArgumentError(
                    "DNS name", f"{name!r} (reverse of {a}) is not a valid host name")
            ptr[_address(a)] = f"{key}.{self.network}"
        with self._lock:
            self._services, self._service_ptr = names, ptr
            self._turn = {k: v for k, v in self._turn.items() if not k[0].startswith("svc:")}

    def services(self) -> dict[str, list[str]]:
        """The service records as set (for inspection and tests)."""
        with self._lock:
            return {k: [str(a) for a in v] for k, v in self._services.items()}

    def _key(self, qname: str) -> str | None:
        """The table key of ``qname``: ``svc:NAME`` for a service record (they win),
        ``NAME`` for a container name; a ``.NETWORK`` suffix is allowed."""
        qname = qname.lower().rstrip(".")
        suffix = "." + self.network
        short = qname[: -len(suffix)] if qname.endswith(suffix) else None
        for q in (qname, short):
            if q is not None and q in self._services:
                return "svc:" + q
        for q in (qname, short):
            if q is not None and q in self._names:
                return q
        return None

    def _addrs(self, key: str, family: int) -> list[IPAddress]:
        if key.startswith("svc:"):
            return [a for a in self._services[key[4:]] if a.version == family]
        return self._names[key][0 if family == 4 else 1]

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
            addrs = self._addrs(key, family)
            if len(addrs) < 2:
                return list(addrs)
            turn = self._turn.get((key, family), 0)
            self._turn[(key, family)] = (turn + 1) % len(addrs)
            return addrs[turn:] + addrs[:turn]

    def reverse(self, ip: IPAddress) -> str | None:
        with self._lock:
            return self._ptr.get(ip) or self._service_ptr.get(ip)
