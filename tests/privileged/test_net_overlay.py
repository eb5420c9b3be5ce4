"""labkit.engine.net.overlay and .xfrm on this kernel, in test-made namespaces only.

Two "nodes" are two network namespaces joined by a veth pair (the underlay, 10.250.<u>.1
and .2, MTU 1500); each runs an OverlayDriver in its own namespace (the thread enters it,
as a lab node's daemon runs in its own).  A "container" namespace hangs on each node's
network.  Shown: ping across; VXLAN packets counted on the underlay; the MTU computed;
the encrypted network's traffic is ESP only (SA counters on both nodes, no plain VXLAN
of that VNI on the wire), a node without the key cannot talk, a key rotation keeps ping
going; a plain network beside it stays plain.  Then the Networks seam.  Every namespace
is removed at the end, which takes every link, SA, policy and nft table in it along."""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from labkit import errors
from labkit.engine.net import overlay as ov
from labkit.engine.net import xfrm
from labkit.engine.net.driver import EndpointSpec, Network, NetworkSpec
from labkit.engine.net.ipam import PoolConfig
from labkit.ns.netns import create_netns, netns, remove_netns

pytestmark = pytest.mark.privileged
T = TypeVar("T")
U = os.getpid() % 200 + 20
VNI_PLAIN, VNI_ENC = 4100 + U, 4300 + U
PORT = 4789


def ip(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True,
                          text=True).stdout


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(ns: str, dst: str, *, count: int = 2, size: int | None = None,
         timeout: float = 1.0) -> bool:
    """ICMP echoes from inside ``ns`` (a raw socket: no ping binary here); True when one
    reply came.  ``size``: that many payload bytes, with DF set (IP_PMTUDISC_DO)."""
    with netns(f"/run/netns/{ns}"):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        if size is not None:
            s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
        ident = os.getpid() & 0xFFFF
        payload = b"L" * (size if size is not None else 8)
        for seq in range(1, count + 1):
            body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
            body = body[:2] + struct.pack("!H", _csum(body)) + body[4:]
            try:
                s.sendto(body, (dst, 0))
            except OSError:
                return False  # EMSGSIZE: larger than the route's MTU
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0 and select.select([s], [], [],
                                                                                left)[0]:
                pkt = s.recv(65535)
                icmp = pkt[(pkt[0] & 0x0F) * 4:]
                t, _c, _k, i, q = struct.unpack("!BBHHH", icmp[:8])
                if t == 0 and i == ident and q == seq:
                    return True
        return False
    finally:
        s.close()


def frag_creates(ns: str) -> int:
    snmp = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"],
                          capture_output=True, text=True, check=True).stdout
    head, vals = [ln.split()[1:] for ln in snmp.splitlines() if ln.startswith("Ip:")][:2]
    return int(dict(zip(head, vals, strict=True))["FragCreates"])


@dataclass
class Node:
    ns: str
    addr: str
    ctr: str  # the container's netns
    drv: ov.OverlayDriver

    def run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        with netns(f"/run/netns/{self.ns}"):
            return fn(*args, **kw)


@dataclass
class Lab:
    a: Node
    b: Node
    wire_a: str  # node a's underlay link


def _spec(vni: int, subnet: str, *, encrypted: bool = False) -> NetworkSpec:
    opts = {ov.OPT_VNI: str(vni)}
    if encrypted:
        opts[ov.OPT_ENCRYPTED] = ""
    return NetworkSpec(id=f"lkn{vni}", name=f"net{vni}", driver="overlay",
                       ipam=[PoolConfig(subnet=subnet, gateway=subnet.replace(".0/24", ".1/24")
                                        .split("/")[0])], options=opts)


