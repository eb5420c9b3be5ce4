"""Images in and out as tars: ``docker save`` / ``docker load`` (the docker-archive format)
and ``docker import`` (a root filesystem tar becomes a one-layer image).

docker-archive (moby image/tarexport, the format ``docker save`` writes)::

    manifest.json          [{"Config": "<id hex>.json", "RepoTags": [...], "Layers": [...]}]
    <id hex>.json          the config, byte for byte (its sha256 is the image ID)
    <diffid hex>/layer.tar one tar per layer, base first
    repositories           {"busybox": {"latest": "<top layer dir>"}} (the legacy index)

An OCI image layout tar (image-spec image-layout.md: index.json, blobs/sha256/...) loads
too, every manifest, config and layer blob checked against its descriptor's digest.

Loading trusts nothing in the archive: members are read by name and must be regular files
(never followed as links), each layer's sha256 must equal the config's rootfs.diff_ids entry
(image-spec config.md "diff_ids"), layers are unpacked with the checking layer code
(layers.apply_layer) into a staging dir, and only when every layer of every image is good
are they renamed into the store and the configs and tags written.  A refused or interrupted
load leaves no image behind.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import shutil
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from labkit import errors
from labkit.engine import paths
from labkit.engine.images.diff import write_layer
from labkit.engine.images.layers import apply_layer, inspect_layer
from labkit.engine.images.store import Image, ImageStore, dir_size, split_ref

__all__ = ["Loaded", "host_arch", "import_rootfs", "load_archive", "parse_changes", "save_archive"]

_MAX_JSON = 8 << 20  # manifest/config members above this are refused, not read into memory
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Loaded:
    """One image a load stored: its ID and the tags now pointing at it."""

    id: str
    tags: tuple[str, ...]


def host_arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _layer_tar(store: ImageStore, diff_id: str, layer: Path, scratch: Path) -> Path:
    """The tar whose sha256 is ``diff_id``: the kept blob, or the layer dir re-packed with
    mtime 0 (how ensure_busybox packed it) when that reproduces the digest."""
    kept = store.blob_path(diff_id)
    if kept.exists():
        return kept
    out = scratch / f"{layer.name}.tar"
    got = write_layer(layer, out, compression="none", mtime=0)
    if got.diff_id != diff_id:
        raise errors.UnsupportedError(
            "image save", f"the tar of layer {diff_id} is not kept and re-packing the "
            f"unpacked layer gives {got.diff_id}", hint="re-create the image (load or import)")
    return out


def save_archive(store: ImageStore, refs: Sequence[str], out: IO[bytes]) -> None:
    """Write the docker-archive of the images ``refs`` (names or IDs) to ``out``.

    A name is saved with its tag in RepoTags; an ID with every tag it has (as Docker).
    Raises NotFoundError for an unknown ref before anything is written.
    """
    picked: dict[str, list[str]] = {}
    for ref in refs:
        img = store.get(ref)
        tags = picked.setdefault(img.id, [])
        try:
            named = store.resolve(ref) == img.id and not ref.startswith("sha256:") and \
                not img.id[7:].startswith(ref)
        except errors.LabkitError:
            named = False
        for t in ([_short(ref)] if named else list(img.tags)):
            if t not in tags:
                tags.append(t)
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    with store.staging() as scratch, \
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        done: set[str] = set()
        for iid, tags in picked.items():
            img = store.get(iid)
            cfg_name = f"{iid[7:]}.json"
            _add_bytes(tf, cfg_name, store.config_bytes(iid))
            layers = []
            for diff_id, layer in zip(img.config["rootfs"]["diff_ids"], img.layers, strict=True):
                name = f"{layer.name}/layer.tar"
                layers.append(name)
                if name not in done:
                    done.add(name)
                    tar = _layer_tar(store, diff_id, layer, Path(scratch))
                    tf.add(str(tar), arcname=name, recursive=False)
            manifest.append({"Config": cfg_name, "RepoTags": tags or None, "Layers": layers})
            for t in tags:
                repo, tag = t.rsplit(":", 1)
                repositories.setdefault(repo, {})[tag] = layers[-1].split("/")[0] if layers else ""
        _add_bytes(tf, "manifest.json", json.dumps(manifest).encode())
        _add_bytes(tf, "repositories", json.dumps(repositories).encode())


def _short(ref: str) -> str:
    name, tag = split_ref(ref)
    return f"{name}:{tag}"


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    import io
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
    tf.addfile(ti, io.BytesIO(data))


def _member(tf: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    """The regular-file member ``name``; links and other types are refused (a link could
    make a layer name stand for another member, or a path outside the archive)."""
    try:
        ti = tf.getmember(name)
    except KeyError:
        raise errors.InvalidArgumentError("image archive", f"member {name!r} is missing") from None
    if not ti.isreg():
        raise errors.InvalidArgumentError(
            "image archive", f"member {name!r} is not a regular file (links are refused)")
    return ti


def _json_member(tf: tarfile.TarFile, name: str) -> bytes:
    ti = _member(tf, name)
    if ti.size > _MAX_JSON:
        raise errors.InvalidArgumentError("image archive", f"{name!r} is over {_MAX_JSON} bytes")
    f = tf.extractfile(ti)
    assert f is not None  # a regular member always has data
    return f.read()


def _copy_member(tf: tarfile.TarFile, name: str, dest: Path) -> None:
    f = tf.extractfile(_member(tf, name))
    assert f is not None
    with open(dest, "wb", opener=lambda p, fl: os.open(p, fl, 0o600)) as w:
        shutil.copyfileobj(f, w, _CHUNK)


def _parse_manifest(raw: bytes) -> list[dict[str, Any]]:
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        raise errors.InvalidArgumentError("image archive", f"manifest.json: {e}") from None
    ok = isinstance(manifest, list) and all(
        isinstance(m, dict) and isinstance(m.get("Config"), str)
        and isinstance(m.get("Layers"), list) and all(isinstance(x, str) for x in m["Layers"])
        and isinstance(m.get("RepoTags") or [], list) for m in manifest)
    if not ok:
        raise errors.InvalidArgumentError(
            "image archive", "manifest.json is not a list of {Config, RepoTags, Layers}")
    return manifest  # type: ignore[no-any-return]


def _diff_ids(config: bytes, name: str) -> list[str]:
    """The config's rootfs.diff_ids, after checking the shape everything else reads (an
    object; ``config`` an object; ``history`` a list of objects): a loaded config is later
    read by inspect, history and container create, which must not meet a surprise."""
    try:
        cfg = json.loads(config)
        ids = cfg["rootfs"]["diff_ids"]
        if not isinstance(ids, list) or not all(isinstance(d, str) for d in ids):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise errors.InvalidArgumentError(
            "image archive", f"config {name!r} has no rootfs.diff_ids list") from None
    hist = cfg.get("history", [])
    if not isinstance(cfg.get("config") or {}, dict) or not isinstance(hist, list) or \
            not all(isinstance(h, dict) for h in hist):
        raise errors.InvalidArgumentError(
            "image archive", f"config {name!r}: 'config' must be an object and 'history' "
            "a list of objects")
    return ids


def _open_tar(src: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(src, mode="r:*")
    except (tarfile.TarError, OSError) as e:
        raise errors.InvalidArgumentError("image archive", f"not a tar archive: {e}") from None


@dataclass(frozen=True, slots=True)
class _Entry:
    """One image found in an archive: config bytes, layer members (with the blob digest an
    OCI manifest promises for each, None in a docker-archive) and tags."""

    config: bytes
    where: str
    layers: list[tuple[str, str | None]]
    tags: list[str]


def _docker_entries(tf: tarfile.TarFile) -> list[_Entry]:
    out = []
    for entry in _parse_manifest(_json_member(tf, "manifest.json")):
        out.append(_Entry(_json_member(tf, entry["Config"]), entry["Config"],
                          [(m, None) for m in entry["Layers"]],
                          [_short(t) for t in entry.get("RepoTags") or []]))
    return out


def _blob_name(digest: Any) -> str:
    """``blobs/sha256/<hex>`` for a well-formed sha256 digest; anything else is refused
    (the digest becomes a member name)."""
    if not isinstance(digest, str) or not digest.startswith("sha256:") or \
            len(digest) != 71 or any(c not in "0123456789abcdef" for c in digest[7:]):
        raise errors.InvalidArgumentError("image archive", f"bad digest {digest!r}")
    return f"blobs/sha256/{digest[7:]}"


def _verified_json(tf: tarfile.TarFile, digest: Any) -> dict[str, Any]:
    """A JSON blob whose sha256 must equal ``digest`` (image-spec descriptor.md)."""
    name = _blob_name(digest)
    raw = _json_member(tf, name)
    if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
        raise errors.InvalidArgumentError("image archive", f"{name} does not match its digest")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise errors.InvalidArgumentError("image archive", f"{name}: {e}") from None
    if not isinstance(data, dict):
        raise errors.InvalidArgumentError("image archive", f"{name} is not a JSON object")
    return data


_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")


def _oci_entries(tf: tarfile.TarFile) -> list[_Entry]:
    """An OCI image layout (image-spec image-layout.md): index.json -> manifests -> config
    and layer blobs, every blob checked against its digest.  The name comes from the
    ``io.containerd.image.name`` annotation or an ``org.opencontainers.image.ref.name``
    that is a full reference (a bare tag like "latest" names no repository: untagged)."""
    try:
        index = json.loads(_json_member(tf, "index.json"))
        manifests = index["manifests"]
        if not isinstance(manifests, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise errors.InvalidArgumentError("image archive", "index.json has no manifests list") \
            from None
    out = []
    for desc in manifests:
        if not isinstance(desc, dict):
            raise errors.InvalidArgumentError("image archive", "index.json: bad descriptor")
        if desc.get("mediaType") in _INDEX_TYPES:
            raise errors.UnsupportedError(
                "OCI layout with a nested index", "multi-platform archives are not loaded",
                hint="save one platform's image")
        man = _verified_json(tf, desc.get("digest"))
        cfg_digest = (man.get("config") or {}).get("digest")
        config_name = _blob_name(cfg_digest)
        config = _json_member(tf, config_name)
        if "sha256:" + hashlib.sha256(config).hexdigest() != cfg_digest:
            raise errors.InvalidArgumentError("image archive",
                                              f"{config_name} does not match its digest")
        layers: list[tuple[str, str | None]] = []
        for ld in man.get("layers") or []:
            d = ld.get("digest") if isinstance(ld, dict) else None
            layers.append((_blob_name(d), str(d)))
        ann = desc.get("annotations") or {}
        full, ref = ann.get("io.containerd.image.name"), ann.get("org.opencontainers.image.ref.name")
        name = full if isinstance(full, str) else \
            ref if isinstance(ref, str) and ("/" in ref or ":" in ref) else None
        tags = [_short(name)] if name else []
        out.append(_Entry(config, config_name, layers, tags))
    return out


def load_archive(store: ImageStore, src: Path,
                 progress: Callable[[str], None] = lambda _: None) -> list[Loaded]:
    """Load a docker-archive (manifest.json) or OCI image layout (index.json) tar file
    ``src`` into ``store`` (see the module doc).

    Raises InvalidArgumentError naming what is wrong (missing member, digest or diff_id
    mismatch, hostile layer).  Nothing is stored unless everything checks.
    """
    with _open_tar(src) as tf, store.staging() as stage_s:
        stage = Path(stage_s)
        names = set(tf.getnames())
        if "manifest.json" in names:
            entries = _docker_entries(tf)
        elif "index.json" in names:
            entries = _oci_entries(tf)
        else:
            raise errors.InvalidArgumentError(
                "image archive", "no manifest.json (docker save) or index.json (OCI layout)")
        planned: list[tuple[bytes, list[str], list[str]]] = []
        staged: dict[str, Path] = {}
        for entry in entries:
            diff_ids = _diff_ids(entry.config, entry.where)
            if len(diff_ids) != len(entry.layers):
                raise errors.InvalidArgumentError(
                    "image archive", f"{entry.where}: {len(diff_ids)} diff_ids but "
                    f"{len(entry.layers)} layers in the manifest")
            for diff_id, (member, blob_digest) in zip(diff_ids, entry.layers, strict=True):
                layer = store.layer_dir(diff_id)  # refuses a non-hex diff_id (a path)
                if diff_id in staged:
                    continue
                blob = stage / f"{layer.name}.tar"
                _copy_member(tf, member, blob)
                digests = inspect_layer(blob).digests  # refuses a hostile tar too
                if blob_digest is not None and digests.digest != blob_digest:
                    raise errors.InvalidArgumentError(
                        "image archive", f"layer {member!r} does not match its digest "
                        f"(got {digests.digest}): refused, nothing stored")
                got = digests.diff_id
                if got != diff_id:
                    raise errors.InvalidArgumentError(
                        "image archive", f"layer {member!r} has diff_id {got}, but the config "
                        f"says {diff_id}: refused, nothing stored")
                if digests.media_type.endswith("zstd"):
                    raise errors.UnsupportedError(
                        "image load", f"layer {member!r} is zstd-compressed",
                        hint="plain or gzip layers are loaded")
                if not layer.is_dir():
                    progress(f"unpacking layer {layer.name[:12]}")
                    apply_layer(blob, stage / layer.name)
                if not digests.media_type.endswith(".tar"):  # keep the plain tar for save
                    plain = stage / f"{layer.name}.plain"
                    _decompress(blob, plain)
                    blob = plain
                staged[diff_id] = blob
            planned.append((entry.config, diff_ids, entry.tags))
        return [_publish(store, stage, staged, *p) for p in planned]


def _publish(store: ImageStore, stage: Path, staged: dict[str, Path], config: bytes,
             diff_ids: list[str], tags: list[str]) -> Loaded:
    """Move checked layers into place (rename(2), same filesystem), then the config and
    tags: until the config is written no image names these layers."""
    size = 0
    # Under the store lock: a concurrent rmi cannot delete a layer this image is about to
    # name, and two loads of one layer do not both rename it into place.
    with store.locked():
        for d in diff_ids:
            layer = store.layer_dir(d)
            unpacked = stage / layer.name
            if not layer.exists():
                if not unpacked.is_dir():
                    raise errors.ConflictError(
                        f"layer {d} was removed while this image was loading", hint="retry")
                layer.parent.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
                os.rename(unpacked, layer)
            blob = store.blob_path(d)
            if not blob.exists() and staged[d].exists():
                blob.parent.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
                os.rename(staged[d], blob)
            size += dir_size(layer)
        img = store.add_raw(config, tags, size=size, held=True)
    return Loaded(img.id, tuple(tags))


_SIMPLE = {"WORKDIR": "WorkingDir", "USER": "User"}


def _words(arg: str, what: str) -> list[str]:
    """Exec form (a JSON array) as is; shell form wrapped in /bin/sh -c (Dockerfile rules)."""
    if arg.startswith("["):
        try:
            v = json.loads(arg)
        except ValueError:
            v = None
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise errors.InvalidArgumentError("changes", f"{what}: {arg!r} is not a JSON string array")
        return v
    return ["/bin/sh", "-c", arg]


def _pairs(arg: str, what: str) -> list[tuple[str, str]]:
    if "=" not in arg.split(" ", 1)[0]:  # legacy "ENV key value"
        k, _, v = arg.partition(" ")
        return [(k, v.strip())]
    out = []
    for item in arg.split():
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise errors.InvalidArgumentError("changes", f"{what}: {item!r} is not key=value")
        out.append((k, v.strip('"')))
    return out


def parse_changes(changes: Sequence[str], config: dict[str, Any]) -> None:
    """Apply ``docker import --change`` lines (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL,
    EXPOSE) to the image's run ``config``; any other instruction is refused by name."""
    for line in changes:
        word, _, arg = line.strip().partition(" ")
        word, arg = word.upper(), arg.strip()
        if not arg:
            raise errors.InvalidArgumentError("changes", f"{word or line!r} needs an argument")
        if word in ("CMD", "ENTRYPOINT"):
            config["Cmd" if word == "CMD" else "Entrypoint"] = _words(arg, word)
        elif word in _SIMPLE:
            config[_SIMPLE[word]] = arg
        elif word == "ENV":
            env = [e for e in config.get("Env") or []]
            for k, v in _pairs(arg, word):
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            config["Env"] = env
        elif word == "LABEL":
            config.setdefault("Labels", {}).update(_pairs(arg, word))
        elif word == "EXPOSE":
            for p in arg.split():
                port = p if "/" in p else f"{p}/tcp"
                num, _, proto = port.partition("/")
                if not num.isdigit() or proto not in ("tcp", "udp", "sctp"):
                    raise errors.InvalidArgumentError("changes", f"EXPOSE: bad port {p!r}")
                config.setdefault("ExposedPorts", {})[port] = {}
        else:
            raise errors.UnsupportedError(
                "docker import --change", f"instruction {word!r} is not supported",
                hint="CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL and EXPOSE are")


