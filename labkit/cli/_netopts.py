"""`labkit run/create` networking flags -> the create body, as the Docker CLI builds it.

-p/--publish follows go-connections nat.ParsePortSpec: ``[ip:][hostPort:]containerPort
[/proto]`` (an IPv6 ip in brackets), ranges on both sides; equal-length ranges are paired port
by port, a host range against one container port is sent whole ("8000-8010") for the daemon
to pick from.  --network takes any name (the daemon checks it exists), and the endpoint
settings (--ip, --ip6, --network-alias, --link on a user network) go to
NetworkingConfig.EndpointsConfig.{NAME}; --mac-address stays at the top level, as API 1.41
has it.  A bad value is an InvalidArgumentError naming its flag, before any request.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from labkit import errors

__all__ = ["VALUE_OPTS", "add_flags", "apply", "parse_expose", "parse_publish"]

VALUE_OPTS = {"-p", "--publish", "--expose", "--network", "--net", "--ip", "--ip6",
              "--network-alias", "--net-alias", "--link", "--dns", "--dns-search",
              "--dns-option", "--dns-opt", "--add-host", "--mac-address"}
_PROTOS = ("tcp", "udp", "sctp")
# Modes the daemon runs itself; anything else (and container:X) is not a user network.
_BUILTIN = ("default", "bridge", "host", "none")


def add_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("-p", "--publish", action="append", default=[],
      help="publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/proto])")
    a("-P", "--publish-all", action="store_true",
      help="publish all exposed ports to random host ports")
    a("--expose", action="append", default=[], help="expose a port or a range of ports")
    a("--network", "--net", action="append", default=[],
      help="connect to a network (bridge, host, none, container:NAME or a network's name)")
    a("--ip", help="IPv4 address on the network (e.g. 172.30.100.104)")
    a("--ip6", help="IPv6 address on the network (e.g. 2001:db8::33)")
    a("--network-alias", "--net-alias", action="append", default=[],
      help="add a network-scoped alias for the container")
    a("--link", action="append", default=[], help="add link to another container (name[:alias])")
    a("--dns", action="append", default=[], help="set custom DNS servers")
    a("--dns-search", action="append", default=[], help="set custom DNS search domains")
    a("--dns-option", "--dns-opt", action="append", default=[], help="set DNS options")
    a("--add-host", action="append", default=[],
      help="add a custom host-to-IP mapping (host:ip or host=ip; ip may be host-gateway)")
    a("--mac-address", help="container MAC address (e.g. 92:d0:c6:0a:29:33)")


def _ip(flag: str, text: str, version: int | None = None) -> str:
    import ipaddress  # only when an address flag is given: it costs ~2 ms to import

    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise errors.InvalidArgumentError(flag, f"invalid IP address: {text}") from None
    if version is not None and addr.version != version:
        raise errors.InvalidArgumentError(flag, f"{text} is not an IPv{version} address")
    return text  # sent as written, as the Docker CLI does


def _port_range(flag: str, what: str, text: str) -> tuple[int, int]:
    """nat.ParsePortRange: "80" or "80-90", each 0..65535, start <= end."""
    m = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", text)
    if not m or int(m.group(1)) > 65535 or int(m.group(2) or 0) > 65535:
        raise errors.InvalidArgumentError(flag, f"invalid {what}: {text}")
    start, end = int(m.group(1)), int(m.group(2) or m.group(1))
    if end < start:
        raise errors.InvalidArgumentError(flag, f"invalid {what}: {text} (end below start)")
    return start, end


def _proto(flag: str, spec: str) -> tuple[str, str]:
    body, slash, proto = spec.rpartition("/")
    if not slash:
        return spec, "tcp"
    if proto.lower() not in _PROTOS:
        raise errors.InvalidArgumentError(flag, f"invalid proto: {proto}",
                                          hint="use tcp, udp or sctp")
    return body, proto.lower()


def parse_publish(spec: str) -> list[tuple[str, dict[str, str]]]:
    """One -p value -> [(containerPort/proto, {"HostIp", "HostPort"})...], Docker's order."""
    rest, proto = _proto("--publish", spec)
    host_ip = ""
    if rest.startswith("["):  # [v6addr]:host:container
        end = rest.find("]")
        if end < 0 or rest[end + 1:end + 2] != ":":
            raise errors.InvalidArgumentError("--publish", f"invalid IP address in {spec!r}")
        host_ip, rest = _ip("--publish", rest[1:end]), rest[end + 2:]
        parts = ["", *rest.split(":")]
    else:
        parts = rest.split(":")
    if len(parts) == 1:
        host_port, container = "", parts[0]
    elif len(parts) == 2:
        host_port, container = parts
    elif len(parts) == 3:
        if parts[0] and not host_ip:
            host_ip = _ip("--publish", parts[0])
        host_port, container = parts[1], parts[2]
    else:
        raise errors.InvalidArgumentError("--publish", f"invalid port specification: {spec!r}",
                                          hint="[ip:][hostPort:]containerPort[/proto]")
    if not container:
        raise errors.InvalidArgumentError("--publish", f"no port specified: {spec}<empty>")
    c0, c1 = _port_range("--publish", "containerPort", container)
    h0, h1 = _port_range("--publish", "hostPort", host_port) if host_port else (0, 0)
    if host_port and c1 > c0 and (h1 - h0) != (c1 - c0):
        raise errors.InvalidArgumentError(
            "--publish", "invalid ranges specified for container and host Ports: "
                         f"{container} and {host_port}")
    out = []
    for i, port in enumerate(range(c0, c1 + 1)):
        if not host_port:
            hp = ""
        elif c1 > c0 or h1 == h0:
            hp = str(h0 + i)
        else:  # one container port, a host range: the daemon picks a free one in it
            hp = f"{h0}-{h1}"
        out.append((f"{port}/{proto}", {"HostIp": host_ip, "HostPort": hp}))
    return out


