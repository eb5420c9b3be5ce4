"""Notebook 05's registry round trip: push an image to a real registry, look at what the
registry stored, pull it back, and see which layers travelled.

A registry keeps blobs by the digest of the bytes it was sent (the gzip-compressed layer
tars, the config), and a manifest that lists them (OCI distribution-spec; image-spec
manifest.md).  The image ID is the digest of the config, so it is the same on both sides;
the layer digests differ from the diff_ids because the layers travel compressed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.engine.client import Client
from labkit.measure.registry import LocalRegistry

__all__ = ["Transfer", "pull", "push", "registry_blobs"]


@dataclass
class Transfer:
    """One push or pull: the final status of each layer (its short id -> status)."""

    ref: str
    layers: dict[str, str]
    digest: str | None
    messages: list[dict[str, Any]]

    def rows(self) -> list[dict[str, str]]:
        return [{"layer": k, "status": v} for k, v in self.layers.items()]


_FINAL = ("Pushed", "Layer already exists", "Pull complete", "Already exists")


def _transfer(ref: str, msgs: list[dict[str, Any]]) -> Transfer:
    layers: dict[str, str] = {}
    digest = None
    for m in msgs:
        status = str(m.get("status", ""))
        if m.get("id") and (status in _FINAL or status.startswith("Mounted from")):
            layers[str(m["id"])] = status
        if status.startswith("Digest: "):
            digest = status.removeprefix("Digest: ")
        aux = m.get("aux") or {}
        if aux.get("Digest"):
            digest = str(aux["Digest"])
    return Transfer(ref, layers, digest, msgs)


def push(client: Client, image: str, registry: LocalRegistry) -> Transfer:
    """Tag ``image`` as REGISTRY/IMAGE and push it; returns what each layer did."""
    repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    target = f"{registry.address}/{repo}"
    client.images.tag(image, target, tag or "latest")
    return _transfer(f"{target}:{tag or 'latest'}",
                     client.images.push(target, tag or "latest"))


def pull(client: Client, ref: str) -> Transfer:
    """Pull ``ref`` (REGISTRY/REPO:TAG); returns what each layer did."""
    name, _, tag = ref.rpartition(":")
    return _transfer(ref, client.images.pull(name, tag))


def registry_blobs(registry: LocalRegistry) -> list[dict[str, Any]]:
    """The blobs the registry stored on disk (filesystem driver layout:
    docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data), with their sizes."""
    top = Path(registry.storage) / "docker" / "registry" / "v2" / "blobs" / "sha256"
    rows = []
    for data in sorted(top.glob("*/*/data")):
        rows.append({"digest": f"sha256:{data.parent.name[:12]}",
                     "bytes": data.stat().st_size,
                     "gzip": data.read_bytes()[:2] == b"\x1f\x8b"})
    return rows
