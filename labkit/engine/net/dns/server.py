"""The listening side: one asyncio loop in the daemon serving 127.0.0.11:53 inside every
attached container's network namespace.

How a socket gets into a container's netns: a socket belongs for good to the network
namespace of the thread that created it (network_namespaces(7)).  attach() runs a short
job on a worker thread that setns(2)s into the container's netns (labkit.ns.netns, which
moves only that thread and restores it), creates and binds the UDP and TCP sockets there
and returns them; the daemon's loop then serves them like any other socket.  This is what
libnetwork's resolver SetupFunc does (run in the sandbox's netns, sockets handed back to
the daemon).  The alternative, a helper process per container serving from inside, would
cost a process per container and a channel to keep its table fresh; a thread that only
visits the netns costs one setns pair per attach and nothing while serving.

Binding, two ways (DnsServer(redirect=...)).  Default: labkit binds 127.0.0.11:53 directly.  The container's lo covers 127.0.0.0/8
(RFC 1122 3.2.1.3: the whole block is loopback, and Linux's local table routes it), so no
address has to be added; lo must be up, which the engine does when it makes the netns.
Docker instead listens on a random port and DNATs 127.0.0.11:53 to it with iptables in
the container's netns, so a container may still bind 0.0.0.0:53 itself; with labkit's
direct bind such a container gets EADDRINUSE binding 0.0.0.0:53 (the kernel refuses a
wildcard bind over a specific one on the same port).  That is the trade-off taken (no
nftables table in every container netns, no nft process per container start).
redirect=True does what Docker does (redirect.py): random ports plus an nft DNAT in the
container's netns, for containers that run their own server on port 53.

Forwarded queries leave from the container's netns too (make_socket below), so routes,
--internal and firewalling apply to them as to the container itself; only upstreams
marked ``host`` (the host's loopback resolvers) are asked from the daemon's namespace.

Seam for the engine::

    server = DnsServer()                        # in the daemon's loop
    view = NetworkView("mynet", endpoints)      # one per user-defined network
    att = await server.attach("/proc/PID/ns/net" or "/run/netns/X", view, upstreams)
    view.update(new_endpoints)                  # on run/connect/disconnect/rm/rename
    await server.detach(att)                    # on container exit / disconnect
    await server.close()                        # on daemon shutdown

The listening sockets live in the daemon process: after a daemon restart with live-restore
the engine attaches again for every running container on a user-defined network (the
netns outlives the daemon; its 127.0.0.11:53 is free again once the old process is gone).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from labkit import errors
from labkit.engine.net.dns import redirect
from labkit.engine.net.dns.resolver import Resolver, Upstream
from labkit.engine.net.dns.table import NetworkView
from labkit.ns.netns import netns

__all__ = ["DNS_ADDRESS", "Attachment", "DnsServer"]

DNS_ADDRESS = "127.0.0.11"
TCP_IDLE = 10.0          # seconds a TCP client may stay silent (RFC 7766 6.2.3 suggests ~10 s)
MAX_TCP_CLIENTS = 64     # per container: a flood of idle connections costs nothing more


@dataclass(eq=False)
class Attachment:
    """One container's listener; hold it to detach()."""

    netns_path: str
    resolver: Resolver
    transport: asyncio.DatagramTransport
    udp: _Udp
    tcp_server: asyncio.Server
    tcp_clients: set[asyncio.Task[None]] = field(default_factory=set)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, att_resolver: Resolver, tasks: set[asyncio.Task[None]]) -> None:
        self.resolver = att_resolver
        self.tasks = tasks
        self.transport: asyncio.DatagramTransport | None = None
        # Set when the transport has really closed its socket (close() defers that to the
        # next loop iteration); detach() waits for it so the port is free when it returns.
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # 3.11's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.ensure_future(self._answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.resolver.handle(data, tcp=False)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


