"""The bridge driver's kernel side: a Linux bridge per network, a veth pair per endpoint.

Everything goes through rtnetlink(7) with pyroute2.  The daemon's "host" network namespace
is the one this process runs in, or ``host_netns`` (a /run/netns name or a path) -- tests
make their own so the machine's links are never touched.  Netlink sockets for another
namespace are opened inside ``labkit.ns.netns.netns()`` (a reversible setns(2) of the
calling thread only, STYLE C9's one exception), which costs ~1 ms where pyroute2's own
``IPRoute(netns=...)`` forks a helper process.

Speed: the container's end of the pair is created *directly inside* its network namespace
-- the RTM_NEWLINK carries the peer's attributes (VETH_INFO_PEER, include/uapi/linux/veth.h)
with IFLA_NET_NS_FD pointing at the target namespace, so veth_newlink() registers it
there.  Creating it in the host and moving it afterwards (``ip link set ... netns``) makes
the kernel unregister and re-register the device (dev_change_net_namespace(), with an RCU
grace period and a netdev_run_todo() wait), which costs tens of ms on this kernel where the
in-place creation costs ~1.5 ms.  ``scripts/bench_veth.py`` measures both.  The peer is
also created with its final name (eth0) and MAC, and the host end with IFLA_MASTER and
IFF_UP, so no further round trip is needed for those.

Isolation between bridges (containers on different networks must not reach each other):
Docker puts two iptables chains in the FORWARD path, DOCKER-ISOLATION-STAGE-1 (``-i br-X !
-o br-X -j DOCKER-ISOLATION-STAGE-2`` per bridge) and DOCKER-ISOLATION-STAGE-2 (``-o br-Y
-j DROP`` per bridge).  labkit does it in its own nftables table, written by the port
publishing module (the "ports" work), never here.  The seam::

    labkit.engine.net.ports.isolate_bridges(bridges: Sequence[str], *, netns: str | None)

must (re)write, in ``table inet labkit``'s forward hook chain, a rule that drops every
packet whose iifname is one of ``bridges`` and whose oifname is another one of ``bridges``
(same-bridge traffic is bridged, not forwarded, and never reaches the hook; traffic from a
bridge to the outside and back in for published ports stays allowed).  The engine calls it
after create_bridge()/delete_bridge() with the names of every labkit bridge.

Names: bridges ``lk0`` (the default network ``bridge``, Docker's docker0) and
``lk-<12 hex of the network id>`` (Docker's br-<12>); host veth ends ``lkv<11 hex of the
endpoint id>`` (Docker's veth<7 random>): all at most 15 bytes (IFNAMSIZ - 1).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from labkit import errors
from labkit.engine.net.ipvlan import _check_name
from labkit.ns.netns import netns as _enter_netns
from labkit.ns.rtnl import off_loop as _off_loop

__all__ = [
    "DEFAULT_BRIDGE",
    "Attachment",
    "attach",
    "bridge_name",
    "create_bridge",
    "delete_bridge",
    "detach",
    "mac_for",
    "veth_name",
]

DEFAULT_BRIDGE = "lk0"
IFF_UP = 0x1  # include/uapi/linux/if.h
IFA_F_NODAD = 0x02  # include/uapi/linux/if_addr.h: a container's address is unique by IPAM
_HEX = frozenset("0123456789abcdef")

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _hexid(what: str, ident: str, n: int) -> str:
    if len(ident) < n or not set(ident[:n]) <= _HEX:
        raise errors.InvalidArgumentError(what, f"{ident!r} is not a hex id of {n}+ digits")
    return ident[:n]


def bridge_name(network_id: str) -> str:
    """``lk-<first 12 hex of network_id>``: Docker's ``br-<12>``, labkit's prefix."""
    return "lk-" + _hexid("network id", network_id, 12)


def veth_name(endpoint_id: str) -> str:
    """The host end of an endpoint's veth pair: ``lkv<first 11 hex of endpoint_id>``."""
    return "lkv" + _hexid("endpoint id", endpoint_id, 11)


