"""/images/...: list, inspect, tag, rmi, history, prune, save (get), load, import (create
with fromSrc: a tar in the body, or an http(s) URL the daemon fetches, images/fetch.py);
pulls (create with fromImage) are in handlers/registry.py.

Blocking store work (tars, unpacking) runs in a worker thread; request bodies are spooled
to a private file inside the store first, so a refused or cut-off upload stores nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from labkit import errors
from labkit.engine.daemon.params import engine, filters, flag, reply
from labkit.engine.daemon.serialize import image_inspect, image_summary
from labkit.engine.images import archive, fetch, query
from labkit.engine.images.store import Image, ImageStore, normalize_ref


def _store(request: web.Request) -> ImageStore:
    store: ImageStore = engine(request).images
    return store


def image_event(request: web.Request, action: str, actor_id: str, name: str = "") -> None:
    """moby LogImageEvent: the image's labels while it still exists (not after delete)."""
    try:
        labels = query.labels_of(_store(request).get(actor_id))
    except errors.LabkitError:
        labels = {}
    engine(request).bus.emit_image(action, actor_id, name, labels)


def _summary(img: Image, store: ImageStore | None = None) -> dict[str, Any]:
    out = image_summary(img)
    if store is not None:
        out["RepoDigests"] = store.repo_digests(img.id)
    out["Created"], out["Labels"] = query.created_epoch(img), query.labels_of(img)
    return out


async def list_(request: web.Request) -> web.Response:
    store = _store(request)
    images = query.filter_images(store.list(), filters(request), store.get)
    return reply([_summary(i, store) for i in images])


async def inspect(request: web.Request) -> web.Response:
    img = _store(request).get(request.match_info["name"])
    out = image_inspect(img)
    out["Comment"] = str(img.config.get("comment") or "")  # docker import --message
    out["Author"] = str(img.config.get("author") or "")
    out["RepoDigests"] = _store(request).repo_digests(img.id)
    return reply(out)


async def history(request: web.Request) -> web.Response:
    return reply(query.history(_store(request).get(request.match_info["name"])))


async def tag(request: web.Request) -> web.Response:
    repo, tg = request.query.get("repo", ""), request.query.get("tag", "")
    if not repo:
        raise errors.InvalidArgumentError("repo", "repository name must not be empty")
    new = normalize_ref(f"{repo}:{tg}" if tg else repo)
    iid = _store(request).resolve(request.match_info["name"])
    _store(request).tag(iid, new)
    image_event(request, "tag", iid, new)  # moby TagImage: the image ID, name the new tag
    return web.Response(status=201)


# -- rmi --------------------------------------------------------------------------------------

def _users(request: web.Request, image_id: str) -> list[Any]:
    """Containers made from ``image_id``, running ones first."""
    recs = [r for r in engine(request).store.all() if r.image_id == image_id]
    return sorted(recs, key=lambda r: not r.running)


def _conflict(msg: str) -> errors.ConflictError:
    return errors.ConflictError(f"conflict: {msg}")


def _delete(request: web.Request, ref: str, force: bool) -> list[dict[str, str]]:
    """moby daemon/images/image_delete.go: an image a running container uses is only
    untagged (or refused, by ID); one only stopped containers use is deleted with force,
    its layers kept for them (ImageStore.delete hold=True, released at their removal)."""
    store = _store(request)
    iid = store.resolve(ref)
    img = store.get(iid)
    short = iid[7:19]
    users = _users(request, iid)
    out: list[dict[str, str]] = []
    by_name = ref not in (iid, iid[7:]) and normalize_ref_or_none(ref) in img.tags
    if by_name:
        name = normalize_ref(ref)
        if len(img.tags) == 1 and users and not force:
            raise _conflict(f'unable to remove repository reference "{ref}" (must force) - '
                            f"container {users[0].id[:12]} is using its referenced image {short}")
        store.untag(name)
        image_event(request, "untag", iid, iid)  # moby: ID and name both the image ID
        out.append({"Untagged": name})
        if len(img.tags) > 1 or (users and users[0].running):
            return out  # other tags remain, or a running container: untagged only (moby)
    else:
        if users and users[0].running:
            raise _conflict(f"unable to delete {short} (cannot be forced) - image is being used "
                            f"by running container {users[0].id[:12]}")
        repos = {t.rsplit(":", 1)[0] for t in img.tags}
        if len(repos) > 1 and not force:
            raise _conflict(f"unable to delete {short} (must be forced) - image is referenced "
                            "in multiple repositories")
        if users and not force:
            raise _conflict(f"unable to delete {short} (must be forced) - image is being used "
                            f"by stopped container {users[0].id[:12]}")
        for t in img.tags:
            store.untag(t)
            image_event(request, "untag", iid, iid)
            out.append({"Untagged": t})
    # Forced past stopped containers, Docker deletes the image; they keep its layers (held
    # by the store until the last of them is removed) and still start.
    store.delete(iid, hold=bool(users))
    engine(request).bus.emit_image("delete", iid, iid)  # gone: no labels (moby)
    out.append({"Deleted": iid})
    return out


def normalize_ref_or_none(ref: str) -> str | None:
    try:
        return normalize_ref(ref)
    except errors.InvalidArgumentError:
        return None


async def remove(request: web.Request) -> web.Response:
    # noprune keeps untagged *parent* images; labkit images have no parents (every image
    # is its config and layers), so there is never a parent to prune or keep.
    force = flag(request, "force")
    return reply(await asyncio.to_thread(_delete, request, request.match_info["name"], force))


