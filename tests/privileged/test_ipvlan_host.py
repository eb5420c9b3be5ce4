"""labkit.engine.net.ipvlan on THIS kernel: ipvlan where the kernel has it, else an
UnsupportedError pointing at the VM (the same calls succeed there: tests/vm/test_vm_ipvlan.py);
macvlan for real; and bad input refused before any netlink message is sent."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from labkit import errors
from labkit._sys import features
from labkit.engine.net import ipvlan
from labkit.ns.netns import create_netns, list_netns, remove_netns

_n = 0


@pytest.fixture
def ns() -> Iterator[tuple[str, str]]:
    """A fresh netns holding a veth pair; yields (netns name, parent link name)."""
    global _n
    _n += 1
    u = f"{os.getpid() % 100000}{_n}"
    name = f"lk-ipv-{u}"
    create_netns(name)
    try:
        with IPRoute(netns=name, flags=0) as ipr:
            ipr.link("add", ifname=f"lkp{u}", kind="veth", peer=f"lkq{u}")
        yield name, f"lkp{u}"
    finally:
        remove_netns(name)
    assert name not in list_netns()


@pytest.mark.privileged
def test_ipvlan_on_this_kernel(ns: tuple[str, str]) -> None:
    name, parent = ns
    if features.link_kind_builtin("ipvlan") is False:
        with pytest.raises(errors.UnsupportedError) as ei:
            ipvlan.add_ipvlan("lkipv0", parent, netns=name)
        assert ei.value.feature == "ipvlan"
        assert "CONFIG_IPVLAN" in ei.value.reason
        assert "labkit vm" in (ei.value.hint or "")
        with pytest.raises(errors.NotFoundError):  # nothing was half-made
            ipvlan.get_link("lkipv0", netns=name)
    else:
        link = ipvlan.add_ipvlan("lkipv0", parent, netns=name)
        assert link.kind == "ipvlan" and link.mode == "l2"


@pytest.mark.privileged
@pytest.mark.skipif(features.link_kind_builtin("macvlan") is False,
                    reason="this kernel has no macvlan (CONFIG_MACVLAN); tests/vm covers it")
def test_macvlan_in_netns(ns: tuple[str, str]) -> None:
    name, parent = ns
    link = ipvlan.add_macvlan("lkmv0", parent, mode="bridge", netns=name)
    assert (link.kind, link.mode) == ("macvlan", "bridge")
    assert link.parent_index == ipvlan.get_link(parent, netns=name).index
    with pytest.raises(errors.AlreadyExistsError):
        ipvlan.add_macvlan("lkmv0", parent, netns=name)
    ipvlan.delete_link("lkmv0", netns=name)
    with pytest.raises(errors.NotFoundError):
        ipvlan.delete_link("lkmv0", netns=name)


@pytest.mark.privileged
def test_missing_parent_and_missing_netns(ns: tuple[str, str]) -> None:
    name, _ = ns
    with pytest.raises(errors.NotFoundError, match="lknoparent"):
        ipvlan.add_macvlan("lkmv1", "lknoparent", netns=name)
    with pytest.raises(errors.NotFoundError, match="network namespace"):
        ipvlan.add_ipvlan("lkipv1", "lo", netns="lk-no-such-netns")
    assert "lk-no-such-netns" not in list_netns()  # not created behind our back


@pytest.mark.parametrize("kw,what", [
    ({"name": "lk-name-far-too-long"}, "name"),
    ({"name": "lk/x"}, "name"),
    ({"name": ""}, "name"),
    ({"parent": "a b"}, "parent"),
    ({"mode": "l4"}, "mode"),
])
def test_bad_input_is_refused_before_netlink(kw: dict[str, str], what: str) -> None:
    args = {"name": "lkipv2", "parent": "lo", "mode": "l2", **kw}
    with pytest.raises(errors.InvalidArgumentError) as ei:
        ipvlan.add_ipvlan(args["name"], args["parent"], mode=args["mode"], netns="lk-unused")
    assert ei.value.what == what


def test_bad_macvlan_mode() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="mode"):
        ipvlan.add_macvlan("lkmv2", "lo", mode="l2")


def test_usable_from_a_running_event_loop() -> None:
    """A Jupyter kernel's main thread runs an asyncio loop; pyroute2's sync API cannot."""
    import asyncio

    async def inside_a_loop() -> ipvlan.Link:
        return ipvlan.get_link("lo")

    assert asyncio.run(inside_a_loop()).index == 1
