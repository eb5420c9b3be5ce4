"""/volumes...: docker volume create / ls / inspect / rm / prune (Engine API v1.41)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from labkit import errors
from labkit.engine.daemon.params import body, engine, filters, flag, reply

_CREATE_KEYS = ("Name", "Driver", "DriverOpts", "Labels")


async def list_(request: web.Request) -> web.Response:
    vols = await asyncio.to_thread(engine(request).volumes.list, filters(request))
    return reply({"Volumes": vols, "Warnings": []})


async def create(request: web.Request) -> web.Response:
    req = await body(request, optional=True)
    for key in req:
        if key not in _CREATE_KEYS:  # (ClusterVolumeSpec is API 1.42; refused, not ignored)
            raise errors.InvalidArgumentError("request body", f"volume create: unknown field "
                                                              f"{key!r}")
    name = req.get("Name") or ""
    if not isinstance(name, str):
        raise errors.InvalidArgumentError("Name", "must be a string")
    vol = await asyncio.to_thread(engine(request).volumes.create, name or None,
                                  req.get("Driver"), req.get("DriverOpts"), req.get("Labels"))
    return reply(vol, 201)


async def inspect(request: web.Request) -> web.Response:
    return reply(engine(request).volumes.get(request.match_info["name"]))


async def remove(request: web.Request) -> web.Response:
    await asyncio.to_thread(engine(request).volumes.remove, request.match_info["name"],
                            flag(request, "force"))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    eng = engine(request)
    out = await asyncio.to_thread(eng.volumes.prune, filters(request))
    eng.bus.emit_prune("volume", out["SpaceReclaimed"])  # moby: after the destroy events
    return reply(out)
