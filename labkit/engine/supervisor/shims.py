"""The supervisor's side of the shim control protocol (labkit.engine.shim.protocol), async.

``ctl`` is the shim's control socket (layout.sockets).  One short connection per request
(a unix connect costs microseconds and keeps requests independent); `wait` holds its own connection until the process exits; `subscribe` keeps
one per shim for the event stream.  A shim that is gone (ECONNREFUSED / ENOENT on its
socket) is reported as ShimGoneError, which the service turns into a stopped task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from labkit import errors
from labkit.engine.shim.protocol import MAX_LINE, check_reply, decode, encode


class ShimGoneError(errors.NotFoundError):
    """The shim's control socket does not answer: the shim died (or was never started)."""

    def __init__(self, kind: str = "shim", name: str = "", hint: str | None = None) -> None:
        super().__init__(kind, name, hint)


async def _open(ctl: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.open_unix_connection(ctl, limit=MAX_LINE)
    except (ConnectionRefusedError, FileNotFoundError):
        raise ShimGoneError("shim", ctl) from None


async def call(ctl: str, req: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Send one request, return the reply (raising the error a failed reply carries).

    ``timeout``: seconds to wait for the reply; a shim busy that long (one stuck in a
    waitpid on an unkillable process, say) raises TimeoutError rather than hanging List."""
    reader, writer = await _open(ctl)
    try:
        writer.write(encode(req))
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    if not line:
        raise ShimGoneError("shim", ctl,
                            hint="it closed the connection without replying")
    return check_reply(decode(line))


async def events(ctl: str) -> AsyncIterator[dict[str, Any]]:
    """The shim's events, one dict each, until it closes the connection."""
    reader, writer = await _open(ctl)
    try:
        writer.write(encode({"op": "subscribe"}))
        await writer.drain()
        check_reply(decode(await reader.readline() or b'{"ok": false}'))
        yield {"topic": "subscribed"}  # lets the caller know the shim will send what follows
        while True:
            line = await reader.readline()
            if not line:
                return
            yield decode(line)
    finally:
        writer.close()
