"""What a build writes into the image store: layers made from a directory (a container's
upper dir, or a COPY's), step images, and the layer cache.

* ``commit_layer``: the directory is packed with images/diff.write_layer (whiteouts and
  opaque dirs become ``.wh.`` entries), the tar checked and unpacked again with
  images/layers.apply_layer into staging, then renamed into ``layers/<diffid>`` under the
  store lock; the tar is kept as the blob ``docker save`` writes back.  Nothing is visible
  under its final name before it is complete.
* Step images: a RUN needs its parent as an image in the store (a container is made from an
  image).  Docker's classic builder keeps every step as an intermediate image; labkit keeps
  the steps in its build cache instead and registers a step image only while a container
  runs from it (``StepImage``).  A marker under ``buildcache/steps/`` names it, so a daemon
  killed meanwhile drops it at its next start (recovery.py).
* The cache (``buildcache/<key>.json``): the config a step produced, keyed by the parent
  image, the instruction text, the build args it used and the digest of what it copied.
  An entry counts only while every layer it names is still in the store.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from labkit.engine import paths
from labkit.engine.images.diff import write_layer
from labkit.engine.images.layers import apply_layer, inspect_layer
from labkit.engine.images.store import ImageStore, _atomic_write, dir_size

__all__ = ["cache_get", "cache_key", "cache_put", "commit_layer", "config_bytes",
           "image_id_of", "step_image"]


def config_bytes(config: dict[str, Any]) -> bytes:
    """The canonical bytes of a config (their sha256 is the image ID)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def image_id_of(config: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(config_bytes(config)).hexdigest()


def _without(blob: Path, out: Path, exclude: frozenset[str]) -> None:
    """Copy a plain layer tar leaving out the members named in ``exclude``."""
    with tarfile.open(blob, "r:") as src, \
            tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for ti in src:
            if ti.name.rstrip("/") in exclude:
                continue
            dst.addfile(ti, src.extractfile(ti) if ti.isreg() else None)


def commit_layer(store: ImageStore, src: Path,
                 exclude: frozenset[str] = frozenset()) -> tuple[str, int]:
    """Make the directory ``src`` a layer in the store; returns (diff_id, bytes).
    ``exclude``: layer paths left out (a running container's runtime mount points)."""
    with store.staging() as stage_s:
        stage = Path(stage_s)
        blob = stage / "layer.tar"
        digests = write_layer(src, blob, compression="none")
        if exclude:
            filtered = stage / "filtered.tar"
            _without(blob, filtered, exclude)
            os.replace(filtered, blob)
            digests = inspect_layer(blob).digests
        diff_id = digests.diff_id
        layer = store.layer_dir(diff_id)
        if not layer.is_dir():
            apply_layer(blob, stage / "unpacked")  # the same checks as any pulled layer
        with store.locked():
            if not layer.is_dir():
                layer.parent.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
                os.rename(stage / "unpacked", layer)
            kept = store.blob_path(diff_id)
            if not kept.exists():
                kept.parent.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
                os.chmod(blob, 0o600)
                os.rename(blob, kept)
        return diff_id, dir_size(layer)


def _cache_dir(store: ImageStore) -> Path:
    return store.root / "buildcache"


def cache_key(parent: str, text: str, extra: str = "") -> str:
    """The cache key of one step (hex): parent image ID, instruction, args/content digest."""
    return hashlib.sha256(json.dumps([parent, text, extra]).encode()).hexdigest()


def cache_get(store: ImageStore, key: str) -> dict[str, Any] | None:
    """The config a cached step produced, if all its layers are still there."""
    try:
        cfg: dict[str, Any] = json.loads((_cache_dir(store) / f"{key}.json").read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
    if not all(store.layer_dir(d).is_dir() for d in ids):
        return None
    return cfg


def cache_put(store: ImageStore, key: str, config: dict[str, Any]) -> None:
    _atomic_write(_cache_dir(store) / f"{key}.json", config_bytes(config))


def cache_prune(store: ImageStore) -> tuple[int, int]:
    """Drop every cache entry (``POST /build/prune``); returns (entries, bytes)."""
    n = size = 0
    d = _cache_dir(store)
    with contextlib.suppress(FileNotFoundError):
        for p in d.glob("*.json"):
            size += p.stat().st_size
            p.unlink()
            n += 1
    return n, size


# Step images held by running builds of this daemon: two builds may run from the same
# parent; the last one out drops it (a dropped parent would fail the other's container start).
_held: collections.Counter[tuple[str, str]] = collections.Counter()
_held_lock = threading.Lock()


@contextlib.contextmanager
def step_image(store: ImageStore, config: dict[str, Any],
               keep: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """Register ``config`` as an image while the block runs (a container's parent); drop
    it again afterwards unless it was an image before, got a tag meanwhile, or ``keep()``
    says a container made from it stays (rm=0, a failed step without forcerm): then it
    stays as Docker's intermediate image does."""
    raw = config_bytes(config)
    hexid = hashlib.sha256(raw).hexdigest()
    key = (str(store.root), hexid)
    marker = _cache_dir(store) / "steps" / hexid
    with _held_lock:
        _held[key] += 1
        if _held[key] == 1 and not (store.root / "configs" / f"{hexid}.json").exists():
            _atomic_write(marker, b"")
            store.add_raw(raw, [])
    kept = False
    try:
        yield f"sha256:{hexid}"
        kept = keep()
    except BaseException:
        kept = keep()
        raise
    finally:
        with _held_lock:
            _held[key] -= 1
            last = _held[key] == 0
            if last:
                del _held[key]
            if last and marker.exists():
                if kept:
                    marker.unlink()  # an intermediate image now: the start-up sweep keeps it
                else:
                    drop_step_image(store, hexid)


def drop_step_image(store: ImageStore, hexid: str) -> None:
    """Remove a step image's config (never its layers: the cache and the result use them)."""
    with store.locked():
        if f"sha256:{hexid}" not in store._repos().values():  # tagged meanwhile: keep it
            with contextlib.suppress(FileNotFoundError):
                (store.root / "configs" / f"{hexid}.json").unlink()
        with contextlib.suppress(FileNotFoundError):
            (_cache_dir(store) / "steps" / hexid).unlink()


def leftover_steps(store: ImageStore) -> list[str]:
    try:
        return sorted(os.listdir(_cache_dir(store) / "steps"))
    except FileNotFoundError:
        return []
