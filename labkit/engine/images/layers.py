"""Apply an OCI layer tar (plain, gzip, zstd) to a directory, safely (image-spec layer.md).

Two passes over the blob:

1. ``inspect_layer`` reads every header, checks each member (labkit.engine.images._layerplan)
   and computes both digests.  A hostile tar is refused here, before anything is written.
2. ``apply_layer`` reads it again and writes.  It compares each member with the checked plan
   (the blob could change between the passes) and resolves every parent directory *inside*
   the destination, the way Go's securejoin does: a symlink met on the way is read and
   followed as if the destination were ``/``, so nothing outside the destination is written
   even when earlier layers left symlinks like ``etc -> /etc``.

Whiteouts can be applied two ways (``whiteouts=``):

* ``"overlay"`` (default): the layer becomes an overlayfs lower directory.  ``.wh.NAME``
  becomes a character device 0:0 named NAME and ``.wh..wh..opq`` the xattr
  ``trusted.overlay.opaque=y`` (overlayfs.rst "whiteouts and opaque directories"); both need
  root (CAP_MKNOD, CAP_SYS_ADMIN).  The destination must be new or empty: the layer is
  unpacked beside it and renamed into place, so a failure leaves nothing half-made.
* ``"flatten"``: the layer is applied onto a plain rootfs directory (layers applied in
  order, base first): whiteouts delete what lower layers put there.  Entries are written in
  place, so an I/O failure part way leaves the rootfs partly updated; nothing outside it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from labkit import errors
from labkit._sys import syscalls
from labkit.engine.images import _layerplan as P
from labkit.engine.images import _tario
from labkit.engine.images._layerplan import LayerEntry
from labkit.engine.images.overlay import OPAQUE_XATTR

__all__ = [
    "FLATTEN",
    "OVERLAY",
    "LayerDigests",
    "LayerEntry",
    "LayerPlan",
    "apply_layer",
    "inspect_layer",
    "scoped_path",
]

OVERLAY, FLATTEN = "overlay", "flatten"
_MAX_LINKS = 40  # path_resolution(7): Linux gives up after 40 symlinks (ELOOP)


@dataclass(frozen=True, slots=True)
class LayerDigests:
    """A layer's identity: ``diff_id`` (sha256 of the tar), ``digest`` and ``size`` (of the
    blob as stored), ``media_type`` (layer.md media types)."""

    diff_id: str
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True, slots=True)
class LayerPlan:
    """What a layer will do, member by member, and its digests (from ``inspect_layer``)."""

    entries: tuple[LayerEntry, ...]
    digests: LayerDigests


def scoped_path(root: str | Path, rel: str) -> str:
    """Resolve ``rel`` inside ``root`` as if ``root`` were ``/`` (like Go's securejoin).

    Every component that is a symlink is read and followed *within* root: an absolute
    target restarts at root, ``..`` stops at root.  Missing components are kept as named.
    The last component is resolved too; callers that must not follow it resolve the parent.
    Raises InvalidArgumentError after 40 symlinks (ELOOP in path_resolution(7)).
    """
    root = os.fspath(root)
    todo = [p for p in rel.split("/")][::-1]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        cand = os.path.join(root, *done, part)
        try:
            st = os.lstat(cand)
        except (FileNotFoundError, NotADirectoryError):
            done.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            done.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise errors.InvalidArgumentError(rel, f"too many levels of symlinks under {root}")
        target = os.readlink(cand)
        if target.startswith("/"):
            done = []
        todo.extend(target.split("/")[::-1])
    return os.path.join(root, *done)


def _exists_in(root: str) -> Callable[[str], bool]:
    def exists(rel: str) -> bool:
        try:
            return not stat.S_ISDIR(os.lstat(scoped_path(root, rel)).st_mode)
        except OSError:
            return False
    return exists


def inspect_layer(blob: str | Path, onto: str | Path | None = None) -> LayerPlan:
    """Read a layer blob, check every member and compute its digests; write nothing.

    ``onto`` is the rootfs a flattened apply will write to (hardlinks may then point at
    its existing files).  Raises InvalidArgumentError naming the first bad member,
    UnsupportedError for a compression this host cannot read.
    """
    checker = P.Checker(_exists_in(os.fspath(onto)) if onto is not None else None)
    entries: list[LayerEntry] = []
    with _tario.open_blob(Path(blob)) as (tf, blob_hash, tar_hash, kind):
        try:
            for ti in tf:
                e = P.classify(ti)
                if e is not None:
                    checker.check(e)
                    entries.append(e)
            _tario.finish(blob_hash, tar_hash)
        except (OSError, EOFError) as err:
            if isinstance(err, errors.LabkitError):
                raise
            raise errors.InvalidArgumentError(str(blob), f"unreadable layer: {err}") from err
        except (tarfile.TarError, zlib.error) as err:
            raise errors.InvalidArgumentError(str(blob), f"corrupt layer: {err}") from err
    digests = LayerDigests(tar_hash.digest, blob_hash.digest, blob_hash.size,
                           _tario.MEDIA_TYPES[kind])
    return LayerPlan(tuple(entries), digests)


def apply_layer(
    blob: str | Path,
    dest: str | Path,
    *,
    whiteouts: str = OVERLAY,
    same_owner: bool | None = None,
) -> LayerDigests:
    """Unpack the layer ``blob`` into ``dest``; return its diffID and blob digest.

    ``whiteouts`` is "overlay" (dest is a new/empty overlay lower dir) or "flatten" (dest
    is a rootfs the layer is applied onto).  ``same_owner`` (default: when running as root)
    applies the tar's uid/gid.

    Raises InvalidArgumentError naming the member for a hostile or malformed tar (nothing
    written), AlreadyExistsError for a non-empty dest in overlay mode, UnsupportedError for
    zstd without the zstandard package, SyscallError when the kernel refuses (mknod, xattr).
    """
    if whiteouts not in (OVERLAY, FLATTEN):
        raise errors.InvalidArgumentError("whiteouts", f"{whiteouts!r} is not 'overlay' or 'flatten'")
    dest = Path(dest).absolute()
    owner = os.geteuid() == 0 if same_owner is None else same_owner
    if whiteouts == FLATTEN:
        dest.mkdir(parents=True, exist_ok=True)
        plan = inspect_layer(blob, dest)
        _extract(blob, str(dest), plan, flatten=True, owner=owner)
        return plan.digests
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise errors.AlreadyExistsError("layer directory", str(dest),
                                        hint="overlay layers are unpacked into a new directory")
    plan = inspect_layer(blob)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".lk-unpack-{dest.name}-", dir=dest.parent)
    try:
        _extract(blob, tmp, plan, flatten=False, owner=owner)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a lower's root is read by everyone
        os.rename(tmp, dest)  # rename(2) may replace an empty directory: atomic publish
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return plan.digests


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _needs_root(what: str) -> errors.UnsupportedError:
    return errors.UnsupportedError(
        "overlay whiteouts", f"writing them needs {what}",
        hint="run as root, or apply_layer(..., whiteouts='flatten') onto a plain rootfs")


class _Writer:
    """Writes entries under ``root``; remembers what it made (whiteouts spare those)."""

    def __init__(self, root: str, *, flatten: bool, owner: bool) -> None:
        self.root, self.flatten, self.owner = root, flatten, owner
        self.created: set[str] = set()
        self.dirs: list[tuple[str, LayerEntry]] = []
        self.opaque: list[str] = []

    def place(self, e: LayerEntry, *, create: bool = True) -> str:
        """The host path for ``e.path``: its parent resolved inside root, created if missing."""
        parent_rel, base = os.path.split(e.path)
        parent = scoped_path(self.root, parent_rel)
        if not create:
            return os.path.join(parent, base)
        try:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as err:
            raise errors.InvalidArgumentError(
                f"layer member {e.member!r}", f"its parent {parent_rel!r} is not a directory "
                "in the destination") from err
        return os.path.join(parent, base)

    def meta(self, path: str, e: LayerEntry, *, chmod: bool = True) -> None:
        if self.owner:
            os.lchown(path, e.uid, e.gid)
        if chmod:  # after chown, which clears setuid/setgid bits (chown(2))
            os.chmod(path, e.mode, follow_symlinks=False)
        for name, value in e.xattrs:
            try:
                os.setxattr(path, name, value, follow_symlinks=False)
            except OSError as err:
                if err.errno in (errno.EPERM, errno.ENOTSUP) and os.geteuid() != 0:
                    continue  # trusted.*/security.* need root; an unprivileged unpack skips them
                raise errors.from_errno(err.errno or 0, "setxattr", f"{path} {name}") from err

    def write(self, e: LayerEntry, data: IO[bytes] | None) -> None:
        if e.kind == P.OPAQUE:
            self._opaque(e)
            return
        # A flattened whiteout only deletes: it must not create the directories above it.
        path = self.place(e, create=not (e.kind == P.WHITEOUT and self.flatten))
        if e.kind == P.WHITEOUT:
            self._whiteout(e, path)
            return
        self.created.add(e.path)
        if e.kind == P.DIR:
            if not os.path.isdir(path) or os.path.islink(path):
                _remove(path)
                os.mkdir(path, 0o700)
            self.meta(path, e, chmod=False)
            self.dirs.append((path, e))  # mode and mtime at the end: children come first
            return
        _remove(path)
        if e.kind == P.FILE:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                if data is not None:
                    shutil.copyfileobj(data, out, 1 << 20)
            self.meta(path, e)
        elif e.kind == P.SYMLINK:
            os.symlink(e.link, path)
            self.meta(path, e, chmod=False)  # symlink modes mean nothing on Linux
        elif e.kind == P.HARDLINK:
            link_parent, link_base = os.path.split(e.link)
            src = os.path.join(scoped_path(self.root, link_parent), link_base)
            os.link(src, path, follow_symlinks=False)
            return  # the inode's metadata is the target's
        os.utime(path, (e.mtime, e.mtime), follow_symlinks=False)

    def _whiteout(self, e: LayerEntry, path: str) -> None:
        if e.path in self.created:
            return  # layer.md: a whiteout applies only to the layers below, not its own files
        if self.flatten:
            _remove(path)
            return
        _remove(path)
        # overlayfs.rst: a whiteout is a character device with 0/0 device number.
        try:
            syscalls.mknod(path, stat.S_IFCHR, os.makedev(0, 0))
        except errors.SyscallPermissionError as err:
            raise _needs_root("mknod (CAP_MKNOD)") from err

    def _opaque(self, e: LayerEntry) -> None:
        path = scoped_path(self.root, e.path)
        if not self.flatten:
            self.opaque.append(path)  # set after the directory entry itself is written
            return
        if not os.path.isdir(path):
            return
        for name in os.listdir(path):
            rel = os.path.normpath(os.path.join(e.path, name))
            if rel not in self.created:
                _remove(os.path.join(path, name))

    def finish(self) -> None:
        for path in self.opaque:
            os.makedirs(path, mode=0o755, exist_ok=True)
            try:
                os.setxattr(path, OPAQUE_XATTR, b"y", follow_symlinks=False)
            except PermissionError as err:
                raise _needs_root("trusted.* xattrs (CAP_SYS_ADMIN)") from err
        for path, e in reversed(self.dirs):
            os.chmod(path, e.mode)
            os.utime(path, (e.mtime, e.mtime), follow_symlinks=False)


def _extract(blob: str | Path, root: str, plan: LayerPlan, *, flatten: bool, owner: bool) -> None:
    w = _Writer(root, flatten=flatten, owner=owner)
    i = 0
    with _tario.open_blob(Path(blob)) as (tf, blob_hash, tar_hash, _):
        for ti in tf:
            e = P.classify(ti)
            if e is None:
                continue
            if i >= len(plan.entries) or plan.entries[i] != e:
                raise errors.ConflictError(f"layer {blob} changed while it was being applied")
            i += 1
            w.write(e, tf.extractfile(ti) if e.kind == P.FILE else None)
        _tario.finish(blob_hash, tar_hash)
    if i != len(plan.entries) or tar_hash.digest != plan.digests.diff_id:
        raise errors.ConflictError(f"layer {blob} changed while it was being applied")
    w.finish()
