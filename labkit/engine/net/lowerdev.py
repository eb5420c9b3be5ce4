"""The kernel side of the macvlan and ipvlan drivers: parent links and container children.

* The parent ("lower device") of a network is the user's ``-o parent``, an 802.1q
  sub-interface the driver makes for a dotted parent (``eth0.10``: ``ip link add link eth0
  name eth0.10 type vlan id 10``, as moby's createVlanLink does), or, with no parent, a
  link of the driver's own that leads nowhere: moby makes a ``dummy`` (``dm-<id>`` /
  ``di-<id>``); labkit names it ``lkdm-<10 hex>`` / ``lkdi-<10 hex>``.  A kernel without
  the dummy type (CONFIG_DUMMY, this host) gets a veth pair instead, both ends up and the
  peer (``lkpm-``/``lkpi-``) without addresses: the same dead end with a carrier, which the
  children need (macvlan and ipvlan copy the parent's operstate, netif_stacked_transfer_
  operstate()).  Links the driver made carry IFLA_IFALIAS ``labkit: made by the KIND
  driver`` so that deletion, also after a daemon restart, removes only what labkit made.
* A child is created straight inside the container's network namespace: one RTM_NEWLINK
  from a socket in the host namespace carrying IFLA_LINK (the parent's index, resolved in
  the socket's namespace: macvlan_common_newlink / ipvlan_link_new look it up in src_net)
  and IFLA_NET_NS_FD (the container's namespace, where the device is registered), with its
  final name, MAC and IFF_UP -- no move between namespaces (see bridge.py for the cost).
  Its IFLA_IFALIAS names the endpoint, so detach() deletes only that link even if the
  namespace path now names another container's namespace (a recycled /proc/PID).

pyroute2 knows IFLA_IPVLAN_MODE but not IFLA_IPVLAN_FLAGS and drops what it does not know
(found in the VM: ``-o ipvlan_flag=private`` was accepted and not applied), so the
child's RTM_NEWLINK is encoded here with struct (rtnetlink(7), include/uapi/linux/
if_link.h) and sent on a NETLINK_ROUTE socket of its own; everything else uses pyroute2.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyroute2.netlink.exceptions import NetlinkError

from labkit import errors
from labkit.engine.net.bridge import IFF_UP, _add_addr, _index, _ns_path, _rtnl
from labkit.engine.net.ipvlan import VM_HINT, _check_name
from labkit.ns.netns import netns as _enter_netns
from labkit.ns.rtnl import off_loop as _off_loop

__all__ = [
    "Child",
    "ParentNotFoundError",
    "add_child",
    "del_child",
    "dummy_name",
    "ensure_parent",
    "parse_vlan",
    "release_parent",
]

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

RT_SCOPE_LINK = 253  # include/uapi/linux/rtnetlink.h: "default dev eth0" is on-link
_VID = re.compile(r"[0-9]{1,9}")


class ParentNotFoundError(errors.NotFoundError):
    """The parent link is missing; the message is moby's sentence (404 as every NotFound)."""

    def __init__(self, kind: str, name: str, hint: str | None = None) -> None:
        super().__init__(kind, name, hint)
        self.args = (kind,)  # kind carries Docker's whole sentence here


def owner_tag(kind: str) -> str:
    return f"labkit: made by the {kind} driver"


def endpoint_tag(endpoint_id: str) -> str:
    return f"labkit endpoint {endpoint_id}"


def dummy_name(kind: str, network_id: str) -> str:
    """moby's ``dm-<id>`` (macvlan) / ``di-<id>`` (ipvlan) with labkit's prefix, 15 bytes."""
    if len(network_id) < 10 or not re.fullmatch(r"[0-9a-f]+", network_id[:10]):
        raise errors.InvalidArgumentError("network id", f"{network_id!r} is not a hex id")
    return f"lkd{kind[0]}-{network_id[:10]}"


