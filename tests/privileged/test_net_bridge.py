"""labkit.engine.net.bridge on the kernel: a bridge in a test-made "host" netns, containers
in test-made netns, checked from inside (links, MACs, addresses, routes) and with ICMP echo
between them.  Every object made here goes away in finally blocks.

There is no ping(8) on this machine (iputils-ping is not installed), so ``_ping`` sends one
ICMP echo over a raw socket opened inside the sender's namespace (raw(7), icmp(7); for
ICMPv6 the kernel fills the checksum in, RFC 3542 3.1)."""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from labkit import errors
from labkit.engine.net import bridge
from labkit.ns.netns import create_netns, list_netns, netns, remove_netns

pytestmark = pytest.mark.privileged
IF4 = ipaddress.ip_interface
_n = 0


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _ping(ns: str, dst: str, timeout: float = 3.0) -> bool:
    """One ICMP echo from inside ``ns`` to ``dst``; True when the matching reply came."""
    v6 = ipaddress.ip_address(dst).version == 6
    with netns(f"/run/netns/{ns}"):
        s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                          socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
    try:
        ident, typ, reply = os.getpid() & 0xFFFF, (128 if v6 else 8), (129 if v6 else 0)
        body = struct.pack("!BBHHH", typ, 0, 0, ident, 1) + b"labkit"
        if not v6:
            body = body[:2] + struct.pack("!H", _csum(body)) + body[4:]
        s.sendto(body, (dst, 0))
        while select.select([s], [], [], timeout)[0]:
            pkt, _ = s.recvfrom(2048)
            icmp = pkt if v6 else pkt[(pkt[0] & 0x0F) * 4:]  # raw v4 sockets get the IP header
            t, _c, _k, i, _q = struct.unpack("!BBHHH", icmp[:8])
            if t == reply and i == ident:
                return True
        return False
    finally:
        s.close()


def _links(ns: str) -> dict[str, dict[str, object]]:
    with netns(f"/run/netns/{ns}"):
        ipr = IPRoute()
    try:
        out: dict[str, dict[str, object]] = {}
        for m in ipr.get_links():
            out[m.get_attr("IFLA_IFNAME")] = {
                "index": m["index"], "mac": m.get_attr("IFLA_ADDRESS"),
                "up": bool(m["flags"] & 1), "master": m.get_attr("IFLA_MASTER")}
        for d in out.values():
            d["addrs"] = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                          for a in ipr.get_addr(index=d["index"])}
        routes = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            for r in ipr.get_routes(family=fam, table=254):
                if r["dst_len"] == 0 and r.get_attr("RTA_GATEWAY"):
                    routes.append(r.get_attr("RTA_GATEWAY"))
        out["_default_via"] = {"gw": sorted(routes)}
        return out
    finally:
        ipr.close()


@pytest.fixture
def nets() -> Iterator[tuple[str, str, str, str]]:
    """(host netns, container netns 1, container netns 2, bridge name); all removed after."""
    global _n
    _n += 1
    u = f"{os.getpid() % 100000}-{_n}"
    names = [f"lk-nch-{u}", f"lk-nc1-{u}", f"lk-nc2-{u}"]
    made: list[str] = []
    try:
        for n in names:
            create_netns(n)
            made.append(n)
        yield names[0], names[1], names[2], "lk-test0"
    finally:
        for n in made:
            remove_netns(n)
    assert not set(names) & set(list_netns())


def test_bridge_attach_ping_detach(nets: tuple[str, str, str, str]) -> None:
    host, c1, c2, br = nets
    bridge.create_bridge(br, [IF4("10.77.0.1/24"), IF4("fd00:77::1/64")], host_netns=host)
    try:
        hl = _links(host)
        assert hl[br]["up"] and {"10.77.0.1/24", "fd00:77::1/64"} <= hl[br]["addrs"]  # type: ignore[operator]
        with pytest.raises(errors.AlreadyExistsError):
            bridge.create_bridge(br, [], host_netns=host)
        gw4, gw6 = ipaddress.ip_address("10.77.0.1"), ipaddress.ip_address("fd00:77::1")
        a1 = bridge.attach(br, "lkvtest1", c1, [IF4("10.77.0.2/24"), IF4("fd00:77::2/64")],
                           gateways=[gw4, gw6], host_netns=host)
        a2 = bridge.attach(br, "lkvtest2", c2, [IF4("10.77.0.3/24")], gateways=[gw4],
                           mac="02:aa:bb:cc:dd:ee", host_netns=host)
        try:
            assert a1.mac == "02:42:0a:4d:00:02"  # Docker's 02:42 + the IPv4 address
            l1, l2, hl = _links(c1), _links(c2), _links(host)
            assert set(l1) == {"lo", "eth0", "_default_via"}
            assert l1["eth0"]["mac"] == "02:42:0a:4d:00:02" and l1["eth0"]["up"]
            assert {"10.77.0.2/24", "fd00:77::2/64"} <= l1["eth0"]["addrs"]  # type: ignore[operator]
            assert l1["_default_via"]["gw"] == ["10.77.0.1", "fd00:77::1"]
            assert l1["lo"]["up"]
            assert l2["eth0"]["mac"] == a2.mac == "02:aa:bb:cc:dd:ee"  # --mac-address applied
            assert l2["_default_via"]["gw"] == ["10.77.0.1"]
            for h in ("lkvtest1", "lkvtest2"):
                assert hl[h]["master"] == hl[br]["index"] and hl[h]["up"]
            assert _ping(c1, "10.77.0.3") and _ping(c2, "10.77.0.2")
            assert _ping(c1, "10.77.0.1")  # the gateway on the bridge
            assert _ping(c1, "fd00:77::1")
            assert not _ping(c1, "10.77.0.99", timeout=0.5)  # the check can fail
            with pytest.raises(errors.ConflictError, match="still has ports"):
                bridge.delete_bridge(br, host_netns=host)
        finally:
            assert bridge.detach("lkvtest1", host_netns=host)
            assert bridge.detach("lkvtest2", host_netns=host)
        assert not bridge.detach("lkvtest1", host_netns=host)  # idempotent
        assert set(_links(c1)) == {"lo", "_default_via"} and _links(c1)["_default_via"]["gw"] == []
        assert "lkvtest1" not in _links(host)
    finally:
        bridge.delete_bridge(br, host_netns=host)
    assert br not in _links(host)


