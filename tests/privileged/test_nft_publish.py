"""labkit.engine.net.nft for real, entirely inside test-made network namespaces.

Topology (all lk-prefixed, removed in finally): a "host" netns with three bridges
(b1, b2 and b3 --internal), "container" netns c1 and c2 on b1, c3 on b2, c4 on b3, and an
"outside" netns x on a veth from the host (198.51.100.0/24), which has a route back to
the container subnets so that only labkit's rules (not routing) decide what passes.
Echo servers answer "<peer address> <data>", so a test sees what SNAT did.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.net.nft import Bridge, PortMapping, Publisher, enable_hairpin
from labkit.ns.netns import create_netns, list_netns, netns, netns_path, remove_netns

pytestmark = pytest.mark.privileged

SERVER = textwrap.dedent("""
    import selectors, socket, sys
    port, addr = int(sys.argv[1]), (sys.argv[2:] or ["0.0.0.0"])[0]
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    t = socket.socket(fam); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    u = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6:  # beside the IPv4 server on the same port
        for x in (t, u): x.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    t.bind((addr, port)); t.listen(16); u.bind((addr, port))
    sel = selectors.DefaultSelector()
    sel.register(t, selectors.EVENT_READ); sel.register(u, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            if key.fileobj is u:
                data, peer = u.recvfrom(512); u.sendto(peer[0].encode() + b" " + data, peer)
            else:
                c, peer = t.accept(); data = c.recv(512)
                c.sendall(peer[0].encode() + b" " + data); c.close()
""")

CLIENT = textwrap.dedent("""
    import socket, sys
    proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, kind); s.settimeout(2)
    try:
        s.connect((host, port)); s.send(b"hello"); print(s.recv(512).decode())
    except OSError as err:
        print("ERR", err)
