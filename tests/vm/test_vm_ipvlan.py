"""ipvlan and macvlan links made by labkit's own netlink code (labkit.engine.net.ipvlan),
inside a network namespace this test creates and removes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from labkit import errors
from labkit.engine.net import ipvlan
from labkit.ns.netns import create_netns, remove_netns

pytestmark = pytest.mark.privileged


@pytest.fixture
def ns(unique: str) -> Iterator[str]:
    """A fresh netns with a veth pair (lkp<u> is the parent for the new links)."""
    name = f"lk-vm-{unique}"
    create_netns(name)
    try:
        with IPRoute(netns=name, flags=0) as ipr:
            ipr.link("add", ifname=f"lkp{unique}", kind="veth", peer=f"lkq{unique}")
        yield name
    finally:
        remove_netns(name)  # the links go with the namespace


@pytest.mark.parametrize("mode", ["l2", "l3", "l3s"])
def test_ipvlan_link_in_netns(ns: str, unique: str, mode: str) -> None:
    link = ipvlan.add_ipvlan(f"lki{unique}", f"lkp{unique}", mode=mode, netns=ns)
    parent = ipvlan.get_link(f"lkp{unique}", netns=ns)
    assert (link.kind, link.mode, link.parent_index) == ("ipvlan", mode, parent.index)
    ipvlan.delete_link(link.name, netns=ns)
    with pytest.raises(errors.NotFoundError):
        ipvlan.get_link(link.name, netns=ns)


def test_ipvlan_twice_is_already_exists(ns: str, unique: str) -> None:
    ipvlan.add_ipvlan(f"lki{unique}", f"lkp{unique}", netns=ns)
    with pytest.raises(errors.AlreadyExistsError):
        ipvlan.add_ipvlan(f"lki{unique}", f"lkp{unique}", netns=ns)


def test_macvlan_link_in_netns(ns: str, unique: str) -> None:
    link = ipvlan.add_macvlan(f"lkm{unique}", f"lkp{unique}", mode="private", netns=ns)
    assert (link.kind, link.mode) == ("macvlan", "private")
