"""The image store: images listed, inspected, tagged and deleted the way Docker does it.

Layout under paths.images_dir() (0700; files 0600)::

    layers/<diffid hex>/          one unpacked layer, shared by every image that has it
                                  (an overlay lowerdir)
    blobs/sha256/<diffid hex>     the layer's tar, kept for ``docker save``
    configs/<image id hex>.json   the image config (image-spec config.md), bytes as received
    meta/<image id hex>.json      labkit's facts about an image (size)
    repositories.json             {"busybox:latest": "sha256:<image id>"}: the tags
    repodigests.json              {"127.0.0.1:5000/x@sha256:<manifest>": "sha256:<image id>"}
                                  (RepoDigests: where a pull or push found the image)
    tmp/                          staging for loads and imports (swept at daemon start)
    oci-layout, index.json        the store root is also an OCI image layout (image-layout.md):
    blobs/sha256/<id hex>         every image's config (a hard link of configs/) and
    blobs/sha256/<manifest hex>   an OCI manifest per image; index.json names them by tag
    held/<image id hex>.json      the config of an image deleted (rmi -f) while a stopped
                                  container still uses it: not listed, not resolvable, but
                                  its layers stay until release() after the container is gone

The image ID is the sha256 of the config JSON bytes, as in Docker (image-spec config.md,
"ImageID").  Every write is atomic (temp file + fsync + rename) so a crash never leaves a
half-written store; ``ensure_busybox()`` can be called on every daemon start.  Names follow
Docker's reference grammar and are kept in the short form Docker shows (``busybox:latest``,
``lk/x:1``, ``127.0.0.1:5000/x:1``).  Loading and importing are in archive.py.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine import paths

__all__ = ["DEFAULT_PATH", "Image", "ImageStore", "ensure_busybox", "normalize_ref", "split_ref"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?")


# image-spec media types (media-types.md) and the index annotation (annotations.md)
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_REF_NAME = "org.opencontainers.image.ref.name"


def split_ref(ref: str) -> tuple[str, str]:
    """Docker's reference grammar (distribution/reference): ``(repo, tag)`` in the short
    form Docker shows (``busybox``, ``lk/bb``, ``127.0.0.1:5000/bb``); tag defaults to latest.

    ``docker.io/library/`` and ``docker.io/`` are dropped as the CLI does (ParseNormalizedNamed
    + FamiliarName).  Raises InvalidArgumentError naming the reference for anything else,
    including digests (``@sha256:``) which this store does not keep.
    """
    if "@" in ref:
        raise errors.InvalidArgumentError(
            "reference", f"{ref!r}: references by digest are not supported (no RepoDigests)")
    last = ref.rsplit("/", 1)[-1]
    name, tag = (ref.rsplit(":", 1) if ":" in last else (ref, "latest"))
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/",
                   "index.docker.io/"):
        if name.startswith(prefix) and name != prefix:
            name = name[len(prefix):]
            break
    if name.startswith("library/") and name.count("/") == 1:
        name = name.removeprefix("library/")
    parts = name.split("/")
    # distribution/reference: the first component is a registry when it has "." or ":"
    # or is "localhost"; then it must be a valid host[:port]
    has_domain = len(parts) > 1 and ("." in parts[0] or ":" in parts[0]
                                     or parts[0] == "localhost")
    path = parts[1:] if has_domain and _DOMAIN.fullmatch(parts[0]) else parts
    if not name or not all(_COMPONENT.fullmatch(p) for p in path) or not _TAG.fullmatch(tag) \
            or len(name) > 255:
        raise errors.InvalidArgumentError(
            "reference", f"invalid reference format: {ref!r} (repository names are lowercase "
            "[a-z0-9._-] components joined by '/', tags [A-Za-z0-9_.-], at most 128)")
    return name, tag


def normalize_ref(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; ``docker.io/library/busybox`` -> ``busybox:latest``."""
    name, tag = split_ref(ref)
    return f"{name}:{tag}"


def _is_hex_ref(ref: str) -> bool:
    h = ref.removeprefix("sha256:")
    return 0 < len(h) <= 64 and all(c in "0123456789abcdef" for c in h)


