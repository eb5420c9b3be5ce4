"""GET /distribution/{name}/json: the image's manifest digest, which `docker service create`
and `stack deploy` pin into the service (``alpine:latest@sha256:...``) with
Placement.Platforms from ``Platforms`` (docker-api.md 4).

dockerd asks the registry.  labkit answers from the local image store, which keeps the
digest of the manifest an image was pulled (or pushed) by: every node then runs exactly
that image.  An image with no such digest (built here, loaded from a tar) gets a 404: the
CLI warns ("could not be accessed on a registry to record its digest") and creates the
service with the plain tag, which the nodes resolve locally.  The descriptor carries only
the digest: the store does not keep the manifest's media type or size, and the CLI reads
neither.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from labkit import errors
from labkit.engine.daemon.params import engine, reply
from labkit.engine.images.store import ImageStore, split_ref

__all__ = ["inspect"]


def _lookup(store: ImageStore, ref: str) -> dict[str, object]:
    if "@" in ref:  # already pinned: the digest is the answer, if the image is here
        name, _, digest = ref.partition("@")
        img = store.get(ref)
        repo = name
    else:
        repo, _ = split_ref(ref)
        img = store.get(ref)
        digest = ""
    if not digest:
        names = [d for d in store.repo_digests(img.id) if d.split("@", 1)[0] == repo]
        if not names:
            raise errors.NotFoundError("image digest", ref, hint="the image was not pulled "
                                       "from a registry")
        digest = names[0].split("@", 1)[1]
    plat = {"architecture": img.config.get("architecture") or "amd64",
            "os": img.config.get("os") or "linux"}
    if img.config.get("variant"):
        plat["variant"] = img.config["variant"]
    return {"Descriptor": {"digest": digest}, "Platforms": [plat]}


async def inspect(request: web.Request) -> web.Response:
    ref = request.match_info["name"]
    store: ImageStore = engine(request).images
    try:
        return reply(await asyncio.to_thread(_lookup, store, ref))
    except errors.InvalidArgumentError as err:
        raise errors.NotFoundError("image", ref) from err
