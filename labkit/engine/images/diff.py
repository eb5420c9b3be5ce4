"""An overlay upper directory (or any directory) -> an OCI layer tar: the reverse of layers.py.

overlayfs records a container's changes in its upperdir (overlayfs.rst): new and copied-up
files as themselves, a deleted lower entry as a *whiteout* (character device 0:0), a
directory that replaced a lower one as *opaque* (``trusted.overlay.opaque=y``).  An OCI layer
(image-spec layer.md) spells the same facts as ``.wh.NAME`` and ``.wh..wh..opq`` entries.
``write_layer`` translates one into the other, reproducibly: entries sorted by name, numeric
ids only, gzip header without name or time, and (optionally) one fixed mtime for all entries,
so the same tree always gives the same diffID.

A plain directory (a rootfs built by hand) has no whiteouts, so the same function turns it
into a base layer.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labkit import errors
from labkit.engine.images import _rootdir, _tario
from labkit.engine.images._layerplan import (
    OVERLAY_XATTR_PREFIX,
    WH_OPAQUE,
    WH_PREFIX,
    XATTR_PAX,
    file_type,
)
from labkit.engine.images.layers import LayerDigests
from labkit.engine.images.overlay import OPAQUE_XATTR

__all__ = ["Change", "changes", "classify_mode", "whiteout_name", "write_layer"]

# overlayfs features whose upper dirs do NOT hold a self-contained change set: a renamed lower
# directory (redirect_dir) or a metadata-only copy-up (metacopy) point back into the lowers.
_UNPORTABLE = ("trusted.overlay.redirect", "trusted.overlay.metacopy")


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of an upper dir as a layer sees it: ``kind`` is "whiteout" (deleted),
    "opaque" (directory replaced), or the file type ("file", "dir", "symlink", ...)."""

    path: str
    kind: str


def classify_mode(mode: int, rdev: int) -> str:
    """The layer kind of a file with stat ``mode`` and ``rdev``: "whiteout" for a char
    device 0:0 (overlayfs.rst), else its file type ("file", "dir", "fifo", ...)."""
    if stat.S_ISCHR(mode) and os.major(rdev) == 0 and os.minor(rdev) == 0:
        return "whiteout"
    return file_type(mode)


def whiteout_name(rel: str) -> str:
    """The layer member that deletes ``rel``: ``dir/.wh.name`` (layer.md "Whiteouts")."""
    parent, base = os.path.split(rel)
    return os.path.join(parent, WH_PREFIX + base)


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False  # no such xattr, or no right to read trusted.* (then it was not ours)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One entry met by ``_walk``: ``at`` names it for calls without an ``*at`` form
    (/proc/self/fd/<parent fd>/<name>, valid while the walk is on it)."""

    rel: str
    st: os.stat_result
    kind: str
    dirfd: int
    name: str

    @property
    def at(self) -> str:
        return _rootdir.proc_path(self.dirfd, self.name)


def _walk(root: str) -> Iterator[_Entry]:
    """Everything under root, sorted, parents first.

    The upper dir may belong to a running container, whose processes can swap any directory
    for a symlink while we read: every directory is opened relative to its parent's fd with
    O_NOFOLLOW and checked to be the inode just listed, so a swap is never followed to host
    files (the CVE-2018-15664 pattern, there against docker cp).
    """
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield from _walk_fd(fd, "")
    finally:
        os.close(fd)


def _open_same(dirfd: int, name: str, st: os.stat_result, flags: int) -> int:
    """Open ``name`` in ``dirfd`` without following it; refuse it if it is no longer the
    inode ``st`` describes (swapped since it was listed)."""
    changed = errors.ConflictError(f"{name} changed while it was being read; stop the "
                                   "container or retry")
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise changed from err
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise changed from err
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise changed
    return fd


def _walk_fd(dirfd: int, rel: str) -> Iterator[_Entry]:
    lfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        names = sorted(os.listdir(lfd))
    finally:
        os.close(lfd)
    for name in names:
        r = os.path.join(rel, name) if rel else name
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        kind = classify_mode(st.st_mode, st.st_rdev)
        yield _Entry(r, st, kind, dirfd, name)
        if kind == "dir":
            sub = _open_same(dirfd, name, st, os.O_PATH | os.O_DIRECTORY)
            try:
                yield from _walk_fd(sub, r)
            finally:
                os.close(sub)


def changes(upper: str | Path) -> list[Change]:
    """List an upper dir's entries as changes, sorted (for a notebook table)."""
    root = os.fspath(upper)
    out: list[Change] = []
    for ent in _walk(root):
        if ent.kind == "dir" and _is_opaque(ent.at):
            out.append(Change(ent.rel, "opaque"))
        else:
            out.append(Change(ent.rel, ent.kind))
    return out