def parse_vlan(parent: str) -> tuple[str, int]:
    """``eth0.10`` -> (``eth0``, 10), refused in moby's words (parseVlan, createVlanLink)."""
    parts = parent.split(".")
    if len(parts) != 2:
        raise errors.InvalidArgumentError(
            "parent", "required interface name format is: name.vlan_id, ex. eth0.10 for "
            f"vlan 10, instead received {parent}")
    base, vid = parts
    if not _VID.fullmatch(vid):
        raise errors.InvalidArgumentError(
            "parent", f"unable to parse a valid vlan id from: {vid} (ex. eth0.10 for vlan 10)")
    # 802.1Q's VID is 12 bits; 0 and 4095 are reserved (IEEE 802.1Q-2018 table 9-2).
    if not 1 <= int(vid) <= 4094:
        raise errors.InvalidArgumentError(
            "parent", f"vlan id must be between 1-4094, received: {int(vid)}")
    _check_name("parent", base)
    return base, int(vid)


def _alias(ipr: object, idx: int) -> str | None:
    msg = ipr.get_links(idx)[0]  # type: ignore[attr-defined]
    alias = msg.get_attr("IFLA_IFALIAS")
    return str(alias) if alias is not None else None


def _not_found(name: str) -> ParentNotFoundError:
    return ParentNotFoundError(f"-o parent interface was not found on the host: {name}", name,
                               hint="an existing interface (ip link), or NAME.VID for an "
                               "802.1q sub-interface of one")


@_off_loop
def ensure_parent(parent: str, *, kind: str, dummy: str, host_netns: str | None) -> bool:
    """Make sure ``parent`` exists in the host namespace; True when this call made it.

    An existing link is used as it is.  ``parent == dummy``: the driver's own dead-end
    parent.  A dotted name: an 802.1q sub-interface of its base link, up.  Anything else:
    ParentNotFoundError.  UnsupportedError when the kernel lacks vlan; nothing is left
    half-made."""
    _check_name("parent", parent)
    with _rtnl(host_netns) as ipr:
        if _index(ipr, parent) is not None:
            return False
        tag = owner_tag(kind)
        peer: str | None = None
        if parent == dummy:
            try:
                ipr.link("add", ifname=parent, kind="dummy")
            except NetlinkError as err:
                if err.code != errno.EOPNOTSUPP:
                    raise errors.from_errno(err.code, "RTM_NEWLINK", target=parent) from err
                peer = "lkp" + parent[3:]
                try:
                    ipr.link("add", ifname=parent, kind="veth", peer=peer)
                except NetlinkError as err2:
                    raise errors.from_errno(err2.code, "RTM_NEWLINK", target=parent) from err2
        elif "." in parent:
            base, vid = parse_vlan(parent)
            base_idx = _index(ipr, base)
            if base_idx is None:
                raise _not_found(base)
            try:
                ipr.link("add", ifname=parent, kind="vlan", link=base_idx, vlan_id=vid)
            except NetlinkError as err:
                if err.code == errno.EOPNOTSUPP:
                    raise errors.UnsupportedError(
                        "802.1q sub-interfaces", "the kernel has no vlan link type "
                        "(CONFIG_VLAN_8021Q)", hint=f"use an existing parent; {VM_HINT}") from err
                raise errors.from_errno(err.code, "RTM_NEWLINK", target=parent) from err
        else:
            raise _not_found(parent)
        idx = _index(ipr, parent)
        assert idx is not None
        try:
            peer_idx = _index(ipr, peer) if peer is not None else None
            if peer_idx is not None:  # the veth fallback: its other end up too (carrier)
                ipr.link("set", index=peer_idx, state="up", ifalias=tag)
            ipr.link("set", index=idx, state="up", ifalias=tag)
        except BaseException:
            ipr.link("del", index=idx)  # a veth takes its peer with it
            raise
        return True


@_off_loop
def release_parent(parent: str, *, kind: str, host_netns: str | None) -> bool:
    """Delete ``parent`` if this driver made it (its IFLA_IFALIAS says so); True if deleted.
    The user's own links are never touched."""
    _check_name("parent", parent)
    with _rtnl(host_netns) as ipr:
        idx = _index(ipr, parent)
        if idx is None or _alias(ipr, idx) != owner_tag(kind):
            return False
        try:
            ipr.link("del", index=idx)  # a veth fallback takes its peer with it
        except NetlinkError as err:
            if err.code == errno.ENODEV:
                return False
            raise errors.from_errno(err.code, "RTM_DELLINK", target=parent) from err
        return True


