"""docker cp's three endpoints: stat a path (HEAD), tar it (GET), extract a tar into it (PUT).

Docker Engine API v1.41 "/containers/{id}/archive"; behaviour after moby's daemon/archive.go
and container/archive.go:

* the path is absolute inside the container; a trailing ``/`` or ``/.`` is kept
  (``cp ctr:/dir/. x`` copies the directory's *contents*).  Every component but the last is
  resolved inside the container's root (symlinks followed, clamped at its ``/``: openat2
  RESOLVE_IN_ROOT); the last one is not followed, so a symlink is archived as itself and
  its stat carries ``linkTarget``, the fully resolved path (the CLI's ``cp -L`` then asks
  for that path);
* the stat travels base64 JSON in ``X-Docker-Container-Path-Stat``: name, size, mode (a Go
  ``os.FileMode``: type bits at the top, not POSIX S_IF*), mtime (RFC 3339), linkTarget;
* archive member names start with the path's base name (moby TarResourceRebase): ``etc/``,
  ``etc/passwd``; ``.`` and ``./x`` for ``/dir/.``; ``/`` for the root itself;
* PUT extracts into an existing directory (404 when missing, 400 "extraction point is not a
  directory"), refuses a read-only rootfs (400 "container rootfs is marked read-only") and,
  with ``noOverwriteDirNonDir`` (the CLI always sets it), a directory replaced by a
  non-directory or the reverse.  The tar goes through the image layer code's checks and
  confined writer (labkit.engine.images.layers, flatten mode): a hostile tar is refused
  before anything is written.  ``.wh.`` names would there mean "delete" (layer.md), which is
  not what a copy means, so they are refused with a 400 rather than misapplied.
* ``copyUIDGID``: files take the container's Config.User (moby tarCopyOptions); without it
  they keep the tar's uid/gid, as moby's default options do.

A missing path is 404 "Could not find the file <path> in container <name>" (moby errors.go).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import logging
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from labkit import errors
from labkit._sys.inroot import open_in_root
from labkit.engine.containers.record import rfc3339

__all__ = ["PathStat", "TarWriter", "extract", "go_file_mode", "path_stat",
           "resolve_resource", "stat_header"]

log = logging.getLogger("labkit.daemon")

# Go's os.FileMode type and permission-extra bits (src/io/fs/fileinfo.go)
GO_DIR, GO_SYMLINK, GO_DEVICE, GO_PIPE = 1 << 31, 1 << 27, 1 << 26, 1 << 25
GO_SOCKET, GO_SETUID, GO_SETGID, GO_CHARDEV, GO_STICKY = 1 << 24, 1 << 23, 1 << 22, 1 << 21, 1 << 20


class PathNotFoundError(errors.NotFoundError):
    """A path missing inside a container; Docker's own wording (moby containerFileNotFound)."""

    def __init__(self, path: str, container: str, hint: str | None = None) -> None:
        super().__init__("file", path, hint)
        self.container = container
        self.message = f"Could not find the file {path} in container {container}"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.name, self.container, self.hint))


def go_file_mode(mode: int) -> int:
    """A POSIX st_mode as Go's os.FileMode (what Go's os.Lstat reports, fileinfo.go)."""
    out = stat.S_IMODE(mode) & 0o777
    fmt = stat.S_IFMT(mode)
    out |= {stat.S_IFDIR: GO_DIR, stat.S_IFLNK: GO_SYMLINK, stat.S_IFBLK: GO_DEVICE,
            stat.S_IFCHR: GO_DEVICE | GO_CHARDEV, stat.S_IFIFO: GO_PIPE,
            stat.S_IFSOCK: GO_SOCKET}.get(fmt, 0)
    for bit, go in ((stat.S_ISUID, GO_SETUID), (stat.S_ISGID, GO_SETGID),
                    (stat.S_ISVTX, GO_STICKY)):
        if mode & bit:
            out |= go
    return out


def go_base(path: str) -> str:
    """Go's filepath.Base: trailing slashes dropped, "/" for the root, "." for ""."""
    if path == "":
        return "."
    stripped = path.rstrip("/")
    return "/" if not stripped else stripped.rsplit("/", 1)[-1]


def abs_path(path: str) -> str:
    """The path as absolute in the container, keeping a trailing "/" or "/." (moby
    archive.PreserveTrailingDotOrSeparator)."""
    clean = posixpath.normpath("/" + path)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if path.endswith("/.") or path == ".":
        return clean.rstrip("/") + "/."
    if path.endswith("/") and clean != "/":
        return clean + "/"
    return clean


