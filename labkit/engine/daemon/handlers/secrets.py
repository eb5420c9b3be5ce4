"""/secrets...: docker secret create / ls / inspect / rm, and update (labels only); the
same handlers serve /configs (``kind`` from the route, configs.py).  A secret's data never
comes back (swarm/control/secrets.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from labkit.engine.daemon.handlers.services import control
from labkit.engine.daemon.params import body, cid, filters, reply
from labkit.engine.swarm.spec import parse_version

__all__ = ["create", "handlers", "inspect", "list_", "remove", "update"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def handlers(kind: str) -> dict[str, Handler]:
    """create, list_, inspect, update, remove for ``kind`` ("secret" or "config")."""

    async def create(request: web.Request) -> web.Response:
        new_id = await control(request).create_secret(kind, await body(request))
        return reply({"ID": new_id}, 201)

    async def list_(request: web.Request) -> web.Response:
        return reply(await control(request).secrets(kind, filters(request)))

    async def inspect(request: web.Request) -> web.Response:
        return reply(await control(request).secret(kind, cid(request)))

    async def update(request: web.Request) -> web.Response:
        ctl, version = control(request), parse_version(request.query)
        await ctl.update_secret(kind, cid(request), version, await body(request))
        return web.Response(status=200)

    async def remove(request: web.Request) -> web.Response:
        await control(request).remove_secret(kind, cid(request))
        return web.Response(status=204)

    return {"create": create, "list_": list_, "inspect": inspect, "update": update,
            "remove": remove}


_h = handlers("secret")
create, list_, inspect, update, remove = (_h["create"], _h["list_"], _h["inspect"],
                                          _h["update"], _h["remove"])
