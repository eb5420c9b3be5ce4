"""/containers/...: parse, one engine call, serialize (STYLE C12)."""

from __future__ import annotations

from aiohttp import web

from labkit import errors
from labkit.engine.containers import listing, parse_create
from labkit.engine.daemon import hijack, streams
from labkit.engine.daemon.params import body, cid, engine, filters, flag, integer, reply


async def create(request: web.Request) -> web.Response:
    spec = parse_create(await body(request), request.query.get("name", ""))
    rec = engine(request).create(spec)
    return reply({"Id": rec.id, "Warnings": rec.warnings}, 201)


async def list_(request: web.Request) -> web.Response:
    eng, size = engine(request), flag(request, "size")
    recs = listing.filter_list(eng.store.all(), flag(request, "all"),
                               integer(request, "limit", -1) or -1, filters(request))
    return reply([listing.summary(r, eng.sizes(r) if size else None) for r in recs])


async def inspect(request: web.Request) -> web.Response:
    return reply(listing.inspect(engine(request).get(cid(request))))


async def start(request: web.Request) -> web.Response:
    await engine(request).start(cid(request))
    return web.Response(status=204)


async def stop(request: web.Request) -> web.Response:
    await engine(request).stop(cid(request), integer(request, "t"))
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    await engine(request).restart(cid(request), integer(request, "t"))
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    await engine(request).kill(cid(request), request.query.get("signal"))
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    await engine(request).pause(cid(request))
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    await engine(request).unpause(cid(request))
    return web.Response(status=204)


async def remove(request: web.Request) -> web.Response:
    await engine(request).remove(cid(request), force=flag(request, "force"))
    return web.Response(status=204)


async def rename(request: web.Request) -> web.Response:
    engine(request).rename(cid(request), request.query.get("name", ""))
    return web.Response(status=204)


async def update(request: web.Request) -> web.Response:
    warnings = await engine(request).update(cid(request), await body(request))
    return reply({"Warnings": warnings})


async def prune(request: web.Request) -> web.Response:
    return reply(await engine(request).prune(filters(request)))


async def top(request: web.Request) -> web.Response:
    return reply(await engine(request).top(cid(request), request.query.get("ps_args", "-ef")))


async def resize(request: web.Request) -> web.Response:
    h, w = integer(request, "h", 0) or 0, integer(request, "w", 0) or 0
    await engine(request).resize(cid(request), h, w)
    return web.Response(status=200)


async def wait(request: web.Request) -> web.StreamResponse:
    fut = engine(request).wait_future(cid(request), request.query.get("condition", "not-running"))
    return await streams.send_wait(request, fut)


async def attach(request: web.Request) -> web.StreamResponse:
    eng, ref = engine(request), cid(request)
    rec = eng.get(ref)  # 404 and 409 before the upgrade (moby containerAttach's words)
    if rec.status == "paused":
        raise errors.ConflictError("You cannot attach to a paused container, unpause it first")
    if rec.status == "restarting":
        raise errors.ConflictError("You cannot attach to a restarting container, wait until "
                                   "it is running")
    keys = hijack.attach_detach_keys(request.query.get("detachKeys"), rec.config.get("Tty"))
    prelude = await streams.attach_logs(eng, ref, request.query) if flag(request, "logs") else b""
    live = flag(request, "stream")
    return await hijack.serve(request, lambda: eng.attach(
        ref, flag(request, "stdin"), flag(request, "stdout"), flag(request, "stderr"),
    ) if live else streams.nothing(), prelude, detach_keys=keys,
        on_detach=lambda: eng.bus.emit("detach", rec.id, rec.image, rec.name,
                                       rec.config.get("Labels")),
        tty=bool(rec.config.get("Tty")))


async def logs(request: web.Request) -> web.StreamResponse:
    chunks = streams.log_chunks(engine(request), cid(request), request.query)
    return await streams.send_chunks(request, chunks, "application/vnd.docker.raw-stream")


async def stats(request: web.Request) -> web.StreamResponse:
    items = engine(request).stats(cid(request), flag(request, "stream", True),
                                  flag(request, "one-shot"))
    return await streams.send_json_lines(request, items)
