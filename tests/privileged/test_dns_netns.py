"""labkit.engine.net.dns for real: the server listens on 127.0.0.11:53 inside a test-made
netns (lk-dns-*), and clients running in that netns (busybox nslookup, glibc's getent with
the resolv.conf we generate, a raw Python socket over UDP and TCP) get the table's answers;
other names go to a fake upstream listening in the same netns."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Awaitable, Callable, Iterator

import pytest
from pyroute2 import IPRoute

from labkit import errors
from labkit.engine.net import dns
from labkit.engine.net.dns import codec
from labkit.ns.netns import create_netns, list_netns, netns, netns_path, remove_netns

ip = ipaddress.ip_address
CID = "abcdef0123456789" * 4
UPSTREAM = "127.0.0.53"
_n = 0


@pytest.fixture
def ns() -> Iterator[str]:
    """A fresh netns with lo up; yields its name."""
    global _n
    _n += 1
    name = f"lk-dns-{os.getpid() % 100000}-{_n}"
    create_netns(name)
    try:
        with IPRoute(netns=name, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        yield name
    finally:
        remove_netns(name)
    assert name not in list_netns()


def _in_ns(name: str, family: int, kind: int) -> socket.socket:
    with netns(netns_path(name)):
        return socket.socket(family, kind)


async def _fake_upstream(name: str, answer: str) -> Callable[[], Awaitable[None]]:
    """A UDP DNS server on 127.0.0.53:53 inside netns ``name`` answering ``answer`` to any A
    query; returns its closer."""
    loop = asyncio.get_running_loop()
    s = await loop.run_in_executor(None, _in_ns, name, socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((UPSTREAM, 53))
    s.setblocking(False)

    class Proto(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            q = codec.parse(data)
            resp = codec.Message(q.id, codec.FLAG_QR | codec.FLAG_RA, q.questions)
            if q.questions[0].qtype == codec.A:
                resp.answers.append(codec.Record(q.questions[0].name, codec.A, 1, 30,
                                                 ip(answer).packed))
            self.t.sendto(codec.encode(resp), addr)  # type: ignore[attr-defined]

    transport, _ = await loop.create_datagram_endpoint(Proto, sock=s)

    async def close() -> None:
        transport.close()
    return close


def _raw_query(name: str, qname: str, tcp: bool) -> codec.Message:
    """A blocking query to 127.0.0.11 from a socket made inside netns ``name``."""
    s = _in_ns(name, socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    with s:
        s.settimeout(10)
        q = codec.encode(codec.Message(77, codec.FLAG_RD, [codec.Question(qname, codec.A)]))
        s.connect((dns.DNS_ADDRESS, 53))
        if tcp:
            s.sendall(struct.pack("!H", len(q)) + q)
            f = s.makefile("rb")
            (n,) = struct.unpack("!H", f.read(2))
            return codec.parse(f.read(n))
        s.send(q)
        return codec.parse(s.recv(4096))


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return out.decode()


def _view() -> dns.NetworkView:
    return dns.NetworkView("mynet", [
        dns.Endpoint("web", CID, ip("172.18.0.2"), None, ("www",)),
        dns.Endpoint("db", "f" * 64, ip("172.18.0.3")),
    ])


@pytest.mark.privileged
def test_clients_in_the_netns_resolve_names_and_forwarded_names(ns: str) -> None:
    path = str(netns_path(ns))
    etc = f"/etc/netns/{ns}"   # ip-netns(8) bind-mounts these over /etc for `ip netns exec`
    made_etc_netns = not os.path.isdir("/etc/netns")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = dns.DnsServer(timeout=2.0)
        close_upstream = await _fake_upstream(ns, "192.0.2.77")
        view = _view()
        try:
            att = await server.attach(path, view, [dns.Upstream(ip(UPSTREAM))])
            # busybox nslookup, asking 127.0.0.11 explicitly
            out = await _run("ip", "netns", "exec", ns, "busybox", "nslookup", "web",
                             dns.DNS_ADDRESS)
            assert "172.18.0.2" in out, out
            out = await _run("ip", "netns", "exec", ns, "busybox", "nslookup", CID[:12],
                             dns.DNS_ADDRESS)
            assert "172.18.0.2" in out, out
            out = await _run("ip", "netns", "exec", ns, "busybox", "nslookup",
                             "example.com", dns.DNS_ADDRESS)
            assert "192.0.2.77" in out, out
            # glibc through the resolv.conf a container on this network would get
            out = await _run("ip", "netns", "exec", ns, "getent", "hosts", "www")
            assert out.split()[:1] == ["172.18.0.2"], out
            out = await _run("ip", "netns", "exec", ns, "getent", "hosts", "www.mynet")
            assert out.split()[:1] == ["172.18.0.2"], out
            out = await _run("ip", "netns", "exec", ns, "getent", "hosts", "example.com")
            assert out.split()[:1] == ["192.0.2.77"], out
            # raw UDP and TCP from a socket in the netns; an update is seen at once
            view.update([dns.Endpoint("web", CID, ip("172.18.0.9"))])
            for tcp in (False, True):
                resp = await loop.run_in_executor(None, _raw_query, ns, "web", tcp)
                assert resp.id == 77 and [bytes(r.rdata) for r in resp.answers] == [
                    ip("172.18.0.9").packed]
            resp = await loop.run_in_executor(None, _raw_query, ns, "db", False)
            assert resp.rcode == codec.NXDOMAIN  # gone from the table
            await server.detach(att)
            with pytest.raises(ConnectionRefusedError):
                await loop.run_in_executor(None, _raw_query, ns, "web", True)
        finally:
            await close_upstream()
            await server.close()

    try:
        rc = dns.resolv_conf(dns.parse_resolv_conf(""), embedded=True,
                             dns_search=["corp.example"])
        os.makedirs(etc)
        with open(f"{etc}/resolv.conf", "w") as f:
            f.write(rc.content)
        asyncio.run(main())
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        if made_etc_netns:
            shutil.rmtree("/etc/netns", ignore_errors=True)


@pytest.mark.privileged
def test_upstream_silent_gives_servfail_in_netns(ns: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = dns.DnsServer(timeout=0.3)
        try:
            # nothing listens on 127.0.0.53 in the netns: the query fails -> SERVFAIL
            await server.attach(str(netns_path(ns)), _view(), [dns.Upstream(ip(UPSTREAM))])
            resp = await loop.run_in_executor(None, _raw_query, ns, "example.com", False)
            assert resp.rcode == codec.SERVFAIL
        finally:
            await server.close()

    asyncio.run(main())


@pytest.mark.privileged
def test_two_netns_two_views_are_isolated(ns: str) -> None:
    global _n
    _n += 1
    other = f"lk-dns-{os.getpid() % 100000}-{_n}"
    create_netns(other)
    try:
        with IPRoute(netns=other, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

        async def main() -> None:
            loop = asyncio.get_running_loop()
            server = dns.DnsServer(timeout=0.3)
            try:
                await server.attach(str(netns_path(ns)), _view(), [])
                await server.attach(str(netns_path(other)), dns.NetworkView(
                    "other", [dns.Endpoint("cache", "e" * 64, ip("10.9.0.2"))]), [])
                a = await loop.run_in_executor(None, _raw_query, ns, "cache", False)
                b = await loop.run_in_executor(None, _raw_query, other, "cache", False)
                c = await loop.run_in_executor(None, _raw_query, other, "web", False)
                assert (a.rcode, c.rcode) == (codec.NXDOMAIN, codec.NXDOMAIN)
                assert [bytes(r.rdata) for r in b.answers] == [ip("10.9.0.2").packed]
            finally:
                await server.close()

        asyncio.run(main())
    finally:
        remove_netns(other)


@pytest.mark.privileged
def test_attach_errors_leave_nothing(ns: str) -> None:
    async def main() -> None:
        server = dns.DnsServer()
        try:
            with pytest.raises(errors.SyscallError):
                await server.attach("/run/netns/lk-dns-no-such", _view(), [])
            await server.attach(str(netns_path(ns)), _view(), [])
            with pytest.raises(errors.SyscallError, match="127.0.0.11:53"):  # EADDRINUSE
                await server.attach(str(netns_path(ns)), _view(), [])
            # the documented trade-off of the direct bind (redirect=True avoids it)
            wild = _in_ns(ns, socket.AF_INET, socket.SOCK_STREAM)
            with wild, pytest.raises(OSError, match="in use"):
                wild.bind(("0.0.0.0", 53))
        finally:
            await server.close()
        # all closed: the address can be bound again in the netns
        s = _in_ns(ns, socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.bind((dns.DNS_ADDRESS, 53))

    asyncio.run(main())


@pytest.mark.privileged
def test_hostile_clients_do_not_stop_the_server(ns: str) -> None:
    def hostile() -> None:
        u = _in_ns(ns, socket.AF_INET, socket.SOCK_DGRAM)
        with u:
            u.connect((dns.DNS_ADDRESS, 53))
            for junk in (b"", b"\x00", b"\xff" * 12, struct.pack("!6H", 1, 0, 1, 0, 0, 0)
                         + b"\xc0\x0c\x00\x01\x00\x01", os.urandom(600)):
                u.send(junk)
        for junk in (b"\xff\xff" + b"x" * 10, b"\x00\x00", b"\x00\x05abc"):
            t = _in_ns(ns, socket.AF_INET, socket.SOCK_STREAM)
            with t:
                t.connect((dns.DNS_ADDRESS, 53))
                t.sendall(junk)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = dns.DnsServer(timeout=0.3)
        try:
            await server.attach(str(netns_path(ns)), _view(), [])
            await loop.run_in_executor(None, hostile)
            for tcp in (False, True):
                resp = await loop.run_in_executor(None, _raw_query, ns, "web", tcp)
                assert [bytes(r.rdata) for r in resp.answers] == [ip("172.18.0.2").packed]
        finally:
            await server.close()

    asyncio.run(main())


def _nft_tables(name: str) -> str:
    return subprocess.run(["ip", "netns", "exec", name, "nft", "list", "tables"],
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.privileged
@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft (nftables)")
def test_redirect_mode_leaves_port_53_to_the_container(ns: str) -> None:
    """Docker's way: random ports + DNAT in the netns; the container may bind 0.0.0.0:53."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = dns.DnsServer(timeout=0.3, redirect=True)
        mine = None
        try:
            att = await server.attach(str(netns_path(ns)), _view(), [])
            assert "table ip lkdns" in _nft_tables(ns)
            # the container's own DNS server can have the wildcard port 53, UDP and TCP
            mine = [_in_ns(ns, socket.AF_INET, k) for k in (socket.SOCK_DGRAM, socket.SOCK_STREAM)]
            for s in mine:
                s.bind(("0.0.0.0", 53))
            mine[1].listen(1)
            for tcp in (False, True):
                resp = await loop.run_in_executor(None, _raw_query, ns, "web", tcp)
                assert [bytes(r.rdata) for r in resp.answers] == [ip("172.18.0.2").packed]
            await server.detach(att)
            assert "lkdns" not in _nft_tables(ns)
        finally:
            for s in mine or []:
                s.close()
            await server.close()

    asyncio.run(main())
    assert "lkdns" not in _nft_tables(ns)
