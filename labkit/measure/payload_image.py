"""A deterministic ~5 MiB image for push/pull benchmarks: a base image's docker-archive (as
`docker save` writes it) plus one layer of bytes from a seeded PRNG, written as a new
docker-archive that `docker load` takes on any daemon.

Every tar header field is fixed (mtime 0, uid/gid 0), so the same base and seed always give
the same diffIDs and image ID on every daemon that loads it.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import random
import tarfile
from pathlib import Path

from labkit import errors

__all__ = ["PAYLOAD_BYTES", "PAYLOAD_REF", "PAYLOAD_SEED", "write_payload_archive"]

PAYLOAD_REF = "lkbench/payload:latest"
PAYLOAD_BYTES = 5 * 1024 * 1024
PAYLOAD_SEED = 9


def _payload_layer(size: int, seed: int) -> bytes:
    """An uncompressed layer tar holding /payload.bin: ``size`` bytes of random.Random(seed),
    every header field fixed, so the same seed always gives the same diffID."""
    data = random.Random(seed).randbytes(size)  # filler bytes, not secrets: a seeded PRNG
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("payload.bin")
        info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, 0, 0, 0
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def _safe_member(name: str) -> str:
    """A member name from a docker-archive we read, refused when it could leave the dir."""
    if name.startswith("/") or ".." in Path(name).parts or not name:
        raise errors.InvalidArgumentError("docker-archive", f"member {name!r} escapes the "
                                          "archive")
    return name


def write_payload_archive(base_archive: Path, out: Path, *, ref: str = PAYLOAD_REF,
                          size: int = PAYLOAD_BYTES, seed: int = PAYLOAD_SEED) -> str:
    """Write ``out``: a docker-archive (`docker save` format) of ``base_archive``'s image plus
    one layer of ``size`` seeded bytes, tagged ``ref``; returns the new config's digest.

    Raises:
        InvalidArgumentError: the base archive is not a one-image docker-archive.
    """
    with tarfile.open(base_archive) as tar:
        manifest = json.load(tar.extractfile(_safe_member("manifest.json")) or io.BytesIO())
        if not isinstance(manifest, list) or len(manifest) != 1:
            raise errors.InvalidArgumentError("docker-archive", f"{base_archive}: want one "
                                              "image in manifest.json")
        entry = manifest[0]
        base_cfg = json.load(tar.extractfile(_safe_member(entry["Config"])) or io.BytesIO())
        base_layers = [tar.extractfile(_safe_member(p)) for p in entry["Layers"]]
        layers = [f.read() for f in base_layers if f is not None]
    if len(layers) != len(entry["Layers"]):
        raise errors.InvalidArgumentError("docker-archive", f"{base_archive}: a layer is not "
                                          "a regular file")
    layers.append(_payload_layer(size, seed))
    diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in layers]
    history = list(base_cfg.get("history") or [])
    history.append({"created": "1970-01-01T00:00:00Z",
                    "created_by": f"labkit bench images: {size} bytes, seed {seed}"})
    cfg = {"architecture": base_cfg.get("architecture") or _arch(),
           "os": base_cfg.get("os") or "linux",
           "config": base_cfg.get("config") or {"Cmd": ["sh"]},
           "created": "1970-01-01T00:00:00Z",
           "rootfs": {"type": "layers", "diff_ids": diff_ids},
           "history": history}
    cfg_bytes = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
    cfg_hex = hashlib.sha256(cfg_bytes).hexdigest()
    files: list[tuple[str, bytes]] = [(f"{cfg_hex}.json", cfg_bytes)]
    names = []
    for d, blob in zip(diff_ids, layers, strict=True):
        names.append(f"{d.removeprefix('sha256:')}/layer.tar")
        files.append((names[-1], blob))
    files.append(("manifest.json", json.dumps([{"Config": f"{cfg_hex}.json",
                                                "RepoTags": [ref], "Layers": names}]).encode()))
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, blob in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(blob), 0o644, 0
            tar.addfile(info, io.BytesIO(blob))
    return "sha256:" + cfg_hex
