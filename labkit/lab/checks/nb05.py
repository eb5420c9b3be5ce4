"""Checks of notebook 05 (images and layers): a layer's diff_id, and which layer a file
comes from once whiteouts are in play.

Each check first runs the learner's function on small layers it makes itself in a
``lk-chk05-*`` temp dir (removed again), then on the notebook's own image store, read only.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from labkit.engine.images.overlay import OPAQUE_XATTR
from labkit.lab.exercises import Namespace, defined, exercise, fail, need

__all__ = ["reference_layer_of"]

APP_IMAGE = "lk-nb/app:1"  # built by the notebook (section 3)


def _setup(ns: Namespace, name: str) -> Any:
    value = ns.get(name)
    need(value is not None, f"{name!r} is not defined: run the notebook from the top "
                            "(the set-up cell makes it), then this cell again")
    return value


def _store_image(ns: Namespace, ref: str) -> Any:
    from labkit.engine.images.store import ImageStore

    eng = _setup(ns, "eng")
    try:
        return ImageStore(Path(eng.root) / "images").get(ref)
    except Exception:  # noqa: BLE001 - any failure to find it is the hint
        fail(f"the notebook's image {ref!r} is not in the store: run the build cells of "
             "section 3 again")


# -- 05.diff_id ------------------------------------------------------------------------------

def _sample_tar(directory: Path) -> tuple[Path, Path, str]:
    """An uncompressed layer tar and its gzip form, and the diff_id both must give."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = secrets.token_hex(64).encode()
        ti = tarfile.TarInfo("greeting")
        ti.size, ti.mtime = len(data), 0
        tar.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    plain, packed = directory / "layer.tar", directory / "layer.tar.gz"
    plain.write_bytes(raw)
    packed.write_bytes(gzip.compress(raw, mtime=0))
    return plain, packed, "sha256:" + hashlib.sha256(raw).hexdigest()


def _diff_id_hint(call: str, got: object, want: str, blob: Path) -> str:
    if not isinstance(got, str):
        return f"{call} returned {got!r}; return the digest as a string 'sha256:<64 hex>'"
    if got == want[7:]:
        return f"{call} returned the bare hex: write it as the config does, 'sha256:<hex>'"
    if got.removeprefix("sha256:") == hashlib.sha256(blob.read_bytes()).hexdigest():
        return (f"{call} gave the digest of the gzip bytes (what a registry names a blob by); "
                "a diff_id is taken over the UNCOMPRESSED tar: decompress first")
    return (f"{call} returned {got[:20]!r}...; a diff_id is the sha256 of the layer tar's "
            "bytes (uncompressed), written 'sha256:<hex>'")


@exercise("05.diff_id")
def diff_id(ns: Namespace) -> str:
    fn = defined(ns, "diff_id")
    work = Path(tempfile.mkdtemp(prefix="lk-chk05-"))
    try:
        plain, packed, want = _sample_tar(work)
        for blob in (plain, packed):
            got = fn(blob)
            need(got == want, _diff_id_hint(f"diff_id({blob.name!r})", got, want, blob))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from labkit.engine.images.store import ImageStore

    img = _store_image(ns, APP_IMAGE)
    store = ImageStore(Path(_setup(ns, "eng").root) / "images")
    checked = 0
    for i, d in enumerate(img.config["rootfs"]["diff_ids"]):
        blob = store.blob_path(d)
        if not blob.exists():
            continue
        got = fn(blob)
        need(got == d, f"layer {i} of {APP_IMAGE}: the store keeps its tar at {blob}; "
                       f"diff_id() gave {str(got)[:19]}..., the config says {d[:19]}...")
        checked += 1
    need(checked, f"the store kept no layer tar of {APP_IMAGE} to compare with")
    return (f"a test tar and its gzip form give the same diff_id, and all {checked} layers of "
            f"{APP_IMAGE} match the config's rootfs.diff_ids")


# -- 05.layer_of -----------------------------------------------------------------------------