def _atomic_write(path: Path, data: bytes) -> None:
    """temp (0600, mkstemp) + fsync + rename(2): readers see the old or the new file."""
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
    """Images under ``root`` (default paths.images_dir()).

    ``configs/<id>.json`` holds each image's config bytes exactly as received (the ID is
    their sha256, so a saved and re-loaded image keeps its ID); ``blobs/sha256/<diffid>``
    the layer tar a layer was unpacked from (``docker save`` writes it back byte for byte:
    a re-packed tree would not hash to the config's diff_id); ``meta/<id>.json`` labkit's
    own facts (size).  An image without tags is dangling.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else paths.images_dir()
        self._mutex = threading.Lock()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise read-modify-write of the tag table and deletes (threads and processes:
        flock(2) on ``.lock``)."""
        self.root.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        with self._mutex:
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _repos(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads((self.root / "repositories.json").read_text())
            return data
        except FileNotFoundError:
            return {}

    def _save_repos(self, repos: dict[str, str]) -> None:
        _atomic_write(self.root / "repositories.json",
                      json.dumps(dict(sorted(repos.items())), indent=1).encode())
        self._oci_sync(repos)

    def _oci_sync(self, repos: dict[str, str] | None = None) -> None:
        """Keep the store root a valid OCI image layout (image-spec image-layout.md), under
        locked(): ``oci-layout``, ``blobs/sha256/`` holding every layer tar (kept there
        already, by diff_id: an uncompressed layer's digest), every image's config (a hard
        link of configs/<id>.json: same bytes, so its digest is the image ID) and one OCI
        manifest per image, and ``index.json`` naming each tagged image's manifest with
        ``org.opencontainers.image.ref.name`` (untagged images listed without it).  Any
        tool that reads OCI layouts (skopeo, umoci, ``oras``) can read the store as it is.
        An image whose layer tar is not kept is left out of the index, never listed
        half.  Config and manifest blobs no image names any more are removed."""
        repos = self._repos() if repos is None else repos
        blobs = self.root / "blobs" / "sha256"
        blobs.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        if not (self.root / "oci-layout").exists():
            _atomic_write(self.root / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        tags: dict[str, builtins.list[str]] = {}
        for tag, iid in repos.items():
            tags.setdefault(iid, []).append(tag)
        entries: builtins.list[dict[str, Any]] = []
        keep: set[str] = set()
        for iid in self.ids():
            desc = self._oci_manifest(iid, blobs)
            if desc is None:
                continue
            keep |= {iid[7:], desc["digest"][7:]}
            names = sorted(tags.get(iid, []))
            entries += ([{**desc, "annotations": {_REF_NAME: t}} for t in names] if names
                        else [desc])
        index = {"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": entries}
        _atomic_write(self.root / "index.json", json.dumps(index, indent=1).encode())
        layers = self.root / "layers"
        for name in os.listdir(blobs):
            # layer tars are named by diff_id and have their layer dir; the rest are
            # configs and manifests, kept only while an image names them
            if name not in keep and not (layers / name).exists() and _is_hex_ref(name) \
                    and _is_oci_json(blobs / name):
                with contextlib.suppress(FileNotFoundError):
                    (blobs / name).unlink()

    def _oci_manifest(self, image_id: str, blobs: Path) -> dict[str, Any] | None:
        """The OCI manifest descriptor of ``image_id`` (manifest and config blobs written
        when missing), or None when one of its layer tars is not kept."""
        hexid = image_id[7:]
        cfg_path = self.root / "configs" / f"{hexid}.json"
        try:
            raw = cfg_path.read_bytes()
        except FileNotFoundError:
            return None
        layers = []
        for d in json.loads(raw).get("rootfs", {}).get("diff_ids", []):
            try:
                layers.append({"mediaType": _OCI_LAYER, "digest": d,
                               "size": self.blob_path(d).stat().st_size})
            except (FileNotFoundError, errors.LabkitError):
                return None
        if not (blobs / hexid).exists():
            try:
                os.link(cfg_path, blobs / hexid)
            except FileExistsError:
                pass
        man = json.dumps({"schemaVersion": 2, "mediaType": _OCI_MANIFEST,
                          "config": {"mediaType": _OCI_CONFIG, "digest": image_id,
                                     "size": len(raw)},
                          "layers": layers}, sort_keys=True, separators=(",", ":")).encode()
        mdig = hashlib.sha256(man).hexdigest()
        if not (blobs / mdig).exists():
            _atomic_write(blobs / mdig, man)
        return {"mediaType": _OCI_MANIFEST, "digest": f"sha256:{mdig}", "size": len(man)}

    def _digests(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads((self.root / "repodigests.json").read_text())
            return data
        except FileNotFoundError:
            return {}

    def add_repo_digest(self, name: str, digest: str, image_id: str, *,
                        held: bool = False) -> None:
        """Record ``name@digest`` (a registry manifest) as naming ``image_id``; one digest
        per repository and image, as Docker keeps it (the newest wins)."""
        key = f"{name}@{digest}"
        with contextlib.nullcontext() if held else self.locked():
            ds = {k: v for k, v in self._digests().items()
                  if not (v == image_id and k.split("@", 1)[0] == name)}
            ds[key] = image_id
            _atomic_write(self.root / "repodigests.json",
                          json.dumps(dict(sorted(ds.items())), indent=1).encode())

    def repo_digests(self, image_id: str) -> list[str]:
        """``name@sha256:...`` entries naming ``image_id`` (inspect's RepoDigests)."""
        return sorted(k for k, v in self._digests().items() if v == image_id)

    def config_bytes(self, image_id: str) -> bytes:
        """The config blob exactly as stored (its sha256 is the ID)."""
        try:
            return (self.root / "configs" / f"{image_id.split(':', 1)[-1]}.json").read_bytes()
        except FileNotFoundError:
            raise errors.NotFoundError("image", image_id) from None

    def _load(self, image_id: str, tags: tuple[str, ...]) -> Image:
        hexid = image_id.split(":", 1)[-1]
        config = json.loads(self.config_bytes(hexid))
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        layers = tuple(self.layer_dir(d) for d in diff_ids)
        size = int(config.get("labkit", {}).get("size", 0))
        try:
            size = int(json.loads((self.root / "meta" / f"{hexid}.json").read_bytes())["size"])
        except (FileNotFoundError, KeyError, ValueError):
            pass
        return Image(f"sha256:{hexid}", tags, config, layers, size)

    def layer_dir(self, diff_id: str) -> Path:
        """Where the layer ``diff_id`` is (or would be) unpacked, shared by every image."""
        hexd = diff_id.split(":", 1)[-1]
        if not _is_hex_ref(hexd):  # the name becomes a path: hex only, never "../"
            raise errors.InvalidArgumentError("diff_id", f"{diff_id!r} is not a sha256 digest")
        return self.root / "layers" / hexd

    def blob_path(self, diff_id: str) -> Path:
        """Where the tar of layer ``diff_id`` is kept (may be absent: see save)."""
        return self.root / "blobs" / "sha256" / self.layer_dir(diff_id).name

    def ids(self) -> builtins.list[str]:
        """Every image ID, tagged or dangling."""
        try:
            names = os.listdir(self.root / "configs")
        except FileNotFoundError:
            return []
        return [f"sha256:{n[:-5]}" for n in sorted(names)
                if n.endswith(".json") and not n.startswith(".")]

    def list(self, *, all_: bool = True) -> builtins.list[Image]:
        """Every image, one entry per ID with all its tags (dangling ones too unless
        ``all_`` is False)."""
        by_id: dict[str, list[str]] = {i: [] for i in self.ids()} if all_ else {}
        for tag, iid in sorted(self._repos().items()):
            by_id.setdefault(iid, []).append(tag)
        out = []
        for iid, tags in by_id.items():
            try:
                out.append(self._load(iid, tuple(tags)))
            except errors.NotFoundError:
                continue  # a config removed between listdir and read
        return out

    def resolve(self, ref: str) -> str:
        """The full image ID for a name[:tag], a ``sha256:`` ID or a unique ID prefix."""
        if "@" in ref:  # name@sha256:...: only what a pull or push recorded
            iid = self._digests().get(_digest_key(ref))
            if iid is None:
                raise errors.NotFoundError("image", ref)
            return iid
        repos = self._repos()
        full = ref.startswith("sha256:") or len(ref) == 64
        if not full:  # a name wins over an ID prefix (moby GetImage): "abcd" may be both
            try:
                tag = normalize_ref(ref)
            except errors.InvalidArgumentError:
                tag = ""
            if tag in repos:
                return repos[tag]
        if _is_hex_ref(ref):
            hexref = ref.removeprefix("sha256:")
            hits = [i for i in self.ids() if i[7:].startswith(hexref)]
            if len(hits) == 1 and (len(hexref) >= 4 or ref.startswith("sha256:")):
                return hits[0]
            if len(hits) > 1:
                raise errors.InvalidArgumentError(
                    "image", f"{ref!r} is an ambiguous ID prefix ({len(hits)} images)")
        if "@" in ref or ref.startswith("sha256:") or "/" in ref and ":" not in ref.rsplit("/", 1)[-1]:
            raise errors.NotFoundError("image", ref)
        try:
            raise errors.NotFoundError("image", normalize_ref(ref))
        except errors.InvalidArgumentError:
            raise errors.NotFoundError("image", ref) from None

    def get(self, ref: str) -> Image:
        """Resolve a name[:tag], a full ``sha256:`` ID or an ID prefix (>= 4 hex digits).

        Raises NotFoundError("image", ref): the daemon answers 404 "No such image: ref".
        """
        iid = self.resolve(ref)
        return self._load(iid, tuple(t for t, i in sorted(self._repos().items()) if i == iid))

    def add(self, tag: str, config: dict[str, Any]) -> Image:
        """Store an image config under ``tag``; its layers must already be unpacked."""
        data = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        return self.add_raw(data, [tag])

    def add_raw(self, config: bytes, tags: Sequence[str], *, size: int | None = None,
                held: bool = False) -> Image:
        """Store config bytes as received (ID = their sha256) and point ``tags`` at it.

        The layers must already be in place: the config is written last, so an image is
        never visible before all of its layers are.  ``held``: the caller holds locked().
        """
        hexid = hashlib.sha256(config).hexdigest()
        if size is not None:
            _atomic_write(self.root / "meta" / f"{hexid}.json",
                          json.dumps({"size": size}).encode())
        _atomic_write(self.root / "configs" / f"{hexid}.json", config)
        with contextlib.nullcontext() if held else self.locked():
            repos = self._repos()
            for t in tags:
                repos[normalize_ref(t)] = f"sha256:{hexid}"
            self._save_repos(repos)
        return self.get(f"sha256:{hexid}")

    def tag(self, ref: str, new: str) -> str:
        """Point ``new`` (name[:tag]) at the image ``ref``; returns the normalised tag."""
        new_tag = normalize_ref(new)
        with self.locked():
            iid = self.resolve(ref)
            repos = self._repos()
            repos[new_tag] = iid
            self._save_repos(repos)
        return new_tag

    def untag(self, tag: str) -> str:
        """Remove one tag; returns the image ID it named."""
        with self.locked():
            repos = self._repos()
            iid = repos.pop(normalize_ref(tag), None)
            if iid is None:
                raise errors.NotFoundError("image", tag)
            self._save_repos(repos)
        return iid

    def delete(self, image_id: str, *, hold: bool = False) -> int:
        """Delete an untagged image's config and every layer no other image uses.

        ``hold``: a stopped container still uses the image (``rmi -f``, as Docker): the
        image goes (no longer listed or resolvable) but its config moves to ``held/`` and
        its layers stay, the container's lower dirs, until release().  Returns the bytes
        reclaimed.  The caller checks containers first (handlers/images).
        """
        hexid = image_id.split(":", 1)[-1]
        with self.locked():
            if image_id in self._repos().values():
                raise errors.ConflictError(f"image {hexid[:12]} still has tags")
            img = self._load(image_id, ())
            config = self.root / "configs" / f"{hexid}.json"
            if hold:
                held = self.root / "held" / config.name
                held.parent.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
                os.rename(config, held)
            else:
                config.unlink()
            ds = self._digests()
            if image_id in ds.values():
                _atomic_write(self.root / "repodigests.json", json.dumps(
                    {k: v for k, v in ds.items() if v != image_id}, indent=1).encode())
            with contextlib.suppress(FileNotFoundError):
                (self.root / "meta" / f"{hexid}.json").unlink()
            freed = 0 if hold else self._free_unused(img.layers)
            self._oci_sync()
            return freed

    def _free_unused(self, layers: Sequence[Path]) -> int:
        """Remove the ``layers`` no image and no held config names (under locked())."""
        used = {p for other in self.list() for p in other.layers}
        used |= {p for iid in self.held() for p in self._load_held(iid).layers}
        freed = 0
        for layer in layers:
            if layer in used:
                continue
            freed += dir_size(layer)
            _rmtree_private(layer)
            with contextlib.suppress(FileNotFoundError):
                self.blob_path(layer.name).unlink()
        return freed

    def held(self) -> builtins.list[str]:
        """IDs of images deleted while a container used them (their layers are kept)."""
        try:
            names = os.listdir(self.root / "held")
        except FileNotFoundError:
            return []
        return [f"sha256:{n[:-5]}" for n in sorted(names)
                if n.endswith(".json") and not n.startswith(".")]

    def _load_held(self, image_id: str) -> Image:
        hexid = image_id.split(":", 1)[-1]
        if not _is_hex_ref(hexid) or len(hexid) != 64:
            raise errors.NotFoundError("image", image_id)
        try:
            config = json.loads((self.root / "held" / f"{hexid}.json").read_bytes())
        except FileNotFoundError:
            raise errors.NotFoundError("image", image_id) from None
        layers = tuple(self.layer_dir(d) for d in config.get("rootfs", {}).get("diff_ids", []))
        return Image(f"sha256:{hexid}", (), config, layers, sum(dir_size(p) for p in layers))

    def for_container(self, image_id: str) -> Image:
        """The image a container was made from, by full ID: a live image, or one deleted
        with ``rmi -f`` while the container stayed (held/): a container always starts."""
        try:
            return self.get(image_id)
        except errors.NotFoundError:
            return self._load_held(image_id)

    def release(self, in_use: set[str]) -> int:
        """Drop every held image no container in ``in_use`` (image IDs) still uses, and
        free its layers unless an image uses them.  Returns the bytes reclaimed."""
        with self.locked():
            freed = 0
            for iid in self.held():
                if iid in in_use:
                    continue
                img = self._load_held(iid)
                (self.root / "held" / f"{iid[7:]}.json").unlink()
                freed += self._free_unused(img.layers)
            self._oci_sync()
            return freed

    def sweep(self) -> None:
        """Remove what an interrupted load, import or delete left (daemon start): staging
        dirs, layers renamed aside for removal, half-unpacked layers (layers.apply_layer
        unpacks beside the final name)."""
        shutil.rmtree(self.root / "tmp", ignore_errors=True)
        try:
            names = os.listdir(self.root / "layers")
        except FileNotFoundError:
            names = []
        for n in names:
            if n.startswith((".rm-", ".lk-unpack-")):
                shutil.rmtree(self.root / "layers" / n, ignore_errors=True)
        if (self.root / "configs").is_dir():  # an older store gains its OCI layout view
            with self.locked():
                self._oci_sync()

    def staging(self) -> tempfile.TemporaryDirectory[str]:
        """A private scratch dir inside the store (same filesystem: rename(2) publishes)."""
        d = self.root / "tmp"
        d.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(prefix="lk-stage-", dir=d)


def _is_oci_json(path: Path) -> bool:
    """A config or manifest blob (JSON with rootfs or schemaVersion), never a layer tar: a
    layer being published may have its tar in blobs/ before its dir is in layers/."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
        doc = json.loads(head) if head[:1] == b"{" else None
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and ("schemaVersion" in doc or "rootfs" in doc)


def _digest_key(ref: str) -> str:
    """``busybox@sha256:..`` / ``docker.io/library/busybox@..`` -> the stored key."""
    name, _, digest = ref.partition("@")
    try:
        short, _ = split_ref(name)
    except errors.InvalidArgumentError:
        return ref
    return f"{short}@{digest}"


def _rmtree_private(path: Path) -> None:
    """Remove a layer dir: rename it aside first, so a crash never leaves half a layer
    under its real name (a later load would take it as complete)."""
    if not path.exists():
        return
    aside = path.with_name(f".rm-{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


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
    store.sweep()
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
        kept = store.blob_path(digests.diff_id)
        if not kept.exists():  # docker save writes this tar back (its sha256 is the diff_id)
            kept.parent.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
            os.chmod(blob, 0o600)
            os.rename(blob, kept)
    config = {
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [digests.diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z",
                     "created_by": "labkit: host busybox-static (/bin/busybox)"}],
        "labkit": {"size": dir_size(layer)},
    }
    return store.add("busybox:latest", config)

