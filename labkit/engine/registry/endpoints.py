"""Where a registry domain is reached: the URLs to try, in order, and whether TLS is checked.

dockerd's rules (moby registry/service.go lookupV2Endpoints, registry/config.go isSecureIndex):

- ``docker.io`` goes to each ``registry-mirrors`` URL in order, then to
  https://registry-1.docker.io.
- Any other domain is https with the certificate verified, unless it is *insecure*: listed in
  ``insecure-registries`` as host[:port], or its address falls in a listed CIDR or in
  127.0.0.0/8 or ::1/128 (dockerd's built-in insecure ranges).  An insecure registry is tried
  over https without verification first, then over plain http.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from labkit.engine.daemonconfig import DaemonConfig
from labkit.engine.registry.reference import DOCKER_IO

__all__ = ["DOCKER_HUB", "Endpoint", "endpoints", "is_insecure", "registry_config"]

DOCKER_HUB = "https://registry-1.docker.io"
_LOOPBACK = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One base URL (scheme://host[:port], no trailing '/'); ``verify``: check TLS."""

    url: str
    verify: bool = True
    mirror: bool = False

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]


def _cidrs(config: DaemonConfig) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = [ipaddress.ip_network(c) for c in _LOOPBACK]
    nets += [ipaddress.ip_network(r, strict=False) for r in config.insecure_registries
             if "/" in r]
    return nets


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    host = host.strip("[]")
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:  # moby isSecureIndex resolves the name (net.LookupIP) and checks every address
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]


def _split_host(domain: str) -> str:
    if domain.startswith("["):
        return domain[1:].split("]", 1)[0]
    return domain.rsplit(":", 1)[0] if domain.count(":") == 1 else domain


def is_insecure(domain: str, config: DaemonConfig) -> bool:
    """True when ``domain`` (host[:port]) may be reached without verified TLS."""
    entries = {e.lower() for e in config.insecure_registries if "/" not in e}
    if domain.lower() in entries:
        return True
    nets = _cidrs(config)
    return any(a in n for a in _addresses(_split_host(domain)) for n in nets
               if a.version == n.version)


def endpoints(domain: str, config: DaemonConfig) -> list[Endpoint]:
    """The endpoints to try for ``domain``, in order."""
    if domain == DOCKER_IO:
        out = []
        for m in config.registry_mirrors:
            url = m.rstrip("/")
            out.append(Endpoint(url, not is_insecure(url.split("://", 1)[1], config), True))
        return [*out, Endpoint(DOCKER_HUB)]
    if is_insecure(domain, config):
        return [Endpoint(f"https://{domain}", False), Endpoint(f"http://{domain}", False)]
    return [Endpoint(f"https://{domain}")]


def registry_config(config: DaemonConfig) -> dict[str, Any]:
    """GET /info's RegistryConfig, as dockerd fills it (moby registry.ServiceConfig)."""
    mirrors = [m.rstrip("/") + "/" for m in config.registry_mirrors]
    cidrs = [str(ipaddress.ip_network(c)) for c in _LOOPBACK]
    cidrs += [str(ipaddress.ip_network(r, strict=False)) for r in config.insecure_registries
              if "/" in r]
    index = {DOCKER_IO: {"Name": DOCKER_IO, "Mirrors": mirrors, "Secure": True,
                         "Official": True}}
    for r in config.insecure_registries:
        if "/" not in r:
            name = r.split("://", 1)[-1]
            index[name] = {"Name": name, "Mirrors": [], "Secure": False, "Official": False}
    return {"AllowNondistributableArtifactsCIDRs": None,
            "AllowNondistributableArtifactsHostnames": None,
            "InsecureRegistryCIDRs": cidrs, "IndexConfigs": index, "Mirrors": mirrors}
