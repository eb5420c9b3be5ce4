"""labkit.engine.net.driver.BridgeDriver end to end in test-made namespaces: IPAM and links
together, all-or-nothing on errors, and ipvlan refused where the kernel lacks it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import errors
from labkit._sys import features
from labkit.engine.net import driver as D
from labkit.engine.net.ipam import AddressInUseError, Ipam, PoolConfig
from labkit.ns.netns import create_netns, list_netns, remove_netns

from .test_net_bridge import _links, _ping

pytestmark = pytest.mark.privileged
NID = "ab" * 32


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[D.BridgeDriver, str, str, str]]:
    u = f"{os.getpid() % 100000}"
    names = [f"lk-ndh-{u}", f"lk-nd1-{u}", f"lk-nd2-{u}"]
    made: list[str] = []
    try:
        for n in names:
            create_netns(n)
            made.append(n)
        yield D.BridgeDriver(Ipam(tmp_path), host_netns=names[0]), names[1], names[2], names[0]
    finally:
        for n in made:
            remove_netns(n)
    assert not set(names) & set(list_netns())


def test_network_lifecycle(env: tuple[D.BridgeDriver, str, str, str]) -> None:
    drv, c1, c2, host = env
    net = drv.create_network(D.NetworkSpec(id=NID, name="mynet", ipam=[PoolConfig(
        subnet="10.91.0.0/24", ip_range="10.91.0.128/25")]))
    try:
        assert net.bridge == "lk-abababababab" and net.bridge in _links(host)
        e1 = drv.attach(net, D.EndpointSpec(endpoint_id="c1" * 32, netns=c1))
        e2 = drv.attach(net, D.EndpointSpec(endpoint_id="c2" * 32, netns=c2,
                                            ipv4_address="10.91.0.7"))
        try:
            assert [str(a) for a in e1.addresses] == ["10.91.0.130/24"]  # gw .129 from range
            assert [str(a) for a in e2.addresses] == ["10.91.0.7/24"]
            assert "10.91.0.7/24" in _links(c2)["eth0"]["addrs"]  # type: ignore[operator]
            assert _links(c1)["_default_via"]["gw"] == ["10.91.0.129"]
            assert _ping(c1, "10.91.0.7")
            with pytest.raises(AddressInUseError):
                drv.attach(net, D.EndpointSpec(endpoint_id="c3" * 32, netns=c1,
                                               ipv4_address="10.91.0.7", ifname="eth1"))
            with pytest.raises(errors.ConflictError, match="active endpoints"):
                drv.delete_network(net)
        finally:
            drv.detach(net, e1)
            drv.detach(net, e2)
        assert set(_links(c1)) == {"lo", "_default_via"}
        assert drv.ipam.pools(NID)[0].allocated == {}
    finally:
        drv.delete_network(net)
    assert net.bridge not in _links(host)
    with pytest.raises(errors.NotFoundError):
        drv.ipam.pools(NID)


def test_failed_attach_releases_address(env: tuple[D.BridgeDriver, str, str, str]) -> None:
    drv, c1, _c2, _host = env
    net = drv.create_network(D.NetworkSpec(id=NID, name="n", internal=True,
                                           ipam=[PoolConfig(subnet="10.92.0.0/24")]))
    try:
        with pytest.raises(errors.NotFoundError):
            drv.attach(net, D.EndpointSpec(endpoint_id="c1" * 32, netns="lk-no-such-ns"))
        with pytest.raises(errors.InvalidArgumentError, match="mac-address"):
            drv.attach(net, D.EndpointSpec(endpoint_id="c1" * 32, netns=c1, mac_address="zz"))
        assert drv.ipam.pools(NID)[0].allocated == {}
        ep = drv.attach(net, D.EndpointSpec(endpoint_id="c1" * 32, netns=c1,
                                            mac_address="02:00:00:00:00:09"))
        try:
            assert ep.gateways == () and _links(c1)["_default_via"]["gw"] == []  # --internal
            assert _links(c1)["eth0"]["mac"] == "02:00:00:00:00:09"
        finally:
            drv.detach(net, ep)
    finally:
        drv.delete_network(net)


def test_bad_networks_leave_nothing(env: tuple[D.BridgeDriver, str, str, str]) -> None:
    drv, _c1, _c2, host = env
    before = set(_links(host))
    with pytest.raises(errors.InvalidArgumentError, match="encrypted"):
        drv.create_network(D.NetworkSpec(id=NID, name="n", options={"encrypted": ""}))
    with pytest.raises(errors.InvalidArgumentError, match="mtu"):
        drv.create_network(D.NetworkSpec(id=NID, name="n", options={D.OPT_MTU: "9"}))
    with pytest.raises(errors.AlreadyExistsError):  # the bridge name is taken: pools undone
        drv.create_network(D.NetworkSpec(id=NID, name="n", options={D.OPT_NAME: "lo"}))
    assert drv.ipam.networks() == {} and set(_links(host)) == before
    net = drv.create_network(D.NetworkSpec(id=NID, name="bridge", options={D.OPT_MTU: "1400"}))
    try:
        assert net.bridge == "lk0" and str(net.pools[0].subnet) == "172.17.0.0/16"
    finally:
        drv.delete_network(net)


def test_check_driver(env: tuple[D.BridgeDriver, str, str, str]) -> None:
    *_, host = env
    with pytest.raises(errors.NotFoundError, match="plugin"):
        D.check_driver("overlayish")
    D.check_driver("bridge")
    if features.link_kind_builtin("ipvlan") is True:
        D.check_driver("ipvlan", netns=host)
    else:
        with pytest.raises(errors.UnsupportedError) as ei:
            D.check_driver("ipvlan", netns=host)
        assert "labkit vm" in (ei.value.hint or "")
        if features.link_kind_builtin("ipvlan") is False:  # the real probe agrees
            with pytest.raises(errors.UnsupportedError):
                D._probe_ipvlan(host)
    assert set(_links(host)) == {"lo", "_default_via"}  # the probe left nothing


def test_ip_only_on_user_configured_subnets(env: tuple[D.BridgeDriver, str, str, str]) -> None:
    drv, c1, _c2, host = env
    for name, words in (("bridge", "on user defined networks only"),
                        ("dflt", "with user configured subnets")):
        net = drv.create_network(D.NetworkSpec(id=NID, name=name))
        try:
            with pytest.raises(errors.InvalidArgumentError, match=words):
                drv.attach(net, D.EndpointSpec(endpoint_id="c1" * 32, netns=c1,
                                               ipv4_address=str(net.pools[0].gateway + 5)))
            assert drv.ipam.pools(NID)[0].allocated == {}
            assert "eth0" not in _links(c1)
        finally:
            drv.delete_network(net)
    with pytest.raises(errors.InvalidArgumentError, match="netns"):
        from labkit.engine.net import bridge
        bridge.attach("lk0", "lkvx", "../../etc", [], host_netns=host)


def test_detach_after_the_netns_died(env: tuple[D.BridgeDriver, str, str, str],
                                     tmp_path: Path) -> None:
    drv, _c1, _c2, host = env
    ctr = f"lk-ndx-{os.getpid() % 100000}"
    net = drv.create_network(D.NetworkSpec(id=NID, name="n",
                                           ipam=[PoolConfig(subnet="10.93.0.0/24")]))
    try:
        create_netns(ctr)
        try:
            ep = drv.attach(net, D.EndpointSpec(endpoint_id="c1" * 32, netns=ctr))
        finally:
            remove_netns(ctr)  # the container's namespace goes: nothing holds it any more
        drv.detach(net, ep, netns_gone=True)
        assert drv.ipam.pools(NID)[0].allocated == {}
        import time
        for _ in range(100):  # the kernel's netns cleanup work deletes the pair
            if ep.host_ifname not in _links(host):
                break
            time.sleep(0.05)
        assert ep.host_ifname not in _links(host)
    finally:
        drv.delete_network(net)


def test_restore_network_after_restart(env: tuple[D.BridgeDriver, str, str, str],
                                       tmp_path: Path) -> None:
    drv, c1, _c2, host = env
    spec = D.NetworkSpec(id=NID, name="n", ipam=[PoolConfig(subnet="10.94.0.0/24")])
    net = drv.create_network(spec)
    try:
        ep = drv.attach(net, D.EndpointSpec(endpoint_id="c1" * 32, netns=c1))
        drv2 = D.BridgeDriver(Ipam(tmp_path), host_netns=host)  # "the daemon restarted"
        net2 = drv2.restore_network(spec)
        assert (net2.bridge, [str(p.subnet) for p in net2.pools]) == (net.bridge,
                                                                       ["10.94.0.0/24"])
        assert _ping(c1, "10.94.0.1")  # live-restore: the endpoint kept working
        drv2.detach(net2, ep)
        from labkit.engine.net import bridge
        bridge.delete_bridge(net.bridge, host_netns=host)  # as after a reboot
        net3 = drv2.restore_network(spec)
        assert "10.94.0.1/24" in _links(host)[net3.bridge]["addrs"]  # type: ignore[operator]
        with pytest.raises(errors.NotFoundError):
            drv2.restore_network(D.NetworkSpec(id="cd" * 32, name="never"))
    finally:
        D.BridgeDriver(Ipam(tmp_path), host_netns=host).delete_network(net)  # current state
