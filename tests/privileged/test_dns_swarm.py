"""The embedded DNS on a swarm network, for real: the server listens on 127.0.0.11:53
inside a test-made netns (lk-dnsw-*), the network's view holds one local task container
(as endpoints.py makes it) and the service records discovery computes from a snapshot;
clients in the netns (raw UDP/TCP sockets, busybox nslookup) see NAME -> VIP, aliases,
tasks.NAME -> every task, dnsrr rotation, PTR of task addresses, NXDOMAIN for the rest,
all from the same server."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
import subprocess
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from pyroute2 import IPRoute

from labkit.engine.net import dns
from labkit.engine.net.dns import codec
from labkit.engine.networks import dnsview
from labkit.engine.swarm import discovery
from labkit.ns.netns import create_netns, list_netns, netns, netns_path, remove_netns

pytestmark = pytest.mark.privileged

NET = "n" * 25
ip = ipaddress.ip_address


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"lk-dnsw-{os.getpid() % 100000}"
    create_netns(name)
    try:
        with IPRoute(netns=name, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        yield name
    finally:
        remove_netns(name)
    assert name not in list_netns()


def _snapshot() -> dict[str, Any]:
    return {
        "tasks": [], "attachments": {}, "ingress": [],
        "networks": {NET: {"ID": NET, "Name": "appnet", "VNI": 4097, "Ingress": False}},
        "services": [
            {"ID": "s1", "Name": "web", "Mode": "vip", "Aliases": {NET: ["www"]},
             "VIPs": {NET: "10.0.1.2/24"}, "Tasks": {NET: ["10.0.1.3", "10.0.1.4", "10.0.1.5"]}},
            {"ID": "s2", "Name": "db", "Mode": "dnsrr", "Aliases": {},
             "VIPs": {}, "Tasks": {NET: ["10.0.1.7", "10.0.1.8"]}},
        ],
    }


def _query(name: str, qname: str, qtype: int = codec.A, tcp: bool = False) -> codec.Message:
    """A blocking query to 127.0.0.11 from a socket made inside netns ``name``."""
    with netns(netns_path(name)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    with s:
        s.settimeout(10)
        q = codec.encode(codec.Message(7, codec.FLAG_RD, [codec.Question(qname, qtype)]))
        s.connect((dns.DNS_ADDRESS, 53))
        if tcp:
            s.sendall(struct.pack("!H", len(q)) + q)
            f = s.makefile("rb")
            (n,) = struct.unpack("!H", f.read(2))
            return codec.parse(f.read(n))
        s.send(q)
        return codec.parse(s.recv(4096))


def _a(resp: codec.Message) -> list[str]:
    assert isinstance(resp.answers, list)
    return [str(ipaddress.IPv4Address(r.rdata)) for r in resp.answers if r.rtype == codec.A]


def test_service_names_tasks_aliases_rotation_and_nxdomain(ns: str) -> None:
    nets = SimpleNamespace(views={}, members={})
    # the local task container, a member of the network as endpoints.py makes it (its
    # service name is one of its aliases)
    nets.members[NET] = {"c1": dns.Endpoint("web.1.abc", "c" * 64, ip("10.0.1.3"), None,
                                            ("web",))}
    dnsview.refresh(nets, SimpleNamespace(id=NET, name="appnet"))
    for nid, r in discovery.dns_records(_snapshot()).items():
        dnsview.set_service_records(nets, nid, r.name, r.records, r.reverse)
    view = dnsview.ContainerView([nets.views[NET]], {})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = dns.DnsServer(timeout=1.0)
        try:
            await server.attach(str(netns_path(ns)), view, [])

            async def q(qname: str, qtype: int = codec.A, tcp: bool = False
                        ) -> codec.Message:
                return await loop.run_in_executor(None, _query, ns, qname, qtype, tcp)

            assert _a(await q("web")) == ["10.0.1.2"]                  # the VIP, not the task
            assert _a(await q("web.appnet")) == ["10.0.1.2"]
            assert _a(await q("www", codec.A, True)) == ["10.0.1.2"]   # alias, over TCP
            tasks = _a(await q("tasks.web"))
            assert sorted(tasks) == ["10.0.1.3", "10.0.1.4", "10.0.1.5"]
            assert sorted(_a(await q("tasks.www"))) == sorted(tasks)
            # dnsrr: every task, the first answer rotating per query
            firsts = [_a(await q("db"))[0] for _ in range(4)]
            assert firsts == ["10.0.1.7", "10.0.1.8", "10.0.1.7", "10.0.1.8"]
            # the task container's own name still resolves
            assert _a(await q("web.1.abc")) == ["10.0.1.3"]
            # unknown: NXDOMAIN from the same server (no upstream asked)
            resp = await q("nosuchservice")
            assert resp.rcode == codec.NXDOMAIN and not resp.answers
            # a name the records know with no IPv6: NODATA
            resp = await q("web", codec.AAAA)
            assert resp.rcode == codec.NOERROR and not resp.answers
            # PTR: the local task by its container name, a remote one by tasks.NAME
            resp = await q("4.1.0.10.in-addr.arpa", codec.PTR)
            assert [r.rdata for r in resp.answers] == ["tasks.web.appnet"]
            resp = await q("3.1.0.10.in-addr.arpa", codec.PTR)
            assert [r.rdata for r in resp.answers] == ["web.1.abc.appnet"]
            # busybox's resolver agrees
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", ns, "busybox", "nslookup", "tasks.db", dns.DNS_ADDRESS,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
            assert "10.0.1.7" in out and "10.0.1.8" in out, out
            # a new snapshot: a task gone, the service removed; records replaced at once
            snap = _snapshot()
            snap["services"][0]["Tasks"][NET] = ["10.0.1.4"]
            snap["services"].pop(1)
            for nid, r in discovery.dns_records(snap).items():
                dnsview.set_service_records(nets, nid, r.name, r.records, r.reverse)
            assert _a(await q("tasks.web")) == ["10.0.1.4"]
            assert (await q("db")).rcode == codec.NXDOMAIN
            dnsview.set_service_records(nets, NET, "appnet", {})
            # the records gone, the task container's alias answers again (local only)
            assert _a(await q("web")) == ["10.0.1.3"]
        finally:
            await server.close()

    asyncio.run(main())