@contextlib.contextmanager
def _nodes(tag: str, sub: int) -> Iterator[Lab]:
    """Two node namespaces joined by a veth (10.<sub>.<U>.1 and .2) and a container
    namespace for each; all removed on exit."""
    names = [f"lk{tag}a{U}", f"lk{tag}b{U}", f"lk{tag}c{U}", f"lk{tag}d{U}"]
    made: list[str] = []
    try:
        for n in names:
            create_netns(n)
            made.append(n)
        wa, wb = f"lk{tag}wa{U}", f"lk{tag}wb{U}"
        ip(names[0], "link", "add", wa, "type", "veth", "peer", "name", wb, "netns", names[1])
        addrs = (f"10.{sub}.{U}.1", f"10.{sub}.{U}.2")
        for ns, link, addr in ((names[0], wa, addrs[0]), (names[1], wb, addrs[1])):
            ip(ns, "addr", "add", f"{addr}/24", "dev", link)
            ip(ns, "link", "set", link, "up")
            ip(ns, "link", "set", "lo", "up")
        a = Node(names[0], addrs[0], names[2], ov.OverlayDriver())
        b = Node(names[1], addrs[1], names[3], ov.OverlayDriver())
        for n in (a, b):
            n.drv.configure(n.addr, PORT)
        yield Lab(a, b, wa)
    finally:
        for n in reversed(made):
            remove_netns(n)  # links, SAs, policies and nft tables go with the namespace


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with _nodes("o", 250) as lab:
        # a probe on b's underlay link at ingress (before ESP is undone): what the wire
        # carries towards b
        _nft(lab.b.ns, "\n".join([
            f"table netdev lkt{U} {{", "chain c {",
            f"type filter hook ingress device lkowb{U} priority 0;",
            "meta l4proto esp counter",
            f"udp dport {PORT} @th,96,24 {VNI_PLAIN} counter",
            f"udp dport {PORT} @th,96,24 {VNI_ENC} counter", "}", "}", ""]))
        yield lab


def _attach(node: Node, net: Network, addr: str, ifname: str) -> None:
    ep = f"{ifname}{node.ns}".encode().hex().ljust(64, "0")[:64]
    node.run(node.drv.attach, net, EndpointSpec(endpoint_id=ep, netns=node.ctr,
                                                ipv4_address=addr, ifname=ifname))


def _peer(node: Node, ips: list[str]) -> list[ov.Peer]:
    return ov.parse_peers([{"node": node.ns, "addr": node.addr, "ips": ips}])


