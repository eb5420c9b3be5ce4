"""A container's /etc/resolv.conf and /etc/hosts, written as Docker writes them.

resolv.conf (resolv.conf(5)):
- on a user-defined network: ``nameserver 127.0.0.11`` (the embedded DNS) and the real
  servers (--dns, else the host's) become the resolver's upstreams; ``options ndots:0`` is
  added unless the user set ndots, as libnetwork does, so that a dotted name is tried as
  is first.  No server at all (empty host resolv.conf, no --dns) -> Docker's fallback below
  as upstreams.
- on the default bridge (no embedded DNS): the --dns servers, else the host's, minus the
  host's loopback ones (unreachable from the container); none left -> Google's 8.8.8.8
  and 8.8.4.4, Docker's fallback (and 2001:4860:4860::8888/8844 with IPv6).
- ``search``: --dns-search, else the host's; ``options``: --dns-option, else the host's.

/etc/hosts: the localhost lines, --add-host lines, then the container's own addresses
with its hostname (and aliases), as Docker's buildHostsFile orders them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from labkit import errors
from labkit.engine.net.dns.resolver import Upstream
from labkit.engine.net.dns.server import DNS_ADDRESS
from labkit.engine.net.dns.table import IPAddress

__all__ = ["HostResolv", "ResolvConf", "hosts_file", "parse_add_host", "parse_resolv_conf",
           "resolv_conf"]

_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$")
_OPTION = re.compile(r"^[A-Za-z0-9_-]+(:[0-9]+)?$")
_FALLBACK_V4 = ("8.8.8.8", "8.8.4.4")
_FALLBACK_V6 = ("2001:4860:4860::8888", "2001:4860:4860::8844")


@dataclass(frozen=True)
class HostResolv:
    nameservers: tuple[IPAddress, ...]
    search: tuple[str, ...]
    options: tuple[str, ...]


@dataclass(frozen=True)
class ResolvConf:
    content: str                     # the file for the container
    upstreams: tuple[Upstream, ...]  # for the embedded resolver (empty without it)


def parse_resolv_conf(text: str) -> HostResolv:
    """The host's resolv.conf; unparsable nameserver lines are skipped, as glibc does."""
    ns: list[IPAddress] = []
    search: tuple[str, ...] = ()
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            try:
                ns.append(ipaddress.ip_address(words[1].split("%", 1)[0]))
            except ValueError:
                continue
        elif words[0] in ("search", "domain"):  # the last of them wins (resolv.conf(5))
            search = tuple(words[1:])
        elif words[0] == "options":
            options.extend(words[1:])
    return HostResolv(tuple(ns), search, tuple(options))


def _check(values: Sequence[str], pattern: re.Pattern[str], what: str) -> None:
    for v in values:
        if not pattern.match(v):
            raise errors.InvalidArgumentError(what, f"{v!r} is not valid")


def resolv_conf(host: HostResolv, *, embedded: bool, dns: Sequence[str] = (),
                dns_search: Sequence[str] = (), dns_options: Sequence[str] = (),
                ipv6: bool = False) -> ResolvConf:
    """The container's resolv.conf and the embedded resolver's upstreams.

    Raises InvalidArgumentError naming the bad --dns / --dns-search / --dns-option value.
    """
    servers: list[IPAddress] = []
    for d in dns:
        try:
            servers.append(ipaddress.ip_address(d))
        except ValueError:
            raise errors.InvalidArgumentError("--dns", f"{d!r} is not an IP address") from None
    _check(dns_search, _HOSTNAME, "--dns-search")
    _check(dns_options, _OPTION, "--dns-option")
    search = tuple(dns_search) or host.search
    options = list(dns_options) or list(host.options)
    lines: list[str] = []
    upstreams: tuple[Upstream, ...] = ()
    if embedded:
        lines.append(f"nameserver {DNS_ADDRESS}")
        # --dns servers are the container's choice: asked from its netns.  The host's
        # loopback servers only answer in the daemon's namespace.
        upstreams = tuple(Upstream(a) for a in servers) or tuple(
            Upstream(a, host=a.is_loopback) for a in host.nameservers) or tuple(
            Upstream(ip) for ip in _fallback(ipv6))
        if not any(o.startswith("ndots:") for o in options):
            options.append("ndots:0")
    else:
        chosen = servers or [a for a in host.nameservers if not a.is_loopback]
        chosen = chosen or _fallback(ipv6)
        lines += [f"nameserver {a}" for a in chosen]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return ResolvConf("\n".join(lines) + "\n", upstreams)


def _fallback(ipv6: bool) -> list[IPAddress]:
    return [ipaddress.ip_address(a) for a in _FALLBACK_V4 + (_FALLBACK_V6 if ipv6 else ())]


def parse_add_host(value: str, host_gateway: IPAddress | None = None) -> tuple[str, IPAddress]:
    """--add-host NAME:IP (or NAME=IP); IP may be ``host-gateway`` when the engine knows it.
    IPv6 addresses may be bracketed.  Raises InvalidArgumentError naming the value."""
    sep = "=" if "=" in value else ":"
    name, _, addr = value.partition(sep)
    if not _HOSTNAME.match(name):
        raise errors.InvalidArgumentError("--add-host", f"{value!r}: bad host name {name!r}")
    if addr == "host-gateway":
        if host_gateway is None:
            raise errors.InvalidArgumentError("--add-host", f"{value!r}: no host gateway known")
        return name, host_gateway
    try:
        return name, ipaddress.ip_address(addr.strip("[]"))
    except ValueError:
        raise errors.InvalidArgumentError(
            "--add-host", f"{value!r}: {addr!r} is not an IP address") from None


def hosts_file(hostname: str, addresses: Sequence[IPAddress],
               extra: Sequence[tuple[str, IPAddress]] = (), aliases: Sequence[str] = ()) -> str:
    """/etc/hosts for a container with ``hostname`` at ``addresses``."""
    for n in (hostname, *aliases):
        if not _HOSTNAME.match(n):
            raise errors.InvalidArgumentError("hostname", f"{n!r} is not a valid host name")
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
             "ff02::2\tip6-allrouters"]
    lines += [f"{ip}\t{name}" for name, ip in extra]
    names = " ".join(dict.fromkeys((hostname, *aliases)))
    lines += [f"{ip}\t{names}" for ip in addresses]
    return "\n".join(lines) + "\n"