def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0  # overlayfs.rst: char device 0:0


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def reference_layer_of(layer_dirs: Sequence[str | Path], path: str) -> int | None:
    """The index (base = 0) of the layer whose copy of ``path`` the merged view shows, or
    None when no layer has it or a whiteout (of it or of a parent) or an opaque parent
    directory hides the lower ones (overlayfs.rst; image-spec layer.md "Whiteouts")."""
    parts = [p for p in path.split("/") if p]
    for i in reversed(range(len(layer_dirs))):
        cur, hidden = Path(layer_dirs[i]), False
        for k, part in enumerate(parts):
            cur = cur / part
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                break
            if _is_whiteout(st):
                return None
            if k == len(parts) - 1:
                return i
            if not stat.S_ISDIR(st.st_mode):
                return None  # a file replaced the parent directory
            hidden = hidden or _is_opaque(cur)
        if hidden:
            return None
    return None


def _make_layers(top: Path) -> tuple[list[Path], dict[str, tuple[int | None, str]]]:
    """Three small layers (base first) and, per path, the answer and why."""
    dirs = [top / f"layer{i}" for i in range(3)]
    files = {0: ["bin/sh", "bin/true", "etc/passwd", "opt/tool/run", "srv/a"],
             1: ["etc/passwd", "greeting"], 2: ["bin/true", "srv/b"]}
    for i, names in files.items():
        for name in names:
            (dirs[i] / name).parent.mkdir(parents=True, exist_ok=True)
            (dirs[i] / name).write_text(f"layer {i}\n")
    for i, name in ((1, "bin/true"), (1, "opt")):  # RUN rm /bin/true && rm -rf /opt
        (dirs[i] / name).parent.mkdir(parents=True, exist_ok=True)
        os.mknod(dirs[i] / name, stat.S_IFCHR | 0o600, os.makedev(0, 0))
    cases: dict[str, tuple[int | None, str]] = {
        "bin/sh": (0, "only the base layer has it"),
        "etc/passwd": (1, "layer 1 wrote a new copy over the base's"),
        "greeting": (1, "layer 1 added it"),
        "opt/tool/run": (None, ("layer 1 deleted the whole /opt directory: one whiteout "
                               "named opt hides everything below it")),
        "bin/true": (2, ("layer 1 deleted it (a whiteout), but layer 2 added it again: the "
                        "top-most layer that says anything about a path decides")),
        "nope": (None, "no layer has it"),
    }
    try:  # RUN rm -rf /srv && mkdir /srv && echo > /srv/b: an opaque directory
        os.setxattr(dirs[2] / "srv", OPAQUE_XATTR, b"y")
        cases["srv/a"] = (None, ("layer 2 made /srv opaque (removed and made again): the "
                                "lower layers' /srv is hidden as a whole"))
        cases["srv/b"] = (2, "layer 2's own /srv/b")
    except OSError:
        pass  # no trusted.* xattrs here (not root, or a filesystem without them)
    return dirs, cases


@exercise("05.layer_of")
def layer_of(ns: Namespace) -> str:
    fn: Callable[[list[Path], str], int | None] = defined(ns, "layer_of")
    need(os.geteuid() == 0, "this check makes whiteouts (mknod of a char device 0:0): run the "
                            "notebook as root")
    work = Path(tempfile.mkdtemp(prefix="lk-chk05-"))
    try:
        dirs, cases = _make_layers(work)
        for path, (want, why) in cases.items():
            got = fn(list(dirs), path)
            need(got == want, f"layer_of(layers, {path!r}) returned {got!r}, expected "
                              f"{want!r}: {why}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    img = _store_image(ns, APP_IMAGE)
    layers = [Path(p) for p in img.layers]
    for path in ("bin/sh", "data.txt", "bin/true", "app/app.txt"):
        want = reference_layer_of(layers, path)
        got = fn(layers, path)
        need(got == want, f"on {APP_IMAGE}'s layers, layer_of(layers, {path!r}) returned "
                          f"{got!r}; the merged view takes it from {want!r}")
    return (f"{len(cases)} paths through whiteouts" + (" and an opaque dir" if "srv/b" in cases
                                                       else "")
            + f" are right, and on {APP_IMAGE}: bin/true is hidden by the RUN's whiteout")
