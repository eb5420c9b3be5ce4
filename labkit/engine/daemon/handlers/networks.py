"""/networks...: docker network create / ls / inspect / rm / prune / connect / disconnect."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from labkit import errors
from labkit.engine.daemon.params import body, engine, filters, reply


async def list_(request: web.Request) -> web.Response:
    return reply(await asyncio.to_thread(engine(request).networks.ls, filters(request)))


async def create(request: web.Request) -> web.Response:
    req = await body(request)
    rec, warning = await asyncio.to_thread(engine(request).networks.create, req)
    return reply({"Id": rec.id, "Warning": warning}, 201)


async def inspect(request: web.Request) -> web.Response:
    scope = request.query.get("scope") or ""
    if scope not in ("", "local"):  # `service create --network` asks scope=swarm
        from labkit.engine.networks.store import NetworkNotFoundError
        raise NetworkNotFoundError(request.match_info["id"])
    return reply(engine(request).networks.inspect(request.match_info["id"]))


async def remove(request: web.Request) -> web.Response:
    await asyncio.to_thread(engine(request).networks.remove, request.match_info["id"])
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    gone = await asyncio.to_thread(engine(request).networks.prune, filters(request))
    eng = engine(request)
    eng.bus.emit_prune("network", 0)
    return reply({"NetworksDeleted": gone or None})


def _container_ref(req: dict[str, Any]) -> str:
    ref = req.get("Container")
    if not isinstance(ref, str) or not ref:
        raise errors.InvalidArgumentError("Container", "no container given")
    return ref


async def connect(request: web.Request) -> web.Response:
    from labkit.engine.containers.createbody import check_endpoints
    req = await body(request)
    unknown = set(req) - {"Container", "EndpointConfig"}
    if unknown:
        raise errors.InvalidArgumentError("request body", f"unknown field(s) {sorted(unknown)}")
    eng = engine(request)
    rec = eng.store.get(_container_ref(req))
    ref = request.match_info["id"]
    cfg = check_endpoints({"EndpointsConfig": {ref: req.get("EndpointConfig") or {}}})[ref]
    async with eng.store.lock(rec):
        n = await eng.net.connect(rec, ref, cfg)
    eng.bus.emit_network("connect", n.id, {"name": n.name, "type": n.driver,
                                           "container": rec.id})
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    req = await body(request)
    unknown = set(req) - {"Container", "Force"}
    if unknown:
        raise errors.InvalidArgumentError("request body", f"unknown field(s) {sorted(unknown)}")
    eng = engine(request)
    rec = eng.store.get(_container_ref(req))
    async with eng.store.lock(rec):
        n = await eng.net.disconnect(rec, request.match_info["id"], bool(req.get("Force")))
    eng.bus.emit_network("disconnect", n.id, {"name": n.name, "type": n.driver,
                                              "container": rec.id})
    return web.Response(status=200)
