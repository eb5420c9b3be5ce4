"""A minimal image store: the ``busybox`` image, listed and inspected the way Docker shows it.

Layout under paths.images_dir() (a later issue brings blobs, pulls and builds)::

    layers/<diffid hex>/          one unpacked layer (an overlay lowerdir)
    configs/<image id hex>.json   the image config (image-spec config.md)
    repositories.json             {"busybox:latest": "sha256:<image id>"}

The image ID is the sha256 of the config JSON bytes, as in Docker (image-spec config.md,
"ImageID").  Every write is atomic (temp file + fsync + rename) so a crash never leaves a
half-written store; ``ensure_busybox()`` can be called on every daemon start.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine import paths

__all__ = ["DEFAULT_PATH", "Image", "ImageStore", "ensure_busybox", "normalize_ref"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def normalize_ref(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; ``docker.io/library/busybox`` -> ``busybox:latest``."""
    for prefix in ("docker.io/library/", "library/", "index.docker.io/library/"):
        ref = ref.removeprefix(prefix)
    name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    return f"{name}:{tag or 'latest'}"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@dataclass(frozen=True, slots=True)
class Image:
    """One image: its ID, tags, config (image-spec) and unpacked layer dirs (base first)."""

    id: str
    tags: tuple[str, ...]
    config: dict[str, Any]
    layers: tuple[Path, ...]
    size: int

    @property
    def container_config(self) -> dict[str, Any]:
        """The image's default run config (Env, Cmd, Entrypoint, WorkingDir, User...)."""
        cfg: dict[str, Any] = self.config.get("config") or {}
        return cfg


class ImageStore:
    """Images under ``root`` (default paths.images_dir())."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else paths.images_dir()

    def _repos(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads((self.root / "repositories.json").read_text())
            return data
        except FileNotFoundError:
            return {}

    def _load(self, image_id: str, tags: tuple[str, ...]) -> Image:
        hexid = image_id.split(":", 1)[-1]
        try:
            config = json.loads((self.root / "configs" / f"{hexid}.json").read_bytes())
        except FileNotFoundError:
            raise errors.NotFoundError("image", image_id) from None
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        layers = tuple(self.root / "layers" / d.split(":", 1)[-1] for d in diff_ids)
        size = int(config.get("labkit", {}).get("size", 0))
        return Image(f"sha256:{hexid}", tags, config, layers, size)

    def list(self) -> list[Image]:
        """Every image, one entry per ID with all its tags."""
        by_id: dict[str, list[str]] = {}
        for tag, iid in sorted(self._repos().items()):
            by_id.setdefault(iid, []).append(tag)
        return [self._load(iid, tuple(tags)) for iid, tags in by_id.items()]

    def get(self, ref: str) -> Image:
        """Resolve a name[:tag], a full ``sha256:`` ID or an ID prefix (>= 4 hex digits).

        Raises NotFoundError("image", ref): the daemon answers 404 "No such image: ref".
        """
        repos = self._repos()
        tag = normalize_ref(ref)
        if tag in repos:
            iid = repos[tag]
            return self._load(iid, tuple(t for t, i in repos.items() if i == iid))
        hexref = ref.removeprefix("sha256:")
        if len(hexref) >= 4 and all(c in "0123456789abcdef" for c in hexref):
            for iid in sorted(set(repos.values())):
                if iid.removeprefix("sha256:").startswith(hexref):
                    return self._load(iid, tuple(t for t, i in repos.items() if i == iid))
        raise errors.NotFoundError("image", tag if ":" in ref or "/" not in ref else ref)

    def add(self, tag: str, config: dict[str, Any]) -> Image:
        """Store an image config under ``tag``; its layers must already be unpacked."""
        data = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        hexid = hashlib.sha256(data).hexdigest()
        _atomic_write(self.root / "configs" / f"{hexid}.json", data)
        repos = self._repos()
        repos[normalize_ref(tag)] = f"sha256:{hexid}"
        _atomic_write(self.root / "repositories.json", json.dumps(repos, indent=1).encode())
        return self.get(tag)


def dir_size(root: Path) -> int:
    """Bytes of the regular files under ``root`` (lstat, no link following)."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def ensure_busybox(store: ImageStore | None = None) -> Image:
    """Make sure ``busybox:latest`` exists (idempotent); build it from the host's busybox-static.

    Raises UnsupportedError (with an apt-get hint) when busybox-static is not installed.
    """
    from labkit.engine.images.busybox import pack_rootfs_layer
    from labkit.engine.images.layers import apply_layer

    store = store or ImageStore()
    try:
        img = store.get("busybox:latest")
        if all(p.is_dir() for p in img.layers):
            return img
    except errors.NotFoundError:
        pass
    store.root.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lk-bb-", dir=store.root) as tmp:
        blob = Path(tmp) / "layer.tar"
        digests = pack_rootfs_layer(blob, compression="none")  # unpacked at once: skip gzip
        layer = store.root / "layers" / digests.diff_id.split(":", 1)[-1]
        if not layer.is_dir():
            apply_layer(blob, layer)
    config = {
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [digests.diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z",
                     "created_by": "labkit: host busybox-static (/bin/busybox)"}],
        "labkit": {"size": dir_size(layer)},
    }
    return store.add("busybox:latest", config)

