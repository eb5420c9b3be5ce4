"""What the embedded DNS answers: one NetworkView per user-defined network, kept in step
with its members, and per container the union of its networks' views plus its --link
aliases (Docker resolves a name on every network the asking container is on; a link on
a user-defined network is a name only the linking container sees)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from labkit.engine.net.dns.table import _NAME, Endpoint, IPAddress, NetworkView

__all__ = ["ContainerView", "member", "refresh"]


def _dns_name(name: str) -> bool:
    # A container may be named "web-" or "db." (Docker's name rule), which no DNS label
    # allows: such a name is not resolvable, while the container still starts and its
    # other names (aliases, short id) still answer.
    return bool(_NAME.match(name.lower().rstrip(".")))


def member(rec: Any, settings: dict[str, Any]) -> Endpoint:
    """A container on one network, as its view lists it."""
    v4 = settings.get("IPAddress") or None
    v6 = settings.get("GlobalIPv6Address") or None
    return Endpoint(name=rec.name if _dns_name(rec.name) else "", container_id=rec.id,
                    ipv4=ipaddress.ip_address(v4) if v4 else None,
                    ipv6=ipaddress.ip_address(v6) if v6 else None,
                    aliases=tuple(a for a in settings.get("Aliases") or () if _dns_name(a)))


def refresh(nets: Any, rec: Any) -> None:
    """Rebuild network ``rec``'s view from its members (made on first use)."""
    eps = list(nets.members.get(rec.id, {}).values())
    view = nets.views.get(rec.id)
    if view is None:
        nets.views[rec.id] = NetworkView(rec.name, eps)
    else:
        view.update(eps)


class ContainerView(NetworkView):
    """The names one container resolves: its own link aliases first, then each network's
    view in the container's order."""

    def __init__(self, views: Sequence[NetworkView], extra: dict[str, list[str]]) -> None:
        super().__init__("lk-links", [])
        self._views = list(views)
        self._extra = {k.lower(): [ipaddress.ip_address(a) for a in v]
                       for k, v in extra.items()}

    def knows(self, qname: str) -> bool:
        q = qname.lower().rstrip(".")
        return q in self._extra or any(v.knows(qname) for v in self._views)

    def lookup(self, qname: str, family: int) -> list[IPAddress] | None:
        q = qname.lower().rstrip(".")
        if q in self._extra:
            return [a for a in self._extra[q] if a.version == family]
        for v in self._views:
            got = v.lookup(qname, family)
            if got is not None:
                return got
        return None

    def reverse(self, ip: IPAddress) -> str | None:
        for v in self._views:
            name = v.reverse(ip)
            if name is not None:
                return name
        return None
