"""A container's /etc/hosts and /etc/resolv.conf texts, and the legacy --link environment.

The files' rules are net/dns/files.py's (Docker's buildHostsFile and resolvconf); this
module only gathers their inputs from a container's HostConfig.  --link on the default
bridge (moby daemon/links): /etc/hosts gets ``IP alias id name`` and the environment gets,
for the linked container's exposed ports, ``ALIAS_PORT=tcp://IP:PORT`` and per port
``ALIAS_PORT_80_TCP{,_ADDR,_PORT,_PROTO}``, plus ``ALIAS_NAME=/me/alias`` and its own
environment as ``ALIAS_ENV_K=V`` (HOME and PATH left out, as moby does).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from labkit.engine.net.dns.files import (
    ResolvConf,
    hosts_file,
    parse_add_host,
    parse_resolv_conf,
    resolv_conf,
)

__all__ = ["host_resolv_text", "hosts_text", "link_env", "resolv_text"]

HOST_RESOLV = "/etc/resolv.conf"


def host_resolv_text() -> str:
    try:
        with open(HOST_RESOLV) as f:
            return f.read(1 << 16)
    except OSError:
        return ""


def resolv_text(host: dict[str, Any], *, embedded: bool, host_net: bool) -> ResolvConf:
    """The container's resolv.conf (and the embedded resolver's upstreams)."""
    text = host_resolv_text()
    if host_net and not (host.get("Dns") or host.get("DnsSearch") or host.get("DnsOptions")):
        return ResolvConf(text, ())  # the host's own file, as Docker gives --network host
    return resolv_conf(parse_resolv_conf(text), embedded=embedded,
                       dns=host.get("Dns") or (), dns_search=host.get("DnsSearch") or (),
                       dns_options=host.get("DnsOptions") or ())


def hosts_text(hostname: str, addresses: list[str], host: dict[str, Any],
               link_hosts: list[tuple[str, str]] | Any, gateway: str | None = None) -> str:
    """/etc/hosts: localhost lines, --add-host (host-gateway = the first network's
    gateway), --link lines, then the container's own address(es) and hostname."""
    gw = ipaddress.ip_address(gateway) if gateway else None
    extra = [parse_add_host(e, gw) for e in host.get("ExtraHosts") or []]
    for ip, names in link_hosts or []:
        extra.append((names, ipaddress.ip_address(ip)))
    return hosts_file(hostname, [ipaddress.ip_address(a) for a in addresses], extra)


def _env_name(alias: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", alias.upper())


def link_env(alias: str, me: str, target: Any) -> list[str]:
    """moby's link environment for ``target`` linked as ``alias`` into container ``me``."""
    a = _env_name(alias)
    ip = target.networks["bridge"]["IPAddress"]
    ports = []
    for key in sorted((target.config.get("ExposedPorts") or {}),
                      key=lambda k: (int(k.partition("/")[0]), k)):
        port, _, proto = key.partition("/")
        ports.append((port, proto or "tcp"))
    env = [f"{a}_NAME=/{me}/{alias}"]
    if ports:
        env.append(f"{a}_PORT={ports[0][1]}://{ip}:{ports[0][0]}")
    for port, proto in ports:
        p = f"{a}_PORT_{port}_{proto.upper()}"
        env += [f"{p}={proto}://{ip}:{port}", f"{p}_ADDR={ip}", f"{p}_PORT={port}",
                f"{p}_PROTO={proto}"]
    for e in target.config.get("Env") or []:
        k, sep, v = e.partition("=")
        if sep and k not in ("HOME", "PATH"):
            env.append(f"{a}_ENV_{k}={v}")
    return env