def test_mtu_formula() -> None:
    assert ov.overlay_mtu(1500, encrypted=False) == 1450
    assert ov.overlay_mtu(1500, encrypted=True) == 1416
    # the encrypted value is the largest that fits: one more byte would need 4 of padding
    for u in (1500, 1450, 9000, 1280):
        inner = ov.overlay_mtu(u, encrypted=True)
        for extra, fits in ((0, True), (1, False)):
            d = 8 + 8 + 14 + inner + extra
            outer = 20 + 8 + 8 + -(-(d + 2) // 4) * 4 + 16
            assert (outer <= u) is fits


def test_plain_overlay(lab: Lab) -> None:
    a, b = lab.a, lab.b
    nets = {}
    for node in (a, b):
        nets[node.ns] = node.run(node.drv.create_network, _spec(VNI_PLAIN, "10.77.1.0/24"))
        # idempotent: a second create adopts the links
        node.run(node.drv.create_network, _spec(VNI_PLAIN, "10.77.1.0/24"))
    assert nets[a.ns].mtu == 1450
    assert "mtu 1450" in ip(a.ns, "link", "show", ov.vxlan_name(VNI_PLAIN))
    details = ip(a.ns, "-d", "link", "show", ov.vxlan_name(VNI_PLAIN))
    assert f"vxlan id {VNI_PLAIN}" in details and f"local {a.addr}" in details
    assert "nolearning" in details and f"dstport {PORT}" in details
    _attach(a, nets[a.ns], "10.77.1.2", "eth0")
    _attach(b, nets[b.ns], "10.77.1.3", "eth0")
    assert "mtu 1450" in ip(a.ctr, "link", "show", "eth0")
    assert "02:42:0a:4d:01:02" in ip(a.ctr, "link", "show", "eth0")
    assert not ping(a.ctr, "10.77.1.3", count=1)  # no peers yet: nowhere to send
    a.run(a.drv.set_peers, nets[a.ns].id, _peer(b, ["10.77.1.3"]))
    b.run(b.drv.set_peers, nets[b.ns].id, _peer(a, ["10.77.1.2"]))
    fdb = ip(a.ns, "-d", "-4", "neigh", "show") + subprocess.run(
        ["bridge", "-n", a.ns, "fdb", "show", "dev", ov.vxlan_name(VNI_PLAIN)],
        capture_output=True, text=True, check=True).stdout
    assert f"00:00:00:00:00:00 dst {b.addr}" in fdb
    assert f"02:42:0a:4d:01:03 dst {b.addr}" in fdb
    before = _wire_counters(b.ns)
    frags = frag_creates(a.ns)
    assert ping(a.ctr, "10.77.1.3")
    after = _wire_counters(b.ns)
    assert after[1] - before[1] >= 1  # the echo request crossed as VXLAN of that VNI
    assert after[0] == before[0]  # and nothing as ESP
    # the MTU is the real limit: a full-size packet with DF crosses, unfragmented
    assert ping(a.ctr, "10.77.1.3", count=1, size=1450 - 28)
    assert frag_creates(a.ns) == frags
    # and it is the exact limit: with every overlay MTU on both nodes raised by one, a
    # packet one byte larger does not cross; the VXLAN driver answers it with a "fragmentation
    # needed" of its own (skb_tunnel_check_pmtu) naming 1450, which the container caches
    hops = []
    for node in (a, b):
        hops += [(node.ctr, "eth0"), (node.ns, ov.bridge_name(VNI_PLAIN)),
                 (node.ns, ov.vxlan_name(VNI_PLAIN))] + [
            (node.ns, ln.split(":")[1].strip().split("@")[0])
            for ln in ip(node.ns, "-o", "link", "show", "master",
                         ov.bridge_name(VNI_PLAIN)).splitlines()]
    try:
        for ns, link in hops:
            ip(ns, "link", "set", link, "mtu", "1451")
        assert not ping(a.ctr, "10.77.1.3", count=1, size=1451 - 28)
        assert "mtu 1450" in ip(a.ctr, "route", "get", "10.77.1.3")
    finally:
        for ns, link in hops:
            ip(ns, "link", "set", link, "mtu", "1450")
        ip(a.ctr, "route", "flush", "cache")
    assert ping(a.ctr, "10.77.1.3", count=1, size=1450 - 28)
    # peers replaced: b gone from a's view -> its entries go, ping stops
    a.run(a.drv.set_peers, nets[a.ns].id, [])
    fdb = subprocess.run(["bridge", "-n", a.ns, "fdb", "show", "dev",
                          ov.vxlan_name(VNI_PLAIN)], capture_output=True, text=True,
                         check=True).stdout
    assert b.addr not in fdb
    assert not ping(a.ctr, "10.77.1.3", count=1)
    a.run(a.drv.set_peers, nets[a.ns].id, _peer(b, ["10.77.1.3"]))
    assert ping(a.ctr, "10.77.1.3", count=1)


def test_bad_input(lab: Lab) -> None:
    a = lab.a
    with pytest.raises(errors.InvalidArgumentError):
        ov.parse_peers([{"addr": "not-an-ip"}])
    with pytest.raises(errors.InvalidArgumentError):
        ov.parse_peers([{"addr": "10.0.0.1", "ips": ["10.9.9.9"]}],
                       __import__("ipaddress").ip_network("10.77.1.0/24"))
    with pytest.raises(errors.InvalidArgumentError):
        xfrm.parse_keys([{"Key": "AAAA", "Tag": 1}])
    with pytest.raises(errors.InvalidArgumentError):
        a.run(a.drv.create_network, NetworkSpec(id="x", name="x", driver="overlay",
                                                options={ov.OPT_VNI: "0"}))
    net = a.run(a.drv.create_network, _spec(VNI_PLAIN, "10.77.1.0/24"))
    with pytest.raises(errors.InvalidArgumentError, match="given by the swarm"):
        a.run(a.drv.attach, net, EndpointSpec(endpoint_id="f" * 64, netns=a.ctr))
    with pytest.raises(errors.InvalidArgumentError, match="not a host address"):
        a.run(a.drv.attach, net, EndpointSpec(endpoint_id="f" * 64, netns=a.ctr,
                                              ipv4_address="10.77.2.5", ifname="eth5"))
    with pytest.raises(errors.ConflictError):
        a.run(a.drv.attach, net, EndpointSpec(endpoint_id="f" * 64, netns=a.ctr,
                                              ipv4_address="10.77.1.2", ifname="eth5"))
    with pytest.raises(errors.ConflictError):
        a.run(a.drv.delete_network, net)  # an endpoint is on it


def _keys(*tags: int) -> list[xfrm.Key]:
    import base64
    return xfrm.parse_keys([{"Key": base64.b64encode(bytes([t]) * 20).decode(), "Tag": t}
                            for t in tags])


def _esp_bytes(node: Node) -> dict[tuple[str, str, int], int]:
    return {k: v[0] for k, v in node.run(xfrm.counters).items()}


def _plain_vxlan_dropped(node: Node) -> int:
    return _nft_counter(node.ns, f"ip {xfrm.TABLE}", "ipsec missing counter")


def _nft(ns: str, script: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True,
                   check=True, capture_output=True)


def _nft_counter(ns: str, table: str, marker: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", *table.split()],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(re.escape(marker) + r" packets (\d+)", out)
    assert m, out
    return int(m.group(1))


def _wire_counters(ns: str) -> tuple[int, int, int]:
    """(ESP packets, VXLAN packets of the plain VNI, of the encrypted VNI) coming in."""
    return (_nft_counter(ns, f"netdev lkt{U}", "meta l4proto esp counter"),
            _nft_counter(ns, f"netdev lkt{U}", f"@th,96,24 {VNI_PLAIN:#x} counter"),
            _nft_counter(ns, f"netdev lkt{U}", f"@th,96,24 {VNI_ENC:#x} counter"))


def test_marked_vni_fails_closed(lab: Lab) -> None:
    """The nft + policy half of encryption, which needs no ESP: a VNI marked encrypted
    whose sender has no key is blocked (never sent in the clear), and its plain VXLAN is
    dropped by a receiver that expects ESP.  Runs on kernels without ESP too."""
    a, b = lab.a, lab.b
    assert ping(a.ctr, "10.77.1.3", count=1)
    try:
        a.run(xfrm.program_vnis, [VNI_PLAIN], PORT)
        a.run(xfrm.apply, a.addr, [b.addr], [], PORT)  # no key: only the block policy
        assert "action block" in ip(a.ns, "xfrm", "policy", "list")
        w = _wire_counters(b.ns)
        assert not ping(a.ctr, "10.77.1.3", count=1)
        assert _wire_counters(b.ns)[1] == w[1]  # nothing left a in the clear
        a.run(xfrm.program_vnis, [], PORT)
        b.run(xfrm.program_vnis, [VNI_PLAIN], PORT)  # b expects ESP, a sends plain
        dropped = _plain_vxlan_dropped(b)
        assert not ping(a.ctr, "10.77.1.3", count=1)
        assert _plain_vxlan_dropped(b) > dropped
    finally:
        for n in (a, b):
            n.run(xfrm.program_vnis, [], PORT)
            n.run(xfrm.clear)
    assert "lk-overlay" not in subprocess.run(["ip", "netns", "exec", a.ns, "nft", "list",
                                               "tables"], capture_output=True, text=True,
                                              check=True).stdout
    assert ip(a.ns, "xfrm", "policy", "list").strip() == ""
    assert ping(a.ctr, "10.77.1.3", count=1)


def test_encrypted_overlay(lab: Lab) -> None:
    a, b = lab.a, lab.b
    if not a.run(xfrm.esp_supported):
        with pytest.raises(errors.UnsupportedError, match="ESP"):
            a.run(a.drv.create_network, _spec(VNI_ENC, "10.77.2.0/24", encrypted=True))
        assert ov.vxlan_name(VNI_ENC) not in ip(a.ns, "link")
        pytest.skip("this kernel has no ESP/AES-GCM (CONFIG_INET_ESP, CONFIG_CRYPTO_GCM): "
                    "the VM runs this part (make test-vm)")
    nets = {n.ns: n.run(n.drv.create_network, _spec(VNI_ENC, "10.77.2.0/24", encrypted=True))
            for n in (a, b)}
    assert nets[a.ns].mtu == 1416
    _attach(a, nets[a.ns], "10.77.2.2", "eth1")
    _attach(b, nets[b.ns], "10.77.2.3", "eth1")
    a.run(a.drv.set_peers, nets[a.ns].id, _peer(b, ["10.77.2.3"]))
    b.run(b.drv.set_peers, nets[b.ns].id, _peer(a, ["10.77.2.2"]))
    # only b has the key: a's marked packets hit the block policy, b drops plain VXLAN
    b.run(b.drv.set_keys, _keys(7), [a.addr])
    assert not ping(a.ctr, "10.77.2.3", count=1)
    assert not ping(b.ctr, "10.77.2.2", count=1)
    a.run(a.drv.set_keys, _keys(7), [b.addr])
    wire = _wire_counters(b.ns)
    before_a, before_b = _esp_bytes(a), _esp_bytes(b)
    assert ping(a.ctr, "10.77.2.3", count=3)
    after_a, after_b = _esp_bytes(a), _esp_bytes(b)
    out_a = (a.addr, b.addr, xfrm.spi_for(7, a.addr, b.addr))
    in_b = (a.addr, b.addr, xfrm.spi_for(7, a.addr, b.addr))
    assert after_a[out_a] > before_a.get(out_a, 0)
    assert after_b[in_b] > before_b.get(in_b, 0)
    esp_seen, _, plain_seen = _wire_counters(b.ns)
    assert esp_seen > wire[0] and plain_seen == wire[2]
    # the full encrypted MTU crosses unfragmented
    assert ping(a.ctr, "10.77.2.3", count=1, size=1416 - 28)
    # the plain network beside it stays plain: plain VXLAN on the wire, no SA counts it
    esp = sum(_esp_bytes(a).values())
    w = _wire_counters(b.ns)
    assert ping(a.ctr, "10.77.1.3", count=2)
    w2 = _wire_counters(b.ns)
    assert w2[1] - w[1] >= 1 and w2[0] == w[0] and sum(_esp_bytes(a).values()) == esp
    # rotation 7 -> 8, one node at a time, ping after every step: 8 accepted everywhere
    # (7 still primary), then 8 primary (7 still accepted), then 7 gone
    for keys in ((7, 8), (8, 7), (8,)):
        for node, other in ((a, b), (b, a)):
            node.run(node.drv.set_keys, _keys(*keys), [other.addr])
            assert ping(a.ctr, "10.77.2.3", count=2), keys
            assert ping(b.ctr, "10.77.2.2", count=2), keys
        if keys == (8, 7):
            pol = ip(a.ns, "xfrm", "policy", "list")
            assert f"reqid {xfrm.Key(b'', 8).reqid}" in pol
    states = ip(a.ns, "xfrm", "state", "list")
    assert f"reqid {xfrm.Key(b'', 7).reqid} " not in states + " "
    assert len(_esp_bytes(a)) == 2  # one SA each way, key 8 only
    # plain VXLAN of the encrypted VNI is dropped by b: a loses its key and its policy
    # (sending in the clear is what an attacker on the wire could do)
    dropped = _plain_vxlan_dropped(b)
    a.run(xfrm.program_vnis, [], PORT)  # a stops marking: plain VXLAN goes out
    assert not ping(a.ctr, "10.77.2.3", count=1)
    assert _plain_vxlan_dropped(b) > dropped
    a.run(xfrm.program_vnis, a.drv.encrypted_vnis(), PORT)
    assert ping(a.ctr, "10.77.2.3", count=1)


class _Bus:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def emit_network(self, action: str, nid: str, attrs: dict[str, str]) -> None:
        self.events.append((action, nid))


def test_networks_seam(tmp_path: Path) -> None:
    """ensure_swarm / set_overlay_peers / set_node_address / drop_swarm on a Networks
    object in node a's namespace; a container endpoint with the swarm-given address;
    node b runs the bare driver.  A restarted Networks adopts the network."""
    from labkit.engine.networks.service import Networks

    nid, vni = "a" * 12 + "b" * 13, 4700 + U
    info = {"ID": nid, "Name": f"web{U}", "VNI": vni, "Subnet": "10.78.0.0/24",
            "Gateway": "10.78.0.1", "Encrypted": False, "MTU": None, "Attachable": True,
            "Internal": False, "Ingress": True, "Labels": {"l": "1"},
            "Options": {"user": "x"}}
    with _nodes("s", 251) as lab:
        a, b = lab.a, lab.b
        bus = _Bus()
        nets = a.run(Networks, bus, default_bridge=False, root=tmp_path / "n")
        rec = a.run(nets.ensure_swarm, info, a.addr, PORT)
        assert a.run(nets.ensure_swarm, info, a.addr, PORT).id == rec.id == nid  # idempotent
        assert [r.id for r in nets.swarm_networks()] == [nid]
        assert bus.events == [("create", nid)]
        with pytest.raises(errors.ForbiddenError):
            nets.remove(nid)  # not from the local API
        with pytest.raises(errors.InvalidArgumentError):
            a.run(nets.ensure_swarm, {**info, "VNI": 0}, a.addr, PORT)
        with pytest.raises(errors.InvalidArgumentError):
            a.run(nets.set_overlay_peers, nid, [{"addr": b.addr, "ips": ["10.9.9.9"]}])
        spec = NetworkSpec(id="x", name="x", driver="overlay", ipam=[PoolConfig(
            subnet="10.78.0.0/24", gateway="10.78.0.1")], options={ov.OPT_VNI: str(vni)})
        bnet = b.run(b.drv.create_network, spec)
        _attach(b, bnet, "10.78.0.3", "eth0")
        ep = a.run(nets.attach_endpoint, rec, EndpointSpec(
            endpoint_id="e" * 64, netns=a.ctr, ipv4_address="10.78.0.2"), gateway=True)
        assert ep.mac == "02:42:0a:4e:00:02" and ep.gateways == ()
        a.run(nets.set_overlay_peers, nid, [{"node": "nodeb", "addr": b.addr,
                                             "ips": ["10.78.0.3"]}])
        b.run(b.drv.set_peers, "x", _peer(a, ["10.78.0.2", "10.78.0.5"]))
        assert ping(a.ctr, "10.78.0.3")
        # the node's own (ingress) address on the bridge: b's container reaches the node
        a.run(nets.set_node_address, nid, "10.78.0.5/24")
        assert "10.78.0.5/24" in ip(a.ns, "addr", "show", ov.bridge_name(vni))
        assert ping(b.ctr, "10.78.0.5")
        view = nets.inspect(nid)
        assert view["Scope"] == "swarm" and view["Driver"] == "overlay" and view["Ingress"]
        assert view["Options"][ov.OPT_VNI] == str(vni) and view["Options"]["user"] == "x"
        assert {"Name": "nodeb", "IP": b.addr} in view["Peers"]
        assert [n["Name"] for n in nets.ls({"scope": ["swarm"]})] == [f"web{U}"]
        # a container on it: drop refused; then detached, dropped, everything gone
        holder = type("C", (), {"name": "c1", "id": "c" * 64,
                                "networks": {f"web{U}": {"EndpointID": ep.id}}})()
        nets.bind(lambda: [holder])
        with pytest.raises(errors.ConflictError):
            a.run(nets.drop_swarm, nid)
        # a restarted daemon adopts the network from its record (links still there)
        again = a.run(Networks, _Bus(), default_bridge=False, root=tmp_path / "n")
        a.run(again.start)
        assert nid in again.live and again.live[nid].mtu == 1450
        assert "10.78.0.5/24" in ip(a.ns, "addr", "show", ov.bridge_name(vni))
        a.run(nets.detach_endpoint, rec, ep, gone=False, netns=a.ctr)
        nets.bind(list)
        a.run(nets.drop_swarm, nid)
        a.run(nets.drop_swarm, nid)  # idempotent
        assert nets.swarm_networks() == [] and ("destroy", nid) in bus.events
        assert ov.bridge_name(vni) not in ip(a.ns, "link")
        assert ov.vxlan_name(vni) not in ip(a.ns, "link")
