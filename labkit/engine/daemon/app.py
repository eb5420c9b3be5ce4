"""The aiohttp application: the route table, version prefixes, the error middleware.

Every route answers with and without a ``/v<major>.<minor>`` prefix (the CLI negotiates
1.41 from the ping and then uses /v1.41/...; scripts often use no prefix).  Versions above
1.41 get dockerd's 400 "client version X is too new".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from labkit.engine.daemon import errmap
from labkit.engine.daemon.handlers import archive as a
from labkit.engine.daemon.handlers import build as b
from labkit.engine.daemon.handlers import configs as cf
from labkit.engine.daemon.handlers import containers as c
from labkit.engine.daemon.handlers import distribution as dist
from labkit.engine.daemon.handlers import execs as x
from labkit.engine.daemon.handlers import fsinfo as f
from labkit.engine.daemon.handlers import images as i
from labkit.engine.daemon.handlers import networks as n
from labkit.engine.daemon.handlers import nodes as nd
from labkit.engine.daemon.handlers import registry as r
from labkit.engine.daemon.handlers import secrets as sc
from labkit.engine.daemon.handlers import services as sv
from labkit.engine.daemon.handlers import swarm as sw
from labkit.engine.daemon.handlers import system as s
from labkit.engine.daemon.handlers import tasks as tk
from labkit.engine.daemon.handlers import volumes as v
from labkit.engine.daemon.params import reply
from labkit.engine.daemon.serialize import API_VERSION

__all__ = ["ENGINE", "ROUTES", "make_app"]

log = logging.getLogger("labkit.daemon")
ENGINE = web.AppKey("engine", object)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/_ping", s.ping), ("HEAD", "/_ping", s.ping),
    ("GET", "/version", s.get_version), ("GET", "/info", s.get_info),
    ("GET", "/events", s.events),
    ("POST", "/containers/create", c.create), ("GET", "/containers/json", c.list_),
    ("POST", "/containers/prune", c.prune),
    ("GET", "/containers/{id}/json", c.inspect), ("POST", "/containers/{id}/start", c.start),
    ("POST", "/containers/{id}/stop", c.stop), ("POST", "/containers/{id}/restart", c.restart),
    ("POST", "/containers/{id}/kill", c.kill), ("POST", "/containers/{id}/pause", c.pause),
    ("POST", "/containers/{id}/unpause", c.unpause), ("DELETE", "/containers/{id}", c.remove),
    ("POST", "/containers/{id}/rename", c.rename), ("POST", "/containers/{id}/update", c.update),
    ("GET", "/containers/{id}/top", c.top), ("POST", "/containers/{id}/resize", c.resize),
    ("POST", "/containers/{id}/wait", c.wait), ("POST", "/containers/{id}/attach", c.attach),
    ("GET", "/containers/{id}/logs", c.logs), ("GET", "/containers/{id}/stats", c.stats),
    ("POST", "/containers/{id}/exec", x.create), ("POST", "/exec/{id}/start", x.start),
    ("GET", "/exec/{id}/json", x.inspect), ("POST", "/exec/{id}/resize", x.resize),
    ("GET", "/images/json", i.list_), ("POST", "/images/create", i.create),
    ("GET", "/images/get", i.save_many), ("POST", "/images/load", i.load),
    ("POST", "/images/prune", i.prune),
    ("POST", "/build", b.build), ("POST", "/build/prune", b.prune), ("POST", "/commit", b.commit),
    ("GET", "/images/{name:.+}/json", i.inspect), ("GET", "/images/{name:.+}/history", i.history),
    ("POST", "/images/{name:.+}/tag", i.tag), ("GET", "/images/{name:.+}/get", i.save_one),
    ("DELETE", "/images/{name:.+}", i.remove),
    ("POST", "/images/{name:.+}/push", r.push), ("POST", "/auth", r.auth),
    ("HEAD", "/containers/{id}/archive", a.head_archive),
    ("GET", "/containers/{id}/archive", a.get_archive),
    ("PUT", "/containers/{id}/archive", a.put_archive),
    ("GET", "/containers/{id}/export", a.export),
    ("GET", "/containers/{id}/changes", f.changes), ("GET", "/system/df", f.system_df),
    ("GET", "/volumes", v.list_), ("POST", "/volumes/create", v.create),
    ("POST", "/volumes/prune", v.prune), ("GET", "/volumes/{name}", v.inspect),
    ("DELETE", "/volumes/{name}", v.remove),
    ("GET", "/networks", n.list_), ("POST", "/networks/create", n.create),
    ("POST", "/networks/prune", n.prune), ("GET", "/networks/{id}", n.inspect),
    ("DELETE", "/networks/{id}", n.remove), ("POST", "/networks/{id}/connect", n.connect),
    ("POST", "/networks/{id}/disconnect", n.disconnect),
    ("GET", "/swarm", sw.inspect), ("POST", "/swarm/init", sw.init),
    ("POST", "/swarm/join", sw.join), ("POST", "/swarm/leave", sw.leave),
    ("POST", "/swarm/update", sw.update), ("GET", "/swarm/unlockkey", sw.unlock_key),
    ("POST", "/swarm/unlock", sw.unlock),
    ("GET", "/nodes", nd.list_), ("GET", "/nodes/{id}", nd.inspect),
    ("POST", "/nodes/{id}/update", nd.update), ("DELETE", "/nodes/{id}", nd.remove),
    ("POST", "/services/create", sv.create), ("GET", "/services", sv.list_),
    ("GET", "/services/{id}", sv.inspect), ("POST", "/services/{id}/update", sv.update),
    ("DELETE", "/services/{id}", sv.remove), ("GET", "/services/{id}/logs", sv.logs),
    ("GET", "/tasks", tk.list_), ("GET", "/tasks/{id}", tk.inspect),
    ("GET", "/tasks/{id}/logs", tk.logs),
    ("POST", "/secrets/create", sc.create), ("GET", "/secrets", sc.list_),
    ("GET", "/secrets/{id}", sc.inspect), ("POST", "/secrets/{id}/update", sc.update),
    ("DELETE", "/secrets/{id}", sc.remove),
    ("POST", "/configs/create", cf.create), ("GET", "/configs", cf.list_),
    ("GET", "/configs/{id}", cf.inspect), ("POST", "/configs/{id}/update", cf.update),
    ("DELETE", "/configs/{id}", cf.remove),
    ("GET", "/distribution/{name:.+}/json", dist.inspect),
)


def _too_new(ver: str) -> bool:
    try:
        return tuple(map(int, ver.split("."))) > tuple(map(int, API_VERSION.split(".")))
    except ValueError:
        return True


@web.middleware
async def docker_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """labkit errors -> Docker statuses and {"message": ...} bodies (errmap.TABLE)."""
    ver = request.match_info.get("_ver")
    try:
        if ver and _too_new(ver):
            raise web.HTTPBadRequest(
                text=f'{{"message": "client version {ver} is too new. Maximum supported API '
                     f'version is {API_VERSION}"}}', content_type="application/json")
        return await handler(request)
    except web.HTTPException as err:
        if err.status == 404 and err.text and not err.text.startswith("{"):
            return reply({"message": "page not found"}, 404)
        raise
    except Exception as err:
        status = errmap.status_of(err)
        if status == 304:
            return web.Response(status=304)
        if status == 500:
            log.exception("%s %s", request.method, request.path)
        return reply(errmap.body_of(err), status)


def make_app(engine: Any) -> web.Application:
    """The Docker Engine API application serving ``engine``."""
    app = web.Application(middlewares=[docker_errors], client_max_size=64 * 1024**2)
    app[ENGINE] = engine
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/v{_ver:[0-9]+\\.[0-9]+}" + path, handler)
    return app