def _prune(request: web.Request, flt: dict[str, list[str]]) -> dict[str, Any]:
    for key in flt:
        if key not in ("dangling", "label"):
            raise errors.InvalidArgumentError("filters", f"invalid filter '{key}'",
                                              hint="image prune filters: dangling, label")
    store = _store(request)
    dangling_only = query.parse_bool("dangling", flt["dangling"]) if "dangling" in flt else True
    in_use = {r.image_id for r in engine(request).store.all()}
    deleted: list[dict[str, str]] = []
    freed = 0
    for img in query.filter_images(store.list(), {"label": flt.get("label", [])}, store.get):
        if img.id in in_use or (dangling_only and img.tags):
            continue
        for t in img.tags:
            store.untag(t)
            image_event(request, "untag", img.id, img.id)
            deleted.append({"Untagged": t})
        freed += store.delete(img.id)
        engine(request).bus.emit_image("delete", img.id, img.id)
        deleted.append({"Deleted": img.id})
    engine(request).bus.emit_prune("image", freed)
    return {"ImagesDeleted": deleted or None, "SpaceReclaimed": freed}


async def prune(request: web.Request) -> web.Response:
    return reply(await asyncio.to_thread(_prune, request, filters(request)))


# -- save / load / import ---------------------------------------------------------------------

async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    if not names:
        raise errors.InvalidArgumentError("names", "no image names to save")
    store = _store(request)
    ids = list(dict.fromkeys(store.get(n).id for n in names))  # a 404 before the 200

    with store.staging() as tmp:
        path = Path(tmp) / "out.tar"

        def produce() -> None:
            with open(path, "wb", opener=lambda p, fl: os.open(p, fl, 0o600)) as f:
                archive.save_archive(store, names, f)

        await asyncio.to_thread(produce)
        for iid in ids:  # moby tarexport: one "save" per image, ID and name its ID
            image_event(request, "save", iid, iid)
        resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        await resp.prepare(request)
        f = await asyncio.to_thread(open, path, "rb")
        with f:
            while chunk := await asyncio.to_thread(f.read, 1 << 20):
                await resp.write(chunk)
        await resp.write_eof()
        return resp


async def save_many(request: web.Request) -> web.StreamResponse:
    return await _save(request, request.query.getall("names", []))


async def save_one(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


async def _spool(request: web.Request, dest: Path) -> None:
    f = await asyncio.to_thread(open, dest, "wb", opener=_private)
    with f:
        async for chunk in request.content.iter_chunked(1 << 20):
            await asyncio.to_thread(f.write, chunk)


def _stream_reply(lines: list[dict[str, str]]) -> web.Response:
    return web.Response(body=b"".join(json.dumps(x).encode() + b"\r\n" for x in lines),
                        headers={"Content-Type": "application/json"})


async def load(request: web.Request) -> web.Response:
    store = _store(request)
    with store.staging() as tmp:
        src = Path(tmp) / "in.tar"
        await _spool(request, src)
        loaded = await asyncio.to_thread(archive.load_archive, store, src)
    for img in loaded:  # moby tarexport: "load" per image (its tags set without "tag")
        image_event(request, "load", img.id, img.id)
    lines = []
    for img in loaded:
        if img.tags:
            lines += [{"stream": f"Loaded image: {t}\n"} for t in img.tags]
        else:
            lines.append({"stream": f"Loaded image ID: {img.id}\n"})
    return _stream_reply(lines)


async def create(request: web.Request) -> web.StreamResponse:
    """POST /images/create: fromSrc=- imports a rootfs tar; fromImage is a pull."""
    q = request.query
    if "fromSrc" not in q:
        return await pull(request)
    src_url = q["fromSrc"]
    if src_url != "-":
        fetch.check_url(src_url)  # before anything else: only http(s) is fetched
    if q.get("platform") and q["platform"] not in ("linux", f"linux/{archive.host_arch()}"):
        raise errors.UnsupportedError("platform", f"{q['platform']!r}: only this host's "
                                      f"linux/{archive.host_arch()} is imported")
    repo, tg = q.get("repo", ""), q.get("tag", "")
    ref = (f"{repo}:{tg}" if tg else repo) or None
    if ref:
        normalize_ref(ref)  # refuse a bad name before reading the body
    store = _store(request)
    with store.staging() as tmp:
        src = Path(tmp) / "rootfs.tar"
        if src_url == "-":
            await _spool(request, src)
        else:  # docker import URL: the daemon fetches it (streamed, size-capped)
            await fetch.fetch(src_url, src)
        img = await asyncio.to_thread(
            archive.import_rootfs, store, src, ref, changes=q.getall("changes", []),
            message=q.get("message", ""), source=src_url)
    if ref:  # moby ImportImage: TagImage (a "tag" event), then "import"
        image_event(request, "tag", img.id, normalize_ref(ref))
    image_event(request, "import", img.id, img.id)
    return _stream_reply([{"status": img.id}])


async def pull(request: web.Request) -> web.StreamResponse:
    """fromImage: a pull from a registry (handlers/registry.py)."""
    from labkit.engine.daemon.handlers import registry
    return await registry.pull(request)


__all__ = ["create", "history", "inspect", "list_", "load", "prune", "pull", "remove",
           "save_many", "save_one", "tag"]
