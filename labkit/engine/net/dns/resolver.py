"""The answering logic of the embedded DNS for one container: the network's table first,
then the upstream servers.

What it answers (as libnetwork's resolver.go does on a user-defined network):
- A / AAAA for a name in the NetworkView (container name, alias, short id, NAME.NETWORK),
  authoritative, TTL 600, several addresses in round-robin order.  A name known with only
  the other family gets NOERROR with no answer (NODATA), never forwarded: otherwise a
  client asking AAAA first would learn the outside world's idea of "web".
- PTR for the network's own addresses -> ``name.network``.
- Any other type for a known name: NODATA.
- A single-label name that is not in the table: NXDOMAIN, answered here.  The table owns
  the flat namespace of the network; leaking "db" to the host's resolvers would at best
  be wasted, at worst answered by someone else (labkit's choice, stated here because
  Docker has changed its mind on it across releases).
- Everything else is forwarded to the upstreams (the host's resolv.conf or --dns), one
  after the other, each with a timeout; a truncated UDP answer is retried over TCP when
  the client asked over TCP; all failing -> SERVFAIL.  No upstreams -> SERVFAIL.
- Queries that are not standard (opcode != QUERY) -> NOTIMP; not exactly one question ->
  FORMERR; responses (QR set) and unparsable packets are dropped (answering garbage with
  garbage is how reflection loops start).

The default bridge has no embedded DNS in Docker (containers get the host's nameservers in
resolv.conf, and names only through --link's /etc/hosts lines); the engine therefore
never attaches a Resolver for it.

UDP answers larger than the client's limit (512 octets, RFC 1035 4.2.1, or the EDNS0
payload size the client announced, RFC 6891 6.2.5, capped at 4096) are cut to the header
and question with TC set, so the client retries over TCP.  A client's OPT record gets an
OPT back (RFC 6891 7: a responder that does not may confuse the client).
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from labkit.engine.net.dns import codec
from labkit.engine.net.dns.table import IPAddress, NetworkView

__all__ = ["Resolver", "SocketFactory", "Upstream", "reverse_name"]

TTL = 600            # libnetwork's respTTLForLocal
EDNS_SIZE = 1232     # the DNS flag day 2020 default payload size we announce
MAX_UDP = 4096
SocketFactory = Callable[[int, int], "asyncio.Future[socket.socket]"]


@dataclass(frozen=True)
class Upstream:
    """An upstream server.  ``host`` = contact it from the daemon's own namespace (a
    loopback resolver of the host, e.g. systemd-resolved's 127.0.0.53, is not reachable
    from the container's netns); otherwise the query leaves from the container's netns, so
    an --internal network without a route out cannot resolve outside names either."""

    address: IPAddress
    port: int = 53
    host: bool = False


def reverse_name(qname: str) -> IPAddress | None:
    """The address a PTR name stands for (in-addr.arpa / ip6.arpa), or None."""
    labels = qname.lower().rstrip(".").split(".")
    try:
        if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
            return ipaddress.IPv4Address(".".join(reversed(labels[:4])))
        if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
            nibbles = "".join(reversed(labels[:32]))
            return ipaddress.IPv6Address(int(nibbles, 16))
    except ValueError:
        return None
    return None


def _udp_limit(query: codec.Message) -> int:
    opt = query.opt()
    if opt is None:
        return 512
    return max(512, min(opt.rclass, MAX_UDP))


class Resolver:
    """Answers one container's queries from ``view``, forwarding the rest.

    ``make_socket(family, type)`` makes a non-blocking socket in the container's netns (the
    DnsServer provides one); host upstreams use plain sockets of the daemon's namespace.
    """

    def __init__(self, view: NetworkView, upstreams: Sequence[Upstream],
                 make_socket: SocketFactory | None = None, timeout: float = 2.0,
                 max_inflight: int = 100) -> None:
        self.view = view
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self._make_socket = make_socket
        self._inflight = asyncio.Semaphore(max_inflight)

    async def handle(self, data: bytes, tcp: bool) -> bytes | None:
        """The reply to one query, or None to stay silent."""
        try:
            query = codec.parse(data)
        except codec.FormatError:
            return _formerr(data)
        if query.flags & codec.FLAG_QR:
            return None
        if query.opcode != 0:
            return self._finish(query, self._reply(query, codec.NOTIMP), tcp)
        if len(query.questions) != 1:
            return self._finish(query, self._reply(query, codec.FORMERR), tcp)
        local = self._local(query)
        if local is not None:
            return self._finish(query, local, tcp)
        if self._inflight.locked():  # overloaded: drop, as a busy server does; client retries
            return None
        async with self._inflight:
            raw = await self._forward(data, query, tcp)
        if raw is None:
            return self._finish(query, self._reply(query, codec.SERVFAIL), tcp)
        return raw if tcp or len(raw) <= _udp_limit(query) else _truncate(raw)

    # -- local answers ------------------------------------------------------------------

    def _reply(self, query: codec.Message, rcode: int, aa: bool = False) -> codec.Message:
        flags = codec.FLAG_QR | (query.flags & codec.FLAG_RD) | codec.FLAG_RA | rcode
        if aa:
            flags |= codec.FLAG_AA
        return codec.Message(query.id, flags, list(query.questions))

    def _finish(self, query: codec.Message, resp: codec.Message, tcp: bool) -> bytes:
        if query.opt() is not None:
            resp.additional.append(codec.Record("", codec.OPT, EDNS_SIZE, 0, b""))
        wire = codec.encode(resp)
        if not tcp and len(wire) > _udp_limit(query):
            resp.answers = []
            resp.flags |= codec.FLAG_TC
            wire = codec.encode(resp)
        return wire

    def _local(self, query: codec.Message) -> codec.Message | None:
        q = query.questions[0]
        if q.qclass != codec.CLASS_IN:
            return None
        if q.qtype == codec.PTR:
            ip = reverse_name(q.name)
            target = self.view.reverse(ip) if ip is not None else None
            if target is None:
                return None
            resp = self._reply(query, codec.NOERROR, aa=True)
            resp.answers.append(codec.Record(q.name, codec.PTR, codec.CLASS_IN, TTL, target))
            return resp
        if self.view.knows(q.name):
            resp = self._reply(query, codec.NOERROR, aa=True)
            if q.qtype in (codec.A, codec.AAAA):
                family = 4 if q.qtype == codec.A else 6
                for ip in self.view.lookup(q.name, family) or []:
                    resp.answers.append(
                        codec.Record(q.name, q.qtype, codec.CLASS_IN, TTL, ip.packed))
            return resp
        if "." not in q.name.strip("."):
            return self._reply(query, codec.NXDOMAIN)
        return None

    # -- forwarding -----------------------------------------------------------------------

    async def _forward(self, data: bytes, query: codec.Message, tcp: bool) -> bytes | None:
        for up in self.upstreams:
            # A fresh random id per upstream query: the client's id is predictable to it,
            # not to an off-path spoofer (RFC 5452 9.2).
            qid = secrets.randbelow(0x10000)
            out = struct.pack("!H", qid) + data[2:]
            try:
                raw = await asyncio.wait_for(self._exchange(up, out, qid, query, tcp),
                                             self.timeout)
            except (OSError, TimeoutError, codec.FormatError):
                continue
            if raw is not None:
                return struct.pack("!H", query.id) + raw[2:]
        return None

    async def _socket(self, up: Upstream, kind: int) -> socket.socket:
        family = socket.AF_INET6 if up.address.version == 6 else socket.AF_INET
        if up.host or self._make_socket is None:
            s = socket.socket(family, kind | socket.SOCK_CLOEXEC)
            s.setblocking(False)
            return s
        return await self._make_socket(family, kind)

    async def _exchange(self, up: Upstream, out: bytes, qid: int, query: codec.Message,
                        tcp: bool) -> bytes | None:
        loop = asyncio.get_running_loop()
        addr = (str(up.address), up.port)
        if not tcp:
            s = await self._socket(up, socket.SOCK_DGRAM)
            try:
                await loop.sock_connect(s, addr)  # connected: the kernel drops other sources
                await loop.sock_sendall(s, out)
                while True:
                    raw = await loop.sock_recv(s, 65535)
                    if _matches(raw, qid, query):
                        break
            finally:
                s.close()
            # A truncated upstream answer goes to the UDP client as it is: TC set, the
            # client retries over TCP to us, and we then ask upstream over TCP.
            return raw
        s = await self._socket(up, socket.SOCK_STREAM)
        try:
            await loop.sock_connect(s, addr)
            await loop.sock_sendall(s, struct.pack("!H", len(out)) + out)
            head = await _recv_exact(loop, s, 2)
            raw = await _recv_exact(loop, s, struct.unpack("!H", head)[0])
        finally:
            s.close()
        return raw if _matches(raw, qid, query) else None


async def _recv_exact(loop: asyncio.AbstractEventLoop, s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(s, n - len(buf))
        if not chunk:
            raise ConnectionError("upstream closed the connection")
        buf += chunk
    return bytes(buf)


def _matches(raw: bytes, qid: int, query: codec.Message) -> bool:
    """An upstream answer is ours only with our id, QR set and the same question."""
    try:
        resp = codec.parse(raw)
    except codec.FormatError:
        return False
    return (resp.id == qid and bool(resp.flags & codec.FLAG_QR)
            and resp.questions == query.questions)


def _truncate(raw: bytes) -> bytes:
    """Header + question of an upstream answer, TC set (the client retries over TCP)."""
    try:
        resp = codec.parse(raw)
    except codec.FormatError:  # _matches parsed it already; kept for safety
        return raw[:2] + bytes([raw[2] | codec.FLAG_TC >> 8]) + raw[3:4] + bytes(8)
    resp.flags |= codec.FLAG_TC
    resp.answers, resp.authority = [], []
    resp.additional = [r for r in resp.additional if r.rtype == codec.OPT]
    return codec.encode(resp)


def _formerr(data: bytes) -> bytes | None:
    """FORMERR with the client's id, when at least the header is there and is a query."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    flags = codec.FLAG_QR | codec.FORMERR | (data[2] << 8 & codec.FLAG_RD)
    return struct.pack("!6H", struct.unpack_from("!H", data)[0], flags, 0, 0, 0, 0)
