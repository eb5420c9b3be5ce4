"""Network endpoints (Engine API v1.41 "Network"): create, list, inspect, remove, prune,
connect, disconnect.

Bodies are the ones the Docker CLI sends (docker/cli command/network), so the daemon sees the
same requests from `labkit network ...` as from `docker network ...`; errors come back as the
labkit.errors classes the transport rebuilds (404 NotFoundError, 409 ConflictError, ...).
"""

from __future__ import annotations

import builtins
from typing import Any

from labkit import errors
from labkit.engine.client.transport import Transport

__all__ = ["Networks"]


def _ref(ref: str) -> str:
    """A network name or ID as one path segment.  The transport leaves "/" unescaped in
    paths, so a ref like "../containers/x/kill" would address another endpoint: no network
    name or ID holds a "/" or is a dot segment (RFC 3986 5.2.4), so such refs are refused."""
    if not ref or "/" in ref or ref in (".", ".."):
        raise errors.InvalidArgumentError("network", f"invalid network name or ID {ref!r}")
    return ref


def _ipam_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """One IPAM pool as the API names its keys (Subnet, IPRange, Gateway, AuxiliaryAddresses)."""
    allowed = {"Subnet", "IPRange", "Gateway", "AuxiliaryAddresses"}
    unknown = set(cfg) - allowed
    if unknown:
        raise errors.InvalidArgumentError("ipam", f"unknown IPAM config key {min(unknown)!r}",
                                          hint="use Subnet, IPRange, Gateway, "
                                               "AuxiliaryAddresses")
    return {k: v for k, v in cfg.items() if v}


class Networks:
    def __init__(self, t: Transport) -> None:
        self.t = t

    def create(self, name: str, driver: str | None = None,
               options: dict[str, str] | None = None,
               ipam: builtins.list[dict[str, Any]] | None = None,
               internal: bool = False, ipv6: bool = False,
               labels: dict[str, str] | None = None, attachable: bool = False,
               ipam_driver: str | None = None) -> dict[str, Any]:
        """POST /networks/create -> {"Id", "Warning"}; ``ipam`` is a list of pools
        ({"Subnet", "IPRange", "Gateway"}), as `docker network create --subnet ...` sends."""
        body: dict[str, Any] = {
            "Name": name, "CheckDuplicate": True, "Driver": driver or "bridge",
            "EnableIPv6": ipv6, "Internal": internal, "Attachable": attachable,
            "IPAM": {"Driver": ipam_driver or "default", "Options": {},
                     "Config": [_ipam_config(c) for c in ipam or []]},
            "Options": dict(options or {}), "Labels": dict(labels or {}),
        }
        return dict(self.t.post("/networks/create", body))

    def list(self, filters: dict[str, builtins.list[str]] | None = None
             ) -> builtins.list[dict[str, Any]]:
        return list(self.t.get("/networks", filters=filters or None) or [])

    def inspect(self, ref: str, verbose: bool = False) -> dict[str, Any]:
        return dict(self.t.get(f"/networks/{_ref(ref)}", verbose=verbose or None))

    def remove(self, ref: str) -> None:
        self.t.request("DELETE", f"/networks/{_ref(ref)}").read()

    def prune(self, filters: dict[str, builtins.list[str]] | None = None) -> dict[str, Any]:
        return dict(self.t.post("/networks/prune", None, filters=filters or None) or {})

    def connect(self, ref: str, container: str, ip: str | None = None,
                ip6: str | None = None, aliases: builtins.list[str] | None = None,
                links: builtins.list[str] | None = None) -> None:
        """POST /networks/{id}/connect with an EndpointConfig for what was asked."""
        endpoint: dict[str, Any] = {}
        if ip or ip6:
            endpoint["IPAMConfig"] = {k: v for k, v in (("IPv4Address", ip),
                                                        ("IPv6Address", ip6)) if v}
        if aliases:
            endpoint["Aliases"] = list(aliases)
        if links:
            endpoint["Links"] = list(links)
        body = {"Container": container, "EndpointConfig": endpoint}
        self.t.request("POST", f"/networks/{_ref(ref)}/connect", body=body).read()

    def disconnect(self, ref: str, container: str, force: bool = False) -> None:
        self.t.request("POST", f"/networks/{_ref(ref)}/disconnect",
                       body={"Container": container, "Force": force}).read()
