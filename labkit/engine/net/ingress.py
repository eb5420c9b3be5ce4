"""The ingress routing mesh on a node: a published port answers on every node's addresses
and spreads its connections over the service's tasks, wherever they run (swarm, issue 13).

Docker builds it from an ``ingress_sbox`` namespace, iptables marks and IPVS
(libnetwork service_linux.go, ``programIngress``).  labkit does it in the node's own
namespace (the daemon's; a lab node is a daemon in its own netns) with one nftables table,
``ip lk-ingress``::

    prerouting  nat   dstnat  fib daddr type local jump publish
    output      nat   -100    fib daddr type local jump publish
    publish     tcp dport 8080 dnat ip to numgen inc mod 3 map
                               { 0 : 10.0.0.7 . 80, 1 : 10.0.0.8 . 80, 2 : 10.0.0.9 . 80 }
    postrouting nat   srcnat  oifname BRIDGE ct status dnat snat ip to NODE_IP
    input       filter        published port with no task: reject
    guard       filter raw    iifname BRIDGE: no 127.0.0.0/8 source or destination

Why each piece:

* ``fib daddr type local`` (Docker's ``-m addrtype --dst-type LOCAL``): the port answers
  on every address of the node (underlay, loopback, its ingress address), never on
  forwarded traffic that merely passes through.
* prerouting serves clients elsewhere (an external balancer pointing at any node);
  output serves programs on the node itself (``curl localhost:8080`` on a node, as with
  Docker).  A nat chain sees only a flow's first packet, so ``numgen inc`` (a counter
  shared by all CPUs, nft(8) "NUMGEN EXPRESSION") deals flows out in strict rotation.
* the backends are the tasks' addresses on the ingress overlay (any node): the DNATed
  flow leaves through the ingress bridge, over VXLAN when the task is remote.  Its source
  becomes the node's own ingress address (``snat`` to ``node_ip``, i.e. masquerade with
  the address pinned), so the task answers over the overlay to this node, where
  conntrack undoes both translations; the task never needs a route to the client.
  Only DNATed flows (``ct status dnat``) are rewritten, never the node's own traffic on
  the overlay.
* ``net.ipv4.ip_forward=1`` in the node's namespace: a client's flow arrives on the
  underlay and leaves by the ingress bridge, which is routing (ip-sysctl.rst).
* ``route_localnet=1`` on the ingress bridge only: a flow from the node to
  ``127.0.0.1:8080`` keeps its 127.0.0.1 source through the output DNAT, and a packet
  with a loopback source may leave by a non-loopback device only when route_localnet is
  set on it (ip-sysctl.rst; otherwise ip_route_output drops it as a martian); the snat
  then gives it the node's ingress address.  The ``guard`` chain drops whatever comes IN
  from the bridge with a loopback address, so route_localnet cannot be used to reach the
  node's 127.0.0.1 services from a task (CVE-2020-8558, as in labkit.engine.net.nft).
* a published port with no running task: the ``input`` chain rejects it (TCP reset, else
  ICMP port unreachable), rather than letting a local program that happens to listen on
  that port answer for the service.

program_ingress() replaces the table in one ``nft -f -`` transaction, so a changed set of
backends is switched in one step; conntrack keeps the flows already translated.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit import errors
from labkit.engine.net.vip import numgen_map, resolve_ns, run_nft
from labkit.ns.netns import netns as _enter_netns

__all__ = ["TABLE", "IngressPort", "clear_ingress", "program_ingress", "render_ingress"]

TABLE = "lk-ingress"
_T = f"ip {TABLE}"
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_PROTOS = ("tcp", "udp")


@dataclass(frozen=True)
class IngressPort:
    """One ingress-mode published port of a service and its tasks' ingress addresses."""

    protocol: str
    published_port: int
    target_port: int
    backends: tuple[str, ...] = ()


def _port(p: int, what: str) -> int:
    if not isinstance(p, int) or isinstance(p, bool) or not 1 <= p <= 65535:
        raise errors.InvalidArgumentError(what, f"{p!r} is not a port in 1-65535")
    return p


def _v4(addr: str, what: str) -> str:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise errors.InvalidArgumentError(what, f"{addr!r} is not an IP address") from None
    if ip.version != 4:
        raise errors.InvalidArgumentError(what, f"{addr} is not an IPv4 address")
    return str(ip)


