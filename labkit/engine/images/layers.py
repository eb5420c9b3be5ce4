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
from labkit.engine.images import _rootdir, _tario
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


def _remove(dirfd: int, name: str) -> bool:
    """Delete ``name`` in the directory ``dirfd`` (a tree too) without following it; True
    when something was there."""
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dirfd)  # the fd-based rmtree: it never follows a symlink
    else:
        os.unlink(name, dir_fd=dirfd)
    return True


def _listdir(dirfd: int) -> list[str]:
    """The names in the directory behind the O_PATH fd ``dirfd`` (listdir needs a read fd)."""
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def _needs_root(what: str) -> errors.UnsupportedError:
    return errors.UnsupportedError(
        "overlay whiteouts", f"writing them needs {what}",
        hint="run as root, or apply_layer(..., whiteouts='flatten') onto a plain rootfs")


def _bad_path(e: LayerEntry, err: OSError) -> errors.InvalidArgumentError:
    why = {errno.ELOOP: "a symlink", errno.ENOTDIR: "a non-directory",
           errno.EXDEV: "a path leaving the root"}.get(err.errno or 0, os.strerror(err.errno or 0))
    return errors.InvalidArgumentError(
        f"layer member {e.member!r}", f"its path {e.path!r} goes through {why} in the "
        "destination; nothing is written through it",
        hint="the layer tar is malformed or hostile")


