"""/nodes...: docker node ls / inspect / update (promote, demote) / rm (API v1.41).

Thin: parse, one call on the swarm node (``engine.swarm``), serialize.  Update and remove
answer 200 with an empty body, as dockerd does.
"""

from __future__ import annotations

from aiohttp import web

from labkit.engine.daemon.handlers.swarm import backend
from labkit.engine.daemon.params import body, cid, filters, flag, reply
from labkit.engine.swarm.spec import NodeSpec, check_node_filters, parse_version

__all__ = ["inspect", "list_", "remove", "update"]


async def list_(request: web.Request) -> web.Response:
    node, flt = backend(request), filters(request)
    check_node_filters(flt)  # the node gets checked filters only
    return reply(await node.nodes(flt))


async def inspect(request: web.Request) -> web.Response:
    return reply(await backend(request).node(cid(request)))


async def update(request: web.Request) -> web.Response:
    node, version = backend(request), parse_version(request.query)
    await node.update_node(cid(request), version, NodeSpec.from_docker(await body(request)))
    return web.Response(status=200)


async def remove(request: web.Request) -> web.Response:
    await backend(request).remove_node(cid(request), flag(request, "force"))
    return web.Response(status=200)