def import_rootfs(store: ImageStore, src: Path, tag: str | None, *,
                  changes: Sequence[str] = (), message: str = "",
                  source: str = "-") -> Image:
    """Make a one-layer image from the root filesystem tar ``src`` (plain or compressed);
    tag it when ``tag`` is given.  The tar is checked and unpacked by apply_layer."""
    run_cfg: dict[str, Any] = {"Env": [f"PATH={_default_path()}"]}
    parse_changes(changes, run_cfg)
    tags = [_short(tag)] if tag else []
    with store.staging() as stage_s:
        stage = Path(stage_s)
        digests = inspect_layer(src).digests
        if digests.media_type.endswith("zstd"):
            raise errors.UnsupportedError("docker import", "zstd rootfs tars are not imported",
                                          hint="give a plain or gzip tar")
        diff_id = digests.diff_id
        layer = store.layer_dir(diff_id)
        if not layer.is_dir():
            apply_layer(src, stage / layer.name)
        created = _now()
        config = {
            "architecture": host_arch(), "os": "linux", "created": created,
            "config": run_cfg, "comment": message or f"Imported from {source}",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "",
                         "comment": message or f"Imported from {source}"}],
        }
        raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        staged = stage / f"{layer.name}.tar"
        if digests.media_type.endswith(".tar"):
            shutil.copyfile(src, staged)
        else:  # keep an uncompressed copy for save: its sha256 must be the diff_id
            _decompress(src, staged)
        loaded = _publish(store, stage, {diff_id: staged}, raw, [diff_id], tags)
        return store.get(loaded.id)


def _decompress(src: Path, dest: Path) -> None:
    """gunzip ``src`` to ``dest`` (0600): the kept layer tar must hash to the diff_id."""
    with gzip.open(src, "rb") as r, open(dest, "wb",
                                         opener=lambda p, fl: os.open(p, fl, 0o600)) as w:
        shutil.copyfileobj(r, w, _CHUNK)


def _default_path() -> str:
    from labkit.engine.images.store import DEFAULT_PATH
    return DEFAULT_PATH
