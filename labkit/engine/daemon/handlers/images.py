"""/images/...: the minimal image store (busybox); pulls arrive in a later issue."""

from __future__ import annotations

from aiohttp import web

from labkit import errors
from labkit.engine.daemon.params import engine, reply
from labkit.engine.daemon.serialize import image_inspect, image_summary


async def list_(request: web.Request) -> web.Response:
    return reply([image_summary(i) for i in engine(request).images.list()])


async def inspect(request: web.Request) -> web.Response:
    return reply(image_inspect(engine(request).images.get(request.match_info["name"])))


async def pull(request: web.Request) -> web.Response:
    ref = request.query.get("fromImage", "") + (":" + request.query["tag"]
                                               if request.query.get("tag") else "")
    try:
        engine(request).images.get(ref)
    except errors.NotFoundError:
        raise errors.NotFoundError("image", ref, hint="pull access denied: image pulls arrive "
                                   "in a later labkit issue; only busybox is available") \
            from None
    # Present locally (and labkit has no registry to compare with): the CLI's implicit pull
    # after a 404 from create (docker-api.md 2) then retries the create and shows its error.
    name = ref if ":" in ref.rsplit("/", 1)[-1] else f"{ref}:latest"
    line = {"status": f"Status: Image is up to date for {name.removeprefix('docker.io/library/')}"}
    return reply(line)
