"""Service VIPs (labkit.engine.net.vip) and the ingress routing mesh
(labkit.engine.net.ingress) for real, in test-made network namespaces.

VIP topology: a hub netns with a plain bridge; a client netns (the task container that
gets the ``lk-vip`` table) and three backend netns on it, 10.77.0.0/24; the VIP is
10.77.0.2.  Ingress topology: a "node" netns with the ingress bridge (node address
10.0.0.2/24) and three backends on it (stand-ins for tasks on any node: the bridge is
where the VXLAN would be), and a client netns on the node's underlay side
(192.168.77.2 -> node 192.168.77.1); the backends have no route to the client, so only
the mesh's SNAT lets them answer.  Each backend runs a TCP and UDP responder in a thread
of this process (its sockets were made inside its netns) that answers
"<its name> <peer address>".
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from labkit import errors
from labkit.engine.net.ingress import IngressPort, clear_ingress, program_ingress
from labkit.engine.net.vip import VipRule, clear_vips, program_vips
from labkit.engine.swarm import discovery
from labkit.ns.netns import create_netns, list_netns, netns, netns_path, remove_netns

pytestmark = pytest.mark.privileged

PORT = 7000


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def _sock(ns: str, kind: int) -> socket.socket:
    with netns(netns_path(ns)):
        return socket.socket(socket.AF_INET, kind)


@dataclass
class Responder:
    """TCP + UDP on 0.0.0.0:PORT inside ``ns``; every answer is "<name> <peer ip>"."""

    ns: str
    name: str
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    socks: list[socket.socket] = field(default_factory=list)

    def start(self) -> None:
        t, u = _sock(self.ns, socket.SOCK_STREAM), _sock(self.ns, socket.SOCK_DGRAM)
        self.socks = [t, u]
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind(("0.0.0.0", PORT))
        t.listen(64)
        u.bind(("0.0.0.0", PORT))
        for s in (t, u):
            s.settimeout(0.2)
        self.threads = [threading.Thread(target=self._tcp, daemon=True),
                        threading.Thread(target=self._udp, daemon=True)]
        for th in self.threads:
            th.start()

    def _tcp(self) -> None:
        t = self.socks[0]
        while not self.stop.is_set():
            try:
                c, peer = t.accept()
            except (TimeoutError, OSError):
                continue
            with c:
                c.settimeout(5)
                with contextlib.suppress(OSError):
                    c.sendall(f"{self.name} {peer[0]}".encode())
                    c.recv(1)  # the client closes first: its port stays in TIME_WAIT

    def _udp(self) -> None:
        u = self.socks[1]
        while not self.stop.is_set():
            try:
                _, peer = u.recvfrom(512)
            except (TimeoutError, OSError):
                continue
            u.sendto(f"{self.name} {peer[0]}".encode(), peer)

    def close(self) -> None:
        self.stop.set()
        for th in self.threads:
            th.join(5)
        for s in self.socks:
            s.close()


def ask(ns: str, host: str, port: int = PORT, proto: str = "tcp") -> str:
    """One request from inside ``ns``: the answer, or "ERR <errno name>"."""
    s = _sock(ns, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    with s:
        s.settimeout(5)
        try:
            s.connect((host, port))
            if proto == "udp":
                s.send(b"?")
            return s.recv(512).decode()
        except ConnectionRefusedError:
            return "ERR refused"
        except OSError as err:
            return f"ERR {err}"


def spread(ns: str, host: str, n: int, port: int = PORT) -> Counter[str]:
    got: Counter[str] = Counter()
    for _ in range(n):
        got[ask(ns, host, port).split()[0]] += 1
    return got


def ping(ns: str, host: str) -> bool:
    # busybox's ping (raw ICMP socket): the image has no iputils
    return subprocess.run(["ip", "netns", "exec", ns, "busybox", "ping", "-c1", "-W2", "-q",
                           host], capture_output=True, check=False, timeout=10).returncode == 0


def _veth(hub: str, bridge: str, ns: str, ifname: str, addr: str) -> None:
    # made straight across the two namespaces (no move afterwards)
    _run("ip", "-n", hub, "link", "add", ifname, "type", "veth", "peer", "name", "eth0",
         "netns", ns)
    _run("ip", "-n", hub, "link", "set", ifname, "master", bridge, "up")
    _run("ip", "-n", ns, "addr", "add", addr, "dev", "eth0")
    _run("ip", "-n", ns, "link", "set", "eth0", "up")


@contextlib.contextmanager
def namespaces(*names: str) -> Iterator[None]:
    made: list[str] = []
    try:
        for n in names:
            create_netns(n)
            made.append(n)
            _run("ip", "-n", n, "link", "set", "lo", "up")
        yield
    finally:
        for n in made:
            remove_netns(n)
    assert not set(made) & set(list_netns())


@contextlib.contextmanager
def responders(pairs: list[tuple[str, str]]) -> Iterator[list[Responder]]:
    rs = [Responder(ns, name) for ns, name in pairs]
    try:
        for r in rs:
            r.start()
        yield rs
    finally:
        for r in rs:
            r.close()


U = f"{os.getpid() % 100000}"


@pytest.fixture(scope="module")
def vipnet() -> Iterator[dict[str, str]]:
    roles = {r: f"lk-vip{r}{U}" for r in ("hub", "c", "b1", "b2", "b3")}
    br = f"lkvb{U}"
    with namespaces(*roles.values()):
        hub = roles["hub"]
        _run("ip", "-n", hub, "link", "add", br, "type", "bridge")
        _run("ip", "-n", hub, "link", "set", br, "up")
        _veth(hub, br, roles["c"], f"lkvc{U}", "10.77.0.10/24")
        for i in (1, 2, 3):
            _veth(hub, br, roles[f"b{i}"], f"lkv{i}{U}", f"10.77.0.{2 + i}/24")
        with responders([(roles[f"b{i}"], f"b{i}") for i in (1, 2, 3)]):
            yield roles


VIP = "10.77.0.2"
BACKENDS = ("10.77.0.3", "10.77.0.4", "10.77.0.5")


def _tables(ns: str) -> str:
    return _run("ip", "netns", "exec", ns, "nft", "list", "tables")


def test_vip_spreads_connections_evenly_and_follows_backend_changes(
        vipnet: dict[str, str]) -> None:
    c = vipnet["c"]
    assert ask(c, VIP).startswith("ERR")                     # no table: nobody there
    try:
        program_vips(c, [VipRule(VIP, BACKENDS)])
        program_vips(c, [VipRule(VIP, BACKENDS)])            # idempotent: one table
        assert _tables(c).count("lk-vip") == 1
        got = spread(c, VIP, 300)
        assert got == Counter({"b1": 100, "b2": 100, "b3": 100}), got   # numgen inc
        # the backend sees the client's own address (no SNAT inside the container)
        assert ask(c, VIP).split()[1] == "10.77.0.10"
        # UDP keeps its port too, and ping is answered by a backend
        assert ask(c, VIP, proto="udp").split()[0] in {"b1", "b2", "b3"}
        assert ping(c, VIP)
        # one backend gone: new connections no longer go there
        program_vips(c, [VipRule(VIP, BACKENDS[:2])])
        got = spread(c, VIP, 60)
        assert got == Counter({"b1": 30, "b2": 30}), got
        # the address a VIP hides is still reachable directly (nothing else changed)
        assert ask(c, BACKENDS[2]).split()[0] == "b3"
    finally:
        clear_vips(c)
    assert "lk-vip" not in _tables(c)
    clear_vips(c)                                             # idempotent


def test_vip_without_tasks_refuses_at_once(vipnet: dict[str, str]) -> None:
    c = vipnet["c"]
    other = "10.77.0.99"
    try:
        program_vips(c, [VipRule(VIP, ()), VipRule(other, BACKENDS[2:])])
        assert ask(c, VIP) == "ERR refused"                   # TCP reset, no SYN timeout
        # UDP: the local sender's datagram is rejected in its own output path: send()
        # fails with EPERM at once (or ICMP port unreachable -> ECONNREFUSED)
        assert ask(c, VIP, proto="udp") in ("ERR refused",
                                            "ERR [Errno 1] Operation not permitted")
        assert ask(c, other).split()[0] == "b3"               # the other VIP still works
        program_vips(c, [VipRule(VIP, BACKENDS[:1])])         # a task came up
        assert ask(c, VIP).split()[0] == "b1"
        assert ask(c, other).startswith("ERR")                # gone with its rule
    finally:
        clear_vips(c)


def test_program_vips_bad_input_changes_nothing(vipnet: dict[str, str]) -> None:
    c = vipnet["c"]
    try:
        program_vips(c, [VipRule(VIP, BACKENDS[:1])])
        with pytest.raises(errors.InvalidArgumentError):
            program_vips(c, [VipRule(VIP, ("10.77.0.3; flush ruleset",))])
        assert ask(c, VIP).split()[0] == "b1"
        with pytest.raises(errors.NotFoundError):
            program_vips(f"/run/netns/lk-vip-missing{U}", [VipRule(VIP, ())])
    finally:
        clear_vips(c)


# -- ingress ---------------------------------------------------------------------------------

NODE_IP, NODE_UNDERLAY = "10.0.0.2", "192.168.77.1"
ING_VNI = 10_000_000 + os.getpid() % 100000   # the bridge is lkov<VNI>, as on a node
ING_BACKENDS = ("10.0.0.7", "10.0.0.8", "10.0.0.9")


@pytest.fixture(scope="module")
def mesh() -> Iterator[dict[str, str]]:
    roles = {r: f"lk-ing{r}{U}" for r in ("node", "x", "b1", "b2", "b3")}
    br = f"lkov{ING_VNI}"
    with namespaces(*roles.values()):
        node = roles["node"]
        _run("ip", "-n", node, "link", "add", br, "type", "bridge")
        _run("ip", "-n", node, "addr", "add", f"{NODE_IP}/24", "dev", br)
        _run("ip", "-n", node, "link", "set", br, "up")
        for i in (1, 2, 3):
            _veth(node, br, roles[f"b{i}"], f"lki{i}{U}", f"{ING_BACKENDS[i - 1]}/24")
        # the underlay: node 192.168.77.1 <-> client 192.168.77.2
        _run("ip", "-n", node, "link", "add", f"lkiu{U}", "type", "veth", "peer", "name",
             "eth0", "netns", roles["x"])
        _run("ip", "-n", node, "addr", "add", f"{NODE_UNDERLAY}/24", "dev", f"lkiu{U}")
        _run("ip", "-n", node, "link", "set", f"lkiu{U}", "up")
        _run("ip", "-n", roles["x"], "addr", "add", "192.168.77.2/24", "dev", "eth0")
        _run("ip", "-n", roles["x"], "link", "set", "eth0", "up")
        with responders([(roles[f"b{i}"], f"b{i}") for i in (1, 2, 3)]):
            yield roles | {"bridge": br}


def test_ingress_spreads_1000_requests_within_10_percent(mesh: dict[str, str]) -> None:
    node, x, br = mesh["node"], mesh["x"], mesh["bridge"]
    assert ask(x, NODE_UNDERLAY, 8080).startswith("ERR")
    try:
        ports = [IngressPort("tcp", 8080, PORT, ING_BACKENDS),
                 IngressPort("udp", 8080, PORT, ING_BACKENDS[:1])]
        program_ingress(br, NODE_IP, ports, ns=node)
        program_ingress(br, NODE_IP, ports, ns=node)          # idempotent
        assert _tables(node).count("lk-ingress") == 1
        got = spread(x, NODE_UNDERLAY, 1000, 8080)
        assert set(got) == {"b1", "b2", "b3"}, got
        for n in got.values():
            assert abs(n - 1000 / 3) <= 0.1 * 1000 / 3, got
        # the task sees the node's ingress address (it has no route to the client)
        assert ask(x, NODE_UNDERLAY, 8080).split()[1] == NODE_IP
        assert ask(x, NODE_UNDERLAY, 8080, "udp").split() == ["b1", NODE_IP]
        # from the node itself (output chain): underlay, ingress and loopback addresses
        for addr in (NODE_UNDERLAY, NODE_IP, "127.0.0.1"):
            answer = ask(node, addr, 8080).split()
            assert answer[0] in {"b1", "b2", "b3"} and answer[1] == NODE_IP, (addr, answer)
        # backends change: the removed one gets nothing more
        program_ingress(br, NODE_IP, [IngressPort("tcp", 8080, PORT, ING_BACKENDS[1:])],
                        ns=node)
        assert spread(x, NODE_UNDERLAY, 40, 8080) == Counter({"b2": 20, "b3": 20})
        assert ask(x, NODE_UNDERLAY, 8080, "udp").startswith("ERR")   # its port went
    finally:
        clear_ingress(ns=node)
    assert "lk-ingress" not in _tables(node)
    assert ask(x, NODE_UNDERLAY, 8080).startswith("ERR")
    clear_ingress(ns=node)                                     # idempotent


def test_ingress_port_without_tasks_refuses_and_forwarded_traffic_is_not_caught(
        mesh: dict[str, str]) -> None:
    node, x, br = mesh["node"], mesh["x"], mesh["bridge"]
    # something on the node listens on 9090: the published port must not reach it
    squatter = _sock(node, socket.SOCK_STREAM)
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("0.0.0.0", 9090))
    squatter.listen(4)
    try:
        program_ingress(br, NODE_IP, [IngressPort("tcp", 9090, PORT, ()),
                                      IngressPort("tcp", 8080, PORT, ING_BACKENDS)], ns=node)
        assert ask(x, NODE_UNDERLAY, 9090) == "ERR refused"
        assert ask(node, "127.0.0.1", 9090) == "ERR refused"
        # a flow routed THROUGH the node to a backend's own address is not for a local
        # address: neither DNATed nor SNATed (the backend sees the client's address)
        _run("ip", "-n", x, "route", "add", "10.0.0.0/24", "via", NODE_UNDERLAY)
        _run("ip", "-n", mesh["b1"], "route", "add", "192.168.77.0/24", "via", NODE_IP)
        try:
            assert ask(x, ING_BACKENDS[0], PORT).split() == ["b1", "192.168.77.2"]
        finally:
            _run("ip", "-n", x, "route", "del", "10.0.0.0/24")
            _run("ip", "-n", mesh["b1"], "route", "del", "192.168.77.0/24")
    finally:
        squatter.close()
        clear_ingress(ns=node)


def test_program_ingress_needs_its_bridge(mesh: dict[str, str]) -> None:
    node = mesh["node"]
    with pytest.raises(errors.NotFoundError, match="route_localnet"):
        program_ingress(f"lknone{U}", NODE_IP, [IngressPort("tcp", 8080, PORT, ING_BACKENDS)],
                        ns=node)
    assert "lk-ingress" not in _tables(node)


def test_discovery_apply_from_a_snapshot(mesh: dict[str, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole node side: a snapshot in, then the VIP works in a task's netns, the mesh
    in the node's netns (apply() runs in a thread that entered the node's namespace, as a
    lab node's daemon runs in its own), and the DNS records are in the network's view."""
    monkeypatch.setattr(discovery, "_written", {})
    node, x, b1 = mesh["node"], mesh["x"], mesh["b1"]
    app, ing = "a" * 25, "i" * 25
    snap: dict[str, Any] = {
        "node_id": "n1",
        "tasks": [{"ID": "t1", "NetworksAttachments": [{"Network": {"ID": app},
                                                        "Addresses": ["10.0.0.7/24"]}]}],
        "networks": {app: {"ID": app, "Name": "appnet", "VNI": 4097, "Ingress": False},
                     ing: {"ID": ing, "Name": "ingress", "VNI": ING_VNI, "Ingress": True}},
        "attachments": {ing: f"{NODE_IP}/24"},
        "services": [{"ID": "s1", "Name": "api", "Mode": "vip", "Aliases": {},
                      "VIPs": {app: "10.0.0.100"}, "Tasks": {app: list(ING_BACKENDS[1:])}}],
        "ingress": [{"Protocol": "tcp", "PublishedPort": 8080, "TargetPort": PORT,
                     "ServiceID": "s1", "Backends": list(ING_BACKENDS)}],
    }
    engine = SimpleNamespace(networks=SimpleNamespace(views={}, members={},
                                                      kernel=threading.RLock()))
    netns_of = {"t1": str(netns_path(b1))}

    def apply(s: dict[str, Any]) -> None:
        def body() -> None:
            with netns(netns_path(node)):
                discovery.apply(engine, s, netns_of)
        t = threading.Thread(target=body)
        t.start()
        t.join(60)

    try:
        apply(snap)
        assert spread(b1, "10.0.0.100", 20) == Counter({"b2": 10, "b3": 10})
        assert spread(x, NODE_UNDERLAY, 30, 8080) == Counter({"b1": 10, "b2": 10, "b3": 10})
        assert engine.networks.views[app].lookup("api", 4) == [ipaddress.ip_address(
            "10.0.0.100")]
        # the service scaled down and unpublished: the VIP follows, the mesh goes
        snap["services"][0]["Tasks"][app] = [ING_BACKENDS[2]]
        snap["ingress"] = []
        apply(snap)
        assert spread(b1, "10.0.0.100", 4) == Counter({"b3": 4})
        assert "lk-ingress" not in _tables(node)
        assert ask(x, NODE_UNDERLAY, 8080).startswith("ERR")
        netns_of.clear()  # the task's container went: its table is not touched again
        apply(snap)
        assert "lk-vip" in _tables(b1)
    finally:
        clear_vips(b1)
        clear_ingress(ns=node)