def _xattrs(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out  # the filesystem has no xattrs
    for name in sorted(names):
        if name in _UNPORTABLE:
            raise errors.UnsupportedError(
                "overlay diff", f"{path} has {name}: the upper dir refers back into the lowers",
                hint="mount the overlay with redirect_dir=off,metacopy=off to make layers")
        if name.startswith(OVERLAY_XATTR_PREFIX):
            continue  # overlayfs bookkeeping (opaque is written as .wh..wh..opq instead)
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        out[XATTR_PAX + name] = value.decode("utf-8", "surrogateescape")
    return out


def _info(name: str, st: os.stat_result, mtime: int | None) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""  # numeric ids only: names depend on the host's /etc/passwd
    ti.mtime = int(st.st_mtime) if mtime is None else mtime
    return ti


def write_layer(
    src: str | Path,
    out: str | Path,
    *,
    compression: str = _tario.GZIP,
    mtime: int | None = None,
) -> LayerDigests:
    """Pack the directory ``src`` (an overlay upper, or a plain tree) as a layer blob ``out``.

    Char devices 0:0 become ``.wh.NAME`` entries, opaque directories get a
    ``.wh..wh..opq`` entry; sockets are skipped (tar cannot hold them); hardlinked files
    are stored once and linked.  ``compression`` is "gzip", "none" or "zstd"; ``mtime``
    (e.g. 0) replaces every timestamp, for reproducible layers.

    Returns the digests (diffID of the tar, digest and size of the blob).  Raises
    UnsupportedError for an upper made with redirect_dir/metacopy, or zstd without the
    zstandard package; NotFoundError if ``src`` is not a directory.
    """
    root = os.fspath(src)
    if not os.path.isdir(root):
        raise errors.NotFoundError("directory", root)
    seen: dict[tuple[int, int], str] = {}
    with (_tario.write_blob(Path(out), compression) as (stream, tar_hash, blob_hash),
          tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tf):
        for ent in _walk(root):
            _add(tf, ent, mtime, seen)
    media = _tario.MEDIA_TYPES[compression]
    return LayerDigests(tar_hash.digest, blob_hash.digest, blob_hash.size, media)


def _add(tf: tarfile.TarFile, ent: _Entry, mtime: int | None,
         seen: dict[tuple[int, int], str]) -> None:
    """Append the tar entries for one upper-dir entry."""
    rel, st, kind, path = ent.rel, ent.st, ent.kind, ent.at
    if kind == "whiteout":
        ti = _info(whiteout_name(rel), st, mtime)
        ti.mode = 0o644
        tf.addfile(ti)
        return
    if kind == "socket":
        return  # tar has no socket type; a socket is a live endpoint, not content
    ti = _info(rel, st, mtime)
    ti.pax_headers = _xattrs(path)
    if kind == "dir":
        ti.type = tarfile.DIRTYPE
        tf.addfile(ti)
        if _is_opaque(path):
            opq = _info(os.path.join(rel, WH_OPAQUE), st, mtime)
            opq.mode = 0o644
            tf.addfile(opq)
    elif kind == "file":
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in seen:
            ti.type, ti.linkname = tarfile.LNKTYPE, seen[key]
            tf.addfile(ti)
            return
        seen[key] = rel
        ti.size = st.st_size
        fd = _open_same(ent.dirfd, ent.name, st, os.O_RDONLY)
        with os.fdopen(fd, "rb") as f:
            tf.addfile(ti, f)
    elif kind == "symlink":
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(ent.name, dir_fd=ent.dirfd)
        tf.addfile(ti)
    else:
        # fifos and device nodes are legal in a layer (layer.md); labkit's own apply_layer
        # refuses them, but other engines accept them.
        ti.type = {"fifo": tarfile.FIFOTYPE, "char device": tarfile.CHRTYPE,
                   "block device": tarfile.BLKTYPE}[kind]
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tf.addfile(ti)
