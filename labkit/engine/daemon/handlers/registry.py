"""Registry verbs: pull (POST /images/create?fromImage=), push (POST /images/{name}/push)
and login (POST /auth), as dockerd answers them.

Errors found before any progress (bad name, unknown repository or tag, wrong credentials)
are HTTP statuses with Docker's words; once the 200 and the first message have gone out, a
failure is an ``{"errorDetail": {"message": ...}, "error": ...}`` line in the stream (moby
api/server/router/image: ``if !output.Flushed() { return err }``).  Credentials come in the
X-Registry-Auth header or the /auth body, live for the request (tokens: the daemon's token
cache) and never reach a log line, an event or an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web

from labkit import errors
from labkit.engine.daemon import errmap
from labkit.engine.daemon.params import body, engine, reply
from labkit.engine.daemon.streams import open_stream
from labkit.engine.registry import manifest, reference
from labkit.engine.registry import pull as pulling
from labkit.engine.registry import push as pushing
from labkit.engine.registry.auth import AuthConfig, TokenCache
from labkit.engine.registry.client import Repository, Unauthorized, Unreachable, new_session
from labkit.engine.registry.endpoints import endpoints
from labkit.engine.registry.metadata import DigestMap

__all__ = ["auth", "pull", "push"]

_TOKENS: weakref.WeakKeyDictionary[Any, TokenCache] = weakref.WeakKeyDictionary()


def _tokens(eng: Any) -> TokenCache:
    """The daemon's bearer-token cache (one per engine; memory only)."""
    cache = _TOKENS.get(eng)
    if cache is None:
        cache = _TOKENS[eng] = TokenCache()
    return cache


def _auth(request: web.Request) -> AuthConfig:
    return AuthConfig.from_header(request.headers.get("X-Registry-Auth"))


async def _stream(request: web.Request, items: AsyncGenerator[dict[str, Any], None]) -> web.StreamResponse:
    """200 and the messages; a failure after that is an error line (Docker's shape)."""
    resp = await open_stream(request, "application/json")
    try:
        # aclosing: a client that leaves mid-pull closes the generator at once, so its
        # download task is cancelled and its staging dir removed now, not at GC time
        async with contextlib.aclosing(items) as stream:
            async for item in stream:
                await resp.write(json.dumps(item).encode() + b"\r\n")
    except ConnectionError:
        return resp  # the client went away: the pull stops, staging is removed
    except Exception as err:  # noqa: BLE001 - every failure becomes the stream's error line
        msg = errmap.message_of(err)
        try:
            await resp.write(json.dumps({"errorDetail": {"message": msg}, "error": msg})
                             .encode() + b"\r\n")
        except ConnectionError:
            return resp
    await resp.write_eof()
    return resp


async def _then_event(request: web.Request, items: AsyncGenerator[dict[str, Any], None],
                      action: str, ref: str, name: str) -> AsyncGenerator[dict[str, Any], None]:
    """The stream, then (only when it ended without error) moby's image event: distribution
    Pull/Push log ``FamiliarString(ref)`` as Actor.ID and ``FamiliarName`` as its name."""
    from labkit.engine.daemon.handlers.images import image_event
    async with contextlib.aclosing(items) as stream:
        async for item in stream:
            yield item
    image_event(request, action, ref, name)


async def pull(request: web.Request) -> web.StreamResponse:
    q = request.query
    image, tag = q.get("fromImage", ""), q.get("tag", "")
    if not image:
        raise errors.InvalidArgumentError("fromImage", "an image name is required")
    last = image.rsplit("/", 1)[-1]
    if not tag and "@" not in image and ":" not in last:
        raise errors.UnsupportedError("docker pull --all-tags", "pulling every tag of a "
                                      "repository is not supported", hint="name one tag")
    ref = reference.parse(image, tag)
    want = manifest.parse_platform(q["platform"]) if q.get("platform") else None
    creds = _auth(request)
    eng = engine(request)
    session = new_session()
    try:
        res = await pulling.resolve(session, eng.images, eng.config, _tokens(eng), ref,
                                    creds, want)
        try:
            return await _stream(request, _then_event(
                request, pulling.run(res, eng.images, DigestMap(eng.images)), "pull",
                ref.familiar, ref.familiar_name))
        finally:
            res.close()
    finally:
        await session.close()


async def push(request: web.Request) -> web.StreamResponse:
    name, tag = request.match_info["name"], request.query.get("tag", "")
    ref = reference.parse(name, tag)
    if ref.digest:
        raise errors.InvalidArgumentError("tag", "a push names a tag, not a digest")
    all_tags = not tag and ":" not in name.rsplit("/", 1)[-1]
    eng = engine(request)
    images = pushing.images_to_push(eng.images, ref, all_tags)
    creds = _auth(request)
    session = new_session()
    try:
        return await _stream(request, _then_event(request, pushing.run(
            session, eng.images, eng.config, _tokens(eng), DigestMap(eng.images), ref, creds,
            images), "push", ref.familiar_name if all_tags else ref.familiar, ref.familiar_name))
    finally:
        await session.close()


def _server(address: str) -> str:
    """The registry domain of a login address (``https://index.docker.io/v1/`` and an
    empty address are Docker Hub; a URL is reduced to its host[:port])."""
    addr = address.strip() or reference.DOCKER_IO
    if "://" in addr:
        addr = addr.split("://", 1)[1]
    addr = addr.split("/", 1)[0]
    if addr in ("index.docker.io", "registry-1.docker.io", reference.DOCKER_IO):
        return reference.DOCKER_IO
    return addr


async def auth(request: web.Request) -> web.Response:
    """POST /auth: check the credentials against the registry's /v2/ (moby
    registry.loginV2); {"Status": "Login Succeeded"} or 401 with Docker's words."""
    doc = await body(request)
    creds = AuthConfig.from_dict(doc)
    domain = _server(creds.serveraddress)
    eng = engine(request)
    tried: list[str] = []
    session = new_session()
    try:
        for ep in await asyncio.to_thread(endpoints, domain, eng.config):
            if ep.mirror:
                continue
            # no repository: the token is asked for without a scope, as moby's loginV2
            repo = Repository(session, ep, "", creds, "pull", TokenCache())
            try:
                await repo.login()
                return reply({"Status": "Login Succeeded", "IdentityToken": ""})
            except Unreachable as e:
                tried.append(f"{ep.url}: {e}")
            except Unauthorized as e:
                text = e.message if e.message.startswith("login attempt") else \
                    f"login attempt to {ep.url}/v2/ failed with status: 401 Unauthorized"
                return reply({"message": text}, 401)
    finally:
        await session.close()
    raise Unreachable(f"login to {domain} failed, no endpoint answered; tried: "
                      f"{'; '.join(tried)}")

