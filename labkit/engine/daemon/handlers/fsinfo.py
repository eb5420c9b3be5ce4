"""GET /containers/{id}/changes (docker diff) and GET /system/df (docker system df)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from labkit import errors
from labkit.engine.containers import listing
from labkit.engine.containers.changes import container_changes
from labkit.engine.daemon.params import cid, engine, reply
from labkit.engine.daemon.serialize import image_summary


def _changes(eng: Any, rec: Any) -> list[dict[str, object]]:
    image = eng.images.for_container(rec.image_id)
    try:  # the runtime made these mount points; a container never started has none
        spec = json.loads((Path(rec.dir) / "bundle" / "config.json").read_text())
    except (OSError, ValueError):
        spec = {}
    skip = [m.get("destination", "") for m in spec.get("mounts", [])]
    return container_changes(Path(rec.dir) / "upper", list(reversed(image.layers)), skip)


def _sizes(eng: Any, rec: Any) -> tuple[int, int]:
    """(SizeRw, SizeRootFs): the upper dir, and that plus the image."""
    from labkit.engine.images.store import dir_size
    rw = dir_size(Path(rec.dir) / "upper")
    try:
        return rw, rw + eng.images.for_container(rec.image_id).size
    except errors.NotFoundError:
        return rw, rw


async def changes(request: web.Request) -> web.Response:
    eng = engine(request)
    rec = eng.store.get(cid(request))
    out = await asyncio.to_thread(_changes, eng, rec)
    return reply(out or None)  # moby answers null for no changes (a nil slice)


def _df(eng: Any) -> dict[str, Any]:
    """moby types.DiskUsage: images with their container counts and shared sizes,
    containers with SizeRw/SizeRootFs, the unique layers' total, volumes with UsageData;
    no build cache (labkit has none yet)."""
    from labkit.engine.images.store import dir_size
    recs = eng.store.all()
    images = eng.images.list()
    users: dict[Path, int] = {}
    for img in images:
        for layer in img.layers:
            users[layer] = users.get(layer, 0) + 1
    sizes = {layer: dir_size(layer) for layer in users}
    out_images = []
    for img in images:
        row = image_summary(img)
        row["Containers"] = sum(1 for r in recs if r.image_id == img.id)
        row["SharedSize"] = sum(sizes[p] for p in img.layers if users[p] > 1)
        out_images.append(row)
    out_ctrs = []
    for r in recs:
        try:
            out_ctrs.append(listing.summary(r, _sizes(eng, r)))
        except errors.NotFoundError:
            continue  # removed meanwhile
    return {"LayersSize": sum(sizes.values()), "Images": out_images, "Containers": out_ctrs,
            "Volumes": eng.volumes.usage(), "BuildCache": []}


async def system_df(request: web.Request) -> web.Response:
    return reply(await asyncio.to_thread(_df, engine(request)))
