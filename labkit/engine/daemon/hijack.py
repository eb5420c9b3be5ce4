"""Docker's HTTP hijack on aiohttp: answer 101 UPGRADED, then own the socket both ways.

After the 101 the connection is a raw byte stream (docker-api.md 3.1).  aiohttp already
treats ``Upgrade: tcp`` as an upgrade and buffers what follows; ``set_parser`` hands us
those bytes.  Two details make half-close work: asyncio closes a transport whose protocol
returns a false value from ``eof_received`` (the client's SHUT_WR would end our output
too), so we replace it on this connection with one that returns True; and the stream ends
only when the process's output ends, never on the client's EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from labkit.engine.containers.detachkeys import (
    DEFAULT_DETACH_KEYS,
    DetachMatcher,
    parse_detach_keys,
)
from labkit.engine.containers.iosession import IoSession
from labkit.engine.shim.stdcopy import HEADER, STDERR, encode

__all__ = ["DEFAULT_DETACH_KEYS", "DetachMatcher", "Stdin", "attach_detach_keys",
           "parse_detach_keys", "pump", "serve", "upgrade"]

HEADERS = {"Content-Type": "application/vnd.docker.raw-stream", "Connection": "Upgrade",
           "Upgrade": "tcp"}
def attach_detach_keys(query: str | None, tty: Any) -> bytes:
    """The detach sequence for an attach: the query's ``detachKeys`` or the default; none
    without a TTY (moby copies non-TTY stdin as is).  400 for an invalid spelling."""
    from labkit import errors
    if not tty:
        return b""
    if not query:
        return DEFAULT_DETACH_KEYS
    try:
        return parse_detach_keys(query)
    except errors.InvalidArgumentError:  # moby daemon/attach.go wording
        raise errors.InvalidArgumentError(
            "detachKeys", f"Invalid detach keys ({query}) provided") from None


class Stdin(asyncio.Protocol):
    """The connection's protocol after the upgrade: client bytes in a queue, None at EOF.

    It replaces aiohttp's RequestHandler on the transport (``transport.set_protocol``) and
    forwards connection_lost to it, so aiohttp still cleans the connection up.
    """

    def __init__(self, http_protocol: Any) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.http = http_protocol
        self.eof = False

    def data_received(self, data: bytes) -> None:
        self.queue.put_nowait(bytes(data))

    def eof_received(self) -> bool:
        self._end()
        return True  # keep the transport open for our output (asyncio Protocol docs)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        self.http.connection_lost(exc)

    def pause_writing(self) -> None:
        self.http.pause_writing()

    def resume_writing(self) -> None:
        self.http.resume_writing()

    def _end(self) -> None:
        if not self.eof:
            self.eof = True
            self.queue.put_nowait(None)


async def upgrade(request: web.Request) -> tuple[web.StreamResponse, Any, Stdin]:
    """Send 101 UPGRADED and take over the connection: (response, transport, stdin)."""
    resp = web.StreamResponse(status=101, reason="UPGRADED", headers=HEADERS)
    await resp.prepare(request)
    transport: Any = request.transport
    proto: Any = request.protocol
    stdin = Stdin(proto)
    tail = getattr(proto, "_message_tail", b"")  # bytes that came right behind the request
    if tail:
        stdin.data_received(tail)
        proto._message_tail = b""
    transport.set_protocol(stdin)
    transport.resume_reading()  # aiohttp may have paused it while it buffered the tail
    return resp, transport, stdin


async def pump(session: IoSession | None, transport: Any, stdin: Stdin,
               detach_keys: bytes = b"", on_detach: Callable[[], None] | None = None, *,
               tty: bool = False) -> None:
    """Copy shim -> client (framed or raw) and client -> shim until the process's output
    ends; ``detach_keys`` (empty: none) end the client's side early (module doc).

    ``tty``: the process has a terminal.  Then the client's EOF is not passed on: moby
    closes a container's stdin on a client's EOF only without a TTY (CopyStreams
    ``CloseStdin && !TTY``), and a CLI that detaches by its own key check just closes."""
    if session is None or session.error:
        if session is not None and transport is not None and not transport.is_closing():
            transport.write(encode(STDERR, session.error.encode()))
        if session is not None and session.exit_future is not None:
            await session.exit_future
        _close(transport)
        return

    matcher = DetachMatcher(detach_keys) if detach_keys else None

    async def to_shim() -> None:
        while (chunk := await stdin.queue.get()) is not None:
            hit = False
            if matcher is not None:
                chunk, hit = matcher.feed(chunk)
            if chunk:
                session.writer.write(chunk)
                await session.writer.drain()
            if hit:
                _close(transport)  # the client is gone; its output is drained below
                if on_detach is not None:
                    on_detach()
                return  # and no EOF to the shim: the process keeps its stdin
        if not tty and session.writer.can_write_eof():
            session.writer.write_eof()

    feeder = asyncio.create_task(to_shim())
    try:
        while True:
            try:
                head = await session.reader.readexactly(HEADER.size)
                _stream, n = HEADER.unpack(head)
                data = await session.reader.readexactly(n)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            if transport is None or transport.is_closing():
                continue  # the client left: drain the shim so its buffers never fill
            transport.write(data if session.tty else head + data)
    finally:
        feeder.cancel()
        if session.exit_future is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(session.exit_future), 10)
        session.writer.close()
        _close(transport)


def _close(transport: Any) -> None:
    if transport is not None and not transport.is_closing():
        transport.close()


async def serve(request: web.Request, opener: Callable[[], Awaitable[IoSession | None]],
                prelude: bytes = b"", *, detach_keys: bytes = b"",
                on_detach: Callable[[], None] | None = None,
                tty: bool = False) -> web.StreamResponse:
    """Upgrade, send ``prelude`` (attach logs=1), open the session, pump it; an error after
    the 101 goes out as stderr text (the status line is gone by then, as with dockerd)."""
    resp, transport, stdin = await upgrade(request)
    if prelude:
        transport.write(prelude)
    try:
        session = await opener()
    except Exception as err:  # noqa: BLE001 - nowhere else to report it
        from labkit.engine.daemon.errmap import message_of
        if not transport.is_closing():
            transport.write(encode(STDERR, f"Error: {message_of(err)}\n".encode()))
        _close(transport)
        return resp
    await pump(session, transport, stdin, detach_keys, on_detach, tty=tty)
    return resp
