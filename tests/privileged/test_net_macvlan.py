"""labkit.engine.net.macvlan on this kernel, in test-made namespaces only.

The layout: a "host" netns whose parent link lkp<u> is one end of a veth pair; the other
end (lkq<u>) is in a "LAN" netns playing another machine on the segment (and its router,
10.77.0.1).  Two container netns get macvlan children of lkp<u>.  Shown: containers reach
each other and the LAN reaches them; the host does not reach its own children, until it
takes a macvlan link of its own (the documented workaround); refusals leave no link and no
pool; ipvlan is refused here (the VM runs it: tests/vm/test_vm_macvlan.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from labkit import errors
from labkit._sys import features
from labkit.engine.net import lowerdev
from labkit.engine.net import macvlan as M
from labkit.engine.net.driver import EndpointSpec, NetworkSpec
from labkit.engine.net.ipam import Ipam, PoolConfig, PoolOverlapError
from labkit.ns.netns import create_netns, list_netns, netns, remove_netns

from .test_net_bridge import _links, _ping

pytestmark = pytest.mark.privileged
NID, NID2 = "ab" * 32, "cd" * 32
POOL = PoolConfig(subnet="10.77.0.0/24", gateway="10.77.0.1", ip_range="10.77.0.128/25",
                  aux_addresses={"host": "10.77.0.2", "lan": "10.77.0.3"})


@dataclass
class Env:
    host: str
    c1: str
    c2: str
    lan: str
    parent: str
    state: Path

    def driver(self) -> M.MacvlanDriver:
        return M.MacvlanDriver(Ipam(self.state), host_netns=self.host)


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


def _kinds(ns: str) -> dict[str, tuple[str | None, str | None]]:
    """name -> (link kind, ifalias) inside ``ns``."""
    with netns(f"/run/netns/{ns}"):
        ipr = IPRoute()
    try:
        out = {}
        for m in ipr.get_links():
            info = m.get_attr("IFLA_LINKINFO")
            out[m.get_attr("IFLA_IFNAME")] = (
                info.get_attr("IFLA_INFO_KIND") if info is not None else None,
                m.get_attr("IFLA_IFALIAS"))
        return out
    finally:
        ipr.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    u = f"{os.getpid() % 100000}"
    names = [f"lk-mvh-{u}", f"lk-mv1-{u}", f"lk-mv2-{u}", f"lk-mvl-{u}"]
    made: list[str] = []
    try:
        for n in names:
            create_netns(n)
            made.append(n)
        host, lan = names[0], names[3]
        parent = f"lkp{u}"
        ip(host, "link", "add", parent, "type", "veth", "peer", "name", f"lkq{u}",
           "netns", lan)
        ip(host, "addr", "add", "10.77.0.2/24", "dev", parent)
        ip(host, "link", "set", parent, "up")
        ip(lan, "addr", "add", "10.77.0.1/24", "dev", f"lkq{u}")
        ip(lan, "addr", "add", "10.77.0.3/24", "dev", f"lkq{u}")
        ip(lan, "link", "set", f"lkq{u}", "up")
        ip(lan, "link", "set", "lo", "up")
        yield Env(host, names[1], names[2], lan, parent, tmp_path)
    finally:
        for n in made:
            remove_netns(n)  # every link in them goes with them
    assert not set(names) & set(list_netns())


def test_macvlan_network_end_to_end(env: Env) -> None:
    drv = env.driver()
    host_before = set(_links(env.host))
    net = drv.create_network(NetworkSpec(id=NID, name="mv", driver="macvlan", ipam=[POOL],
                                         options={"parent": env.parent}))
    assert (net.driver, net.bridge, net.internal) == ("macvlan", env.parent, False)
    e1 = drv.attach(net, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1))
    e2 = drv.attach(net, EndpointSpec(endpoint_id="c2" * 32, netns=env.c2,
                                      ipv4_address="10.77.0.50"))
    try:
        assert set(_links(env.host)) == host_before  # made straight in the containers
        assert [str(a) for a in e1.addresses] == ["10.77.0.129/24"]  # .128 is the range's
        c1 = _links(env.c1)
        assert c1["eth0"]["mac"] == e1.mac == "02:42:0a:4d:00:81"  # 02:42 + 10.77.0.129
        assert "10.77.0.129/24" in c1["eth0"]["addrs"]  # type: ignore[operator]
        assert c1["_default_via"]["gw"] == ["10.77.0.1"] and c1["eth0"]["up"]
        assert _kinds(env.c1)["eth0"] == ("macvlan", lowerdev.endpoint_tag("c1" * 32))
        assert _ping(env.c1, "10.77.0.50")  # container to container: bridge mode
        assert _ping(env.lan, "10.77.0.129")  # another machine on the segment
        assert _ping(env.c2, "10.77.0.1")  # the router, via the parent
        # The host does NOT reach its own macvlan children (see macvlan.py's docstring) ...
        assert not _ping(env.host, "10.77.0.129", timeout=1.0)
        # ... until it holds its address on a macvlan link of its own, in bridge mode.
        ip(env.host, "addr", "del", "10.77.0.2/24", "dev", env.parent)
        ip(env.host, "link", "add", "lkhostmv", "link", env.parent, "type", "macvlan",
           "mode", "bridge")
        ip(env.host, "addr", "add", "10.77.0.2/24", "dev", "lkhostmv")
        ip(env.host, "link", "set", "lkhostmv", "up")
        assert _ping(env.host, "10.77.0.129")
    finally:
        drv.detach(net, e1)
        drv.detach(net, e2)
    assert set(_links(env.c1)) == {"lo", "_default_via"}
    assert drv.ipam.pools(NID)[0].allocated == {}
    drv.delete_network(net)
    assert env.parent in _links(env.host)  # the user's parent is never removed
    with pytest.raises(errors.NotFoundError):
        drv.ipam.pools(NID)


def test_no_parent_makes_an_internal_dead_end(env: Env) -> None:
    drv = env.driver()
    before = set(_links(env.host))
    net = drv.create_network(NetworkSpec(id=NID, name="mv", driver="macvlan",
                                         ipam=[PoolConfig(subnet="10.78.0.0/24")]))
    try:
        dummy = lowerdev.dummy_name("macvlan", NID)
        assert (net.bridge, net.internal) == (dummy, True) == ("lkdm-abababab" + "ab", True)
        made = set(_links(env.host)) - before
        # a dummy where the kernel has one, else a veth pair (this host: no CONFIG_DUMMY)
        assert made in ({dummy}, {dummy, "lkpm-ababababab"})
        assert _kinds(env.host)[dummy][1] == lowerdev.owner_tag("macvlan")
        e1 = drv.attach(net, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1))
        e2 = drv.attach(net, EndpointSpec(endpoint_id="c2" * 32, netns=env.c2))
        try:
            assert e1.gateways == () and _links(env.c1)["_default_via"]["gw"] == []
            assert _ping(env.c1, str(e2.addresses[0].ip))
        finally:
            drv.detach(net, e1)
            drv.detach(net, e2)
    finally:
        drv.delete_network(net)
    assert set(_links(env.host)) == before


def test_dotted_parent_is_an_8021q_subinterface(env: Env) -> None:
    drv = env.driver()
    before = set(_links(env.host))
    sub = f"{env.parent}.10"
    spec = NetworkSpec(id=NID, name="mv10", driver="macvlan", ipam=[PoolConfig(
        subnet="10.79.0.0/24")], options={"parent": sub})
    try:
        net = drv.create_network(spec)
    except errors.UnsupportedError as err:  # this host: no CONFIG_VLAN_8021Q
        assert "CONFIG_VLAN_8021Q" in str(err) and "labkit vm" in (err.hint or "")
        assert set(_links(env.host)) == before and drv.ipam.networks() == {}
        return
    try:
        assert _kinds(env.host)[sub] == ("vlan", lowerdev.owner_tag("macvlan"))
        ip(env.lan, "link", "add", "link", f"lkq{env.parent[3:]}", "name", "lkq.10",
           "type", "vlan", "id", "10")
        ip(env.lan, "addr", "add", "10.79.0.1/24", "dev", "lkq.10")
        ip(env.lan, "link", "set", "lkq.10", "up")
        ep = drv.attach(net, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1))
        try:
            assert _ping(env.lan, str(ep.addresses[0].ip))  # tagged frames, VLAN 10
        finally:
            drv.detach(net, ep)
    finally:
        drv.delete_network(net)
    assert set(_links(env.host)) == before  # the sub-interface went with the network


def test_refusals_leave_nothing(env: Env) -> None:
    drv = env.driver()
    before = set(_links(env.host))

    def refused(exc: type[Exception], words: str, **opts: str) -> None:
        with pytest.raises(exc) as ei:
            drv.create_network(NetworkSpec(id=NID2, name="bad", driver="macvlan",
                                           ipam=[PoolConfig(subnet="10.80.0.0/24")],
                                           options=opts))
        assert words in str(ei.value)
        assert set(_links(env.host)) == before and NID2 not in drv.ipam.networks()

    refused(errors.InvalidArgumentError, "does not support option(s) colour", colour="red")
    refused(errors.InvalidArgumentError, "option(s) encrypted", encrypted="")
    refused(errors.InvalidArgumentError, "requested macvlan mode 'l2' is not valid",
            macvlan_mode="l2")
    refused(errors.InvalidArgumentError, "loopback interface is not a valid macvlan parent",
            parent="lo")
    refused(errors.NotFoundError, "-o parent interface was not found on the host: lknope0",
            parent="lknope0")
    refused(errors.NotFoundError, "-o parent interface was not found on the host: lknope0",
            parent="lknope0.5")
    refused(errors.InvalidArgumentError, "vlan id must be between 1-4094, received: 4095",
            parent=f"{env.parent}.4095")
    refused(errors.InvalidArgumentError, "unable to parse a valid vlan id from: x",
            parent=f"{env.parent}.x")
    with pytest.raises(errors.InvalidArgumentError, match="encryption is an overlay"):
        drv.create_network(NetworkSpec(id=NID2, name="bad", driver="macvlan",
                                       options={"encrypted": "true"}))

    net = drv.create_network(NetworkSpec(id=NID, name="mv", driver="macvlan", ipam=[POOL],
                                         options={"parent": env.parent}))
    try:
        # same parent, overlapping subnet: IPAM's (moby's) words, nothing made
        with pytest.raises(PoolOverlapError, match="Pool overlaps with other one on this address space"):
            drv.create_network(NetworkSpec(id=NID2, name="dup", driver="macvlan",
                                           ipam=[PoolConfig(subnet="10.77.0.0/25")],
                                           options={"parent": env.parent}))
        refused(errors.ConflictError, f"cannot use mode passthru, macvlan network {NID} is "
                f"already using parent interface {env.parent}", parent=env.parent,
                macvlan_mode="passthru")
        # a second bridge-mode network on the same parent is fine (moby >= 23)
        other = drv.create_network(NetworkSpec(id=NID2, name="mv2", driver="macvlan",
                                               ipam=[PoolConfig(subnet="10.81.0.0/24")],
                                               options={"parent": env.parent,
                                                        "macvlan_mode": "private"}))
        drv.delete_network(other)
        assert env.parent in _links(env.host)
        # endpoint refusals free their address and leave no link in the container
        for spec, exc in (
            (EndpointSpec(endpoint_id="c1" * 32, netns=env.c1, mac_address="zz"),
             errors.InvalidArgumentError),
            (EndpointSpec(endpoint_id="c1" * 32, netns="lk-no-such-ns"), errors.NotFoundError),
            (EndpointSpec(endpoint_id="c1" * 32, netns=env.c1, ipv4_address="10.9.9.9"),
             errors.InvalidArgumentError),
        ):
            with pytest.raises(exc):
                drv.attach(net, spec)
            assert drv.ipam.pools(NID)[0].allocated == {}
            assert set(_links(env.c1)) == {"lo", "_default_via"}
        ep = drv.attach(net, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1))
        try:
            with pytest.raises(errors.AlreadyExistsError):  # eth0 taken in that netns
                drv.attach(net, EndpointSpec(endpoint_id="c2" * 32, netns=env.c1))
            assert len(drv.ipam.pools(NID)[0].allocated) == 1
            with pytest.raises(errors.ConflictError, match="active endpoints"):
                drv.delete_network(net)
        finally:
            drv.detach(net, ep)
    finally:
        drv.delete_network(net)
    assert set(_links(env.host)) == before and drv.ipam.networks() == {}


def test_mac_address_and_modes_applied(env: Env) -> None:
    drv = env.driver()
    net = drv.create_network(NetworkSpec(id=NID, name="mv", driver="macvlan", ipam=[POOL],
                                         options={"parent": env.parent,
                                                  "macvlan_mode": "private"}))
    try:
        e1 = drv.attach(net, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1,
                                          mac_address="02:00:00:00:00:09"))
        e2 = drv.attach(net, EndpointSpec(endpoint_id="c2" * 32, netns=env.c2))
        try:
            assert _links(env.c1)["eth0"]["mac"] == e1.mac == "02:00:00:00:00:09"
            with netns(f"/run/netns/{env.c1}"):
                ipr = IPRoute()
            try:
                data = ipr.get_links(ifname="eth0")[0].get_attr("IFLA_LINKINFO") \
                    .get_attr("IFLA_INFO_DATA")
                assert data.get_attr("IFLA_MACVLAN_MODE") in (1, "private")
            finally:
                ipr.close()
            # private mode: children never reach each other, the LAN still reaches both
            assert _ping(env.lan, str(e2.addresses[0].ip))
            assert not _ping(env.c1, str(e2.addresses[0].ip), timeout=1.0)
        finally:
            drv.detach(net, e1)
            drv.detach(net, e2)
    finally:
        drv.delete_network(net)


def test_restart_then_detach_and_netns_gone(env: Env) -> None:
    drv = env.driver()
    spec = NetworkSpec(id=NID, name="mv", driver="macvlan",
                       ipam=[PoolConfig(subnet="10.82.0.0/24")])  # no parent: own dead end
    before = set(_links(env.host))
    net = drv.create_network(spec)
    ep = drv.attach(net, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1))
    drv2 = env.driver()  # "the daemon restarted"
    net2 = drv2.restore_network(spec)
    assert net2.bridge == net.bridge
    with pytest.raises(errors.InvalidArgumentError, match="restore_endpoint"):
        drv2.detach(net2, ep)  # it cannot know the netns: refused, nothing freed
    assert len(drv2.ipam.pools(NID)[0].allocated) == 1
    drv2.restore_endpoint(ep, env.c1)
    drv2.detach(net2, ep)
    assert "eth0" not in _links(env.c1)
    ctr = f"lk-mvx-{os.getpid() % 100000}"
    create_netns(ctr)
    try:
        ep = drv2.attach(net2, EndpointSpec(endpoint_id="c3" * 32, netns=ctr))
    finally:
        remove_netns(ctr)
    drv2.detach(net2, ep, netns_gone=True)
    assert drv2.ipam.pools(NID)[0].allocated == {}
    drv2.delete_network(net2)
    assert set(_links(env.host)) == before  # the parent it made went, after the restart


def test_detach_never_deletes_a_link_that_is_not_its_own(env: Env) -> None:
    """A recycled netns path: the name matches, the IFLA_IFALIAS does not."""
    ip(env.c1, "link", "add", "eth0", "type", "veth", "peer", "name", "lkother")
    assert not lowerdev.del_child(env.c1, "eth0", endpoint_id="c1" * 32)
    assert "eth0" in _links(env.c1)


@pytest.mark.skipif(features.link_kind_builtin("ipvlan") is not False,
                    reason="this kernel has ipvlan: tests/vm/test_vm_macvlan.py runs it")
def test_ipvlan_is_unsupported_here(env: Env) -> None:
    drv = M.IpvlanDriver(Ipam(env.state), host_netns=env.host)  # constructing is fine
    before = set(_links(env.host))
    for opts in ({"parent": env.parent}, {}, {"parent": env.parent, "ipvlan_mode": "l3"}):
        with pytest.raises(errors.UnsupportedError) as ei:
            drv.create_network(NetworkSpec(id=NID, name="iv", driver="ipvlan",
                                           ipam=[PoolConfig(subnet="10.83.0.0/24")],
                                           options=opts))
        assert "CONFIG_IPVLAN" in str(ei.value)
        assert "make test-vm" in (ei.value.hint or "")
        assert "tests/vm/test_vm_ipvlan.py" in (ei.value.hint or "")
        assert set(_links(env.host)) == before and drv.ipam.networks() == {}
    with pytest.raises(errors.InvalidArgumentError, match="ipvlan_mode"):  # options first
        drv.create_network(NetworkSpec(id=NID, name="iv", driver="ipvlan",
                                       options={"ipvlan_mode": "l4"}))


def test_ipv6_addresses_and_routes(env: Env) -> None:
    drv = env.driver()
    net = drv.create_network(NetworkSpec(id=NID, name="mv6", driver="macvlan", ipv6=True,
                                         ipam=[PoolConfig(subnet="10.88.0.0/24"),
                                               PoolConfig(subnet="fd77::/64")],
                                         options={"parent": env.parent}))
    try:
        e1 = drv.attach(net, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1))
        e2 = drv.attach(net, EndpointSpec(endpoint_id="c2" * 32, netns=env.c2,
                                          ipv6_address="fd77::77"))
        try:
            assert [str(a) for a in e2.addresses] == ["10.88.0.3/24", "fd77::77/64"]
            assert "fd77::77/64" in _links(env.c2)["eth0"]["addrs"]  # type: ignore[operator]
            assert _links(env.c1)["_default_via"]["gw"] == ["10.88.0.1", "fd77::1"]
            assert _ping(env.c1, "fd77::77")
        finally:
            drv.detach(net, e1)
            drv.detach(net, e2)
    finally:
        drv.delete_network(net)


def test_passthru_takes_the_parent_mac_and_one_endpoint(env: Env) -> None:
    drv = env.driver()
    net = drv.create_network(NetworkSpec(id=NID, name="pt", driver="macvlan", ipam=[POOL],
                                         options={"parent": env.parent,
                                                  "macvlan_mode": "passthru"}))
    try:
        ep = drv.attach(net, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1))
        try:
            assert ep.mac == _links(env.host)[env.parent]["mac"] == _links(env.c1)["eth0"]["mac"]
            assert _ping(env.lan, str(ep.addresses[0].ip))
            with pytest.raises(errors.ConflictError, match="in mode passthru"):
                drv.attach(net, EndpointSpec(endpoint_id="c2" * 32, netns=env.c2))
            assert len(drv.ipam.pools(NID)[0].allocated) == 1
        finally:
            drv.detach(net, ep)
    finally:
        drv.delete_network(net)


def test_usable_from_a_running_event_loop(env: Env) -> None:
    """The daemon calls drivers from its asyncio loop; pyroute2's sync API cannot run
    there, so the kernel-side calls move to a worker thread (labkit.ns.rtnl.off_loop)."""
    import asyncio

    drv = env.driver()

    async def inside_a_loop() -> None:
        net = drv.create_network(NetworkSpec(id=NID, name="mv", driver="macvlan",
                                             ipam=[POOL], options={"parent": env.parent}))
        ep = drv.attach(net, EndpointSpec(endpoint_id="c1" * 32, netns=env.c1))
        drv.detach(net, ep)
        drv.delete_network(net)

    asyncio.run(inside_a_loop())
    assert "eth0" not in _links(env.c1) and drv.ipam.networks() == {}
