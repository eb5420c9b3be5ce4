"""/tasks...: docker service ps / stack ps (GET /tasks with filters), GET /tasks/{id}, and
GET /tasks/{id}/logs (API v1.41).  Thin over the control API, as services.py."""

from __future__ import annotations

from aiohttp import web

from labkit.engine.daemon.handlers.services import control, log_stream
from labkit.engine.daemon.params import cid, filters, reply

__all__ = ["inspect", "list_", "logs"]


async def list_(request: web.Request) -> web.Response:
    return reply(await control(request).tasks(filters(request)))


async def inspect(request: web.Request) -> web.Response:
    return reply(await control(request).task(cid(request)))


async def logs(request: web.Request) -> web.StreamResponse:
    ctl = control(request)
    task = await ctl.task(cid(request))
    svc = await ctl.service_object(task["ServiceID"])
    return await log_stream(request, svc, [task])