""")


@dataclass
class Topo:
    u: str
    host: str
    ns: dict[str, str]            # role -> netns name (c1..c4, x)
    bridges: dict[str, Bridge]    # b1, b2, b3
    dummy_before: str = ""
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    tmp: Path = Path("/")

    def ask(self, role: str, proto: str, addr: str, port: int) -> str:
        ns = self.host if role == "host" else self.ns[role]
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable,
                              str(self.tmp / "client.py"), proto, addr, str(port)],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def all_bridges(self) -> list[Bridge]:
        return list(self.bridges.values())

    def tables(self) -> str:
        return _ip_ns(self.host, "nft", "list", "tables")

    def dummy(self) -> str:
        return _ip_ns(self.host, "nft", "list", "table", "ip", "lkdummy")


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def _ip_ns(ns: str, *cmd: str) -> str:
    return _run("ip", "netns", "exec", ns, *cmd)


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topo]:
    u = f"{os.getpid() % 100000}"
    tmp = tmp_path_factory.mktemp("lknft")
    (tmp / "server.py").write_text(SERVER)
    (tmp / "client.py").write_text(CLIENT)
    host = f"lk-nh{u}"
    roles = {r: f"lk-n{r}{u}" for r in ("c1", "c2", "c3", "c4", "x")}
    made: list[str] = []
    t = Topo(u, host, roles, {}, tmp=tmp)
    try:
        for name in (host, *roles.values()):
            create_netns(name)
            made.append(name)
            _run("ip", "-n", name, "link", "set", "lo", "up")
        _ip_ns(host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # the outside: 198.51.100.1 (host) <-> 198.51.100.2 (x), x routes 10.88/16 back
        _run("ip", "-n", host, "link", "add", f"lkx{u}", "type", "veth",
             "peer", "name", "eth0", "netns", roles["x"])
        _run("ip", "-n", host, "addr", "add", "198.51.100.1/24", "dev", f"lkx{u}")
        _run("ip", "-n", host, "link", "set", f"lkx{u}", "up")
        _run("ip", "-n", roles["x"], "addr", "add", "198.51.100.2/24", "dev", "eth0")
        _run("ip", "-n", roles["x"], "link", "set", "eth0", "up")
        _run("ip", "-n", roles["x"], "route", "add", "10.88.0.0/16", "via", "198.51.100.1")
        # IPv6 alongside (nodad: usable at once): host fd00:5100::1 <-> x fd00:5100::2
        _ip_ns(host, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        _run("ip", "-n", host, "addr", "add", "fd00:5100::1/64", "dev", f"lkx{u}", "nodad")
        _run("ip", "-n", roles["x"], "addr", "add", "fd00:5100::2/64", "dev", "eth0", "nodad")
        for i, internal in ((1, False), (2, False), (3, True)):
            br = f"lkb{i}{u}"
            _run("ip", "-n", host, "link", "add", br, "type", "bridge")
            _run("ip", "-n", host, "addr", "add", f"10.88.{i}.1/24", "dev", br)
            _run("ip", "-n", host, "link", "set", br, "up")
            _run("ip", "-n", host, "addr", "add", f"fd00:88:{i}::1/64", "dev", br, "nodad")
            t.bridges[f"b{i}"] = Bridge(br, (f"10.88.{i}.0/24", f"fd00:88:{i}::/64"),
                                        internal=internal)
        for role, (b, ip) in {"c1": (1, 2), "c2": (1, 3), "c3": (2, 2), "c4": (3, 2)}.items():
            veth = f"lkv{role}{u}"
            # created straight in both namespaces (no move afterwards)
            _run("ip", "-n", host, "link", "add", veth, "type", "veth",
                 "peer", "name", "eth0", "netns", roles[role])
            _run("ip", "-n", host, "link", "set", veth, "master", f"lkb{b}{u}", "up")
            _run("ip", "-n", roles[role], "addr", "add", f"10.88.{b}.{ip}/24", "dev", "eth0")
            _run("ip", "-n", roles[role], "link", "set", "eth0", "up")
            _run("ip", "-n", roles[role], "route", "add", "default", "via", f"10.88.{b}.1")
            _run("ip", "-n", roles[role], "addr", "add", f"fd00:88:{b}::{ip}/64", "dev", "eth0",
                 "nodad")
            _run("ip", "-n", roles[role], "-6", "route", "add", "default", "via",
                 f"fd00:88:{b}::1")
        # somebody else's table, which labkit must never touch
        subprocess.run(["ip", "netns", "exec", host, "nft", "-f", "-"], text=True, check=True,
                       input="add table ip lkdummy\n"
                       "add chain ip lkdummy theirs_fwd { type filter hook forward priority 10; "
                       "policy accept; }\n"
                       'add rule ip lkdummy theirs_fwd ip saddr 192.0.2.99 accept comment "theirs"\n')
        t.dummy_before = t.dummy()
        for ns, port, addr in ((roles["c1"], "7000", "0.0.0.0"), (roles["c3"], "7000", "0.0.0.0"),
                               (roles["x"], "7000", "0.0.0.0"), (host, "7001", "127.0.0.1"),
                               (roles["c1"], "7000", "::"), (roles["x"], "7000", "::")):
            p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable,
                                  str(tmp / "server.py"), port, addr],
                                 stdout=subprocess.PIPE, text=True)
            t.procs.append(p)
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        yield t
    finally:
        for p in t.procs:
            p.kill()  # by pid: the Popen we started
            p.wait()
        for name in made:
            remove_netns(name)
    assert not set(made) & set(list_netns())


@pytest.fixture
def pub(topo: Topo) -> Iterator[Publisher]:
    p = Publisher(topo.host)
    try:
        yield p
    finally:
        p.destroy()
        assert "labkit" not in topo.tables()
        assert topo.dummy() == topo.dummy_before  # the other table untouched


def _published_on(topo: Topo, bridge: str = "b1") -> PortMapping:
    return PortMapping("10.88.1.2", 7000, "tcp", topo.bridges[bridge].name, 8080)


def test_published_port_answers_from_host_loopback_own_address_and_outside(
        topo: Topo, pub: Publisher) -> None:
    assert topo.ask("host", "tcp", "127.0.0.1", 8080).startswith("ERR")  # nothing yet
    pub.set_bridges(topo.all_bridges())
    got = pub.publish("aa11", [_published_on(topo),
                               PortMapping("10.88.1.2", 7000, "udp", topo.bridges["b1"].name,
                                           8081)])
    assert [m.host_port for m in got] == [8080, 8081]
    # loopback: DNAT in output, route_localnet on the bridge, masquerade to the gateway
    assert topo.ask("host", "tcp", "127.0.0.1", 8080) == "10.88.1.1 hello"
    assert topo.ask("host", "udp", "127.0.0.1", 8081) == "10.88.1.1 hello"
    assert topo.ask("host", "tcp", "198.51.100.1", 8080) == "198.51.100.1 hello"
    # from outside: prerouting DNAT; the client's own address is kept, as in Docker
    assert topo.ask("x", "tcp", "198.51.100.1", 8080) == "198.51.100.2 hello"
    assert topo.ask("x", "udp", "198.51.100.1", 8081) == "198.51.100.2 hello"
    # but the container's unpublished address is not routable from outside
    assert topo.ask("x", "tcp", "10.88.1.2", 7000).startswith("ERR")
    rl = _ip_ns(topo.host, "cat", f"/proc/sys/net/ipv4/conf/{topo.bridges['b1'].name}"
                "/route_localnet")
    assert rl.strip() == "1"
    assert _ip_ns(topo.host, "cat", "/proc/sys/net/ipv4/conf/lo/route_localnet").strip() == "0"


def test_hairpin_to_own_and_sibling_published_port(topo: Topo, pub: Publisher) -> None:
    pub.set_bridges(topo.all_bridges())
    pub.publish("aa12", [_published_on(topo)])
    port = f"lkvc1{topo.u}"
    enable_hairpin(port, ns=topo.host)
    assert "hairpin on" in _ip_ns(topo.host, "ip", "-d", "link", "show", port)
    with pytest.raises(errors.NotFoundError, match="lknoport"):
        enable_hairpin("lknoport", ns=topo.host)
    assert topo.ask("c1", "tcp", "198.51.100.1", 8080) == "10.88.1.1 hello"
    assert topo.ask("c2", "tcp", "198.51.100.1", 8080) == "10.88.1.1 hello"
    assert topo.ask("c2", "tcp", "10.88.1.1", 8080) == "10.88.1.1 hello"


def test_bridges_isolated_from_each_other(topo: Topo, pub: Publisher) -> None:
    pub.ensure()  # table present, no bridges declared: plain routing between bridges
    assert topo.ask("c3", "tcp", "10.88.1.2", 7000) == "10.88.2.2 hello"
    pub.set_bridges(topo.all_bridges())
    assert topo.ask("c3", "tcp", "10.88.1.2", 7000).startswith("ERR")
    assert topo.ask("c1", "tcp", "10.88.2.2", 7000).startswith("ERR")
    assert topo.ask("c1", "udp", "10.88.2.2", 7000).startswith("ERR")
    # each still reaches the outside, masqueraded to the host's address
    assert topo.ask("c1", "tcp", "198.51.100.2", 7000) == "198.51.100.1 hello"
    assert topo.ask("c3", "tcp", "198.51.100.2", 7000) == "198.51.100.1 hello"


def test_internal_network_has_no_way_out(topo: Topo, pub: Publisher) -> None:
    pub.ensure()
    assert topo.ask("c4", "tcp", "198.51.100.2", 7000) == "10.88.3.2 hello"  # routing alone
    pub.set_bridges(topo.all_bridges())
    assert topo.ask("c4", "tcp", "198.51.100.2", 7000).startswith("ERR")
    assert topo.ask("c4", "tcp", "10.88.1.2", 7000).startswith("ERR")
    assert topo.ask("c1", "tcp", "10.88.3.2", 7000).startswith("ERR")


def test_port_conflicts_in_dockers_words(topo: Topo, pub: Publisher) -> None:
    pub.set_bridges(topo.all_bridges())
    pub.publish("aa13", [_published_on(topo)])
    with pytest.raises(errors.ConflictError,
                       match=r"^Bind for 0\.0\.0\.0:8080 failed: port is already allocated"):
        pub.publish("bb13", [PortMapping("10.88.1.3", 7000, "tcp", topo.bridges["b1"].name,
                                         8080)])
    with pytest.raises(errors.ConflictError, match=r"Bind for 127\.0\.0\.1:8080 failed"):
        pub.publish("bb13", [PortMapping("10.88.1.3", 7000, "tcp", topo.bridges["b1"].name,
                                         8080, "127.0.0.1")])
    # a host program already on the port (what docker-proxy's bind would hit)
    with netns(netns_path(topo.host)):
        squatter = socket.socket()
    try:
        squatter.bind(("0.0.0.0", 9090))
        squatter.listen()
        with pytest.raises(errors.ConflictError,
                           match=r"^Bind for 0\.0\.0\.0:9090 failed: port is already allocated"):
            pub.publish("bb13", [PortMapping("10.88.1.3", 7000, "tcp",
                                             topo.bridges["b1"].name, 9091),
                                 PortMapping("10.88.1.3", 7000, "tcp",
                                             topo.bridges["b1"].name, 9090)])
    finally:
        squatter.close()
    # nothing half-made: no rule for bb13, and 9091 (reserved first) was released again
    assert "bb13" not in pub.rules_by_owner()
    got = pub.publish("bb13", [PortMapping("10.88.1.3", 7000, "tcp",
                                           topo.bridges["b1"].name, 9091)])
    assert got[0].host_port == 9091
    # udp 8080 is a different port from tcp 8080
    pub.publish("cc13", [PortMapping("10.88.1.2", 7000, "udp", topo.bridges["b1"].name, 8080)])
    assert topo.ask("host", "udp", "127.0.0.1", 8080) == "10.88.1.1 hello"


def test_ephemeral_ports_for_publish_all(topo: Topo, pub: Publisher) -> None:
    pub.set_bridges(topo.all_bridges())
    lo, hi = pub.allocator.lo, pub.allocator.hi
    got = pub.publish("aa14", [PortMapping("10.88.1.2", 7000, "tcp", topo.bridges["b1"].name),
                               PortMapping("10.88.1.2", 7000, "udp", topo.bridges["b1"].name)])
    assert all(lo <= m.host_port <= hi for m in got)
    assert topo.ask("host", "tcp", "127.0.0.1", got[0].host_port) == "10.88.1.1 hello"
    assert topo.ask("x", "udp", "198.51.100.1", got[1].host_port) == "198.51.100.2 hello"


def test_unpublish_removes_exactly_that_container_and_reconcile(
        topo: Topo, pub: Publisher) -> None:
    pub.set_bridges(topo.all_bridges())
    a = pub.publish("aa15", [_published_on(topo)])
    b = pub.publish("bb15", [PortMapping("10.88.2.2", 7000, "tcp", topo.bridges["b2"].name,
                                         8082)])
    assert set(pub.rules_by_owner()) == {"aa15", "bb15"}
    pub.unpublish("aa15")
    assert set(pub.rules_by_owner()) == {"bb15"}
    assert "aa15" not in pub.ruleset()
    assert topo.ask("host", "tcp", "127.0.0.1", 8080).startswith("ERR")
    assert topo.ask("host", "tcp", "127.0.0.1", 8082) == "10.88.2.1 hello"
    pub.unpublish("aa15")  # idempotent
    pub.publish("aa15", a)  # its port was released
    # a daemon restart with live-restore: the old daemon lets go, the table lives on,
    # aa15 vanished meanwhile, and a host program took bb15's port while it was down
    pub.release()
    assert set(pub.rules_by_owner()) == {"aa15", "bb15"}
    with netns(netns_path(topo.host)):
        squatter = socket.socket()
    try:
        squatter.bind(("0.0.0.0", 8082))
        pub2 = Publisher(topo.host)
        warnings = pub2.reconcile({"bb15": b})
        assert len(warnings) == 1 and "Bind for 0.0.0.0:8082 failed" in warnings[0]
    finally:
        squatter.close()
    assert set(pub2.rules_by_owner()) == {"bb15"}
    assert topo.ask("host", "tcp", "127.0.0.1", 8082) == "10.88.2.1 hello"
    assert topo.ask("host", "tcp", "127.0.0.1", 8080).startswith("ERR")
    assert pub2.reconcile({"bb15": b}) == []  # the port is free again: reserved now
    with pytest.raises(errors.ConflictError, match="8082"):
        pub2.publish("cc15", [PortMapping("10.88.1.3", 7000, "tcp",
                                          topo.bridges["b1"].name, 8082)])
    pub2.unpublish("bb15")
    assert pub2.rules_by_owner() == {}
    assert "lk:" not in pub2.ruleset()


def test_container_cannot_reach_host_loopback_through_route_localnet(
        topo: Topo, pub: Publisher) -> None:
    """CVE-2020-8558: route_localnet on the bridge must not open the host's 127.0.0.1."""
    pub.set_bridges(topo.all_bridges())
    c2 = topo.ns["c2"]
    assert topo.ask("host", "tcp", "127.0.0.1", 7001) == "127.0.0.1 hello"  # host-only service
    # c2 (as a container with NET_ADMIN could) sends 127.0.0.0/8 to its gateway
    _ip_ns(c2, "sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1")
    for prefix in ("127.0.0.0/8", "127.0.0.1"):
        _run("ip", "-n", c2, "route", "del", "local", prefix, "dev", "lo", "table", "local")
    _run("ip", "-n", c2, "route", "add", "127.0.0.1/32", "via", "10.88.1.1", "dev", "eth0")
    with netns(netns_path(topo.host)):
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        listener.bind(("127.0.0.1", 7002))
        listener.settimeout(1)
        topo.ask("c2", "udp", "127.0.0.1", 7002)
        with pytest.raises(TimeoutError):
            listener.recv(64)  # nothing arrived at the host's loopback service
        assert topo.ask("c2", "tcp", "127.0.0.1", 7001).startswith("ERR")
        # and the guard is what stops it: without its rules the datagram gets through
        guard = _guard_handles(topo)
        assert len(guard) == 2
        for h in guard:
            _ip_ns(topo.host, "nft", "delete", "rule", "inet", "labkit", "guard", "handle",
                   str(h))
        topo.ask("c2", "udp", "127.0.0.1", 7002)
        assert listener.recv(64) == b"hello"
    finally:
        listener.close()


