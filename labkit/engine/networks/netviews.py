"""Networks as the Engine API shows them (GET /networks, /networks/{id}) and their filters."""

from __future__ import annotations

import time
from typing import Any

from labkit import errors
from labkit.engine.networks.store import NetworkRecord

__all__ = ["labels_match", "matches", "network_json", "until_of"]

# what dockerd's network inspect shows for the predefined networks' drivers
_DRIVER_SHOWN = {"null": "null", "host": "host"}


def _rfc3339(t: float) -> str:
    whole = int(t)
    frac = f"{t - whole:.9f}"[2:]
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{frac}Z"


def _ipam_config(rec: NetworkRecord, net: Any) -> list[dict[str, Any]]:
    if net is None:
        return [dict(c) for c in rec.ipam]
    out = []
    for p in net.pools:
        c: dict[str, Any] = {"Subnet": str(p.subnet), "Gateway": str(p.gateway)}
        if p.ip_range is not None:
            c["IPRange"] = str(p.ip_range)
        aux = p.aux_addresses
        if aux:
            c["AuxiliaryAddresses"] = {k: str(v) for k, v in aux.items()}
        out.append(c)
    return out


def _endpoint(c: Any, rec: NetworkRecord) -> dict[str, Any]:
    ep = c.networks[rec.name]
    v4 = f"{ep['IPAddress']}/{ep['IPPrefixLen']}" if ep.get("IPAddress") else ""
    v6 = (f"{ep['GlobalIPv6Address']}/{ep['GlobalIPv6PrefixLen']}"
          if ep.get("GlobalIPv6Address") else "")
    return {"Name": c.name, "EndpointID": ep.get("EndpointID", ""),
            "MacAddress": ep.get("MacAddress", ""), "IPv4Address": v4, "IPv6Address": v6}


def network_json(rec: NetworkRecord, net: Any, attached: list[Any],
                 peers: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """GET /networks/{id}: dockerd's shape (api/types/network.Inspect).  A swarm network
    materialized here has Scope "swarm", its options (the VXLAN id in
    com.docker.network.driver.overlay.vxlanid_list) and, when ``peers`` is given, Docker's
    "Peers": [{"Name", "IP"}] -- the nodes of the network's VXLAN mesh, this one first."""
    out = {
        "Name": rec.name, "Id": rec.id, "Created": _rfc3339(rec.created), "Scope": rec.scope,
        "Driver": _DRIVER_SHOWN.get(rec.driver, rec.driver),
        "EnableIPv4": rec.ipv4 and rec.driver not in ("host", "null"),
        "EnableIPv6": rec.ipv6,
        "IPAM": {"Driver": "default", "Options": dict(rec.ipam_options) or None,
                 "Config": _ipam_config(rec, net)},
        "Internal": rec.internal, "Attachable": rec.attachable,
        "Ingress": bool(rec.swarm.get("Ingress")),
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": {c.id: _endpoint(c, rec) for c in attached},
        "Options": dict(rec.options), "Labels": dict(rec.labels),
    }
    if peers is not None:
        out["Peers"] = peers
    return out


def labels_match(labels: dict[str, str], filters: dict[str, list[str]]) -> bool:
    """label=KEY / label=KEY=VALUE all hold; label!=... none holds."""
    def hit(want: str) -> bool:
        k, eq, v = want.partition("=")
        return k in labels and (not eq or labels[k] == v)
    return all(hit(w) for w in filters.get("label", [])) and \
        not any(hit(w) for w in filters.get("label!", []))


def until_of(filters: dict[str, list[str]]) -> float:
    """prune's until=: unix seconds, RFC 3339, or a Go duration like 24h (moby's
    GetTimestamp); no filter: no bound."""
    vals = filters.get("until") or []
    if not vals:
        return float("inf")
    v = vals[-1]
    try:
        return float(v)
    except ValueError:
        pass
    units = {"s": 1, "m": 60, "h": 3600}
    if v and v[-1] in units:
        try:
            return time.time() - float(v[:-1]) * units[v[-1]]
        except ValueError:
            pass
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return time.mktime(time.strptime(v, fmt)) - time.timezone
        except ValueError:
            continue
    raise errors.InvalidArgumentError("until", f"failed to parse value {v!r} as a time")


def matches(rec: NetworkRecord, filters: dict[str, list[str]], used: bool) -> bool:
    """GET /networks' filters (moby daemon/network/filter.go)."""
    for v in filters.get("driver", []):
        if _DRIVER_SHOWN.get(rec.driver, rec.driver) != v:
            return False
    if filters.get("id") and not any(rec.id.startswith(v) for v in filters["id"]):
        return False
    if filters.get("name") and not any(v in rec.name for v in filters["name"]):
        return False
    if filters.get("scope") and rec.scope not in filters["scope"]:
        return False
    for v in filters.get("type", []):
        if v not in ("custom", "builtin"):
            raise errors.InvalidArgumentError("filters", f"invalid filter: 'type'='{v}'")
        if (v == "builtin") != rec.predefined:
            return False
    for v in filters.get("dangling", []):
        if v.lower() not in ("true", "false", "1", "0"):
            raise errors.InvalidArgumentError("filters", f"invalid filter 'dangling={v}'")
        dangling = v.lower() in ("true", "1")
        if dangling != (not used and not rec.predefined):
            return False
    return labels_match(rec.labels, filters)


_EP_SHOWN = ("IPAMConfig", "Links", "Aliases", "MacAddress", "DriverOpts", "NetworkID",
             "EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "IPv6Gateway",
             "GlobalIPv6Address", "GlobalIPv6PrefixLen", "DNSNames")
_EP_EMPTY: dict[str, Any] = {"IPAMConfig": None, "Links": None, "Aliases": None,
                             "MacAddress": "", "DriverOpts": None, "NetworkID": "",
                             "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                             "IPv6Gateway": "", "GlobalIPv6Address": "",
                             "GlobalIPv6PrefixLen": 0, "DNSNames": None}


def endpoint_shown(ep: dict[str, Any]) -> dict[str, Any]:
    """api/types/network.EndpointSettings with every field (as dockerd prints them)."""
    return {k: ep.get(k, _EP_EMPTY[k]) for k in _EP_SHOWN}


def container_settings(rec: Any) -> dict[str, Any]:
    """GET /containers/{id}/json's NetworkSettings."""
    from labkit.engine.networks.portspec import ports_view
    net = rec.net or {}
    running = bool(rec.running and (net.get("sandbox") or net.get("joined")))
    nets = {name: endpoint_shown(ep) for name, ep in (rec.networks or {}).items()}
    top = nets.get("bridge") or _EP_EMPTY
    return {
        "Bridge": "", "SandboxID": net.get("sandbox", "").rsplit("/", 1)[-1],
        "SandboxKey": net.get("sandbox", ""), "HairpinMode": False,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports_view(rec.config, net.get("ports") or [], running),
        "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        # the deprecated top-level fields mirror the default bridge's endpoint (moby)
        **{k: top[k] for k in ("EndpointID", "Gateway", "GlobalIPv6Address",
                               "GlobalIPv6PrefixLen", "IPAddress", "IPPrefixLen",
                               "IPv6Gateway", "MacAddress")},
        "Networks": nets,
    }


def container_list_settings(rec: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """GET /containers/json's NetworkSettings and Ports."""
    from labkit.engine.networks.portspec import list_ports
    net = rec.net or {}
    nets = {name: endpoint_shown(ep) for name, ep in (rec.networks or {}).items()}
    return {"Networks": nets}, list_ports(rec.config, net.get("ports") or [],
                                          bool(rec.running and net))
