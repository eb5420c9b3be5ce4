"""Port publishing, bridge isolation and masquerade in labkit's own nftables table.

Everything lives in ONE table, ``table inet labkit``; no other table is ever read for
changes, flushed or touched.  Why one ``inet`` table rather than ``ip labkit`` plus
``ip6 labkit``: the inet family carries nat hooks since Linux 5.2 / nft 0.9.1, so one
transaction changes IPv4 and IPv6 rules of a container together (a half-published
dual-stack container cannot happen), teardown is one ``delete table``, and the isolation
chains are written once for both families.  (Docker's own nftables backend uses two
tables, ``ip docker-bridges`` and ``ip6 docker-bridges``, because it mirrors its iptables
rules family by family.)  Every change is one ``nft -f -`` run, which the kernel applies
as one netlink batch: all of it or nothing (nft(8), "atomic rule replacement").

The table (``render_base``; an example with rules is in ``example_ruleset()``)::

    guard       filter raw    drop loopback addresses coming in from a bridge
    prerouting  nat  dstnat   fib daddr type local jump publish-dnat
    output      nat  -100     fib daddr type local jump publish-dnat
    postrouting nat  srcnat   jump bridges-nat
    forward     filter        ct state established,related accept
                              jump publish-fwd; jump isolation; jump bridges-in
    publish-dnat   one DNAT rule per mapping          (comment "lk:<container id>")
    publish-fwd    one accept per mapping             (comment "lk:<container id>")
    isolation      Docker's DOCKER-ISOLATION-STAGE-1/2 + --internal  (set_bridges)
    bridges-in     drop what comes from outside to a bridge unpublished (set_bridges)
    bridges-nat    masquerade: loopback, hairpin, egress          (set_bridges)
    set bridge_names  the names of labkit's bridges

How each path works (Docker with ``"userland-proxy": false`` does the same with iptables):

* from outside: prerouting DNATs ``host:port`` to ``container:port``; forward accepts it
  (``ct status dnat``: only DNATed packets, so a neighbour cannot route to an unpublished
  port or around a ``127.0.0.1:`` binding; Docker 28 blocks that direct routing too).
* from the host itself, including ``127.0.0.1``: the output nat chain DNATs.  A packet
  from 127.0.0.1 may leave by a non-loopback device only when ``route_localnet`` is set on
  it (ip-sysctl.rst; else ip_route_output drops it as a martian), so set_bridges sets it on
  labkit's bridges only, and ``bridges-nat`` masquerades 127.0.0.0/8 to the bridge address
  so the container's reply is routable.  Docker's default instead runs a docker-proxy
  process per port; labkit avoids a process per port (issue 10 asks for speed) and keeps
  the port reservation a proxy gives by holding a bound socket (labkit.engine.net.hostports).
  IPv6 has no route_localnet: ``[::1]:port`` is not served (Docker needs its proxy there too).
* hairpin (a container to its own or a sibling's published port via a host address): the
  DNATed packet goes back out the bridge it came from; without SNAT the reply would go
  straight container-to-container and not be un-DNATed, so ``bridges-nat`` masquerades
  ``subnet -> same bridge`` when ``ct status dnat``.  (Docker's per-port ``-s cip -d cip``
  masquerade covers the own-container case; this rule covers siblings too.)  A container
  reaching ITSELF also needs hairpin mode on its bridge port (``enable_hairpin``): the
  DNATed frame must go back out the port it came in by, which a bridge refuses by default
  (br_forward.c should_deliver; with br_netfilter loaded, as Docker loads it, the frame is
  bridged, not routed).  libnetwork sets it on every port when the userland proxy is off.
* egress: ``ip saddr <subnet> oifname != <bridge> masquerade``, not for --internal.
* isolation: a packet from one labkit bridge to another is dropped; an --internal bridge
  neither sends nor receives forwarded traffic (only its members talk, on the bridge).

The seam for the engine (one Publisher per daemon, in the daemon's network namespace)::

    pub = Publisher(ns=None)                 # or a /run/netns name (tests)
    pub.ensure()                             # create the table if absent (keeps live rules)
    pub.set_bridges([Bridge("lk0", ("172.18.0.0/16",)), Bridge("lkint", ("10.9.0.0/24",),
                     internal=True)])        # after creating/removing any bridge
    got = pub.publish(cid, [PortMapping("172.18.0.2", 80, "tcp", bridge="lk0",
                                        host_port=8080)])   # host_port=0: -P / ephemeral
    enable_hairpin("lkv1234")                # each container's host-side veth, at attach
    pub.unpublish(cid)                       # container exit; idempotent
    pub.reconcile({cid: got, ...})           # daemon start: drop stale, re-add expected
    pub.release()                            # daemon stops, live-restore: rules stay
    pub.destroy()                            # remove the table (last network gone)

What the engine must do besides (not this module's business): ``net.ipv4.ip_forward=1``
in its namespace (Docker sets it too), create bridges and veths, and call enable_hairpin
on each container's bridge port.

``publish`` returns the mappings with host ports filled in (what ``docker port`` shows and
what the engine must store for ``reconcile``).  Errors: ConflictError "Bind for
0.0.0.0:8080 failed: port is already allocated" (Docker's words) when labkit or any host
program already holds the port; InvalidArgumentError for bad input, before anything is
changed; NftError when nft refuses a script (nothing was applied).

nft is driven as a program with a script on stdin and ``-j`` for listing (the Debian
python3-nftables binding is not in the venv and is a thin ctypes wrapper over libnftables
that would add nothing but an import path hack).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from labkit import errors
from labkit.engine.net.hostports import (
    PortAllocator,
    Reservation,
    bind_error,
    local_port_range,
    reserve,
)
from labkit.ns.netns import netns as _enter_netns
from labkit.ns.netns import netns_path
from labkit.ns.rtnl import off_loop as _off_loop

__all__ = [
    "FAMILY",
    "TABLE",
    "Bridge",
    "NftError",
    "PortMapping",
    "Publisher",
    "enable_hairpin",
    "example_ruleset",
    "render_base",
    "render_bridges",
    "render_mapping",
]

FAMILY = "inet"
TABLE = "labkit"
_T = f"{FAMILY} {TABLE}"
_CID = re.compile(r"^[0-9a-f]{1,64}$")
# IFNAMSIZ-1 characters, and only ones that need no quoting inside nft's "..." strings.
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_PROTOS = ("tcp", "udp")


class NftError(errors.LabkitError):
    """nft refused a script or a listing; nothing of that script was applied."""

    def __init__(self, what: str, stderr: str) -> None:
        super().__init__(f"nft {what}: {stderr.strip() or 'failed'}")
        self.what = what
        self.stderr = stderr

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.what, self.stderr))


@dataclass(frozen=True)
class PortMapping:
    """``-p [host_ip:]host_port:container_port/proto`` for a container on ``bridge``.

    ``host_ip`` "" means every address of the container address's family (Docker's
    0.0.0.0); ``host_port`` 0 asks for an ephemeral port (-P, or ``-p 80``).
    """

    container_ip: str
    container_port: int
    proto: str = "tcp"
    bridge: str = ""
    host_port: int = 0
    host_ip: str = ""

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.container_ip).version

    @property
    def bind_ip(self) -> str:
        """The address the reservation socket binds (and Docker prints)."""
        return self.host_ip or ("::" if self.version == 6 else "0.0.0.0")


@dataclass(frozen=True)
class Bridge:
    """A labkit bridge: its link name, its subnets, and whether it is --internal."""

    name: str
    subnets: tuple[str, ...]
    internal: bool = False


def _check_cid(cid: str) -> None:
    if not _CID.match(cid):
        raise errors.InvalidArgumentError(
            "container id", f"{cid!r} is not 1-64 lowercase hex digits")


def _check_ifname(name: str) -> None:
    if not _IFNAME.match(name):
        raise errors.InvalidArgumentError(
            "bridge name", f"{name!r} is not 1-15 characters of [A-Za-z0-9_.-]")


def _check_mapping(m: PortMapping, *, need_host_port: bool) -> None:
    try:
        cip = ipaddress.ip_address(m.container_ip)
    except ValueError:
        raise errors.InvalidArgumentError(
            "container ip", f"{m.container_ip!r} is not an IP address") from None
    if m.host_ip:
        try:
            hip = ipaddress.ip_address(m.host_ip)
        except ValueError:
            raise errors.InvalidArgumentError(
                "host ip", f"{m.host_ip!r} is not an IP address") from None
        if hip.version != cip.version:
            raise errors.InvalidArgumentError(
                "host ip", f"{m.host_ip} and container address {m.container_ip} are of "
                "different IP versions")
    if m.proto not in _PROTOS:
        raise errors.InvalidArgumentError(
            "protocol", f"{m.proto!r} is not tcp or udp")
    if not 1 <= m.container_port <= 65535:
        raise errors.InvalidArgumentError(
            "container port", f"{m.container_port} is not in 1-65535")
    low = 1 if need_host_port else 0
    if not low <= m.host_port <= 65535:
        raise errors.InvalidArgumentError(
            "host port", f"{m.host_port} is not in {low}-65535")
    _check_ifname(m.bridge)


def _ip(version: int) -> str:
    return "ip6" if version == 6 else "ip"


def _daddr_match(m: PortMapping) -> str:
    # In an inet table a bare "tcp dport" would match both families; pin the family.
    if m.host_ip:
        return f"{_ip(m.version)} daddr {m.host_ip}"
    return f"meta nfproto {'ipv6' if m.version == 6 else 'ipv4'}"


def _target(m: PortMapping) -> str:
    addr = f"[{m.container_ip}]" if m.version == 6 else m.container_ip
    return f"{addr}:{m.container_port}"


def render_base() -> list[str]:
    """The table, its set and chains, and the fixed jumps: run once, when the table is absent."""
    return [
        f"add table {_T}",
        f"add set {_T} bridge_names {{ type ifname; }}",
        f"add chain {_T} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}",
        f"add chain {_T} output {{ type nat hook output priority -100; policy accept; }}",
        f"add chain {_T} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}",
        f"add chain {_T} forward {{ type filter hook forward priority filter; policy accept; }}",
        f"add chain {_T} guard {{ type filter hook prerouting priority raw; policy accept; }}",
        f"add chain {_T} publish-dnat",
        f"add chain {_T} publish-fwd",
        f"add chain {_T} isolation",
        f"add chain {_T} bridges-in",
        f"add chain {_T} bridges-nat",
        # route_localnet on a bridge would let a container address the host's 127.0.0.0/8
        # services through its gateway (CVE-2020-8558, the same hole in kube-proxy): no
        # packet coming in from a labkit bridge may carry a loopback address.  raw runs
        # before conntrack undoes NAT, so replies to masqueraded loopback flows (sent to
        # the bridge address) are not affected.
        f"add rule {_T} guard iifname @bridge_names ip saddr 127.0.0.0/8 drop",
        f"add rule {_T} guard iifname @bridge_names ip daddr 127.0.0.0/8 drop",
        # addrtype LOCAL in Docker's rules: every address of the host, loopback included.
        f"add rule {_T} prerouting fib daddr type local jump publish-dnat",
        f"add rule {_T} output fib daddr type local jump publish-dnat",
        f"add rule {_T} postrouting jump bridges-nat",
        f"add rule {_T} forward ct state established,related accept",
        # published ports first: a DNATed flow to a published port is let through from
        # any bridge, as Docker's published ports answer containers on other networks
        # (its userland proxy connects from the host); only that one flow, not the network
        f"add rule {_T} forward jump publish-fwd",
        f"add rule {_T} forward jump isolation",
        f"add rule {_T} forward jump bridges-in",
    ]


def render_mapping(cid: str, m: PortMapping) -> list[str]:
    """The two rules of one mapping, both carrying ``comment "lk:<cid>"``."""
    _check_cid(cid)
    _check_mapping(m, need_host_port=True)
    tag = f'comment "lk:{cid}"'
    return [
        (f"add rule {_T} publish-dnat {_daddr_match(m)} {m.proto} dport {m.host_port} "
         f"dnat {_ip(m.version)} to {_target(m)} {tag}"),
        (f'add rule {_T} publish-fwd oifname "{m.bridge}" {_ip(m.version)} daddr '
         f"{m.container_ip} {m.proto} dport {m.container_port} ct status dnat accept {tag}"),
    ]


def render_bridges(bridges: Sequence[Bridge]) -> list[str]:
    """Replace the bridge-wide chains and the bridge set with rules for ``bridges``."""
    lines = [
        f"flush chain {_T} isolation",
        f"flush chain {_T} bridges-in",
        f"flush chain {_T} bridges-nat",
        f"flush set {_T} bridge_names",
    ]
    if bridges:
        names = ", ".join(f'"{b.name}"' for b in bridges)
        lines.append(f"add element {_T} bridge_names {{ {names} }}")
    for b in bridges:
        _check_ifname(b.name)
        br = f'"{b.name}"'
        if b.internal:
            lines += [
                f"add rule {_T} isolation iifname {br} oifname != {br} drop",
                f"add rule {_T} isolation oifname {br} iifname != {br} drop",
            ]
        else:
            # DOCKER-ISOLATION-STAGE-1/2 in one rule: in from this bridge, out to another
            # one (an internal bridge's first rule above already covers this).
            lines.append(f"add rule {_T} isolation iifname {br} oifname != {br} "
                         "oifname @bridge_names drop")
        lines.append(f"add rule {_T} bridges-in oifname {br} iifname != {br} drop")
        lines.append(f"add rule {_T} bridges-nat oifname {br} ip saddr 127.0.0.0/8 masquerade")
        for subnet in b.subnets:
            try:
                net = ipaddress.ip_network(subnet)
            except ValueError:
                raise errors.InvalidArgumentError(
                    "subnet", f"{subnet!r} of bridge {b.name} is not a CIDR") from None
            ip = _ip(net.version)
            lines.append(f"add rule {_T} bridges-nat oifname {br} {ip} saddr {net} "
                         "ct status dnat masquerade")
            if not b.internal:
                lines.append(f"add rule {_T} bridges-nat {ip} saddr {net} oifname != {br} "
                             "masquerade")
    return lines


def example_ruleset() -> str:
    """A whole script, as documentation and for the unit tests."""
    lines = render_base()
    lines += render_bridges([Bridge("lk0", ("172.18.0.0/16",)),
                             Bridge("lkint", ("10.9.0.0/24",), internal=True)])
    lines += render_mapping("c0ffee", PortMapping("172.18.0.2", 80, "tcp", "lk0", 8080))
    lines += render_mapping("c0ffee", PortMapping("172.18.0.2", 53, "udp", "lk0", 5353,
                                                  "127.0.0.1"))
    return "\n".join(lines) + "\n"


@_off_loop
def enable_hairpin(port: str, *, ns: str | None = None) -> None:
    """Turn on hairpin mode on bridge port ``port`` (``ip link set PORT type bridge_slave
    hairpin on``), so a container can reach its own published port via a host address."""
    _check_ifname(port)
    ipr = IPRoute(netns=ns, flags=0) if ns is not None else IPRoute()
    with ipr:
        found = ipr.link_lookup(ifname=port)
        if not found:
            raise errors.NotFoundError("bridge port", port)
        # IFLA_BRPORT_MODE is the hairpin flag (include/uapi/linux/if_link.h), sent as slave
        # data of kind "bridge", as iproute2's bridge_slave does.
        ipr.link("set", index=found[0], IFLA_LINKINFO={"attrs": [
            ("IFLA_INFO_SLAVE_KIND", "bridge"),
            ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", 1)]}),
        ]})


def _overlaps(a: PortMapping, b: PortMapping) -> bool:
    if a.proto != b.proto or a.host_port != b.host_port or a.version != b.version:
        return False
    return not a.host_ip or not b.host_ip or a.host_ip == b.host_ip


class Publisher:
    """labkit's table in one network namespace (``ns``: a /run/netns name, None = ours).

    Thread-safe: one lock serialises listing and changing, so a handle read is still
    valid when its delete runs (labkit is the only writer of its table).
    """

    def __init__(self, ns: str | None = None, *,
                 port_range: tuple[int, int] | None = None) -> None:
        if shutil.which("nft") is None:
            raise errors.UnsupportedError(
                "nftables", "the nft program is not installed",
                hint="apt-get install nftables")
        self.ns = ns
        self._lock = threading.RLock()
        self._published: dict[str, list[PortMapping]] = {}
        self._reserved: dict[str, list[Reservation]] = {}
        self._internal: set[str] = set()  # --internal bridges: nothing is published there
        self.allocator = PortAllocator(port_range or local_port_range(ns), ns=ns)

    # -- nft plumbing -----------------------------------------------------------------
    def _nft(self, args: list[str], stdin: str | None, what: str) -> str:
        cmd = ["nft", *args]
        if self.ns is not None:
            cmd = ["nsenter", f"--net={netns_path(self.ns)}", *cmd]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise NftError(what, proc.stderr)
        return proc.stdout

    def apply(self, lines: Sequence[str]) -> None:
        """Run ``lines`` as one nft transaction (all or nothing)."""
        if lines:
            self._nft(["-f", "-"], "\n".join(lines) + "\n", "transaction")

    def _objects(self) -> list[dict[str, Any]] | None:
        """The table's objects from ``nft -j``, or None when the table does not exist."""
        proc_ns = [] if self.ns is None else ["nsenter", f"--net={netns_path(self.ns)}"]
        proc = subprocess.run([*proc_ns, "nft", "-j", "list", "table", FAMILY, TABLE],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr:
                return None
            raise NftError("list table", proc.stderr)
        items: list[dict[str, Any]] = json.loads(proc.stdout)["nftables"]
        return items

    def rules_by_owner(self) -> dict[str, list[tuple[str, int]]]:
        """Container id -> [(chain, handle)] of its rules, read from the kernel."""
        owners: dict[str, list[tuple[str, int]]] = {}
        for obj in self._objects() or []:
            rule = obj.get("rule")
            if not rule:
                continue
            comment = rule.get("comment", "")
            if isinstance(comment, str) and comment.startswith("lk:"):
                owners.setdefault(comment[3:], []).append((rule["chain"], rule["handle"]))
        return owners

    def ruleset(self) -> str:
        """The table as nft prints it ("" when absent): for humans and tests."""
        if self._objects() is None:
            return ""
        return self._nft(["list", "table", FAMILY, TABLE], None, "list table")

    # -- the seam -----------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the table when absent; an existing one (live-restore) is left as it is."""
        with self._lock:
            if self._objects() is None:
                self.apply(render_base())

    def set_bridges(self, bridges: Sequence[Bridge]) -> None:
        """Isolation and masquerade for exactly ``bridges`` (replaces the previous set).

        Also sets route_localnet on each bridge (for 127.0.0.1 publishing, see above); the
        bridges must exist.
        """
        lines = render_bridges(bridges)  # validates before anything changes
        with self._lock:
            for b in bridges:
                self._route_localnet(b.name, write=False)  # all exist, or change nothing
            self.ensure()
            self.apply(lines)
            for b in bridges:
                self._route_localnet(b.name, write=True)
            self._internal = {b.name for b in bridges if b.internal}

    def _route_localnet(self, bridge: str, *, write: bool) -> None:
        path = Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
        try:
            if self.ns is None:
                path.write_text("1") if write else path.read_text()
            else:
                # /proc/sys/net resolves in the opening thread's network namespace.
                with _enter_netns(netns_path(self.ns)):
                    path.write_text("1") if write else path.read_text()
        except FileNotFoundError:
            raise errors.NotFoundError("bridge", bridge) from None

    def publish(self, cid: str, mappings: Sequence[PortMapping]) -> list[PortMapping]:
        """Reserve the host ports and add the rules of ``cid``, all or nothing.

        Returns the mappings with ephemeral host ports chosen.  A container publishes
        once; publishing again for the same id is a ConflictError (unpublish first).
        """
        _check_cid(cid)
        for m in mappings:
            _check_mapping(m, need_host_port=False)
        with self._lock:
            for m in mappings:
                if m.bridge in self._internal:
                    # an internal network has no way in or out: refuse rather than accept
                    # a -p that could never be reached (issue 10, "accepted means applied")
                    raise errors.InvalidArgumentError(
                        "port mapping", f"bridge {m.bridge} is an --internal network: its "
                        "containers' ports cannot be published")
            if cid in self._published:
                raise errors.ConflictError(f"container {cid} already has published ports")
            others = [m for ms in self._published.values() for m in ms]
            held: list[Reservation] = []
            done: list[PortMapping] = []
            try:
                for m in mappings:
                    if m.host_port == 0:
                        taken = {o.host_port for o in others + done if o.proto == m.proto}
                        res = self.allocator.allocate(m.bind_ip, m.proto, taken)
                        m = replace(m, host_port=res.host_port)
                    else:
                        for o in others + done:
                            if _overlaps(m, o):
                                raise bind_error(m.bind_ip, m.host_port, m.proto,
                                                 "already published by labkit")
                        res = reserve(m.bind_ip, m.host_port, m.proto, ns=self.ns)
                    held.append(res)
                    done.append(m)
                self.ensure()
                self.apply([line for m in done for line in render_mapping(cid, m)])
            except BaseException:
                for r in held:
                    r.close()
                raise
            self._published[cid] = done
            self._reserved[cid] = held
            return list(done)

    def unpublish(self, cid: str) -> None:
        """Remove exactly ``cid``'s rules (found by comment) and free its ports; idempotent."""
        _check_cid(cid)
        with self._lock:
            handles = self.rules_by_owner().get(cid, [])
            self.apply([f"delete rule {_T} {chain} handle {h}" for chain, h in handles])
            for r in self._reserved.pop(cid, []):
                r.close()
            self._published.pop(cid, None)

    def reconcile(self, expected: Mapping[str, Sequence[PortMapping]]) -> list[str]:
        """Make the table hold exactly ``expected`` (container id -> its published mappings).

        For a daemon start: rules of vanished containers go; each expected container's
        rules are replaced by freshly rendered ones (same transaction, so a live
        container's traffic never sees a gap; conntrack keeps its flows).  Host ports are
        reserved again; a port some host program took while the daemon was down cannot be
        reserved: that is reported in the returned warnings, and the rule stays (the
        container keeps its port, as its DNAT wins over the program).
        """
        for cid, ms in expected.items():
            _check_cid(cid)
            for m in ms:
                _check_mapping(m, need_host_port=True)
        warnings: list[str] = []
        with self._lock:
            self.ensure()
            lines: list[str] = []
            for cid, handles in self.rules_by_owner().items():
                lines += [f"delete rule {_T} {chain} handle {h}" for chain, h in handles]
            for cid, ms in expected.items():
                for m in ms:
                    lines += render_mapping(cid, m)
            self.apply(lines)
            for cid in list(self._published):
                if cid not in expected:
                    for r in self._reserved.pop(cid, []):
                        r.close()
                    del self._published[cid]
            for cid, ms in expected.items():
                if cid in self._reserved:
                    for r in self._reserved.pop(cid):
                        r.close()
                held = []
                for m in ms:
                    try:
                        held.append(reserve(m.bind_ip, m.host_port, m.proto, ns=self.ns))
                    except errors.LabkitError as err:
                        warnings.append(f"container {cid}: {err}")
                self._reserved[cid] = held
                self._published[cid] = list(ms)
        return warnings

    def published(self) -> dict[str, list[PortMapping]]:
        """What this Publisher published (container id -> mappings)."""
        with self._lock:
            return {cid: list(ms) for cid, ms in self._published.items()}

    def release(self) -> None:
        """Let go of the host ports and forget the state, keeping every rule in the kernel.

        For a daemon shutting down with live-restore: its containers keep their ports;
        the next daemon's reconcile() takes them over.
        """
        with self._lock:
            for rs in self._reserved.values():
                for r in rs:
                    r.close()
            self._reserved.clear()
            self._published.clear()

    def destroy(self) -> None:
        """Delete labkit's table and free every reserved port (no labkit network left)."""
        with self._lock:
            if self._objects() is not None:
                self.apply([f"delete table {_T}"])
            for rs in self._reserved.values():
                for r in rs:
                    r.close()
            self._reserved.clear()
            self._published.clear()