@dataclass(frozen=True, slots=True)
class PathStat:
    """moby types.ContainerPathStat."""

    name: str
    size: int
    mode: int
    mtime: str
    link_target: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "mode": self.mode, "mtime": self.mtime,
                "linkTarget": self.link_target}


def stat_header(st: PathStat) -> str:
    """The X-Docker-Container-Path-Stat value: base64 (standard alphabet) of the JSON."""
    return base64.b64encode(json.dumps(st.to_json()).encode()).decode()


@dataclass(slots=True)
class Resource:
    """A path opened inside a container root: its parent dir fd, base name, lstat."""

    parent_fd: int
    base: str
    st: os.stat_result
    abs_path: str


def _host_to_container(root: str, fd: int) -> str:
    host = os.readlink(f"/proc/self/fd/{fd}")
    rel = os.path.relpath(host, root)
    return "/" if rel == "." else "/" + rel


@contextlib.contextmanager
def resolve_resource(rootfd: int, path: str, container: str) -> Iterator[Resource]:
    """Open the parent of ``path`` inside the root and lstat its last component."""
    ap = abs_path(path)
    if ap.endswith(("/", "/.")):
        # moby ResolvePath splits "/dir/" into ("/dir/", ""): with a trailing "/" or "/."
        # the last component is resolved like the others (a symlink to a dir is followed)
        parent, base = ap.removesuffix(".") or "/", "."
    else:
        parent, base = posixpath.split(ap)
    try:
        pfd = open_in_root(rootfd, parent, os.O_PATH | os.O_DIRECTORY)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            raise PathNotFoundError(path, container) from None
        raise errors.from_errno(err.errno or errno.EIO, "openat2", path) from None
    try:
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENOTDIR):
                raise PathNotFoundError(path, container) from None
            raise errors.from_errno(err.errno or errno.EIO, "lstat", path) from None
        yield Resource(pfd, base, st, ap)
    finally:
        os.close(pfd)


def path_stat(rootfd: int, root: str, res: Resource) -> PathStat:
    """The ContainerPathStat of an opened resource (moby container.StatPath)."""
    target = ""
    if stat.S_ISLNK(res.st.st_mode):
        try:
            fd = open_in_root(rootfd, res.abs_path.rstrip("/"), os.O_PATH)
        except OSError:
            # a dangling link: resolve lexically as far as it goes (FollowSymlinkInScope)
            from labkit.engine.images.layers import scoped_path
            target = "/" + os.path.relpath(scoped_path(root, res.abs_path), root).lstrip("./")
        else:
            try:
                target = _host_to_container(root, fd)
            finally:
                os.close(fd)
    st = res.st
    return PathStat(go_base(res.abs_path), st.st_size, go_file_mode(st.st_mode),
                    rfc3339(st.st_mtime), target)


class TarWriter:
    """Write a tree from directory fds as a tar stream, never following a symlink."""

    def __init__(self, out: IO[bytes]) -> None:
        self.tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.seen: dict[tuple[int, int], str] = {}

    def close(self) -> None:
        self.tf.close()

    def add(self, dirfd: int, name: str, member: str, st: os.stat_result) -> None:
        """Add ``name`` (in ``dirfd``) as ``member``, and everything below it."""
        ti = tarfile.TarInfo(member)
        ti.mode, ti.uid, ti.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        ti.mtime = int(st.st_mtime)
        ti.uname = ti.gname = ""
        m = st.st_mode
        if stat.S_ISDIR(m):
            ti.type = tarfile.DIRTYPE
            if not member.endswith("/"):
                ti.name = member + "/"
            self.tf.addfile(ti)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=dirfd)
            try:
                for child in sorted(os.listdir(fd)):
                    prefix = member.rstrip("/")
                    try:
                        cst = os.stat(child, dir_fd=fd, follow_symlinks=False)
                        self.add(fd, child, f"{prefix}/{child}" if member != "/" else
                                 f"/{child}", cst)
                    except (FileNotFoundError, NotADirectoryError) as err:
                        # gone or swapped meanwhile (a live container keeps changing; an
                        # entry turned symlink fails the O_NOFOLLOW open): moby's tarballer
                        # also skips what it cannot add and goes on
                        log.info("archive: skipping %s/%s: %s", prefix, child, err)
                    except OSError as err:
                        if err.errno != errno.ELOOP:
                            raise
                        log.info("archive: skipping %s/%s: %s", prefix, child, err)
            finally:
                os.close(fd)
            return
        if stat.S_ISREG(m):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.seen:
                ti.type, ti.linkname = tarfile.LNKTYPE, self.seen[key]
                self.tf.addfile(ti)
                return
            self.seen[key] = member
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
            with os.fdopen(fd, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                ti.size = size
                self.tf.addfile(ti, _Exactly(f, size))
            return
        if stat.S_ISLNK(m):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dirfd)
        elif stat.S_ISFIFO(m):
            ti.type = tarfile.FIFOTYPE
        elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        else:
            return  # sockets: tar has no type for them (moby skips them too)
        self.tf.addfile(ti)


