"""/containers/{id}/exec and /exec/...: thin handlers (STYLE C12)."""

from __future__ import annotations

import contextlib

from aiohttp import web

from labkit import errors
from labkit.engine.containers.iosession import IoSession
from labkit.engine.daemon import hijack
from labkit.engine.daemon.params import body, cid, engine, integer, reply


async def create(request: web.Request) -> web.Response:
    ex = engine(request).execs.create(cid(request), await body(request))
    return reply({"Id": ex.id}, 201)


async def start(request: web.Request) -> web.StreamResponse:
    opts = await body(request, optional=True)
    if opts.get("Detach"):
        await engine(request).execs.start(cid(request), True)
        return web.Response(status=200)
    eng, ex = engine(request), engine(request).execs.get(cid(request))  # 404 before the upgrade
    tty = opts.get("Tty", False)
    if not isinstance(tty, bool):
        raise errors.InvalidArgumentError("Tty", "must be a boolean")

    async def open_() -> IoSession | None:
        session: IoSession | None = await eng.execs.start(ex.id, False)
        if session is not None:  # moby: the start request's Tty picks raw or multiplexed
            session.tty = tty
        return session

    def detached() -> None:
        with contextlib.suppress(errors.NotFoundError):
            rec = eng.store.get(ex.container_id)
            eng.bus.emit("exec_detach", rec.id, rec.image, rec.name, rec.config.get("Labels"),
                         execID=ex.id)
    keys = hijack.parse_detach_keys(ex.detach_keys) if ex.detach_keys else \
        hijack.DEFAULT_DETACH_KEYS
    return await hijack.serve(request, open_, detach_keys=keys if ex.tty else b"",
                              on_detach=detached, tty=ex.tty)


async def inspect(request: web.Request) -> web.Response:
    return reply(engine(request).execs.get(cid(request)).inspect())


async def resize(request: web.Request) -> web.Response:
    h, w = integer(request, "h", 0) or 0, integer(request, "w", 0) or 0
    await engine(request).execs.resize(cid(request), h, w)
    return web.Response(status=200)
