"""Service virtual IPs inside a task container's network namespace (swarm, issue 13).

A swarm service in endpoint mode "vip" has one address per network; every task on that
network reaches the service through it, and the connections spread over the service's
running tasks.  Docker does this with IPVS in each container's namespace (libnetwork
service_linux.go: an iptables mangle mark per VIP, one IPVS virtual service per mark,
round-robin).  labkit does it with one nftables table per container namespace, ``ip
lk-vip``, whose only nat rule per VIP is::

    ip daddr VIP dnat ip to numgen inc mod N map { 0 : B0, 1 : B1, ... }

- ``numgen inc`` is a counter shared by every CPU (nft(8), "NUMGEN EXPRESSION"): new flow
  k goes to backend k mod N, an exact round-robin like IPVS's ``rr`` scheduler.
- a nat chain sees only a flow's first packet (nft(8), "NAT": the rest follow the
  conntrack entry), so the counter counts flows, not packets, and a flow keeps its backend.
- no port in the target: every protocol keeps its port (TCP, UDP) and ICMP echo is
  translated too, so ``ping VIP`` is answered by a task.  (IPVS cannot do ICMP: Docker's VIP
  answers no ping; labkit's does, and says so in notebook 14.)
- the hook is ``output``: the flows to a VIP start in the container itself; the DNAT
  happens after the first route lookup and the kernel routes again towards the new
  address (ip_route_me_harder), so the VIP needs no route or neighbour entry of its own.
- a VIP with no running task is rejected in a filter chain on ``output`` (the reject
  statement is not allowed in nat chains): TCP gets a reset, anything else ICMP port
  unreachable, so a client fails at once instead of waiting for SYN timeouts.

program_vips() replaces the whole table in ONE ``nft -f -`` transaction (``table`` /
``delete table`` / the new table: nft(8) "atomic rule replacement"), so a container never
sees a half-written table; conntrack keeps its NAT bindings across the swap, so open
connections to a removed backend stay up while new ones no longer go there.  The nft
program runs through ``nsenter --net=PATH``: a short child process in the container's
namespace, so no thread of the daemon ever changes namespace for it.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from labkit import errors
from labkit.engine.net.nft import NftError
from labkit.ns.netns import netns_path

__all__ = ["TABLE", "VipRule", "clear_vips", "program_vips", "render_vips", "run_nft"]

TABLE = "lk-vip"
_T = f"ip {TABLE}"
NFT_TIMEOUT = 30.0  # seconds: a wedged nft must not hang a snapshot forever


@dataclass(frozen=True)
class VipRule:
    """One service's virtual IP and the task addresses behind it (IPv4 strings)."""

    vip: str
    backends: tuple[str, ...] = ()


def _v4(addr: str, what: str) -> ipaddress.IPv4Address:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise errors.InvalidArgumentError(what, f"{addr!r} is not an IP address") from None
    if not isinstance(ip, ipaddress.IPv4Address):
        raise errors.InvalidArgumentError(what, f"{addr} is not an IPv4 address (swarm "
                                          "networks are IPv4)")
    return ip


def _unique(items: Sequence[str]) -> list[str]:
    # A repeated backend would get two slots of the round-robin: twice the share.
    return list(dict.fromkeys(items))


def numgen_map(targets: Sequence[str]) -> str:
    """``numgen inc mod N map { 0 : t0, ... }`` over ``targets`` (N >= 1)."""
    body = ", ".join(f"{i} : {t}" for i, t in enumerate(targets))
    return f"numgen inc mod {len(targets)} map {{ {body} }}"


def render_vips(rules: Sequence[VipRule]) -> str:
    """The whole ``nft -f`` script (replacing any previous table); validates everything
    first and raises InvalidArgumentError naming the bad VIP or backend."""
    seen: set[ipaddress.IPv4Address] = set()
    nat: list[str] = []
    reject: list[str] = []
    for r in rules:
        vip = _v4(r.vip, "virtual IP")
        if vip in seen:
            raise errors.InvalidArgumentError("virtual IP", f"{vip} appears in two rules")
        seen.add(vip)
        backends = [str(_v4(b, f"backend of {vip}")) for b in _unique(r.backends)]
        if backends:
            nat.append(f"  ip daddr {vip} dnat ip to {numgen_map(backends)}")
        else:
            reject += [f"  ip daddr {vip} meta l4proto tcp reject with tcp reset",
                       f"  ip daddr {vip} reject"]
    lines = [f"table {_T} {{}}", f"delete table {_T}"]
    if not rules:
        return "\n".join(lines) + "\n"
    lines += [f"table {_T} {{",
              " chain nat-out {",
              "  type nat hook output priority -100; policy accept;", *nat, " }",
              " chain reject-out {",
              "  type filter hook output priority filter; policy accept;", *reject, " }",
              "}"]
    return "\n".join(lines) + "\n"


def resolve_ns(ns: str | os.PathLike[str]) -> str:
    """A netns path as given, or a bare name -> /run/netns/NAME (ip-netns(8))."""
    s = os.fspath(ns)
    return s if "/" in s else str(netns_path(s))


def run_nft(script: str, ns: str | os.PathLike[str] | None, what: str) -> None:
    """``nft -f -`` with ``script`` on stdin, in netns ``ns`` (None: the caller's own);
    raises NftError (nothing applied: nft's transactions are all or nothing)."""
    nft = shutil.which("nft")
    if nft is None:
        raise errors.UnsupportedError("nftables", "the nft program is not installed",
                                      hint="apt-get install nftables")
    cmd = [nft, "-f", "-"]
    if ns is not None:
        path = resolve_ns(ns)
        if not os.path.exists(path):
            raise errors.NotFoundError("network namespace", path)
        cmd = ["nsenter", f"--net={path}", *cmd]
    try:
        proc = subprocess.run(cmd, input=script, capture_output=True, text=True,
                              timeout=NFT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise NftError(what, f"nft did not finish within {NFT_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        raise NftError(what, proc.stderr)


def program_vips(netns: str | os.PathLike[str], rules: Sequence[VipRule]) -> None:
    """Make table ``ip lk-vip`` in ``netns`` (a path, or a /run/netns name) hold exactly
    ``rules``, in one transaction; idempotent.  No rules -> no table.  Blocking: run it in
    a worker thread."""
    run_nft(render_vips(rules), netns, f"program VIPs in {os.fspath(netns)}")


def clear_vips(netns: str | os.PathLike[str]) -> None:
    """Remove the table from ``netns`` (idempotent)."""
    program_vips(netns, [])