def mac_for(ip: Address | None) -> str:
    """Docker's container MAC: 02:42 then the four bytes of the IPv4 address (moby's
    netutils.GenerateMACFromIP); without one, a random locally administered unicast MAC
    (bit 1 of the first octet set, bit 0 clear: IEEE 802 "U/L" and "I/G" bits)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)
    octets = [0x02, *random.SystemRandom().randbytes(5)]
    return ":".join(f"{b:02x}" for b in octets)


def _check_mac(mac: str) -> str:
    parts = mac.lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and set(p) <= _HEX for p in parts):
        raise errors.InvalidArgumentError("mac-address", f"{mac} is not a valid mac address")
    if int(parts[0], 16) & 1:
        raise errors.InvalidArgumentError("mac-address", f"{mac} is a multicast address")
    return ":".join(parts)


def _ns_path(netns: str) -> str:
    # A bare name is a /run/netns entry (ip-netns(8)); it must not climb out of that dir.
    if not netns.startswith("/") and (netns in ("", ".", "..") or "/" in netns):
        raise errors.InvalidArgumentError("netns", f"{netns!r} is neither a path nor a name")
    path = netns if netns.startswith("/") else f"/run/netns/{netns}"
    if not os.path.exists(path):
        raise errors.NotFoundError("network namespace", netns)
    return path


@contextmanager
def _rtnl(netns: str | None) -> Iterator[IPRoute]:
    """A netlink socket bound to ``netns`` (None: this process's namespace)."""
    if netns is None:
        ipr = IPRoute()
    else:
        with _enter_netns(_ns_path(netns)):
            ipr = IPRoute()  # the socket belongs to the namespace it was opened in, for good
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: IPRoute, name: str) -> int | None:
    # One RTM_GETLINK by IFLA_IFNAME (the kernel looks the name up), not a dump of every
    # link filtered here as link_lookup() may do: that grows with the host's links.
    try:
        return int(ipr.link("get", ifname=name)[0]["index"])
    except NetlinkError as err:
        if err.code == errno.ENODEV:
            return None
        raise


def _nlerr(err: NetlinkError, op: str, target: str) -> Exception:
    if err.code == errno.EEXIST:
        return errors.AlreadyExistsError("link", target)
    return errors.from_errno(err.code, op, target=target)


def _add_addr(ipr: IPRoute, idx: int, iface: Interface) -> None:
    kw: dict[str, int] = {}
    if iface.version == 6:
        kw["flags"] = IFA_F_NODAD
    ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen, **kw)


@_off_loop
def create_bridge(name: str, addresses: Sequence[Interface], *, mtu: int | None = None,
                  host_netns: str | None = None) -> int:
    """ip-link(8) ``add NAME type bridge``, the gateway address(es) on it, up.

    ``addresses``: each gateway with its subnet's prefix (``10.9.0.1/24``); an --internal
    network still has them (containers reach the gateway, nothing beyond).  Returns the
    bridge's ifindex.  Raises InvalidArgumentError, AlreadyExistsError; on any failure the
    bridge is deleted again (nothing half-made)."""
    _check_name("bridge name", name)
    with _rtnl(host_netns) as ipr:
        # A MAC of its own, set at creation: a bridge without one takes the lowest MAC of
        # its ports (br_stp_recalculate_bridge_id), so removing that container would change
        # the gateway's MAC under every other container's neighbour cache (tens of seconds
        # of lost traffic).  An address set by the user is kept by the kernel (addr_assign
        # NET_ADDR_SET); moby sets a random one the same way (setup_device.go).
        kw: dict[str, object] = {"address": mac_for(None)}
        if mtu is not None:
            kw["mtu"] = mtu
        try:
            ipr.link("add", ifname=name, kind="bridge", **kw)
        except NetlinkError as err:
            raise _nlerr(err, "RTM_NEWLINK", name) from err
        idx = _index(ipr, name)
        assert idx is not None
        try:
            for a in addresses:
                _add_addr(ipr, idx, a)
            ipr.link("set", index=idx, state="up")
        except BaseException:
            ipr.link("del", index=idx)
            raise
        return idx


@_off_loop
def delete_bridge(name: str, *, host_netns: str | None = None) -> None:
    """ip-link(8) ``del NAME`` for a bridge.  Raises NotFoundError when absent, and
    ConflictError while a port is still enslaved (an endpoint not detached)."""
    _check_name("bridge name", name)
    with _rtnl(host_netns) as ipr:
        idx = _index(ipr, name)
        if idx is None:
            raise errors.NotFoundError("bridge", name)
        ports = [p.get_attr("IFLA_IFNAME") for p in ipr.get_links() if p.get_attr("IFLA_MASTER") == idx]
        if ports:
            raise errors.ConflictError(f"bridge {name} still has ports: {', '.join(ports)}")
        ipr.link("del", index=idx)