def test_bridge_mac_stays_when_ports_come_and_go(nets: tuple[str, str, str, str]) -> None:
    """The gateway's MAC must not follow its ports: a bridge with no MAC of its own takes
    its lowest port's, and every other container then holds a stale neighbour entry."""
    host, c1, c2, br = nets
    bridge.create_bridge(br, [IF4("10.77.1.1/24")], host_netns=host)
    try:
        mac0 = _links(host)[br]["mac"]
        # ports whose MACs are far below and above any random one (02:42:.. vs 02:00:..)
        bridge.attach(br, "lkvmac1", c1, [IF4("10.77.1.2/24")], mac="02:00:00:00:00:01",
                      host_netns=host)
        bridge.attach(br, "lkvmac2", c2, [IF4("10.77.1.3/24")], host_netns=host)
        assert _links(host)[br]["mac"] == mac0
        bridge.detach("lkvmac1", host_netns=host)
        assert _links(host)[br]["mac"] == mac0
        bridge.detach("lkvmac2", host_netns=host)
        assert _links(host)[br]["mac"] == mac0
    finally:
        bridge.delete_bridge(br, host_netns=host)


def test_internal_network_has_no_default_route(nets: tuple[str, str, str, str]) -> None:
    host, c1, _c2, br = nets
    bridge.create_bridge(br, [IF4("10.78.0.1/24")], host_netns=host)
    try:
        bridge.attach(br, "lkvtest3", c1, [IF4("10.78.0.2/24")], gateways=[], host_netns=host)
        try:
            l1 = _links(c1)
            assert l1["_default_via"]["gw"] == [] and "10.78.0.2/24" in l1["eth0"]["addrs"]  # type: ignore[operator]
            assert _ping(c1, "10.78.0.1")  # the subnet is still reachable
        finally:
            bridge.detach("lkvtest3", host_netns=host)
    finally:
        bridge.delete_bridge(br, host_netns=host)


def test_bad_input_leaves_nothing(nets: tuple[str, str, str, str]) -> None:
    host, c1, _c2, br = nets
    before_host, before_c1 = set(_links(host)), set(_links(c1))
    with pytest.raises(errors.NotFoundError, match="bridge"):
        bridge.attach("lk-nobridge", "lkvtest4", c1, [IF4("10.79.0.2/24")], host_netns=host)
    bridge.create_bridge(br, [IF4("10.79.0.1/24")], host_netns=host)
    try:
        with pytest.raises(errors.InvalidArgumentError, match="mac-address"):
            bridge.attach(br, "lkvtest4", c1, [IF4("10.79.0.2/24")], mac="01:00:5e:00:00:01",
                          host_netns=host)
        with pytest.raises(errors.InvalidArgumentError, match="gateway"):
            bridge.attach(br, "lkvtest4", c1, [IF4("10.79.0.2/24")],
                          gateways=[ipaddress.ip_address("10.80.0.1")], host_netns=host)
        with pytest.raises(errors.NotFoundError, match="network namespace"):
            bridge.attach(br, "lkvtest4", "lk-no-such-ns", [IF4("10.79.0.2/24")],
                          host_netns=host)
        # fails inside the container (the same address twice: EEXIST) -> the pair is undone
        with pytest.raises(errors.LabkitError):
            bridge.attach(br, "lkvtest4", c1, [IF4("10.79.0.2/24"), IF4("10.79.0.2/24")],
                          host_netns=host)
        assert set(_links(host)) == before_host | {br}
        assert set(_links(c1)) == before_c1
        with pytest.raises(errors.InvalidArgumentError):
            bridge.create_bridge("lk-name-far-too-long", [], host_netns=host)
    finally:
        bridge.delete_bridge(br, host_netns=host)
    with pytest.raises(errors.NotFoundError):
        bridge.delete_bridge(br, host_netns=host)


def test_names_and_macs() -> None:
    assert bridge.bridge_name("0123456789abcdef") == "lk-0123456789ab"
    assert bridge.veth_name("fedcba9876543210") == "lkvfedcba98765"
    assert len(bridge.bridge_name("a" * 64)) == 15 and len(bridge.veth_name("b" * 64)) == 14
    with pytest.raises(errors.InvalidArgumentError):
        bridge.bridge_name("../etc/passwd")
    assert bridge.mac_for(ipaddress.IPv4Address("172.17.0.2")) == "02:42:ac:11:00:02"
    m = bridge.mac_for(None)
    assert int(m[:2], 16) & 3 == 2 and len(m) == 17


def test_veth_benchmark_prints_and_cleans_up(capsys: pytest.CaptureFixture[str]) -> None:
    from labkit.measure import bench_veth

    res = bench_veth.run(5)
    with capsys.disabled():
        print("\n" + res.table())  # figures are printed, never asserted (load varies)
    assert len(res.in_place_ms) == len(res.moved_ms) == len(res.attach_ms) == len(res.detach_ms) == 5
    assert not [n for n in list_netns() if n.startswith(("lk-bvh-", "lk-bvc-"))]
