"""Push an image: its layers (gzip-compressed), its config, then a Docker v2 schema2 manifest.

dockerd's order and messages (moby distribution/push_v2.go): "The push refers to repository
[...]", one line per layer ("Preparing", "Waiting", "Pushing" with a bar, "Pushed" or "Layer
already exists"), then "TAG: digest: sha256:... size: N" and an aux message
{"Tag", "Digest", "Size"} that docker-py and the CLI read.

A layer goes up only when the registry lacks it: a digest remembered for this registry
(metadata.DigestMap) is asked for first with HEAD, so a layer pulled from or pushed to the
registry before is neither compressed nor uploaded again.  The compressed blob's digest is
remembered afterwards, so a pull back from the registry skips the layer.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import shutil
import zlib
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import aiohttp

from labkit import errors
from labkit.engine.daemonconfig import DaemonConfig
from labkit.engine.images import archive
from labkit.engine.images.store import Image, ImageStore
from labkit.engine.registry import manifest as M
from labkit.engine.registry import progress as P
from labkit.engine.registry.auth import AuthConfig, TokenCache
from labkit.engine.registry.client import NotFound, Repository, Unreachable
from labkit.engine.registry.endpoints import endpoints
from labkit.engine.registry.metadata import DigestMap
from labkit.engine.registry.reference import DOCKER_IO, Reference

__all__ = ["images_to_push", "run"]

_CHUNK = 1 << 20


def images_to_push(store: ImageStore, ref: Reference, all_tags: bool) -> list[tuple[str, Image]]:
    """(tag, image) pairs: the one tag, or every tag of the repository (``docker push -a``,
    or an API call without a tag).  Docker's error when there is none."""
    if not all_tags:
        try:
            return [(ref.tag or "latest", store.get(ref.store_tag))]
        except errors.NotFoundError:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}",
                           ref.familiar_name) from None
    out = [(img_tag.rsplit(":", 1)[1], img) for img in store.list(all_=False)
           for img_tag in img.tags if img_tag.rsplit(":", 1)[0] == ref.familiar_name]
    if not out:
        raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}",
                       ref.familiar_name)
    return sorted(out, key=lambda p: p[0])


# zlib level 1 (deflate's fastest matcher): on busybox it costs a third of level 6's time for
# a blob ~6 % larger.  A layer that does not compress (random or already-compressed data)
# goes in stored deflate blocks (level 0): still valid gzip (RFC 1951 3.2.4) at memcpy speed,
# where even level 1 would spend ~20 ms per MiB finding no matches.
_LEVEL, _PROBE, _INCOMPRESSIBLE = 1, 256 << 10, 0.97


def _level_for(src: Path) -> int:
    """1, or 0 when a probe of the layer's first 256 KiB does not shrink at level 1."""
    with open(src, "rb") as f:
        head = f.read(_PROBE)
    if len(head) < _PROBE:
        return _LEVEL
    c = zlib.compressobj(_LEVEL)
    return 0 if len(c.compress(head) + c.flush()) > _INCOMPRESSIBLE * len(head) else _LEVEL


def _gzip(src: Path, dest: Path) -> tuple[str, int]:
    """gzip ``src`` into ``dest`` reproducibly (mtime 0, no name); (sha256 digest, size)."""
    h = hashlib.sha256()

    class _Tee:
        def __init__(self, f: Any) -> None:
            self.f, self.n = f, 0

        def write(self, b: bytes) -> int:
            h.update(b)
            self.n += len(b)
            return int(self.f.write(b))

        def flush(self) -> None:
            self.f.flush()

    level = _level_for(src)
    with open(src, "rb") as r, open(dest, "wb", opener=lambda p, fl: os.open(p, fl, 0o600)) as w:
        tee = _Tee(w)
        with gzip.GzipFile(filename="", mode="wb", fileobj=tee, mtime=0,
                           compresslevel=level) as gz:
            shutil.copyfileobj(r, gz, _CHUNK)
        return f"sha256:{h.hexdigest()}", tee.n


async def _repository(session: aiohttp.ClientSession, config: DaemonConfig,
                      tokens: TokenCache, ref: Reference, auth: AuthConfig) -> Repository:
    """The first endpoint that answers /v2/ (pushes never go to a mirror, as in dockerd)."""
    tried = []
    # a thread: deciding "insecure" may resolve the host name (getaddrinfo blocks)
    for ep in await asyncio.to_thread(endpoints, ref.domain, config):
        if ep.mirror:
            continue
        repo = Repository(session, ep, ref.path, auth, "pull,push", tokens)
        try:
            await repo.ping()
            return repo
        except Unreachable as e:
            tried.append(f"{ep.url}: {e}")
    raise Unreachable(f"push to {ref.domain}/{ref.path} failed, no endpoint answered; "
                      f"tried: {'; '.join(tried)}")