@dataclass(frozen=True)
class Attachment:
    """What attach() made: enough for detach() and for the engine's inspect output."""

    host_ifname: str
    ifname: str
    mac: str
    addresses: tuple[Interface, ...]
    gateways: tuple[Address, ...]


@_off_loop
def attach(bridge: str, host_ifname: str, netns: str, addresses: Sequence[Interface], *,
           gateways: Sequence[Address] = (), ifname: str = "eth0", mac: str | None = None,
           mtu: int | None = None, host_netns: str | None = None) -> Attachment:
    """Plug the container whose network namespace is ``netns`` into ``bridge``.

    One RTM_NEWLINK makes the pair: ``host_ifname`` in the host namespace, enslaved to the
    bridge and up; ``ifname`` created directly in ``netns`` with ``mac`` (default
    ``mac_for`` the first IPv4 address) and up.  Then, inside ``netns``: the addresses, lo
    up, and a default route via each gateway (pass none for --internal networks: no route
    out).  Raises InvalidArgumentError, NotFoundError (bridge, netns), AlreadyExistsError;
    on any failure the pair is deleted again (deleting one end deletes both)."""
    _check_name("host interface name", host_ifname)
    _check_name("interface name", ifname)
    v4 = next((a.ip for a in addresses if a.version == 4), None)
    the_mac = _check_mac(mac) if mac is not None else mac_for(v4)
    for gw in gateways:
        if not any(gw in a.network for a in addresses):
            raise errors.InvalidArgumentError("gateway", f"{gw} is in none of the endpoint's "
                                              "subnets")
    path = _ns_path(netns)
    extra: dict[str, object] = {"mtu": mtu} if mtu is not None else {}
    with _rtnl(host_netns) as ipr:
        br = _index(ipr, bridge)
        if br is None:
            raise errors.NotFoundError("bridge", bridge)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            # The fd is resolved in THIS process's fd table when the kernel reads the
            # message (rtnl_link_get_net_capable -> get_net_ns_by_fd), whatever namespace
            # the socket belongs to.
            ipr.link("add", ifname=host_ifname, kind="veth", master=br, flags=IFF_UP,
                     change=IFF_UP, **extra,
                     peer={"ifname": ifname, "net_ns_fd": fd, "address": the_mac, **extra})
        except NetlinkError as err:
            raise _nlerr(err, "RTM_NEWLINK", f"{host_ifname}/{ifname}") from err
        finally:
            os.close(fd)
        try:
            with _rtnl(netns) as c:
                idx = _index(c, ifname)
                assert idx is not None
                # Up first: IPv4 installs the prefix route only on an up device
                # (fib_add_ifaddr), and the gateway routes need it.  pyroute2 does not
                # carry ifi_flags into VETH_INFO_PEER, so this is its own RTM_NEWLINK.
                c.link("set", index=idx, state="up")
                for a in addresses:
                    _add_addr(c, idx, a)
                # loopback is ifindex 1 in every namespace (LOOPBACK_IFINDEX, net/core/dev.c)
                c.link("set", index=1, state="up")
                for gw in gateways:
                    c.route("add", dst="default" if gw.version == 4 else "::/0",
                            gateway=str(gw), oif=idx, family=10 if gw.version == 6 else 2)
        except BaseException as exc:
            hidx = _index(ipr, host_ifname)
            if hidx is not None:
                ipr.link("del", index=hidx)
            if isinstance(exc, NetlinkError):
                raise errors.from_errno(exc.code, "RTM_NEWADDR/RTM_NEWROUTE",
                                        target=f"{ifname} in {netns}") from exc
            raise
    return Attachment(host_ifname=host_ifname, ifname=ifname, mac=the_mac,
                      addresses=tuple(addresses), gateways=tuple(gateways))


@_off_loop
def detach(host_ifname: str, *, host_netns: str | None = None) -> bool:
    """Delete the endpoint's veth pair by its host end (the kernel deletes the peer, and
    with it the container's addresses and routes over it).  Returns False when it was
    already gone: a container whose namespace died takes its pair with it, so teardown
    after a crash is idempotent."""
    _check_name("host interface name", host_ifname)
    with _rtnl(host_netns) as ipr:
        idx = _index(ipr, host_ifname)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except NetlinkError as err:
            if err.code == errno.ENODEV:
                return False  # raced with the namespace's death
            raise errors.from_errno(err.code, "RTM_DELLINK", target=host_ifname) from err
        return True