# --- the child link ---------------------------------------------------------------------

# include/uapi/linux/netlink.h, rtnetlink.h, if_link.h
_NLMSG_ERROR = 2
_NLM_F_NEWLINK = 0x1 | 0x4 | 0x400 | 0x200  # REQUEST | ACK | CREATE | EXCL
_RTM_NEWLINK = 16
_IFLA = {"IFLA_ADDRESS": 1, "IFLA_IFNAME": 3, "IFLA_LINK": 5, "IFLA_LINKINFO": 18,
         "IFLA_NET_NS_FD": 28}
_INFO_KIND, _INFO_DATA = 1, 2
# IFLA_INFO_DATA members: (type number, struct format)
_DATA = {"IFLA_MACVLAN_MODE": (1, "=I"), "IFLA_IPVLAN_MODE": (1, "=H"),
         "IFLA_IPVLAN_FLAGS": (2, "=H")}


def _attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute: rta_len, rta_type, payload, padded to 4 bytes (NLA_ALIGN)."""
    head = struct.pack("=HH", 4 + len(payload), kind)
    return head + payload + b"\0" * (-len(payload) % 4)


def _newlink_msg(seq: int, ifname: str, parent_index: int, netns_fd: int, kind: str,
                 data: Mapping[str, int], mac: str | None) -> bytes:
    """RTM_NEWLINK for a child link, encoded here: pyroute2 0.9.7 knows IFLA_IPVLAN_MODE
    but not IFLA_IPVLAN_FLAGS, and silently drops what it does not know."""
    attrs = _attr(_IFLA["IFLA_IFNAME"], ifname.encode() + b"\0")
    attrs += _attr(_IFLA["IFLA_LINK"], struct.pack("=I", parent_index))
    attrs += _attr(_IFLA["IFLA_NET_NS_FD"], struct.pack("=I", netns_fd))
    if mac is not None:
        attrs += _attr(_IFLA["IFLA_ADDRESS"], bytes.fromhex(mac.replace(":", "")))
    info = b"".join(_attr(_DATA[k][0], struct.pack(_DATA[k][1], v)) for k, v in data.items())
    attrs += _attr(_IFLA["IFLA_LINKINFO"], _attr(_INFO_KIND, kind.encode() + b"\0")
                   + _attr(_INFO_DATA, info))
    # struct ifinfomsg: family, pad, type, index, flags, change (IFF_UP set at creation)
    body = struct.pack("=BxHiII", 0, 0, 0, IFF_UP, IFF_UP) + attrs
    return struct.pack("=IHHII", 16 + len(body), _RTM_NEWLINK, _NLM_F_NEWLINK, seq, 0) + body


def _send_newlink(host_netns: str | None, msg: bytes, seq: int) -> None:
    """Send ``msg`` from a NETLINK_ROUTE socket in ``host_netns``; raise the kernel's
    answer (NLMSG_ERROR with a negative errno) as NetlinkError."""
    if host_netns is None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    else:
        with _enter_netns(_ns_path(host_netns)):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    with sock:
        sock.settimeout(30)  # the kernel always answers NLM_F_ACK; never hang if it did not
        sock.bind((0, 0))
        sock.sendall(msg)
        while True:
            data = sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, typ, _flags, rseq, _pid = struct.unpack_from("=IHHII", data, off)
                if typ == _NLMSG_ERROR and rseq == seq:
                    (err,) = struct.unpack_from("=i", data, off + 16)
                    if err:
                        raise NetlinkError(-err)
                    return
                off += max(length, 16) + (-length % 4)


@dataclass(frozen=True)
class Child:
    ifname: str
    mac: str
    addresses: tuple[Interface, ...]


def _child_error(err: NetlinkError, kind: str, target: str) -> Exception:
    if err.code == errno.EEXIST:
        return errors.AlreadyExistsError("link", target)
    if err.code == errno.EBUSY:
        # One rx_handler per device (netdev_rx_handler_register): a parent serves macvlan
        # children or ipvlan children, never both; moby reports the kernel's refusal so.
        return errors.ConflictError(f"failed to create the {kind} port: device or resource "
                                    "busy", hint="a parent carries macvlan or ipvlan children, "
                                    "not both; use another parent")
    if err.code == errno.EOPNOTSUPP:
        return errors.UnsupportedError(kind, f"the kernel has no {kind} link type "
                                       f"(CONFIG_{kind.upper()})", hint=VM_HINT)
    return errors.from_errno(err.code, "RTM_NEWLINK", target=target)


@_off_loop
def add_child(kind: str, parent: str, netns: str, ifname: str, *,
              data: Mapping[str, int], endpoint_id: str, addresses: Sequence[Interface],
              gateways: Sequence[Address] = (), dev_routes: Sequence[int] = (),
              mac: str | None = None, host_netns: str | None = None) -> Child:
    """A ``kind`` (macvlan/ipvlan) link on ``parent`` made directly in ``netns`` as
    ``ifname``, up, with ``addresses``, lo up, a default route via each of ``gateways`` and
    an on-link default route for each family in ``dev_routes`` (4, 6: ipvlan l3).  Returns
    the MAC the kernel gave it.  On failure the link is deleted again."""
    _check_name("interface name", ifname)
    path = _ns_path(netns)
    with _rtnl(host_netns) as ipr:
        pidx = _index(ipr, parent)
        if pidx is None:
            raise ParentNotFoundError(f"the requested parent interface {parent} was not "
                                      "found on the Docker host", parent)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            # The fd is resolved in this process's fd table (get_net_ns_by_fd), whatever
            # namespace the socket belongs to; IFLA_LINK in the socket's namespace.
            seq = int.from_bytes(os.urandom(4), "little") or 1
            _send_newlink(host_netns, _newlink_msg(seq, ifname, pidx, fd, kind, data, mac), seq)
        except NetlinkError as err:
            raise _child_error(err, kind, f"{ifname} in {netns}") from err
        finally:
            os.close(fd)
    with _rtnl(netns) as c:
        idx = _index(c, ifname)
        assert idx is not None
        try:
            c.link("set", index=idx, ifalias=endpoint_tag(endpoint_id))
            for a in addresses:
                _add_addr(c, idx, a)
            c.link("set", index=1, state="up")  # LOOPBACK_IFINDEX
            for gw in gateways:
                c.route("add", dst="default" if gw.version == 4 else "::/0",
                        gateway=str(gw), oif=idx, family=10 if gw.version == 6 else 2)
            for fam in dev_routes:
                c.route("add", dst="default" if fam == 4 else "::/0", oif=idx,
                        scope=RT_SCOPE_LINK if fam == 4 else 0, family=10 if fam == 6 else 2)
            got = str(c.get_links(idx)[0].get_attr("IFLA_ADDRESS"))
        except BaseException as exc:
            c.link("del", index=idx)
            if isinstance(exc, NetlinkError):
                raise errors.from_errno(exc.code, "RTM_NEWADDR/RTM_NEWROUTE",
                                        target=f"{ifname} in {netns}") from exc
            raise
    return Child(ifname=ifname, mac=got, addresses=tuple(addresses))


@_off_loop
def del_child(netns: str, ifname: str, *, endpoint_id: str) -> bool:
    """Delete the endpoint's link in ``netns`` if it is still there and still the one
    attach() made (its IFLA_IFALIAS).  False when there was nothing of ours to delete."""
    _check_name("interface name", ifname)
    try:
        path = _ns_path(netns)
    except errors.NotFoundError:
        return False  # the namespace went, and the kernel deleted the link with it
    with _rtnl(path) as c:
        idx = _index(c, ifname)
        if idx is None or _alias(c, idx) != endpoint_tag(endpoint_id):
            return False
        try:
            c.link("del", index=idx)
        except NetlinkError as err:
            if err.code == errno.ENODEV:
                return False
            raise errors.from_errno(err.code, "RTM_DELLINK", target=ifname) from err
        return True