async def _layer(repo: Repository, store: ImageStore, digests: DigestMap, ref: Reference,
                 diff_id: str, layer: Path, scratch: Path
                 ) -> AsyncGenerator[dict[str, Any] | M.Descriptor, None]:
    ident = diff_id[7:19]
    known = digests.digests(ref.domain, diff_id)
    for digest, _ in known:
        have = await repo.blob_size(digest)
        if have is not None:
            yield P.layer("Layer already exists", ident)
            yield M.Descriptor(M.DOCKER_LAYER, digest, have)
            return
    # known in another repository of this registry: ask for a mount (moby push_v2 does)
    for digest, source in known:
        if source != ref.path and await repo.mount_blob(digest, source):
            have = await repo.blob_size(digest)
            if have is not None:
                yield P.layer(f"Mounted from {source}", ident)
                await asyncio.to_thread(digests.remember, ref.domain, digest, diff_id,
                                        ref.path)
                yield M.Descriptor(M.DOCKER_LAYER, digest, have)
                return
    plain = await asyncio.to_thread(archive._layer_tar, store, diff_id, layer, scratch)
    gz = scratch / f"{ident}.tar.gz"
    digest, size = await asyncio.to_thread(_gzip, plain, gz)
    if await repo.blob_size(digest) is not None:
        yield P.layer("Layer already exists", ident)
    else:
        async for msg in P.follow(lambda note: repo.upload_blob(gz, digest, note),
                                  "Pushing", ident, size):
            yield msg
        yield P.layer("Pushed", ident)
    gz.unlink()
    await asyncio.to_thread(digests.remember, ref.domain, digest, diff_id, ref.path)
    yield M.Descriptor(M.DOCKER_LAYER, digest, size)


async def run(session: aiohttp.ClientSession, store: ImageStore, config: DaemonConfig,
              tokens: TokenCache, digests: DigestMap, ref: Reference, auth: AuthConfig,
              images: list[tuple[str, Image]]) -> AsyncGenerator[dict[str, Any], None]:
    """Push ``images`` (tag, image) to ``ref``'s repository; yields progress messages."""
    repo = await _repository(session, config, tokens, ref, auth)
    shown = f"{ref.domain}/{ref.path}" if ref.domain != DOCKER_IO else f"docker.io/{ref.path}"
    yield P.status(f"The push refers to repository [{shown}]")
    with store.staging() as scratch_s:
        scratch = Path(scratch_s)
        for tag, img in images:
            diff_ids = list(img.config.get("rootfs", {}).get("diff_ids", []))
            for d in reversed(diff_ids):  # dockerd lists the top layer first
                yield P.layer("Preparing", d[7:19])
            layers: list[M.Descriptor] = []
            for d, layer in zip(diff_ids, img.layers, strict=True):
                async for item in _layer(repo, store, digests, ref, d, layer, scratch):
                    if isinstance(item, M.Descriptor):
                        layers.append(item)
                    else:
                        yield item
            cfg = store.config_bytes(img.id)
            cfg_digest = "sha256:" + hashlib.sha256(cfg).hexdigest()
            if await repo.blob_size(cfg_digest) is None:
                path = scratch / "config.json"
                await asyncio.to_thread(path.write_bytes, cfg)
                await repo.upload_blob(path, cfg_digest, lambda _: None)
            body = {"schemaVersion": 2, "mediaType": M.DOCKER_MANIFEST,
                    "config": {"mediaType": M.DOCKER_CONFIG, "size": len(cfg),
                               "digest": cfg_digest},
                    "layers": [{"mediaType": x.media_type, "size": x.size, "digest": x.digest}
                               for x in layers]}
            raw = json.dumps(body, indent=3).encode()
            digest = await repo.put_manifest(tag, M.DOCKER_MANIFEST, raw)
            await asyncio.to_thread(store.add_repo_digest, ref.familiar_name, digest, img.id)
            yield P.status(f"{tag}: digest: {digest} size: {len(raw)}")
            yield {"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest,
                                                 "Size": len(raw)}}