class _Exactly:
    """A file read as exactly ``size`` bytes: a file growing or shrinking while a live
    container writes it must not corrupt the tar stream (zero-padded / truncated)."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= len(data)
        return data


def write_resource(res: Resource, out: IO[bytes]) -> None:
    """The tar of an opened resource, names rebased on the path's base (moby
    TarResourceRebase): "etc/..." for /etc, "./..." for /etc/., "/..." for /."""
    rebase = go_base(res.abs_path)
    member = "/" if rebase == "/" else rebase
    w = TarWriter(out)
    try:
        if res.abs_path == "/":
            # the root itself: its children go in as "/bin", "/etc/..."
            w.add(res.parent_fd, ".", "/", res.st)
        else:
            w.add(res.parent_fd, res.base, member, res.st)
    finally:
        w.close()


def write_export(rootfd: int, out: IO[bytes]) -> None:
    """The whole filesystem as docker export writes it: "bin/", "bin/sh", ... (no root)."""
    w = TarWriter(out)
    try:
        for child in sorted(os.listdir(rootfd)):
            try:
                st = os.stat(child, dir_fd=rootfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            w.add(rootfd, child, child, st)
    finally:
        w.close()


def _existing_kind(destfd: int, rel: str) -> int | None:
    """st_mode of ``rel`` under destfd (last component not followed); None if missing."""
    parent, base = posixpath.split(rel)
    try:
        pfd = open_in_root(destfd, parent or ".", os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        return os.stat(base, dir_fd=pfd, follow_symlinks=False).st_mode
    except OSError:
        return None
    finally:
        os.close(pfd)


def extract(blob: str, destfd: int, dest_name: str, *, no_overwrite_dir_non_dir: bool,
            owner: tuple[int, int] | None) -> None:
    """Extract the tar file ``blob`` into the directory ``destfd`` (docker cp into a
    container).  ``owner`` forces every entry's uid/gid (copyUIDGID with a Config.User)."""
    from labkit.engine.images import _layerplan as P
    from labkit.engine.images.layers import FLATTEN, apply_layer, inspect_layer
    dest = f"/proc/self/fd/{destfd}"
    plan = inspect_layer(blob, dest)
    for e in plan.entries:
        if e.kind in (P.WHITEOUT, P.OPAQUE):
            raise errors.InvalidArgumentError(
                f"archive member {e.member!r}", "'.wh.' names are overlay whiteouts; copying "
                "them into a container is not supported")
        if no_overwrite_dir_non_dir:
            mode = _existing_kind(destfd, e.path)
            if mode is None:
                continue
            if stat.S_ISDIR(mode) and e.kind != P.DIR:
                raise errors.InvalidArgumentError(
                    "cannot overwrite directory", f'cannot overwrite directory "{e.path}" with '
                    f'non-directory "{dest_name}"')
            if not stat.S_ISDIR(mode) and e.kind == P.DIR:
                raise errors.InvalidArgumentError(
                    "cannot overwrite non-directory", f'cannot overwrite non-directory "{e.path}" with '
                    f'directory "{dest_name}"')
    apply_layer(blob, dest, whiteouts=FLATTEN, same_owner=True)
    if owner is None:
        return
    for e in plan.entries:
        parent, base = posixpath.split(e.path)
        with contextlib.suppress(OSError):
            pfd = open_in_root(destfd, parent or ".", os.O_PATH | os.O_DIRECTORY)
            try:
                os.chown(base or ".", owner[0], owner[1], dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(pfd)
