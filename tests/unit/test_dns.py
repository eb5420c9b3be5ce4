"""labkit.engine.net.dns without privileges: the codec (round trips, hostile packets), the
resolver's answers from a NetworkView, forwarding to a fake upstream on loopback, and the
resolv.conf / hosts contents."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from labkit import errors
from labkit.engine.net.dns import codec, files
from labkit.engine.net.dns.resolver import Resolver, Upstream, reverse_name
from labkit.engine.net.dns.table import Endpoint, NetworkView

ip = ipaddress.ip_address
CID = "0123456789abcdef" * 4


def query(name: str, qtype: int = codec.A, qid: int = 0x1234, edns: int | None = None,
          rd: bool = True) -> bytes:
    msg = codec.Message(qid, codec.FLAG_RD if rd else 0, [codec.Question(name, qtype)])
    if edns is not None:
        msg.additional.append(codec.Record("", codec.OPT, edns, 0, b""))
    return codec.encode(msg)


def view() -> NetworkView:
    return NetworkView("mynet", [
        Endpoint("web", CID, ip("172.18.0.2"), ip("fd00::2"), ("www", "front")),
        Endpoint("db", "f" * 64, ip("172.18.0.3"), None, ("front",)),
    ])


def ask(res: Resolver, data: bytes, tcp: bool = False) -> codec.Message:
    raw = asyncio.run(res.handle(data, tcp))
    assert raw is not None
    return codec.parse(raw)


# -- codec --------------------------------------------------------------------------------


def test_round_trip_with_compression() -> None:
    msg = codec.Message(7, codec.FLAG_QR | codec.FLAG_AA, [codec.Question("web.mynet", codec.A)])
    msg.answers += [
        codec.Record("web.mynet", codec.CNAME, 1, 60, "db.mynet"),
        codec.Record("db.mynet", codec.A, 1, 60, bytes([10, 0, 0, 1])),
        codec.Record("2.0.18.172.in-addr.arpa", codec.PTR, 1, 60, "web.mynet"),
        codec.Record("web.mynet", codec.AAAA, 1, 60, ip("fd00::2").packed),
    ]
    wire = codec.encode(msg)
    assert codec.parse(wire) == msg
    # "mynet" is written once; every later occurrence is a 2-byte pointer.
    assert wire.count(b"\x05mynet") == 1 and wire.count(b"\x03web") == 1


def test_uppercase_names_read_lowercase() -> None:
    assert codec.parse(query("WeB.MyNet")).questions[0].name == "web.mynet"


@pytest.mark.parametrize("data,why", [
    (b"\x12\x34\x01", "header"),
    (query("web")[:-3], "truncated"),
    (query("web")[:14], "counts"),
    (struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\x3fabcd", "label runs past"),
    # header announcing 65535 questions on a 17-byte packet
    (struct.pack("!6H", 1, 0, 0xFFFF, 0, 0, 0) + b"\x00\x00\x01\x00\x01", "counts"),
    (struct.pack("!6H", 1, 0, 1, 0xFFFF, 0xFFFF, 0xFFFF) + b"\x00\x00\x01\x00\x01", "counts"),
    # a pointer to itself, and two pointers to each other: loops
    (struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01", "backwards"),
    (struct.pack("!6H", 1, 0, 2, 0, 0, 0) + b"\xc0\x12\x00\x01\x00\x01\xc0\x0c\x00\x01\x00\x01",
     "backwards"),
    (struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\x01a\x01b\xc0", "truncated compression"),
    (struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\x40abc\x00\x00\x01\x00\x01", "label type"),
    # a name of 300 octets through many 1-octet labels
    (struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\x01a" * 150 + b"\x00\x00\x01\x00\x01", "255"),
    # a record whose rdlength runs past the end
    (query("web")[:6] + b"\x00\x01" + query("web")[8:] + b"\xc0\x0c\x00\x01\x00\x01"
     + b"\x00\x00\x00\x3c\xff\xff\x01", "record data"),
])
def test_hostile_packets_raise_format_error(data: bytes, why: str) -> None:
    with pytest.raises(codec.FormatError, match=why):
        codec.parse(data)


def test_hostile_packets_get_formerr_or_silence() -> None:
    res = Resolver(view(), [])
    # A parseable header, nonsense after it: FORMERR with the client's id.
    bad = struct.pack("!6H", 0xBEEF, codec.FLAG_RD, 1, 0, 0, 0) + b"\xc0\x0c"
    reply = asyncio.run(res.handle(bad, False))
    assert reply is not None
    resp = codec.parse(reply)
    assert (resp.id, resp.rcode) == (0xBEEF, codec.FORMERR)
    # Too short for a header, or a response: no answer at all.
    assert asyncio.run(res.handle(b"\x01", False)) is None
    resp_bits = bytearray(query("web"))
    resp_bits[2] |= 0x80
    assert asyncio.run(res.handle(bytes(resp_bits), False)) is None


def test_every_truncation_of_a_real_message_is_handled() -> None:
    res = Resolver(view(), [])
    wire = codec.encode(ask(res, query("web.mynet", edns=1232)))
    for cut in range(len(wire)):
        try:
            codec.parse(wire[:cut])
        except codec.FormatError:
            pass


# -- resolver: local answers ---------------------------------------------------------------


def addrs(msg: codec.Message) -> list[str]:
    return [str(ipaddress.ip_address(r.rdata)) for r in msg.answers
            if isinstance(r.rdata, bytes)]


def test_names_aliases_short_id_and_network_suffix() -> None:
    res = Resolver(view(), [])
    for name in ("web", "WWW", "web.mynet", CID[:12], f"{CID[:12]}.mynet", "web."):
        resp = ask(res, query(name))
        assert resp.rcode == codec.NOERROR and resp.flags & codec.FLAG_AA, name
        assert addrs(resp) == ["172.18.0.2"], name
    assert ask(res, query(CID[:11])).rcode == codec.NXDOMAIN
    assert addrs(ask(res, query("web", codec.AAAA))) == ["fd00::2"]


def test_known_name_without_ipv6_is_nodata_not_forwarded() -> None:
    res = Resolver(view(), [Upstream(ip("127.0.0.1"), 9)])  # would fail if asked
    resp = ask(res, query("db", codec.AAAA))
    assert (resp.rcode, resp.answers) == (codec.NOERROR, [])
    resp = ask(res, query("db", 16))  # TXT for a known name: NODATA too
    assert (resp.rcode, resp.answers) == (codec.NOERROR, [])


def test_round_robin_for_a_shared_alias() -> None:
    res = Resolver(view(), [])
    first = addrs(ask(res, query("front")))
    second = addrs(ask(res, query("front")))
    assert sorted(first) == ["172.18.0.2", "172.18.0.3"]
    assert second == first[::-1]


def test_ptr_for_network_addresses() -> None:
    res = Resolver(view(), [])
    resp = ask(res, query("2.0.18.172.in-addr.arpa", codec.PTR))
    assert [r.rdata for r in resp.answers] == ["web.mynet"]
    v6 = ip("fd00::2").reverse_pointer
    assert [r.rdata for r in ask(res, query(v6, codec.PTR)).answers] == ["web.mynet"]
    assert reverse_name("2.0.18.172.in-addr.arpa") == ip("172.18.0.2")
    assert reverse_name("x.0.18.172.in-addr.arpa") is None
    # An address not on the network is not ours: forwarded; no upstream -> SERVFAIL.
    assert ask(res, query("9.9.9.9.in-addr.arpa", codec.PTR)).rcode == codec.SERVFAIL


def test_networks_are_isolated_and_updates_apply() -> None:
    a, b = view(), NetworkView("other", [Endpoint("cache", "e" * 64, ip("10.9.0.2"))])
    ra, rb = Resolver(a, []), Resolver(b, [])
    assert ask(ra, query("cache")).rcode == codec.NXDOMAIN
    assert ask(rb, query("web")).rcode == codec.NXDOMAIN
    assert ask(ra, query("web.other")).rcode == codec.SERVFAIL  # not ours: forwarded
    b.update([Endpoint("cache", "e" * 64, ip("10.9.0.7"), aliases=("web",))])
    assert addrs(ask(rb, query("web"))) == ["10.9.0.7"]
    assert addrs(ask(ra, query("web"))) == ["172.18.0.2"]
    with pytest.raises(errors.InvalidArgumentError, match="bad name"):
        b.update([Endpoint("bad name", "e" * 64, ip("10.9.0.8"))])
    assert addrs(ask(rb, query("web"))) == ["10.9.0.7"]  # unchanged after the refusal


def test_opcode_and_question_count() -> None:
    res = Resolver(view(), [])
    status = bytearray(query("web"))
    status[2] |= 2 << 3  # opcode STATUS
    assert ask(res, bytes(status)).rcode == codec.NOTIMP
    two = codec.encode(codec.Message(1, 0, [codec.Question("web", 1), codec.Question("db", 1)]))
    assert ask(res, two).rcode == codec.FORMERR


def test_udp_truncation_and_edns() -> None:
    many = [Endpoint(f"n{i}", f"{i:064x}", ip(f"10.1.{i // 250}.{i % 250 + 1}"), aliases=("big",))
            for i in range(60)]
    res = Resolver(NetworkView("mynet", many), [])
    plain = ask(res, query("big"))
    assert plain.flags & codec.FLAG_TC and plain.answers == []
    assert len(codec.encode(plain)) <= 512
    over_tcp = ask(res, query("big"), tcp=True)
    assert len(over_tcp.answers) == 60 and not over_tcp.flags & codec.FLAG_TC
    edns = ask(res, query("big", edns=4096))
    assert len(edns.answers) == 60 and edns.opt() is not None
    assert ask(res, query("web")).opt() is None  # no OPT without one in the query


# -- resolver: forwarding ------------------------------------------------------------------


Handler = Callable[[codec.Message], bytes | None]


def _answer_with(address: str) -> Handler:
    def handler(q: codec.Message) -> bytes:
        resp = codec.Message(q.id, codec.FLAG_QR | codec.FLAG_RA, q.questions)
        resp.answers.append(codec.Record(q.questions[0].name, codec.A, 1, 30,
                                         ip(address).packed))
        return codec.encode(resp)
    return handler


async def _with_upstream(handler: Handler, body: Callable[[int], Awaitable[None]]) -> None:
    """A fake upstream on 127.0.0.1 (UDP and TCP on the same random port)."""
    loop = asyncio.get_running_loop()

    class Proto(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            out = handler(codec.parse(data))
            if out is not None:
                self.t.sendto(out, addr)  # type: ignore[attr-defined]

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
        out = handler(codec.parse(await reader.readexactly(n)))
        if out is not None:
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(tcp, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", port))
    try:
        await body(port)
    finally:
        transport.close()
        server.close()
        await server.wait_closed()


def test_forwarding_udp_and_tcp_keeps_client_id() -> None:
    seen: list[int] = []

    def handler(q: codec.Message) -> bytes:
        seen.append(q.id)
        return _answer_with("93.184.216.34")(q)

    async def body(port: int) -> None:
        res = Resolver(view(), [Upstream(ip("127.0.0.1"), port)])
        for tcp in (False, True):
            raw = await res.handle(query("example.com", qid=0x4242), tcp)
            assert raw is not None
            resp = codec.parse(raw)
            assert resp.id == 0x4242 and addrs(resp) == ["93.184.216.34"]

    asyncio.run(_with_upstream(handler, body))
    assert len(seen) == 2


def test_silent_upstream_times_out_to_servfail_then_next_upstream() -> None:
    async def body(port: int) -> None:
        res = Resolver(view(), [Upstream(ip("127.0.0.1"), port)], timeout=0.2)
        raw = await res.handle(query("example.com"), False)
        assert raw is not None and codec.parse(raw).rcode == codec.SERVFAIL

        async def second(port2: int) -> None:
            res2 = Resolver(view(), [Upstream(ip("127.0.0.1"), port),
                                     Upstream(ip("127.0.0.1"), port2)], timeout=0.2)
            raw2 = await res2.handle(query("example.com"), False)
            assert raw2 is not None and addrs(codec.parse(raw2)) == ["1.2.3.4"]

        await _with_upstream(_answer_with("1.2.3.4"), second)

    asyncio.run(_with_upstream(lambda q: None, body))


def test_spoofed_or_mismatched_upstream_answers_are_ignored() -> None:
    def wrong_question(q: codec.Message) -> bytes:
        resp = codec.Message(q.id, codec.FLAG_QR, [codec.Question("evil.com", codec.A)])
        return codec.encode(resp)

    def wrong_id(q: codec.Message) -> bytes:
        return _answer_with("6.6.6.6")(codec.Message(q.id ^ 1, q.flags, q.questions))

    for handler in (wrong_question, wrong_id):
        async def body(port: int) -> None:
            res = Resolver(view(), [Upstream(ip("127.0.0.1"), port)], timeout=0.2)
            raw = await res.handle(query("example.com"), False)
            assert raw is not None and codec.parse(raw).rcode == codec.SERVFAIL

        asyncio.run(_with_upstream(handler, body))


def test_single_label_unknown_is_nxdomain_not_forwarded() -> None:
    asked: list[str] = []

    def handler(q: codec.Message) -> bytes:
        asked.append(q.questions[0].name)
        return _answer_with("1.1.1.1")(q)

    async def body(port: int) -> None:
        res = Resolver(view(), [Upstream(ip("127.0.0.1"), port)])
        raw = await res.handle(query("nosuch"), False)
        assert raw is not None and codec.parse(raw).rcode == codec.NXDOMAIN

    asyncio.run(_with_upstream(handler, body))
    assert asked == []


def test_large_upstream_answer_truncated_for_udp_client() -> None:
    def big(q: codec.Message) -> bytes:
        resp = codec.Message(q.id, codec.FLAG_QR, q.questions)
        resp.answers = [codec.Record(q.questions[0].name, codec.A, 1, 30, bytes([10, 0, 0, i]))
                        for i in range(60)]
        return codec.encode(resp)

    async def body(port: int) -> None:
        res = Resolver(view(), [Upstream(ip("127.0.0.1"), port)])
        raw = await res.handle(query("big.example", qid=9), False)
        assert raw is not None and len(raw) <= 512
        resp = codec.parse(raw)
        assert resp.flags & codec.FLAG_TC and resp.id == 9
        raw = await res.handle(query("big.example", qid=9), True)
        assert raw is not None and len(codec.parse(raw).answers) == 60

    asyncio.run(_with_upstream(big, body))


def test_udp_socket_kinds_are_plain_for_host_upstreams() -> None:
    made: list[tuple[int, int]] = []

    async def body(port: int) -> None:
        loop = asyncio.get_running_loop()

        def factory(family: int, kind: int) -> asyncio.Future[socket.socket]:
            made.append((family, kind))
            fut: asyncio.Future[socket.socket] = loop.create_future()
            s = socket.socket(family, kind)
            s.setblocking(False)
            fut.set_result(s)
            return fut

        res = Resolver(view(), [Upstream(ip("127.0.0.1"), port)], factory)
        assert await res.handle(query("a.example"), False) is not None
        res_host = Resolver(view(), [Upstream(ip("127.0.0.1"), port, host=True)], factory)
        assert await res_host.handle(query("a.example"), False) is not None

    asyncio.run(_with_upstream(_answer_with("1.2.3.4"), body))
    assert made == [(socket.AF_INET, socket.SOCK_DGRAM)]  # only the container-side one


# -- resolv.conf and hosts ------------------------------------------------------------------


HOST = files.parse_resolv_conf(
    "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.1 # x\nnameserver bogus\n"
    "search corp.example lab.example\noptions edns0 trust-ad\n")


def test_resolv_conf_user_network() -> None:
    rc = files.resolv_conf(HOST, embedded=True)
    assert rc.content == ("nameserver 127.0.0.11\nsearch corp.example lab.example\n"
                          "options edns0 trust-ad ndots:0\n")
    assert rc.upstreams == (Upstream(ip("127.0.0.53"), host=True), Upstream(ip("192.0.2.1")))
    rc = files.resolv_conf(HOST, embedded=True, dns=["9.9.9.9"], dns_search=["a.example"],
                           dns_options=["ndots:2", "timeout:1"])
    assert rc.content == ("nameserver 127.0.0.11\nsearch a.example\n"
                          "options ndots:2 timeout:1\n")
    assert rc.upstreams == (Upstream(ip("9.9.9.9")),)


def test_resolv_conf_default_bridge() -> None:
    rc = files.resolv_conf(HOST, embedded=False)
    assert rc.content.startswith("nameserver 192.0.2.1\nsearch")  # loopback dropped
    assert rc.upstreams == ()
    only_lo = files.parse_resolv_conf("nameserver 127.0.0.53\n")
    assert files.resolv_conf(only_lo, embedded=False).content == (
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
    empty = files.parse_resolv_conf("")
    assert files.resolv_conf(empty, embedded=True).upstreams == (
        Upstream(ip("8.8.8.8")), Upstream(ip("8.8.4.4")))
    assert "2001:4860:4860::8888" in files.resolv_conf(empty, embedded=False, ipv6=True).content


@pytest.mark.parametrize("kw,what", [
    ({"dns": ["not-an-ip"]}, "--dns"),
    ({"dns_search": ["bad domain"]}, "--dns-search"),
    ({"dns_options": ["ndots:1\nnameserver 6.6.6.6"]}, "--dns-option"),
])
def test_resolv_conf_refuses_bad_values(kw: dict[str, list[str]], what: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=what):
        files.resolv_conf(HOST, embedded=True, **kw)  # type: ignore[arg-type]


def test_hosts_file_and_add_host() -> None:
    extra = [files.parse_add_host("db.local:10.0.0.5"), files.parse_add_host("v6=[fd00::9]"),
             files.parse_add_host("gw:host-gateway", ip("172.18.0.1"))]
    text = files.hosts_file("abc123def456", [ip("172.18.0.2")], extra)
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[-4:] == ["10.0.0.5\tdb.local", "fd00::9\tv6", "172.18.0.1\tgw",
                          "172.18.0.2\tabc123def456"]
    for bad in ("noip", "x:1.2.3", "bad name:1.2.3.4", "x\n1.2.3.4 evil:1.2.3.4", "gw:host-gateway"):
        with pytest.raises(errors.InvalidArgumentError, match="--add-host"):
            files.parse_add_host(bad)
    with pytest.raises(errors.InvalidArgumentError, match="hostname"):
        files.hosts_file("evil\n1.2.3.4 x", [])


def test_odd_bytes_in_upstream_names_survive_truncation() -> None:
    def odd(q: codec.Message) -> bytes:
        resp = codec.Message(q.id, codec.FLAG_QR, q.questions)
        resp.answers = [codec.Record("\xe9t\xe9.example", codec.A, 1, 30, bytes([10, 0, 0, i]))
                        for i in range(60)]
        return codec.encode(resp)

    async def body(port: int) -> None:
        res = Resolver(view(), [Upstream(ip("127.0.0.1"), port)])
        raw = await res.handle(query("odd.example"), False)
        assert raw is not None and codec.parse(raw).flags & codec.FLAG_TC

    asyncio.run(_with_upstream(odd, body))