def render_ingress(bridge: str, node_ip: str, ports: Sequence[IngressPort]) -> str:
    """The whole ``nft -f`` script replacing the table; validates first and raises
    InvalidArgumentError naming the bad bridge, address, port or backend."""
    if not _IFNAME.match(bridge):
        raise errors.InvalidArgumentError(
            "ingress bridge", f"{bridge!r} is not 1-15 characters of [A-Za-z0-9_.-]")
    src = _v4(node_ip, "node ingress address")
    publish: list[str] = []
    reject: list[str] = []
    seen: set[tuple[str, int]] = set()
    for p in ports:
        if p.protocol not in _PROTOS:
            raise errors.InvalidArgumentError("protocol", f"{p.protocol!r} is not tcp or udp "
                                              "(the routing mesh has no sctp)")
        pub = _port(p.published_port, "published port")
        target = _port(p.target_port, "target port")
        if (p.protocol, pub) in seen:
            raise errors.InvalidArgumentError(
                "published port", f"{pub}/{p.protocol} appears twice")
        seen.add((p.protocol, pub))
        backends = list(dict.fromkeys(_v4(b, f"backend of port {pub}") for b in p.backends))
        if backends:
            publish.append(f"  {p.protocol} dport {pub} dnat ip to "
                           + numgen_map([f"{b} . {target}" for b in backends]))
        elif p.protocol == "tcp":
            reject.append(f"  fib daddr type local tcp dport {pub} reject with tcp reset")
        else:
            reject.append(f"  fib daddr type local udp dport {pub} reject")
    br = f'"{bridge}"'
    lines = [f"table {_T} {{}}", f"delete table {_T}", f"table {_T} {{",
             " chain guard {", "  type filter hook prerouting priority raw; policy accept;",
             f"  iifname {br} ip saddr 127.0.0.0/8 drop",
             f"  iifname {br} ip daddr 127.0.0.0/8 drop", " }",
             " chain publish {", *publish, " }",
             " chain prerouting {", "  type nat hook prerouting priority dstnat; policy accept;",
             "  fib daddr type local jump publish", " }",
             " chain output {", "  type nat hook output priority -100; policy accept;",
             "  fib daddr type local jump publish", " }",
             " chain postrouting {", "  type nat hook postrouting priority srcnat; policy accept;",
             f"  oifname {br} ct status dnat snat ip to {src}", " }",
             " chain input {", "  type filter hook input priority filter; policy accept;",
             *reject, " }",
             "}"]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _in(ns: str | None) -> Iterator[None]:
    if ns is None:
        yield
    else:
        # /proc/sys/net resolves in the opening thread's network namespace (proc(5)).
        with _enter_netns(ns):
            yield


def _sysctl(ns: str | None, path: str, value: str) -> None:
    with _in(ns):
        p = Path(path)
        try:
            if p.read_text().strip() != value:
                p.write_text(value)
        except FileNotFoundError:
            raise errors.NotFoundError("sysctl", path) from None


def program_ingress(bridge: str, node_ip: str, ports: Sequence[IngressPort], *,
                    ns: str | os.PathLike[str] | None = None) -> None:
    """Make table ``ip lk-ingress`` serve exactly ``ports`` (idempotent, one transaction).

    ``bridge`` is the ingress network's bridge on this node, ``node_ip`` this node's
    address on it (the source of mesh traffic).  Runs in the caller's network namespace,
    or in ``ns`` (a path or /run/netns name; for tests and labs).  Blocking: run it in a
    worker thread.  Raises NotFoundError when the bridge does not exist (nothing changed).
    """
    script = render_ingress(bridge, node_ip, ports)
    path = resolve_ns(ns) if ns is not None else None
    if not ports:
        clear_ingress(ns=ns)
        return
    # the bridge first: a missing bridge changes nothing (route_localnet lives on it)
    _sysctl(path, f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet", "1")
    _sysctl(path, "/proc/sys/net/ipv4/ip_forward", "1")
    run_nft(script, path, "program the ingress routing mesh")


def clear_ingress(*, ns: str | os.PathLike[str] | None = None) -> None:
    """Remove the table (idempotent).  ip_forward stays on: other networks need it too."""
    run_nft(f"table {_T} {{}}\ndelete table {_T}\n",
            resolve_ns(ns) if ns is not None else None, "clear the ingress routing mesh")
