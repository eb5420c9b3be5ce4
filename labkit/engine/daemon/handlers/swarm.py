"""/swarm...: docker swarm init / join / leave / update / unlock-key / unlock (API v1.41).

Each handler parses its body with labkit.engine.swarm.spec, makes one call on the node
(``engine.swarm``, a SwarmBackend) and answers as dockerd does: 200 with an empty body,
except init (a JSON string, the node id), GET /swarm and GET /swarm/unlockkey.  An engine
built without a swarm node (unit tests' engines, a daemon started without swarm support) is
a node in no swarm: every endpoint answers 503 "not a swarm manager"; init and join answer
503 "labkit was started without swarm support".  Bodies are parsed before the node is asked,
so bad input is a 400 naming the field whatever the node's state.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from labkit import errors
from labkit.engine.daemon.params import body, engine, flag, reply
from labkit.engine.swarm.spec import (
    MSG_NO_SWARM_SUPPORT,
    MSG_NOT_MANAGER,
    ClusterSpec,
    InitRequest,
    JoinRequest,
    SwarmBackend,
    UnlockRequest,
    UpdateFlags,
    inactive_info,
    parse_version,
)

__all__ = ["backend", "info_section", "init", "inspect", "join", "leave", "ping_status",
           "unlock", "unlock_key", "update"]


def backend(request: web.Request, missing: str = MSG_NOT_MANAGER) -> SwarmBackend:
    """The node, or UnavailableError(``missing``) when the engine has none."""
    node: SwarmBackend | None = getattr(engine(request), "swarm", None)
    if node is None:
        raise errors.UnavailableError(missing)
    return node


def ping_status(eng: Any) -> str:
    """The ``Swarm`` header of /_ping (dockerd >= 23): inactive, pending, error, locked,
    active/manager or active/worker."""
    node: SwarmBackend | None = getattr(eng, "swarm", None)
    if node is None:
        return "inactive"
    state = node.local_state()
    if state == "active":
        return "active/manager" if node.role() == "manager" else "active/worker"
    return state


async def info_section(eng: Any) -> dict[str, Any]:
    """GET /info's ``Swarm``: the node's own, or dockerd's inactive section."""
    node: SwarmBackend | None = getattr(eng, "swarm", None)
    return inactive_info() if node is None else await node.info()


async def init(request: web.Request) -> web.Response:
    node = backend(request, MSG_NO_SWARM_SUPPORT)
    return reply(await node.init(InitRequest.from_docker(await body(request))))


async def join(request: web.Request) -> web.Response:
    node = backend(request, MSG_NO_SWARM_SUPPORT)
    await node.join(JoinRequest.from_docker(await body(request)))
    return web.Response(status=200)


async def leave(request: web.Request) -> web.Response:
    await backend(request).leave(flag(request, "force"))
    return web.Response(status=200)


async def inspect(request: web.Request) -> web.Response:
    return reply(await backend(request).inspect())


async def update(request: web.Request) -> web.Response:
    node, version = backend(request), parse_version(request.query)
    flags = UpdateFlags.from_query(request.query)
    current = ClusterSpec.from_docker((await node.inspect())["Spec"])
    await node.update(version, ClusterSpec.merge_update(current, await body(request)), flags)
    return web.Response(status=200)


async def unlock_key(request: web.Request) -> web.Response:
    return reply({"UnlockKey": await backend(request).unlock_key()})


async def unlock(request: web.Request) -> web.Response:
    await backend(request).unlock(UnlockRequest.from_docker(await body(request)).key)
    return web.Response(status=200)
