"""/containers/...: parse, one service call, serialize (STYLE C12)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from labkit import errors
from labkit._sys import trace
from labkit.engine.containers import listing, parse_create
from labkit.engine.containers.lifecycle import State
from labkit.engine.daemon import hijack, streams
from labkit.engine.daemon.params import body, cid, engine, filters, flag, integer, reply
from labkit.engine.swarm import attach as swarm_attach

log = logging.getLogger("labkit.daemon")


async def create(request: web.Request) -> web.Response:
    trace.mark("daemon.create.recv")  # no id yet: timeline pairs it with the next create.sent
    eng = engine(request)
    spec = parse_create(await body(request), request.query.get("name", ""),
                        (eng.config.log_driver, eng.config.log_opts))  # daemon.json defaults
    taken = await swarm_attach.for_create(eng, spec)  # attachable swarm networks (H9)
    try:
        rec = eng.containers.create(spec)
    except BaseException:
        await swarm_attach.release(eng, taken)
        raise
    trace.mark("daemon.create.sent", rec.id)
    return reply({"Id": rec.id, "Warnings": rec.warnings}, 201)


async def list_(request: web.Request) -> web.Response:
    eng, size = engine(request), flag(request, "size")
    recs = listing.filter_list(eng.store.all(), flag(request, "all"),
                               integer(request, "limit", -1) or -1, filters(request))
    rows = [listing.summary(r, eng.ops.sizes(r) if size else None) for r in recs]
    for row in rows:  # moby daemon/list.go: the name only while it still names that image
        if row["Image"] != row["ImageID"] and not _names(eng, row["Image"], row["ImageID"]):
            row["Image"] = row["ImageID"]
    return reply(rows)


def _names(eng: Any, ref: str, image_id: str) -> bool:
    try:
        return bool(eng.images.resolve(ref) == image_id)
    except errors.LabkitError:
        return False


async def inspect(request: web.Request) -> web.Response:
    return reply(listing.inspect(engine(request).store.get(cid(request))))


async def start(request: web.Request) -> web.Response:
    trace.mark("daemon.start.recv", request.match_info.get("id", ""))
    eng = engine(request)
    await eng.containers.start(cid(request))
    trace.mark("daemon.start.sent", request.match_info.get("id", ""))
    await _swarm_refresh(eng, cid(request))
    return web.Response(status=204)


async def stop(request: web.Request) -> web.Response:
    await engine(request).control.stop(cid(request), integer(request, "t"))
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    await engine(request).control.restart(cid(request), integer(request, "t"))
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    await engine(request).control.kill(cid(request), request.query.get("signal"))
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    await engine(request).control.pause(cid(request))
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    await engine(request).control.unpause(cid(request))
    return web.Response(status=204)


async def remove(request: web.Request) -> web.Response:
    # its swarm addresses go back through the removed hook (swarm.attach)
    await engine(request).control.remove(cid(request), force=flag(request, "force"),
                                         volumes=flag(request, "v"))
    return web.Response(status=204)


async def _swarm_refresh(eng: Any, ref: str) -> None:
    """A container on a swarm network started: the agent programs its VIP rules now
    rather than at the next assignment set (H9)."""
    node = getattr(eng, "swarm", None)
    agent = getattr(node, "agent", None)
    if agent is None:
        return
    try:
        if swarm_attach.held(eng.store.get(ref).networks):
            await agent.executor.refresh()
    except errors.LabkitError as err:
        log.warning("swarm discovery for %s: %s", ref, err)


async def rename(request: web.Request) -> web.Response:
    engine(request).containers.rename(cid(request), request.query.get("name", ""))
    return web.Response(status=204)


async def update(request: web.Request) -> web.Response:
    warnings = await engine(request).ops.update(cid(request), await body(request))
    return reply({"Warnings": warnings})


async def prune(request: web.Request) -> web.Response:
    # the pruned containers' swarm addresses go back through the removed hook
    return reply(await engine(request).ops.prune(filters(request)))


async def top(request: web.Request) -> web.Response:
    return reply(await engine(request).ops.top(cid(request), request.query.get("ps_args", "-ef")))


async def resize(request: web.Request) -> web.Response:
    h, w = integer(request, "h", 0) or 0, integer(request, "w", 0) or 0
    await engine(request).ops.resize(cid(request), h, w)
    return web.Response(status=200)


async def wait(request: web.Request) -> web.StreamResponse:
    fut = engine(request).containers.wait(cid(request), request.query.get("condition", "not-running"))
    return await streams.send_wait(request, fut)


async def attach(request: web.Request) -> web.StreamResponse:
    eng, ref = engine(request), cid(request)
    rec = eng.store.get(ref)  # 404 and 409 before the upgrade (moby containerAttach's words)
    if rec.status == State.PAUSED:
        raise errors.ConflictError("You cannot attach to a paused container, unpause it first")
    if rec.status == State.RESTARTING:
        raise errors.ConflictError("You cannot attach to a restarting container, wait until "
                                   "it is running")
    keys = hijack.attach_detach_keys(request.query.get("detachKeys"), rec.config.get("Tty"))
    prelude = await streams.attach_logs(eng, ref, request.query) if flag(request, "logs") else b""
    live = flag(request, "stream")
    return await hijack.serve(request, lambda: eng.containers.attach(
        ref, flag(request, "stdin"), flag(request, "stdout"), flag(request, "stderr"),
    ) if live else streams.nothing(), prelude, detach_keys=keys,
        on_detach=lambda: eng.bus.emit("detach", rec.id, rec.image, rec.name,
                                       rec.config.get("Labels")),
        tty=bool(rec.config.get("Tty")))


async def logs(request: web.Request) -> web.StreamResponse:
    chunks = streams.log_chunks(engine(request), cid(request), request.query)
    return await streams.send_chunks(request, chunks, "application/vnd.docker.raw-stream")


async def stats(request: web.Request) -> web.StreamResponse:
    items = engine(request).ops.stats(cid(request), flag(request, "stream", True),
                                  flag(request, "one-shot"))
    return await streams.send_json_lines(request, items)
