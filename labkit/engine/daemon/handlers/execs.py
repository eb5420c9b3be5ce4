"""/containers/{id}/exec and /exec/...: thin handlers (STYLE C12)."""

from __future__ import annotations

from aiohttp import web

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
    engine(request).execs.get(cid(request))  # 404 before the upgrade
    return await hijack.serve(request, lambda: engine(request).execs.start(cid(request), False))


async def inspect(request: web.Request) -> web.Response:
    return reply(engine(request).execs.get(cid(request)).inspect())


async def resize(request: web.Request) -> web.Response:
    h, w = integer(request, "h", 0) or 0, integer(request, "w", 0) or 0
    await engine(request).execs.resize(cid(request), h, w)
    return web.Response(status=200)