def parse_expose(spec: str) -> list[str]:
    """One --expose value ("80", "80-90/udp") -> ["80/tcp", ...]."""
    rest, proto = _proto("--expose", spec)
    start, end = _port_range("--expose", "range format for --expose", rest)
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def _extra_host(text: str) -> str:
    """host:ip or host=ip (ip may be host-gateway or IPv6) -> "host:ip", as the CLI sends."""
    eq, colon = text.find("="), text.find(":")
    sep = "=" if eq > 0 and (colon < 0 or eq < colon) else ":"
    name, found, addr = text.partition(sep)
    addr = addr[1:-1] if addr.startswith("[") and addr.endswith("]") else addr
    if not found or not name or not addr:
        raise errors.InvalidArgumentError("--add-host", f"bad format for add-host: {text!r}",
                                          hint="host:ip or host=ip")
    if addr != "host-gateway":
        addr = _ip("--add-host", addr)
    return f"{name}:{addr}"


_DOMAIN = re.compile(r"^\.?(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                     r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$")
_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")


def _network(args: argparse.Namespace) -> str:
    nets = args.network or ["default"]
    if len(nets) > 1:
        raise errors.InvalidArgumentError(
            "--network", "only one network at create (API 1.41)",
            hint="create on one, then `labkit network connect` the others")
    mode = str(nets[0])
    if not mode or mode == "container:" or (
            mode.startswith("container:") and not mode.partition(":")[2].strip()):
        raise errors.InvalidArgumentError("--network", f"invalid network {mode!r}",
                                          hint="bridge, host, none, container:NAME or a name")
    return mode


def apply(args: argparse.Namespace, body: dict[str, Any]) -> None:
    """Fill ExposedPorts, MacAddress, NetworkingConfig and the HostConfig keys."""
    host = body["HostConfig"]
    mode = host["NetworkMode"] = _network(args)
    user_net = mode not in _BUILTIN and not mode.startswith("container:")
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in args.publish:
        for port, binding in parse_publish(spec):
            exposed[port] = {}
            bindings.setdefault(port, []).append(binding)
    for spec in args.expose:
        exposed.update((p, {}) for p in parse_expose(spec))
    if exposed:
        body["ExposedPorts"] = exposed
    if bindings:
        host["PortBindings"] = bindings
    if args.publish_all:
        host["PublishAllPorts"] = True
    if args.dns:
        host["Dns"] = [_ip("--dns", d) for d in args.dns]
    for domain in args.dns_search:
        if domain != "." and (len(domain) > 255 or not _DOMAIN.match(domain)):
            raise errors.InvalidArgumentError("--dns-search", f"{domain} is not a valid domain")
    if args.dns_search:
        host["DnsSearch"] = list(args.dns_search)
    if args.dns_option:
        host["DnsOptions"] = list(args.dns_option)
    if args.add_host:
        host["ExtraHosts"] = [_extra_host(h) for h in args.add_host]
    for link in args.link:
        name, _, alias = link.partition(":")
        if not name or (":" in link and not alias) or alias.count(":"):
            raise errors.InvalidArgumentError("--link", f"invalid link format: {link!r}",
                                              hint="name or name:alias")
    if args.link:
        host["Links"] = list(args.link)
    if args.mac_address is not None:
        if not _MAC.fullmatch(args.mac_address):
            raise errors.InvalidArgumentError("--mac-address",
                                              f"{args.mac_address} is not a valid mac address")
        body["MacAddress"] = args.mac_address
    endpoint: dict[str, Any] = {}
    if args.ip or args.ip6:
        endpoint["IPAMConfig"] = {k: v for k, v in (
            ("IPv4Address", args.ip and _ip("--ip", args.ip, 4)),
            ("IPv6Address", args.ip6 and _ip("--ip6", args.ip6, 6))) if v}
    if args.network_alias:
        if not user_net:
            raise errors.InvalidArgumentError(
                "--network-alias", "network-scoped aliases are only supported for "
                                   "user-defined networks")
        endpoint["Aliases"] = list(args.network_alias)
    if user_net and args.link:
        endpoint["Links"] = list(args.link)
    body["NetworkingConfig"] = {"EndpointsConfig": {mode: endpoint} if endpoint else {}}
