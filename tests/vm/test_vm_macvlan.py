"""The macvlan and ipvlan drivers (labkit.engine.net.macvlan) where the kernel has all they
use: ipvlan l2 and l3, the dummy parent and 802.1q sub-interfaces (this host lacks all
three; tests/privileged/test_net_macvlan.py covers the rest there).  Runs inside labkit's
VM (make test-vm); test-made namespaces only, all removed after."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from privileged.test_net_bridge import _links, _ping
from pyroute2 import IPRoute

from labkit.engine.net import lowerdev
from labkit.engine.net import macvlan as M
from labkit.engine.net.driver import EndpointSpec, NetworkSpec, check_driver
from labkit.engine.net.ipam import Ipam, PoolConfig
from labkit.ns.netns import create_netns, list_netns, netns, remove_netns

pytestmark = pytest.mark.privileged
NID = "ab" * 32
POOL = PoolConfig(subnet="10.77.0.0/24", gateway="10.77.0.1", ip_range="10.77.0.128/25",
                  aux_addresses={"host": "10.77.0.2", "lan": "10.77.0.3"})


@dataclass
class Env:
    host: str
    c1: str
    c2: str
    lan: str
    parent: str
    peer: str
    state: Path


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


def _link(ns: str, name: str) -> tuple[str | None, str, object]:
    """(kind, MAC, IFLA_INFO_DATA) of ``name`` inside ``ns``."""
    with netns(f"/run/netns/{ns}"):
        ipr = IPRoute()
    try:
        m = ipr.get_links(ifname=name)[0]
        info = m.get_attr("IFLA_LINKINFO")
        return (info.get_attr("IFLA_INFO_KIND"), m.get_attr("IFLA_ADDRESS"),
                info.get_attr("IFLA_INFO_DATA"))
    finally:
        ipr.close()


@pytest.fixture
def env(tmp_path: Path, unique: str) -> Iterator[Env]:
    names = [f"lk-vmh-{unique}", f"lk-vm1-{unique}", f"lk-vm2-{unique}", f"lk-vml-{unique}"]
    made: list[str] = []
    try:
        for n in names:
            create_netns(n)
            made.append(n)
        host, lan = names[0], names[3]
        parent, peer = f"lkp{unique}", f"lkq{unique}"
        ip(host, "link", "add", parent, "type", "veth", "peer", "name", peer, "netns", lan)
        ip(host, "addr", "add", "10.77.0.2/24", "dev", parent)
        ip(host, "link", "set", parent, "up")
        ip(lan, "addr", "add", "10.77.0.1/24", "dev", peer)
        ip(lan, "addr", "add", "10.77.0.3/24", "dev", peer)
        ip(lan, "link", "set", peer, "up")
        yield Env(host, names[1], names[2], lan, parent, peer, tmp_path)
    finally:
        for n in made:
            remove_netns(n)
    assert not set(names) & set(list_netns())


def test_check_driver_accepts_ipvlan_here(env: Env) -> None:
    check_driver("ipvlan", netns=env.host)


def test_ipvlan_l2_shares_the_parent_mac(env: Env) -> None:
    drv = M.IpvlanDriver(Ipam(env.state), host_netns=env.host)
    net = drv.create_network(NetworkSpec(id=NID, name="iv", driver="ipvlan", ipam=[POOL],
                                         options={"parent": env.parent}))
    e1 = drv.attach(net, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1))
    e2 = drv.attach(net, EndpointSpec(endpoint_id="c2" * 32, netns=env.c2))
    try:
        parent_mac = _link(env.host, env.parent)[1]
        kind, mac, data = _link(env.c1, "eth0")
        assert (kind, mac, e1.mac) == ("ipvlan", parent_mac, parent_mac)
        assert data.get_attr("IFLA_IPVLAN_MODE") == 0  # type: ignore[attr-defined]
        assert _links(env.c1)["_default_via"]["gw"] == ["10.77.0.1"]
        assert _ping(env.c1, str(e2.addresses[0].ip))
        assert _ping(env.lan, str(e1.addresses[0].ip))
    finally:
        drv.detach(net, e1)
        drv.detach(net, e2)
        drv.delete_network(net)
    assert "eth0" not in _links(env.c1)


def test_ipvlan_private_flag_is_applied(env: Env) -> None:
    drv = M.IpvlanDriver(Ipam(env.state), host_netns=env.host)
    net = drv.create_network(NetworkSpec(id=NID, name="iv", driver="ipvlan", ipam=[POOL],
                                         options={"parent": env.parent,
                                                  "ipvlan_flag": "private"}))
    e1 = drv.attach(net, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1))
    e2 = drv.attach(net, EndpointSpec(endpoint_id="c2" * 32, netns=env.c2))
    try:
        # pyroute2 does not decode IFLA_IPVLAN_FLAGS; ip(8) -d prints "ipvlan  mode l2 private"
        detail = subprocess.run(["ip", "-n", env.c1, "-d", "link", "show", "eth0"], check=True,
                                capture_output=True, text=True).stdout
        words = detail.split()
        assert words[words.index("ipvlan"):][:4] == ["ipvlan", "mode", "l2", "private"], detail
        assert not _ping(env.c1, str(e2.addresses[0].ip), timeout=1.0)
        assert _ping(env.lan, str(e2.addresses[0].ip))
    finally:
        drv.detach(net, e1)
        drv.detach(net, e2)
        drv.delete_network(net)


@pytest.mark.parametrize("mode,num", [("l3", 1), ("l3s", 2)])
def test_ipvlan_l3_routes(env: Env, mode: str, num: int) -> None:
    drv = M.IpvlanDriver(Ipam(env.state), host_netns=env.host)
    net = drv.create_network(NetworkSpec(id=NID, name="iv3", driver="ipvlan", ipam=[
        PoolConfig(subnet="10.84.0.0/24")], options={"parent": env.parent,
                                                     "ipvlan_mode": mode}))
    e1 = drv.attach(net, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1))
    e2 = drv.attach(net, EndpointSpec(endpoint_id="c2" * 32, netns=env.c2))
    try:
        assert e1.gateways == () and _links(env.c1)["_default_via"]["gw"] == []
        out = subprocess.run(["ip", "-n", env.c1, "route", "show", "default"], check=True,
                             capture_output=True, text=True).stdout
        assert out.split()[:3] == ["default", "dev", "eth0"]  # on-link, as moby sets it
        assert _link(env.c1, "eth0")[2].get_attr("IFLA_IPVLAN_MODE") == num  # type: ignore[attr-defined]
        assert _ping(env.c1, str(e2.addresses[0].ip))
        # l3: the other machines route the subnet to the parent host
        ip(env.lan, "route", "add", "10.84.0.0/24", "via", "10.77.0.2")
        assert _ping(env.lan, str(e1.addresses[0].ip))
    finally:
        drv.detach(net, e1)
        drv.detach(net, e2)
        drv.delete_network(net)


def test_dummy_parent_and_8021q_subinterface(env: Env) -> None:
    mv = M.MacvlanDriver(Ipam(env.state), host_netns=env.host)
    before = set(_links(env.host))
    net = mv.create_network(NetworkSpec(id=NID, name="mv", driver="macvlan",
                                        ipam=[PoolConfig(subnet="10.85.0.0/24")]))
    dummy = lowerdev.dummy_name("macvlan", NID)
    assert _link(env.host, dummy)[0] == "dummy" and net.internal
    mv.delete_network(net)
    assert set(_links(env.host)) == before
    sub = f"{env.parent}.10"
    net = mv.create_network(NetworkSpec(id=NID, name="mv10", driver="macvlan", ipam=[
        PoolConfig(subnet="10.86.0.0/24")], options={"parent": sub}))
    try:
        assert _link(env.host, sub)[0] == "vlan"
        ip(env.lan, "link", "add", "link", env.peer, "name", "lkq.10", "type", "vlan",
           "id", "10")
        ip(env.lan, "addr", "add", "10.86.0.200/24", "dev", "lkq.10")
        ip(env.lan, "link", "set", "lkq.10", "up")
        ep = mv.attach(net, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1))
        try:
            assert _ping(env.lan, str(ep.addresses[0].ip))  # tagged with VLAN 10
        finally:
            mv.detach(net, ep)
    finally:
        mv.delete_network(net)
    assert set(_links(env.host)) == before  # the sub-interface it made is gone


def test_macvlan_and_ipvlan_never_share_a_parent(env: Env) -> None:
    """One rx_handler per device: the kernel refuses the second kind (EBUSY), in moby's
    words, and nothing is left (the address goes back to IPAM)."""
    from labkit import errors

    mv = M.MacvlanDriver(Ipam(env.state / "mv"), host_netns=env.host)
    iv = M.IpvlanDriver(Ipam(env.state / "iv"), host_netns=env.host)
    m = mv.create_network(NetworkSpec(id=NID, name="mv", driver="macvlan", ipam=[
        PoolConfig(subnet="10.87.0.0/24")], options={"parent": env.parent}))
    i = iv.create_network(NetworkSpec(id="cd" * 32, name="iv", driver="ipvlan", ipam=[
        PoolConfig(subnet="10.89.0.0/24")], options={"parent": env.parent}))
    ep = mv.attach(m, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1))
    try:
        with pytest.raises(errors.ConflictError,
                           match="failed to create the ipvlan port: device or resource busy"):
            iv.attach(i, EndpointSpec(endpoint_id="c2" * 32, netns=env.c2))
        assert iv.ipam.pools("cd" * 32)[0].allocated == {}
        assert "eth0" not in _links(env.c2)
    finally:
        mv.detach(m, ep)
        mv.delete_network(m)
        iv.delete_network(i)
