"""/services...: docker service create / ls / inspect / update (scale, rollback) / rm / logs
(API v1.41, docker-api.md 4 and 7).

Thin: parse the query, one call on the manager's control API (``engine.swarm.control()``,
swarm/control), serialize.  A node in no swarm, a worker, a locked manager: 503 with
Docker's text (the control accessor raises it).  Update and remove answer 200 with
dockerd's bodies ({"Warnings": null} and empty).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web

from labkit import errors
from labkit.engine.daemon import streams
from labkit.engine.daemon.handlers.swarm import backend
from labkit.engine.daemon.params import body, cid, filters, flag, reply
from labkit.engine.shim.stdcopy import encode
from labkit.engine.swarm.spec import parse_version

__all__ = ["control", "create", "inspect", "list_", "log_stream", "logs", "remove", "update"]


def control(request: web.Request) -> Any:
    """The manager's control API (swarm/control.Control), or Docker's 503."""
    return backend(request).control()  # type: ignore[attr-defined]


async def create(request: web.Request) -> web.Response:
    return reply(await control(request).create_service(await body(request)), 201)


async def list_(request: web.Request) -> web.Response:
    return reply(await control(request).services(filters(request),
                                                 status=flag(request, "status")))


async def inspect(request: web.Request) -> web.Response:
    return reply(await control(request).service(
        cid(request), insert_defaults=flag(request, "insertDefaults")))


async def update(request: web.Request) -> web.Response:
    ctl, version = control(request), parse_version(request.query)
    rollback = request.query.get("rollback", "")
    if rollback not in ("", "previous"):
        raise errors.InvalidArgumentError("rollback", f"invalid rollback value {rollback!r} "
                                          "(only \"previous\")")
    # registryAuthFrom (spec | previous-spec) picks whose registry credentials go with the
    # update; labkit's nodes pull with their own, so the value is only checked
    auth_from = request.query.get("registryAuthFrom", "")
    if auth_from not in ("", "spec", "previous-spec"):
        raise errors.InvalidArgumentError("registryAuthFrom", f"invalid registryAuthFrom "
                                          f"{auth_from!r} (spec, previous-spec)")
    spec = None if rollback else await body(request)
    return reply(await ctl.update_service(cid(request), version, spec,
                                          rollback=bool(rollback)))


async def remove(request: web.Request) -> web.Response:
    await control(request).remove_service(cid(request))
    return web.Response(status=200)


async def logs(request: web.Request) -> web.StreamResponse:
    """GET /services/{id}/logs: every task's lines (docker-api.md 3.3)."""
    ctl = control(request)
    svc = await ctl.service_object(cid(request))
    tasks = await ctl.service_tasks(svc["ID"])
    return await log_stream(request, svc, tasks)


async def log_stream(request: web.Request, svc: dict[str, Any],
                     tasks: list[dict[str, Any]]) -> web.StreamResponse:
    """Stream the lines of ``tasks`` (of service ``svc``) from the nodes, framed as dockerd
    frames them: the 8-byte stdcopy header unless the service has a TTY; ``details`` puts
    the swarm attributes first and ``timestamps`` the time before that (moby
    daemon/logs.go)."""
    q = request.query
    stdout, stderr = flag(request, "stdout"), flag(request, "stderr")
    if not (stdout or stderr):
        raise errors.InvalidArgumentError(
            "stdout", "Bad parameters: you must choose at least one stream")
    tail_q = q.get("tail", "all")
    if tail_q not in ("all", "") and not tail_q.isdigit():
        raise errors.InvalidArgumentError("tail", f"invalid tail value {tail_q!r}")
    tail = -1 if tail_q in ("all", "") else int(tail_q)
    since, until = _time(q.get("since"), "since"), _time(q.get("until"), "until")
    details, stamps = flag(request, "details"), flag(request, "timestamps")
    tty = bool(svc["Spec"]["TaskTemplate"]["ContainerSpec"].get("TTY"))
    where = {t["ID"]: t.get("NodeID", "") for t in tasks}
    lines = backend(request).task_logs(  # type: ignore[attr-defined]
        list(where), follow=flag(request, "follow"), tail=tail, since_ns=since,
        until_ns=until, stdout=stdout, stderr=stderr)

    async def chunks() -> AsyncGenerator[bytes, None]:
        # the nodes' streams end with the response, also when the client goes away during
        # --follow (closed here, not left to the garbage collector)
        try:
            async for task_id, stream, ns, data in lines:
                if details:
                    data = (f"com.docker.swarm.node.id={where.get(task_id, '')},"
                            f"com.docker.swarm.service.id={svc['ID']},"
                            f"com.docker.swarm.task.id={task_id} ").encode() + data
                if stamps:
                    data = streams._fixed_time(ns).encode() + b" " + data
                yield data if tty else encode(stream, data)
        finally:
            close = getattr(lines, "aclose", None)
            if close is not None:
                await close()
    gen = chunks()
    async with contextlib.aclosing(gen):
        return await streams.send_chunks(request, gen, "application/vnd.docker.raw-stream")


def _time(value: str | None, name: str) -> int:
    """since / until: Unix seconds with an optional fraction (or an RFC 3339 time), in ns;
    0 when absent."""
    if not value:
        return 0
    from labkit.engine.containers.listing import parse_until

    try:
        got = parse_until(value)
    except ValueError:
        raise errors.InvalidArgumentError(name, f"invalid {name} value {value!r}") from None
    return int((got or 0) * 1e9)
