"""/networks...: docker network create / ls / inspect / rm / prune / connect / disconnect.

On a swarm manager, overlay networks are swarm-scoped objects of the control API
(swarm/control/networks.py): create and rm go there, ls shows them beside the local records
(a swarm network this node has materialized is shown once, as its local record), inspect
looks locally first unless ``scope=swarm``.  Off a manager an overlay create keeps the local
service's 403 "not a swarm manager".
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from labkit import errors
from labkit.engine.daemon.params import body, engine, filters, reply
from labkit.engine.swarm import attach as swarm_attach


def swarm_control(eng: Any) -> Any | None:
    """The control API when this daemon is an active swarm manager, else None."""
    node = getattr(eng, "swarm", None)
    if node is None or node.local_state() != "active" or node.role() != "manager":
        return None
    return node.control()


async def list_(request: web.Request) -> web.Response:
    eng, flt = engine(request), filters(request)
    local = await asyncio.to_thread(eng.networks.ls, flt)
    ctl = swarm_control(eng)
    if ctl is not None:
        have = {n["Id"] for n in local}
        local += [n for n in await ctl.networks(flt) if n["Id"] not in have]
    return reply(local)


async def create(request: web.Request) -> web.Response:
    req = await body(request)
    ctl = swarm_control(engine(request))
    if ctl is not None and req.get("Driver") == "overlay":
        name = req.get("Name")
        if isinstance(name, str) and engine(request).networks.store.by_name(name) is not None:
            raise errors.ConflictError(f"network with name {name} already exists")
        net = await ctl.create_network(req)
        return reply({"Id": net["Id"], "Warning": ""}, 201)
    rec, warning = await asyncio.to_thread(engine(request).networks.create, req)
    return reply({"Id": rec.id, "Warning": warning}, 201)


async def inspect(request: web.Request) -> web.Response:
    from labkit.engine.networks.store import NetworkNotFoundError

    scope, ref = request.query.get("scope") or "", request.match_info["id"]
    if scope not in ("", "local", "swarm"):
        raise errors.InvalidArgumentError("scope", f"invalid scope {scope!r} (local, swarm)")
    ctl = swarm_control(engine(request))
    if scope != "swarm":
        try:
            return reply(engine(request).networks.inspect(ref))
        except errors.NotFoundError:
            if scope == "local" or ctl is None:
                raise
    if ctl is None:  # `service create --network` asks scope=swarm
        raise NetworkNotFoundError(ref)
    try:
        return reply(await ctl.network(ref))
    except errors.NotFoundError:
        raise NetworkNotFoundError(ref) from None


async def remove(request: web.Request) -> web.Response:
    ref, ctl = request.match_info["id"], swarm_control(engine(request))
    if ctl is not None:
        try:
            await ctl.network(ref)
        except errors.NotFoundError:
            pass
        else:
            await ctl.remove_network(ref)
            return web.Response(status=204)
    await asyncio.to_thread(engine(request).networks.remove, ref)
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
        # an attachable swarm network: an address from the managers first (H9)
        got = await swarm_attach.claim(eng, ref, cfg, rec.id)
        if got is not None:
            ref, cfg = got
        try:
            n = await eng.net.connect(rec, ref, cfg)
        except BaseException:
            if got is not None:
                await swarm_attach.release(eng, [cfg[swarm_attach.KEY]])
            raise
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
    before = dict(rec.networks)
    async with eng.store.lock(rec):
        n = await eng.net.disconnect(rec, request.match_info["id"], bool(req.get("Force")))
    # its swarm address back (H9)
    await swarm_attach.release(eng, swarm_attach.held(
        {k: v for k, v in before.items() if k not in rec.networks}))
    eng.bus.emit_network("disconnect", n.id, {"name": n.name, "type": n.driver,
                                              "container": rec.id})
    return web.Response(status=200)
