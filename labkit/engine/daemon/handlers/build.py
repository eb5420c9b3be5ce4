"""POST /build (the classic builder, Builder-Version 1), POST /build/prune, POST /commit.

The context tar is spooled to a private file inside the image store and unpacked with the
checks of build/context.py; the Dockerfile is parsed before the answer starts, so a
Dockerfile error is an HTTP 400 the CLI prints as "Error response from daemon: Dockerfile
parse error line N: ...".  Then the steps stream as Docker's JSON lines
(``{"stream": "Step 1/3 : FROM busybox\\n"}``, ``{"aux": {"ID": ...}}``, and a failure as
``{"errorDetail": {...}, "error": ...}``).  A client that goes away cancels the build: the
step's container is removed and no image is written (build/builder.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from labkit import errors
from labkit.engine.build import layerstore
from labkit.engine.build.builder import Builder
from labkit.engine.build.commit import commit_container
from labkit.engine.build.context import read_file, remove_file, unpack_context
from labkit.engine.build.errors import BuildError
from labkit.engine.build.options import parse_options
from labkit.engine.build.parser import parse
from labkit.engine.daemon.errmap import message_of
from labkit.engine.daemon.handlers.images import _spool, image_event
from labkit.engine.daemon.params import engine, flag, reply
from labkit.engine.images.store import normalize_ref

__all__ = ["build", "commit", "prune"]


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


def _dockerfile(ctx: Path, name: str) -> bytes:
    try:
        return read_file(ctx, name, "dockerfile")
    except errors.InvalidArgumentError:
        if name != "Dockerfile":
            raise
        return read_file(ctx, "dockerfile", "dockerfile")  # Docker's fallback name


async def _cancel_on_hangup(request: web.Request, task: asyncio.Future[str]) -> None:
    """The daemon does not cancel handlers when a client disconnects
    (handler_cancellation=False, for the long streams); a build must stop then (Docker
    cancels the build's context), so its transport is watched."""
    while not task.done():
        transport = request.transport
        if transport is None or transport.is_closing():
            task.cancel()
            return
        await asyncio.sleep(0.2)


async def build(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    opts = parse_options(request.query, list(request.query.items()))
    with eng.images.staging() as tmp:
        spool, ctx = Path(tmp) / "context.tar", Path(tmp) / "context"
        ctx.mkdir()
        await _spool(request, spool)
        ignored = await asyncio.to_thread(unpack_context, spool, ctx, opts.dockerfile)
        spool.unlink()
        df = parse(_dockerfile(ctx, opts.dockerfile))
        for rel in ignored:  # read; now out of COPY's reach, as .dockerignore asked
            remove_file(ctx, rel)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)

        async def out(text: str) -> None:
            await resp.write(_line({"stream": text}))

        task = asyncio.ensure_future(Builder(eng, ctx, df, opts, out).run())
        watch = asyncio.ensure_future(_cancel_on_hangup(request, task))
        try:
            iid = await task
        except asyncio.CancelledError:
            return resp  # the client went away: the step's container is gone, no image
        except (errors.LabkitError, OSError) as err:
            msg = err.message if isinstance(err, BuildError) else message_of(err)
            detail: dict[str, Any] = {"message": msg}
            if isinstance(err, BuildError):
                detail["code"] = err.code
            try:
                await resp.write(_line({"errorDetail": detail, "error": msg}))
            except (ConnectionError, RuntimeError):
                pass  # the client went away: the build stopped because of that
            return resp
        finally:
            watch.cancel()
        for t in opts.tags:  # the builder's tagger: moby TagImage, a "tag" event each
            image_event(request, "tag", iid, normalize_ref(t))
        await resp.write(_line({"aux": {"ID": iid}}))
        if opts.quiet:
            await out(f"{iid}\n")
        else:
            await out(f"Successfully built {iid[7:19]}\n")
            for t in opts.tags:
                await out(f"Successfully tagged {t}\n")
        return resp


async def prune(request: web.Request) -> web.Response:
    """POST /build/prune: drop the whole layer cache (layers stay while an image uses
    them).  ``all`` changes nothing: no cache entry is "in use" here, so every prune is all."""
    for key in ("filters", "keep-storage", "reserved-space", "max-used-space", "min-free-space"):
        if request.query.get(key) not in (None, "", "0", "{}"):
            raise errors.UnsupportedError(f"build prune {key}", "labkit's build cache is "
                                          "pruned whole", hint=f"drop {key}")
    n, size = await asyncio.to_thread(layerstore.cache_prune, engine(request).images)
    return reply({"CachesDeleted": [f"entry-{i}" for i in range(n)] or None,
                  "SpaceReclaimed": size})


async def commit(request: web.Request) -> web.Response:
    q = request.query
    ref = q.get("container", "")
    if not ref:
        raise errors.InvalidArgumentError("container", "no container given to commit")
    repo, tag = q.get("repo", ""), q.get("tag", "")
    if tag and not repo:
        raise errors.InvalidArgumentError("repo", "a tag needs a repository name")
    name = (f"{repo}:{tag}" if tag else repo) or None
    if name:
        name = normalize_ref(name)
    overrides: dict[str, Any] = {}
    raw = await request.read()
    if raw.strip():
        try:
            overrides = json.loads(raw) or {}
        except ValueError:
            raise errors.InvalidArgumentError("request body", "not JSON") from None
        if not isinstance(overrides, dict):
            raise errors.InvalidArgumentError("request body", "must be a JSON object")
    iid = await commit_container(
        engine(request), ref, name, comment=q.get("comment", ""), author=q.get("author", ""),
        # the Docker CLI repeats `changes`; labkit's client joins them with newlines
        changes=[c for v in q.getall("changes", []) for c in v.split("\n") if c.strip()],
        pause=flag(request, "pause", True),
        overrides=overrides)
    # moby CreateImageFromContainer: TagImage's "tag" event, then the container's "commit"
    if name:
        image_event(request, "tag", iid, name)
    eng = engine(request)
    try:
        rec = eng.store.get(ref)
    except errors.NotFoundError:
        rec = None  # removed meanwhile: the image is made, there is no container to name
    if rec is not None:
        eng.containers.emit("commit", rec, comment=q.get("comment", ""), imageID=iid,
                            imageRef=name or "")
    return reply({"Id": iid}, status=201)