class _Writer:
    """Writes entries under ``root``; remembers what it made (whiteouts spare those).

    Every write is an ``*at`` call on a directory fd from ``_rootdir.RootDir`` and one final
    name, never following a symlink in that name (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW): a later
    entry or a concurrent writer that swaps a directory for a symlink cannot redirect a
    chmod, chown, utime, xattr or data write outside the root.
    """

    def __init__(self, root: str, *, flatten: bool, owner: bool) -> None:
        self.flatten, self.owner = flatten, owner
        # A flattened rootfs follows lower layers' symlinks inside the root; a new overlay
        # layer directory refuses every symlink on the way (it made all of its directories).
        self.root = _rootdir.RootDir(root, follow=flatten)
        self.created: set[str] = set()
        # Directory mode and mtime are set at the end (children come first); the inode is
        # kept so a directory replaced in the meantime is not touched.
        self.dirs: list[tuple[LayerEntry, tuple[int, int]]] = []
        self.opaque: list[LayerEntry] = []

    def close(self) -> None:
        self.root.close()

    def _parent(self, e: LayerEntry, rel: str, *, create: bool) -> tuple[int, str]:
        try:
            return self.root.parent(rel, create=create)
        except FileNotFoundError:
            raise
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV, errno.EEXIST):
                raise _bad_path(e, err) from err
            raise

    def _xattrs(self, e: LayerEntry, target: int | str) -> None:
        for name, value in e.xattrs:
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, value)  # fsetxattr on the file written
                else:
                    os.setxattr(target, name, value, follow_symlinks=False)
            except OSError as err:
                if err.errno in (errno.EPERM, errno.ENOTSUP) and os.geteuid() != 0:
                    continue  # trusted.*/security.* need root; an unprivileged unpack skips them
                raise errors.from_errno(err.errno or 0, "setxattr", f"{e.path} {name}") from err

    def _meta_at(self, dirfd: int, name: str, e: LayerEntry) -> None:
        """Owner and xattrs of ``name`` in ``dirfd``, never following it (dirs, symlinks)."""
        if self.owner:
            os.chown(name, e.uid, e.gid, dir_fd=dirfd, follow_symlinks=False)  # fchownat
        if e.xattrs:
            self._xattrs(e, _rootdir.proc_path(dirfd, name))  # lsetxattr: no *at form

    def write(self, e: LayerEntry, data: IO[bytes] | None) -> None:
        if e.kind == P.OPAQUE:
            self._opaque(e)
            return
        if e.kind == P.WHITEOUT:
            self._whiteout(e)
            return
        pfd, base = self._parent(e, e.path, create=True)
        try:
            self._write_at(e, pfd, base, data)
        finally:
            os.close(pfd)

    def _write_at(self, e: LayerEntry, pfd: int, base: str, data: IO[bytes] | None) -> None:
        self.created.add(e.path)
        if e.kind == P.DIR:
            try:
                st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is None or not stat.S_ISDIR(st.st_mode):
                _remove(pfd, base)
                os.mkdir(base, 0o700, dir_fd=pfd)
                st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            self._meta_at(pfd, base, e)
            self.dirs.append((e, (st.st_dev, st.st_ino)))
            return
        _remove(pfd, base)
        if e.kind == P.FILE:
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=pfd)
            with os.fdopen(fd, "wb") as out:
                if data is not None:
                    shutil.copyfileobj(data, out, 1 << 20)
                out.flush()
                # Metadata through the open fd: it names the file written, wherever its
                # directory has been moved to meanwhile.
                if self.owner:
                    os.chown(fd, e.uid, e.gid)
                os.chmod(fd, e.mode)  # after chown, which clears setuid/setgid (chown(2))
                self._xattrs(e, fd)
                os.utime(fd, (e.mtime, e.mtime))
        elif e.kind == P.SYMLINK:
            os.symlink(e.link, base, dir_fd=pfd)
            self._meta_at(pfd, base, e)  # symlink modes mean nothing on Linux
            os.utime(base, (e.mtime, e.mtime), dir_fd=pfd, follow_symlinks=False)
        elif e.kind == P.HARDLINK:
            try:
                sfd, sbase = self._parent(e, e.link, create=False)
                try:
                    # linkat(2) without AT_SYMLINK_FOLLOW links the name itself, never a target.
                    os.link(sbase, base, src_dir_fd=sfd, dst_dir_fd=pfd, follow_symlinks=False)
                finally:
                    os.close(sfd)
            except FileNotFoundError as err:
                raise errors.InvalidArgumentError(
                    f"layer member {e.member!r}", f"hardlink target {e.link!r} is no longer "
                    "in the destination (its directory was moved or replaced)") from err
            # the inode's metadata is the target's

    def _whiteout(self, e: LayerEntry) -> None:
        if e.path in self.created:
            return  # layer.md: a whiteout applies only to the layers below, not its own files
        # A flattened whiteout only deletes: it must not create the directories above it.
        try:
            pfd, base = self._parent(e, e.path, create=not self.flatten)
        except (FileNotFoundError, errors.InvalidArgumentError):
            if self.flatten:
                return  # nothing below to delete (or not a directory there)
            raise
        try:
            _remove(pfd, base)
            if self.flatten:
                return
            # overlayfs.rst: a whiteout is a character device with 0/0 device number.
            try:
                syscalls.mknodat(pfd, base, stat.S_IFCHR, os.makedev(0, 0))
            except errors.SyscallPermissionError as err:
                raise _needs_root("mknod (CAP_MKNOD)") from err
        finally:
            os.close(pfd)

    def _opaque(self, e: LayerEntry) -> None:
        if not self.flatten:
            self.opaque.append(e)  # set after the directory entry itself is written
            return
        try:
            dfd = self.root.dir(e.path)
        except OSError:
            return  # nothing there (or not a directory): nothing below to hide
        try:
            for name in _listdir(dfd):
                rel = os.path.normpath(os.path.join(e.path, name))
                if rel not in self.created:
                    _remove(dfd, name)
        finally:
            os.close(dfd)

    def finish(self) -> None:
        for e in self.opaque:
            try:
                dfd = self.root.dir(e.path, create=True)
            except OSError as err:
                raise _bad_path(e, err) from err
            try:
                rfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
            finally:
                os.close(dfd)
            try:
                os.setxattr(rfd, OPAQUE_XATTR, b"y")  # fsetxattr on the directory itself
            except PermissionError as err:
                raise _needs_root("trusted.* xattrs (CAP_SYS_ADMIN)") from err
            finally:
                os.close(rfd)
        for e, ident in reversed(self.dirs):
            try:
                pfd, base = self.root.parent(e.path)
            except OSError:
                continue  # a later entry replaced a directory above it: not ours any more
            try:
                st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                if (st.st_dev, st.st_ino) != ident or not stat.S_ISDIR(st.st_mode):
                    continue  # replaced (by a symlink, say) since: never touch what is there
                # fchmodat/utimensat with AT_SYMLINK_NOFOLLOW on one name in a checked dir.
                os.chmod(base, e.mode, dir_fd=pfd, follow_symlinks=False)
                os.utime(base, (e.mtime, e.mtime), dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            finally:
                os.close(pfd)


def _extract(blob: str | Path, root: str, plan: LayerPlan, *, flatten: bool, owner: bool) -> None:
    w = _Writer(root, flatten=flatten, owner=owner)
    try:
        _extract_into(w, blob, plan)
    finally:
        w.close()


def _extract_into(w: _Writer, blob: str | Path, plan: LayerPlan) -> None:
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
