"""-p / -P as the API carries them, checked; and the published ports as Docker shows them.

The Docker CLI expands ``-p 8080-8081:80-81`` into one PortBindings key per container port
and sends ``-P`` as PublishAllPorts with the image's and --expose's ports in ExposedPorts
(docker/cli opts/port.go, nat.ParsePortSpecs).  What is left for the daemon: the keys
``PORT/PROTO``, each with a list of ``{"HostIp", "HostPort"}`` (HostPort "" = any free
port).  A host-port range for one container port ("8080-8090") is refused by name: labkit
publishes exactly the ports asked for.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from labkit import errors

__all__ = ["PortRequest", "exposed_ports", "list_ports", "parse_bindings", "ports_view"]

PROTOS = ("tcp", "udp")


@dataclass(frozen=True)
class PortRequest:
    """One binding to make: container port/proto -> host_ip:host_port (0 = any)."""

    port: int
    proto: str
    host_ip: str = ""
    host_port: int = 0


def _port(text: str, what: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise errors.InvalidArgumentError(what, f"invalid port {text!r}") from None
    if not 0 < n < 65536:
        raise errors.InvalidArgumentError(what, f"invalid port {text!r}: out of range 1-65535")
    return n


def split_key(key: str) -> tuple[int, str]:
    """``80/tcp`` (or ``80``) -> (80, "tcp"); refuses other protocols by name."""
    if not isinstance(key, str):
        raise errors.InvalidArgumentError("ExposedPorts", f"invalid port {key!r}")
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOS:
        raise errors.InvalidArgumentError(
            f"port {key}", f"protocol {proto!r} is not published by labkit (tcp, udp)")
    if "-" in port:
        raise errors.InvalidArgumentError(f"port {key}", "a port range must be expanded "
                                          "into one entry per port")
    return _port(port, f"port {key}"), proto


def exposed_ports(config: dict[str, Any]) -> list[tuple[int, str]]:
    """Config.ExposedPorts (image's and --expose's, merged by the create path), sorted."""
    return sorted({split_key(k) for k in (config.get("ExposedPorts") or {})})


def parse_bindings(host: dict[str, Any], config: dict[str, Any]) -> list[PortRequest]:
    """PortBindings (+ PublishAllPorts over ExposedPorts) -> the bindings to publish."""
    out: list[PortRequest] = []
    bindings = host.get("PortBindings") or {}
    if not isinstance(bindings, dict):
        raise errors.InvalidArgumentError("HostConfig.PortBindings", "must be an object")
    for key, lst in bindings.items():
        port, proto = split_key(key)
        for b in lst or [{}]:
            if not isinstance(b, dict):
                raise errors.InvalidArgumentError(f"PortBindings[{key}]", "must be objects")
            hip = b.get("HostIp") or ""
            if hip:
                try:
                    hip = str(ipaddress.ip_address(hip.strip("[]")))
                except ValueError:
                    raise errors.InvalidArgumentError(
                        f"PortBindings[{key}].HostIp", f"invalid IP address: {hip}") from None
            hp = str(b.get("HostPort") or "")
            if "-" in hp:
                lo, _, hi = hp.partition("-")
                if lo == hi:
                    hp = lo
                else:
                    raise errors.InvalidArgumentError(
                        f"PortBindings[{key}].HostPort", f"host port range {hp!r} is not "
                        "offered by labkit", hint="name one host port (or none for any)")
            out.append(PortRequest(port, proto, hip, _port(hp, f"host port of {key}")
                                   if hp else 0))
    if host.get("PublishAllPorts"):
        have = {(r.port, r.proto) for r in out}
        out += [PortRequest(p, pr) for p, pr in exposed_ports(config) if (p, pr) not in have]
    return out


def ports_view(config: dict[str, Any], published: list[dict[str, Any]],
               running: bool) -> dict[str, Any]:
    """NetworkSettings.Ports: every exposed or published port; its bindings while the
    container runs (null otherwise, as dockerd shows a stopped container)."""
    view: dict[str, Any] = {f"{p}/{pr}": None for p, pr in exposed_ports(config)}
    if not running:
        return view
    for m in published:
        key = f"{m['port']}/{m['proto']}"
        view.setdefault(key, None)
        if view[key] is None:
            view[key] = []
        view[key].append({"HostIp": m["host_ip"], "HostPort": str(m["host_port"])})
    return view


def list_ports(config: dict[str, Any], published: list[dict[str, Any]],
               running: bool) -> list[dict[str, Any]]:
    """GET /containers/json's Ports (what `docker ps` prints in its PORTS column)."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[int, str]] = set()
    if running:
        for m in published:
            out.append({"IP": m["host_ip"], "PrivatePort": m["port"],
                        "PublicPort": m["host_port"], "Type": m["proto"]})
            seen.add((m["port"], m["proto"]))
    for p, pr in exposed_ports(config):
        if (p, pr) not in seen:
            out.append({"PrivatePort": p, "Type": pr})
    return out
