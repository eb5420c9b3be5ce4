"""ipvlan and macvlan links over rtnetlink(7), with pyroute2 doing the message encoding.

Both give a container an interface on the host's own L2 segment without a bridge:
macvlan gives each sub-interface its own MAC address; ipvlan shares the parent's MAC and
tells sub-interfaces apart by IP address (Documentation/networking/ipvlan.rst), which is
what a switch port that admits one MAC needs.  Modes are the kernel's numbers from
include/uapi/linux/if_link.h (IPVLAN_MODE_*, MACVLAN_MODE_*).

Everything can happen inside a network namespace given by name (/run/netns/<name>) or
path: pyroute2 opens the netlink socket from a short-lived child that setns(2)s first, so
the caller's threads never change namespace (STYLE C9).

A kernel without the link type answers RTM_NEWLINK with EOPNOTSUPP (rtnl_newlink finds no
rtnl_link_ops for the kind, even after request_module); that becomes an UnsupportedError
whose hint points at the test VM.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from labkit import errors
from labkit.ns.rtnl import off_loop as _off_loop

__all__ = [
    "IPVLAN_MODES",
    "MACVLAN_MODES",
    "VM_HINT",
    "Link",
    "add_ipvlan",
    "add_macvlan",
    "delete_link",
    "get_link",
]

# include/uapi/linux/if_link.h: enum ipvlan_mode, enum macvlan_mode
IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}
MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8, "source": 16}
IFNAMSIZ = 16  # include/uapi/linux/if.h: 15 characters plus the NUL
VM_HINT = ("this kernel lacks it; boot labkit's test VM, whose kernel has it: "
           "`labkit vm run -- python -m pytest --privileged tests/vm` (or vagrant/)")


@dataclass(frozen=True)
class Link:
    """A link as the kernel reports it back (RTM_GETLINK)."""

    name: str
    index: int
    kind: str | None
    mode: str | None
    parent_index: int | None
    netns: str | None


def _check_name(what: str, name: str) -> None:
    # dev_valid_name() in net/core/dev.c: 1..15 bytes, not "." or "..", no '/', ':' or space.
    if not isinstance(name, str) or not name:
        raise errors.InvalidArgumentError(what, "must be a non-empty string")
    if len(name.encode()) >= IFNAMSIZ:
        raise errors.InvalidArgumentError(what, f"{name!r} is longer than {IFNAMSIZ - 1} bytes")
    if name in (".", "..") or any(c in name for c in "/: \t\n"):
        raise errors.InvalidArgumentError(what, f"{name!r} is not a valid interface name",
                                          hint="no '/', ':' or whitespace, not '.' or '..'")


@contextmanager
def _rtnl(netns: str | None) -> Iterator[IPRoute]:
    if netns is not None:
        path = netns if netns.startswith("/") else f"/run/netns/{netns}"
        if not os.path.exists(path):
            raise errors.NotFoundError("network namespace", netns,
                                       hint="create it first (labkit.ns.netns.create_netns)")
    # flags=0: never let pyroute2 create a missing namespace behind our back (its default
    # is O_CREAT).
    ipr = IPRoute(netns=netns, flags=0) if netns is not None else IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: IPRoute, name: str, netns: str | None) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        where = f" in netns {netns}" if netns else ""
        raise errors.NotFoundError("link", f"{name}{where}")
    return int(found[0])


def _translate(err: NetlinkError, kind: str, name: str) -> Exception:
    if err.code == errno.EOPNOTSUPP:
        return errors.UnsupportedError(
            kind, f"the kernel has no {kind} link type (CONFIG_{kind.upper()})", hint=VM_HINT)
    if err.code == errno.EEXIST:
        return errors.AlreadyExistsError("link", name, hint="pick another name or delete it")
    return errors.from_errno(err.code, "RTM_NEWLINK", target=name)


def _add(kind: str, name: str, parent: str, netns: str | None, **data: Any) -> Link:
    _check_name("name", name)
    _check_name("parent", parent)
    with _rtnl(netns) as ipr:
        parent_index = _index(ipr, parent, netns)
        try:
            ipr.link("add", ifname=name, kind=kind, link=parent_index, **data)
        except NetlinkError as err:
            raise _translate(err, kind, name) from err
    return get_link(name, netns=netns)


@_off_loop
def add_ipvlan(name: str, parent: str, *, mode: str = "l2", netns: str | None = None) -> Link:
    """ip-link(8) ``add NAME link PARENT type ipvlan mode MODE``, optionally in ``netns``.

    Raises InvalidArgumentError (bad name or mode), NotFoundError (no parent, no netns),
    AlreadyExistsError, UnsupportedError (kernel without ipvlan; hint: the VM).
    """
    if mode not in IPVLAN_MODES:
        raise errors.InvalidArgumentError("mode", f"{mode!r} is not one of {sorted(IPVLAN_MODES)}")
    return _add("ipvlan", name, parent, netns, ipvlan_mode=IPVLAN_MODES[mode])


@_off_loop
def add_macvlan(name: str, parent: str, *, mode: str = "bridge",
                netns: str | None = None) -> Link:
    """ip-link(8) ``add NAME link PARENT type macvlan mode MODE``, optionally in ``netns``.

    Raises the same errors as add_ipvlan.
    """
    if mode not in MACVLAN_MODES:
        raise errors.InvalidArgumentError("mode",
                                          f"{mode!r} is not one of {sorted(MACVLAN_MODES)}")
    return _add("macvlan", name, parent, netns, macvlan_mode=mode)


@_off_loop
def get_link(name: str, *, netns: str | None = None) -> Link:
    """RTM_GETLINK for ``name``: its index, kind, ipvlan/macvlan mode and parent."""
    _check_name("name", name)
    with _rtnl(netns) as ipr:
        idx = _index(ipr, name, netns)
        msg = ipr.get_links(idx)[0]
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
    mode: str | None = None
    if data is not None and kind == "ipvlan":
        raw = data.get_attr("IFLA_IPVLAN_MODE")
        mode = {v: k for k, v in IPVLAN_MODES.items()}.get(raw, str(raw))
    elif data is not None and kind == "macvlan":
        raw = data.get_attr("IFLA_MACVLAN_MODE")
        mode = raw if isinstance(raw, str) else {v: k for k, v in MACVLAN_MODES.items()}.get(raw)
    parent = msg.get_attr("IFLA_LINK")
    return Link(name=name, index=idx, kind=kind, mode=mode,
                parent_index=int(parent) if parent is not None else None, netns=netns)


@_off_loop
def delete_link(name: str, *, netns: str | None = None) -> None:
    """ip-link(8) ``del NAME``.  Raises NotFoundError when there is no such link."""
    _check_name("name", name)
    with _rtnl(netns) as ipr:
        idx = _index(ipr, name, netns)
        try:
            ipr.link("del", index=idx)
        except NetlinkError as err:
            raise errors.from_errno(err.code, "RTM_DELLINK", target=name) from err
