"""`docker run --network ...`: what a container sees of its network, as dockerd makes it.

Addresses, routes, isolation between bridges, --internal, IPv6, --mac-address, the
container:/host/none modes and the resolver files (--dns*, --add-host).  The "outside world"
is the peer netns of conftest.py (10.231.0.2, behind the daemon's netns).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

pytestmark = pytest.mark.privileged

PEER = "10.231.0.2"
PEER_HOST = "10.231.0.1"  # the daemon netns's address towards the peer


def _sleeper(nd: Any, *opts: str) -> str:
    name = nd.name()
    nd.ok("run", "-d", "--name", name, *opts, "busybox", "sleep", "300")
    return name


def _ip4(nd: Any, c: str, dev: str = "eth0") -> str:
    out = nd.ok("exec", c, "ip", "-o", "-4", "addr", "show", dev)
    return out.split("inet ")[1].split()[0]


def test_user_network_address_and_default_route(nd: Any) -> None:
    net = nd.name("n")
    nd.ok("network", "create", "--subnet", "10.211.0.0/24", "--gateway", "10.211.0.1", net)
    c = _sleeper(nd, "--network", net)
    iface = ipaddress.ip_interface(_ip4(nd, c))
    assert iface.network == ipaddress.ip_network("10.211.0.0/24")
    assert iface.ip != ipaddress.ip_address("10.211.0.1")
    routes = nd.ok("exec", c, "ip", "route").splitlines()
    assert any(r.split()[:3] == ["default", "via", "10.211.0.1"] for r in routes), routes
    assert nd.inspect("container", c)["NetworkSettings"]["Networks"][net]["IPAddress"] == \
        str(iface.ip)
    # the container reaches the outside world through the host (forwarding on)
    r = nd.docker("exec", c, "ping", "-c1", "-W2", PEER)
    assert r.returncode == 0, r.stdout + r.stderr


def test_default_bridge_address(nd: Any) -> None:
    c = _sleeper(nd)
    sub = nd.inspect("network", "bridge")["IPAM"]["Config"][0]["Subnet"]
    assert ipaddress.ip_interface(_ip4(nd, c)).network == ipaddress.ip_network(sub)
    r = nd.docker("exec", c, "ping", "-c1", "-W2", PEER)
    assert r.returncode == 0, r.stdout + r.stderr


def test_fixed_ip_and_ip6(nd: Any) -> None:
    net = nd.name("n")
    nd.ok("network", "create", "--ipv6", "--subnet", "10.212.0.0/24", "--subnet",
          "fd00:212::/64", net)
    c = _sleeper(nd, "--network", net, "--ip", "10.212.0.50", "--ip6", "fd00:212::50")
    assert _ip4(nd, c) == "10.212.0.50/24"
    out6 = nd.ok("exec", c, "ip", "-o", "-6", "addr", "show", "eth0")
    assert "inet6 fd00:212::50/64" in out6
    r6 = nd.ok("exec", c, "ip", "-6", "route")
    assert "default via fd00:212::1" in r6
    ep = nd.inspect("container", c)["NetworkSettings"]["Networks"][net]
    assert (ep["IPAddress"], ep["GlobalIPv6Address"]) == ("10.212.0.50", "fd00:212::50")
    # the address is taken: a second container asking for it is refused
    r = nd.docker("run", "--rm", "--network", net, "--ip", "10.212.0.50", "busybox", "true")
    assert r.returncode == 125 and "Address already in use" in r.stderr, r.stderr
    # released with the container: the address can be had again
    nd.ok("rm", "-f", c)
    out = nd.ok("run", "--rm", "--network", net, "--ip", "10.212.0.50", "busybox", "ip", "-o",
                "-4", "addr", "show", "eth0")
    assert "inet 10.212.0.50/24" in out


def test_ip_outside_subnet_refused(nd: Any) -> None:
    net = nd.name("n")
    nd.ok("network", "create", "--subnet", "10.213.0.0/24", net)
    r = nd.docker("run", "--rm", "--network", net, "--ip", "10.99.0.5", "busybox", "true")
    assert r.returncode == 125 and "10.99.0.5" in r.stderr, r.stderr


def test_docker_py_run_on_network(nd: Any) -> None:
    """docker-py's containers.run(network=NAME) sends HostConfig.NetworkMode=NAME plus
    NetworkingConfig {NAME: null} (docker/models/containers.py); dockerd attaches it."""
    net = nd.name("n")
    nd.ok("network", "create", "--subnet", "10.216.0.0/24", net)
    c = nd.py().containers.run("busybox", ["sleep", "300"], name=nd.name(), detach=True,
                               network=net)
    out = c.exec_run(["ip", "-o", "-4", "addr", "show", "eth0"]).output.decode()
    assert "inet 10.216.0." in out, out
    c.reload()
    assert set(c.attrs["NetworkSettings"]["Networks"]) == {net}


def test_mac_address(nd: Any) -> None:
    """--mac-address (docker-py's mac_address: the CLI of this host needs API 1.44 for it)."""
    net = nd.name("n")
    nd.ok("network", "create", net)
    cl = nd.py()
    c = cl.containers.run("busybox", ["sleep", "300"], name=nd.name(), detach=True,
                          network=net, mac_address="02:42:0a:bc:de:01")
    out = c.exec_run(["cat", "/sys/class/net/eth0/address"]).output.decode().strip()
    assert out == "02:42:0a:bc:de:01"
    c.reload()
    assert c.attrs["NetworkSettings"]["Networks"][net]["MacAddress"] == "02:42:0a:bc:de:01"


def test_bridges_isolated_same_bridge_talks(nd: Any) -> None:
    a, b = nd.name("n"), nd.name("n")
    nd.ok("network", "create", "--subnet", "10.214.1.0/24", a)
    nd.ok("network", "create", "--subnet", "10.214.2.0/24", b)
    a1, a2 = _sleeper(nd, "--network", a), _sleeper(nd, "--network", a)
    b1 = _sleeper(nd, "--network", b)
    ip_a2 = _ip4(nd, a2).split("/")[0]
    ip_b1 = _ip4(nd, b1).split("/")[0]
    assert nd.docker("exec", a1, "ping", "-c1", "-W2", ip_a2).returncode == 0
    assert nd.docker("exec", a1, "ping", "-c1", "-W1", ip_b1).returncode != 0
    assert nd.docker("exec", b1, "ping", "-c1", "-W1", ip_a2).returncode != 0


def test_internal_network_no_way_out_members_talk(nd: Any) -> None:
    net = nd.name("n")
    nd.ok("network", "create", "--internal", "--subnet", "10.215.0.0/24", net)
    i1 = _sleeper(nd, "--network", net)
    i2 = _sleeper(nd, "--network", net)
    assert nd.docker("exec", i2, "ping", "-c1", "-W2", _ip4(nd, i1).split("/")[0]
                     ).returncode == 0
    assert nd.docker("exec", i2, "ping", "-c1", "-W2", i1).returncode == 0  # by name too
    r = nd.docker("exec", i1, "ping", "-c1", "-W1", PEER)
    assert r.returncode != 0, r.stdout
    # the peer cannot reach in either
    assert nd.peer("ping", "-c1", "-W1", _ip4(nd, i1).split("/")[0]).returncode != 0


def test_network_container_shares_netns(nd: Any) -> None:
    net = nd.name("n")
    nd.ok("network", "create", net)
    owner = _sleeper(nd, "--network", net)
    mine = nd.ok("exec", owner, "ip", "-o", "addr")
    out = nd.ok("run", "--rm", "--network", f"container:{owner}", "busybox", "ip", "-o", "addr")
    assert out == mine


def test_network_host_sees_the_daemons_links(nd: Any) -> None:
    out = nd.ok("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link")
    names = {ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines()}
    assert set(nd.links()) <= names | {"lo"}
    assert nd.peer_link in names
    assert f"inet {PEER_HOST}/24" in nd.ok("run", "--rm", "--network", "host", "busybox", "ip",
                                            "-o", "-4", "addr")



def test_network_none_only_lo(nd: Any) -> None:
    out = nd.ok("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert [ln.split(":")[1].strip() for ln in out.splitlines()] == ["lo"]


def test_dns_options_in_resolv_conf_default_bridge(nd: Any) -> None:
    out = nd.ok("run", "--rm", "--dns", PEER, "--dns-search", "lk.example", "--dns-option",
                "ndots:3", "busybox", "cat", "/etc/resolv.conf")
    lines = [ln for ln in out.splitlines() if ln and not ln.startswith("#")]
    assert "nameserver 10.231.0.2" in lines
    assert "search lk.example" in lines
    assert "options ndots:3" in lines
    assert not any(ln.startswith("nameserver") and PEER not in ln for ln in lines)


def test_user_network_resolv_conf_points_at_embedded_dns(nd: Any) -> None:
    net = nd.name("n")
    nd.ok("network", "create", net)
    out = nd.ok("run", "--rm", "--network", net, "--dns", PEER, "--dns-search", "lk.example",
                "busybox", "cat", "/etc/resolv.conf")
    lines = [ln for ln in out.splitlines() if ln and not ln.startswith("#")]
    assert [ln for ln in lines if ln.startswith("nameserver")] == ["nameserver 127.0.0.11"]
    assert "search lk.example" in lines


def test_add_host(nd: Any) -> None:
    out = nd.ok("run", "--rm", "--add-host", "lkhost:10.231.0.2", "--add-host",
                "lkother:10.231.0.3", "busybox", "cat", "/etc/hosts")
    rows = [ln.split() for ln in out.splitlines()]
    assert ["10.231.0.2", "lkhost"] in rows and ["10.231.0.3", "lkother"] in rows
    r = nd.docker("run", "--rm", "--add-host", "lkhost:10.231.0.2", "busybox", "ping", "-c1",
                  "-W2", "lkhost")
    assert r.returncode == 0 and "10.231.0.2" in r.stdout, r.stdout + r.stderr