def _guard_handles(topo: Topo) -> list[int]:
    out = json.loads(_ip_ns(topo.host, "nft", "-j", "list", "chain", "inet", "labkit", "guard"))
    return [o["rule"]["handle"] for o in out["nftables"] if "rule" in o]


def test_ipv6_publish_and_egress_in_the_same_table(topo: Topo, pub: Publisher) -> None:
    pub.set_bridges(topo.all_bridges())
    b1 = topo.bridges["b1"].name
    pub.publish("aa16", [PortMapping("fd00:88:1::2", 7000, "tcp", b1, 8090),
                         PortMapping("10.88.1.2", 7000, "tcp", b1, 8090)])
    assert topo.ask("x", "tcp", "fd00:5100::1", 8090) == "fd00:5100::2 hello"
    assert topo.ask("x", "tcp", "198.51.100.1", 8090) == "198.51.100.2 hello"
    assert topo.ask("x", "tcp", "fd00:88:1::2", 7000).startswith("ERR")  # not routed in
    assert topo.ask("c1", "tcp", "fd00:5100::2", 7000) == "fd00:5100::1 hello"  # masquerade
    assert topo.ask("c3", "tcp", "fd00:88:1::2", 7000).startswith("ERR")  # isolated
    assert topo.ask("c4", "tcp", "fd00:5100::2", 7000).startswith("ERR")  # internal
    pub.unpublish("aa16")
    assert topo.ask("x", "tcp", "fd00:5100::1", 8090).startswith("ERR")
