"""Manifests as registries serve them: media types, checked parsing, platform selection.

Accepted (image-spec manifest.md / image-index.md, Docker's manifest v2 schema 2):
Docker v2 schema2 manifests and manifest lists, OCI image manifests and indexes.  Schema 1
is refused with Docker's deprecation wording; any other media type is refused by name.
A manifest list / index picks ``os/architecture[/variant]`` (the host's, or the ``platform``
the client asked for) with containerd's matching rules: the variant must be equal, or for
arm the highest compatible one below the host's (v7 runs v6 and v5); no match is an error.
"""

from __future__ import annotations

import json
import platform as _platform
from dataclasses import dataclass
from typing import Any

from labkit import errors
from labkit.engine.images.digest import parse_digest

__all__ = [
    "ACCEPT",
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Descriptor",
    "ImageManifest",
    "Platform",
    "host_platform",
    "parse",
    "parse_platform",
    "select",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws")
LAYER_TYPES = (DOCKER_LAYER, "application/vnd.oci.image.layer.v1.tar",
               "application/vnd.oci.image.layer.v1.tar+gzip")
# overlayfs stacks at most ~500 lower dirs (and a mount option page limits it further);
# moby's own limit on a layer chain is 125 (layer.maxLayerDepth)
MAX_LAYERS = 125
ACCEPT = (DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, *SCHEMA1)


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None


@dataclass(frozen=True, slots=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm"}


def _normalize(p: Platform) -> Platform:
    """containerd platforms.Normalize: amd64 v1 and arm64 v8 are the empty variant."""
    arch = _ARCH.get(p.architecture, p.architecture)
    variant = p.variant
    if (arch, variant) in (("amd64", "v1"), ("arm64", "v8")):
        variant = ""
    return Platform(p.os.lower(), arch, variant)


def host_platform() -> Platform:
    m = _platform.machine()
    variant = {"armv7l": "v7", "armv6l": "v6"}.get(m, "")
    return _normalize(Platform("linux", _ARCH.get(m, m), variant))


def parse_platform(text: str) -> Platform:
    """``os[/arch[/variant]]`` as the ``platform`` query parameter carries it."""
    parts = text.strip().split("/")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise errors.InvalidArgumentError("platform", f"{text!r}: expected os[/arch[/variant]]")
    if parts[0] != "linux":
        raise errors.UnsupportedError("platform", f"{text!r}: labkit runs linux images only")
    arch = parts[1] if len(parts) > 1 else host_platform().architecture
    return _normalize(Platform(parts[0], arch, parts[2] if len(parts) > 2 else ""))


def _matches(want: Platform, got: Platform) -> int:
    """0: no match; higher is better (an exact variant beats a compatible lower one)."""
    w, g = _normalize(want), _normalize(got)
    if (w.os, w.architecture) != (g.os, g.architecture):
        return 0
    if w.variant == g.variant:
        return 100
    if w.architecture == "arm" and w.variant[1:].isdigit() and g.variant[1:].isdigit() \
            and g.variant.startswith("v") and int(g.variant[1:]) < int(w.variant[1:]):
        return int(g.variant[1:])
    return 0


def _obj(doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise errors.InvalidArgumentError("manifest", f"{what} is not a JSON object")
    return doc


def _descriptor(doc: Any, what: str) -> Descriptor:
    d = _obj(doc, what)
    digest, size, mt = d.get("digest"), d.get("size"), d.get("mediaType", "")
    if not isinstance(digest, str) or not isinstance(mt, str):
        raise errors.InvalidArgumentError("manifest", f"{what}: digest and mediaType must be "
                                          "strings")
    parse_digest(digest)  # only sha256; the digest also becomes a file name
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise errors.InvalidArgumentError("manifest", f"{what}: size must be an integer >= 0")
    plat = None
    if isinstance(d.get("platform"), dict):
        p = d["platform"]
        plat = Platform(str(p.get("os", "")), str(p.get("architecture", "")),
                        str(p.get("variant", "") or ""))
    return Descriptor(mt, digest, size, plat)


def _schema1_error(name: str) -> errors.UnsupportedError:
    return errors.UnsupportedError(
        "image manifest", "[DEPRECATION NOTICE] Docker Image Format v1 and Docker Image "
        "manifest version 2, schema 1 support has been removed. Suggest the author of "
        f"{name} to upgrade the image to the OCI Format or Docker Image manifest v2, schema 2",
        hint="More information at https://docs.docker.com/go/deprecated-image-specs/")


def parse(content_type: str, raw: bytes, name: str) -> ImageManifest | list[Descriptor]:
    """An image manifest, or a list's descriptors.  The media type is the Content-Type, or
    the body's ``mediaType`` when the registry answered a generic JSON type."""
    try:
        doc = _obj(json.loads(raw), "the manifest")
    except ValueError as e:
        raise errors.InvalidArgumentError("manifest", f"not JSON: {e}") from None
    body_type = doc.get("mediaType") if isinstance(doc.get("mediaType"), str) else ""
    mt = content_type if content_type in ACCEPT else body_type or content_type
    if body_type and body_type != mt:
        raise errors.InvalidArgumentError("manifest", f"Content-Type {mt!r} but the body says "
                                          f"mediaType {body_type!r}")
    if mt in SCHEMA1 or doc.get("schemaVersion") == 1:
        raise _schema1_error(name)
    if not mt and "manifests" in doc:
        mt = OCI_INDEX
    elif not mt and "config" in doc:
        mt = OCI_MANIFEST
    if mt in (DOCKER_LIST, OCI_INDEX):
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise errors.InvalidArgumentError("manifest", "the index has no manifests list")
        return [_descriptor(e, f"manifests[{i}]") for i, e in enumerate(entries)]
    if mt not in (DOCKER_MANIFEST, OCI_MANIFEST):
        raise errors.UnsupportedError("manifest media type", f"{mt!r} is not an image "
                                      "manifest labkit pulls",
                                      hint="Docker v2 schema 2 and OCI manifests/indexes are")
    config = _descriptor(doc.get("config"), "config")
    if config.media_type not in (DOCKER_CONFIG, OCI_CONFIG, ""):
        # an artifact (a Helm chart, a signature...), not a container image
        raise errors.UnsupportedError("config media type", f"{config.media_type!r} is not an "
                                      "image config", hint="only container images are pulled")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise errors.InvalidArgumentError("manifest", "layers must be a list")
    if len(layers) > MAX_LAYERS:
        raise errors.InvalidArgumentError("manifest", f"{len(layers)} layers: more than the "
                                          f"{MAX_LAYERS} labkit stacks")
    descs = tuple(_descriptor(x, f"layers[{i}]") for i, x in enumerate(layers))
    for d in descs:
        if d.media_type == DOCKER_FOREIGN or "nondistributable" in d.media_type:
            raise errors.UnsupportedError("foreign layer", f"{d.digest} ({d.media_type})",
                                          hint="labkit pulls only distributable layers")
        if d.media_type not in LAYER_TYPES:
            raise errors.UnsupportedError("layer media type", f"{d.media_type!r} "
                                          f"(layer {d.digest})",
                                          hint="tar and tar+gzip layers are pulled")
    return ImageManifest(mt, config, descs)


def select(entries: list[Descriptor], want: Platform) -> Descriptor:
    """The best entry for ``want``; Docker's error when none matches."""
    best: tuple[int, Descriptor] | None = None
    for d in entries:
        if d.platform is None or d.media_type not in (DOCKER_MANIFEST, OCI_MANIFEST, ""):
            continue
        score = _matches(want, d.platform)
        if score and (best is None or score > best[0]):
            best = (score, d)
    if best is None:
        from labkit.engine.registry.client import NotFound
        raise NotFound(f"no matching manifest for {want} in the manifest list entries")
    return best[1]