class DnsServer:
    """Serves the embedded DNS of every attached container from the running loop."""

    def __init__(self, timeout: float = 2.0, redirect: bool = False) -> None:
        self.timeout = timeout
        self.redirect = redirect
        self.port = 0 if redirect else 53
        # One thread visits namespaces; setns(2) moves only it and labkit.ns.netns moves
        # it back, so the loop's own thread never changes namespace (STYLE C9).
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lk-dns-ns")
        self._attached: set[Attachment] = set()
        self._udp_tasks: set[asyncio.Task[None]] = set()

    def _in_netns(self, path: str, family: int, kind: int) -> socket.socket:
        with netns(path):
            s = socket.socket(family, kind | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        return s

    def _listeners(self, path: str) -> tuple[socket.socket, socket.socket]:
        with netns(path):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.bind((DNS_ADDRESS, self.port))
            tcp.bind((DNS_ADDRESS, self.port))
            tcp.listen(64)
            udp.setblocking(False)
            tcp.setblocking(False)
        except OSError as err:
            udp.close()
            tcp.close()
            raise errors.from_errno(err.errno or 0, "bind", f"{DNS_ADDRESS}:{self.port} in {path}",
                                    ) from None
        return udp, tcp

    async def attach(self, netns_path: str | os.PathLike[str], view: NetworkView,
                     upstreams: Sequence[Upstream]) -> Attachment:
        """Listen on 127.0.0.11:53 (UDP+TCP) in the netns at ``netns_path``, answering from
        ``view`` and forwarding to ``upstreams``.  Raises SyscallError if the netns cannot
        be entered or the address cannot be bound (lo down: EADDRNOTAVAIL; taken:
        EADDRINUSE); nothing is left listening then."""
        loop = asyncio.get_running_loop()
        path = os.fspath(netns_path)
        udp, tcp = await loop.run_in_executor(self._pool, self._listeners, path)
        if self.redirect:
            try:
                await loop.run_in_executor(None, redirect.install, path, DNS_ADDRESS,
                                           udp.getsockname()[1], tcp.getsockname()[1])
            except BaseException:
                udp.close()
                tcp.close()
                raise

        def make_socket(family: int, kind: int) -> asyncio.Future[socket.socket]:
            return loop.run_in_executor(self._pool, self._in_netns, path, family, kind)

        resolver = Resolver(view, upstreams, make_socket, timeout=self.timeout)
        try:
            transport, udp_proto = await loop.create_datagram_endpoint(
                lambda: _Udp(resolver, self._udp_tasks), sock=udp)
        except BaseException:
            udp.close()
            tcp.close()
            await self._unredirect(path)
            raise
        clients: set[asyncio.Task[None]] = set()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if len(clients) >= MAX_TCP_CLIENTS or task is None:
                writer.close()
                return
            clients.add(task)
            try:
                await _serve_tcp(resolver, reader, writer)
            finally:
                clients.discard(task)
                writer.close()

        try:
            server = await asyncio.start_server(on_client, sock=tcp)
        except BaseException:
            transport.close()
            tcp.close()
            await self._unredirect(path)
            raise
        att = Attachment(path, resolver, transport, udp_proto, server, clients)
        self._attached.add(att)
        return att

    async def detach(self, att: Attachment) -> None:
        """Stop answering in that netns and close its sockets (idempotent)."""
        self._attached.discard(att)
        att.transport.close()
        await att.udp.closed
        att.tcp_server.close()
        for task in list(att.tcp_clients):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*att.tcp_clients, return_exceptions=True)
        await att.tcp_server.wait_closed()
        await self._unredirect(att.netns_path)

    async def _unredirect(self, path: str) -> None:
        if self.redirect:
            await asyncio.get_running_loop().run_in_executor(None, redirect.remove, path)

    async def close(self) -> None:
        for att in list(self._attached):
            await self.detach(att)
        for task in list(self._udp_tasks):
            task.cancel()
        await asyncio.gather(*self._udp_tasks, return_exceptions=True)
        self._pool.shutdown(wait=True)


async def _serve_tcp(resolver: Resolver, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
    """RFC 1035 4.2.2 / RFC 7766: length-prefixed messages, several per connection."""
    while True:
        try:
            head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
            (n,) = struct.unpack("!H", head)
            data = await asyncio.wait_for(reader.readexactly(n), TCP_IDLE)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            return
        reply = await resolver.handle(data, tcp=True)
        if reply is None:
            return
        writer.write(struct.pack("!H", len(reply)) + reply)
        await writer.drain()
