"""What the embedded DNS answers: one NetworkView per user-defined network, kept in step
with its members, and per container the union of its networks' views plus its --link
aliases (Docker resolves a name on every network the asking container is on; a link on
a user-defined network is a name only the linking container sees).

Swarm networks add service records (set_service_records, called by
labkit.engine.swarm.discovery after each assignment snapshot): they live in the same
NetworkView as the network's local members, so a task container's embedded DNS answers
both without knowing which is which."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from labkit.engine.net.dns.table import _NAME, Endpoint, IPAddress, NetworkView

__all__ = ["ContainerView", "member", "refresh", "service_networks", "set_service_records"]


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
    # setdefault: one view object per network for good, whoever makes it first (the
    # discovery thread may make it for service records before a member joins), since
    # containers' ContainerViews hold it by reference
    view = nets.views.setdefault(rec.id, NetworkView(rec.name))
    view.update(eps)


def set_service_records(nets: Any, network_id: str, network_name: str,
                        records: Mapping[str, Iterable[str]],
                        reverse: Mapping[str, str] | None = None) -> NetworkView:
    """Replace swarm network ``network_id``'s service records in one step.

    ``records``: DNS name -> addresses, e.g. ``{"web": ["10.0.1.2"], "tasks.web":
    ["10.0.1.3", "10.0.1.4"]}`` (names answer also as ``NAME.<network_name>``);
    ``reverse``: task address -> the name its PTR answers (``<network_name>`` appended).
    ``{}`` removes them all.  Makes the network's view when no member made it yet, so the
    first task container to join finds the records there.  Thread-safe; raises
    InvalidArgumentError (nothing changed) on a bad name or address."""
    view: NetworkView = nets.views.setdefault(network_id, NetworkView(network_name))
    view.set_services(records, reverse)
    return view


def service_networks(nets: Any) -> list[str]:
    """Ids of the networks whose views hold service records now."""
    return [nid for nid, v in list(nets.views.items()) if v.services()]


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
