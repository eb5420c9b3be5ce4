"""COPY and ADD: sources from the build context into an image's root filesystem.

Sources are context-relative; a source that leaves the context (``../x``) is refused with
Docker's words ("forbidden path outside the build context").  Each source is resolved inside
the context with RESOLVE_IN_ROOT (a symlink in the context cannot reach the host); a
directory's *contents* are copied, symlinks inside it copied as links, never followed.
The destination is resolved inside the image's root the same way (an image's ``/etc`` may be
a symlink).  ``ADD`` of a local tar (plain, gzip, bzip2, xz) unpacks it at the destination
with the checking layer code (images/layers.py, flatten mode), as Docker does.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labkit import errors
from labkit._sys.inroot import open_in_root
from labkit.engine.images._rootdir import RootDir
from labkit.engine.images.layers import FLATTEN, apply_layer

__all__ = ["Owner", "content_digest", "copy_sources", "resolve_sources"]

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Owner:
    """uid/gid for the copied files and the mode --chmod gives them (None: keep)."""

    uid: int = 0
    gid: int = 0
    mode: int | None = None


def _forbidden(cmd: str, src: str) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(
        cmd, f"{cmd} failed: forbidden path outside the build context: {src} ()")


def resolve_sources(ctx: Path, cmd: str, sources: list[str]) -> list[str]:
    """Clean context-relative source paths; wildcards matched against the context."""
    out: list[str] = []
    for src in sources:
        if src.startswith(("http://", "https://", "git@", "git://")):
            raise errors.UnsupportedError(
                f"{cmd} of a URL", f"{src}: the builder fetches nothing from the network",
                hint="download the file into the build context and ADD or COPY it")
        clean = posixpath.normpath(src)
        if clean == ".." or clean.startswith("../"):
            raise _forbidden(cmd, src)
        clean = clean.lstrip("/")  # "/x" in a COPY source means the context's x
        if any(c in clean for c in "*?["):
            hits = _glob(ctx, clean)
            if not hits:
                raise errors.InvalidArgumentError(
                    cmd, f"{cmd} failed: no source files were specified")
            out += hits
            continue
        try:
            fd = _open_ctx(ctx, clean)
        except OSError:
            raise errors.InvalidArgumentError(
                cmd, f"{cmd} failed: file not found in build context or excluded by "
                f".dockerignore: stat {src}: file does not exist") from None
        os.close(fd)
        out.append(clean or ".")
    return out


def _glob(ctx: Path, pattern: str) -> list[str]:
    parts = pattern.split("/")
    found = [""]
    for part in parts:
        nxt = []
        for base in found:
            d = ctx / base if base else ctx
            try:
                names = sorted(os.listdir(d))
            except OSError:
                continue
            nxt += [f"{base}/{n}" if base else n for n in names if fnmatch.fnmatchcase(n, part)]
        found = nxt
    return found


def _open_ctx(ctx: Path, rel: str) -> int:
    root = os.open(ctx, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return open_in_root(root, rel or ".", os.O_RDONLY)
    finally:
        os.close(root)


def _walk_fd(fd: int, rel: str) -> Iterator[tuple[str, os.stat_result, int, str]]:
    """(relative path, lstat, parent dir fd, name) under the directory ``fd``, sorted."""
    for name in sorted(os.listdir(fd)):
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        r = f"{rel}/{name}" if rel else name
        yield r, st, fd, name
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
            try:
                yield from _walk_fd(sub, r)
            finally:
                os.close(sub)


def content_digest(ctx: Path, sources: list[str]) -> str:
    """sha256 over the sources' names, modes, link targets and bytes: the cache key of a
    COPY/ADD (a changed file is a cache miss, an untouched one a hit)."""
    h = hashlib.sha256()
    for src in sources:
        fd = _open_ctx(ctx, src)
        try:
            st = os.fstat(fd)
            h.update(f"{src}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
            if stat.S_ISDIR(st.st_mode):
                for rel, est, pfd, name in _walk_fd(fd, ""):
                    h.update(f"{rel}\0{est.st_mode:o}\0".encode())
                    if stat.S_ISLNK(est.st_mode):
                        h.update(os.readlink(name, dir_fd=pfd).encode())
                    elif stat.S_ISREG(est.st_mode):
                        _hash_file(h, os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=pfd))
            else:
                _hash_file(h, os.dup(fd))
        finally:
            os.close(fd)
    return "sha256:" + h.hexdigest()


def _hash_file(h: hashlib._Hash, fd: int) -> None:
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)


def _is_archive(fd: int) -> bool:
    try:
        with os.fdopen(os.dup(fd), "rb") as f, tarfile.open(fileobj=f, mode="r:*") as tf:
            return tf.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False


def copy_sources(ctx: Path, cmd: str, sources: list[str], rootfs: Path, dest: str,
                 workdir: str, owner: Owner) -> None:
    """Copy ``sources`` (from resolve_sources) to ``dest`` inside ``rootfs``."""
    as_dir = dest.endswith(("/", "/.")) or dest == "." or len(sources) > 1
    if not dest.startswith("/"):
        dest = posixpath.join(workdir or "/", dest)
    dest = posixpath.normpath(dest)  # ".." stops at the image's / (RootDir resolves inside)
    root = RootDir(os.fspath(rootfs), follow=True)
    try:
        for src in sources:
            fd = _open_ctx(ctx, src)
            try:
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    dfd = _mkdirs(root, dest, owner)
                    try:
                        _copy_tree(fd, dfd, owner)
                    finally:
                        os.close(dfd)
                elif cmd == "ADD" and _is_archive(fd):
                    _unpack(fd, root, rootfs, dest)
                elif stat.S_ISREG(st.st_mode):
                    _copy_one_file(root, fd, st, src, dest, as_dir, owner)
                else:
                    raise errors.InvalidArgumentError(cmd, f"{src}: not a file or directory")
            finally:
                os.close(fd)
    finally:
        root.close()


def _is_dir_at(root: RootDir, path: str) -> bool:
    try:
        fd = root.dir(path)
    except OSError:
        return False
    os.close(fd)
    return True


def _copy_one_file(root: RootDir, fd: int, st: os.stat_result, src: str, dest: str,
                   as_dir: bool, owner: Owner) -> None:
    if as_dir or _is_dir_at(root, dest):
        target = posixpath.join(dest, posixpath.basename(src))
    else:
        target = dest
    parent, base = posixpath.split(target.rstrip("/"))
    pfd = _mkdirs(root, parent, owner)
    try:
        _write_file(fd, pfd, base, st, owner)
    finally:
        os.close(pfd)


def _mkdirs(root: RootDir, path: str, owner: Owner) -> int:
    """An O_PATH fd of ``path`` inside the root; missing directories made, owned by
    ``owner`` (Docker chowns the directories a COPY creates)."""
    parts = [p for p in path.split("/") if p]
    cur = ""
    for p in parts:
        cur = f"{cur}/{p}"
        try:
            os.close(root.dir(cur))
        except FileNotFoundError:
            pfd, name = root.parent(cur)
            try:
                os.mkdir(name, 0o755, dir_fd=pfd)
                os.chown(name, owner.uid, owner.gid, dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(pfd)
    return root.dir(path)


def _replace(pfd: int, base: str) -> None:
    try:
        st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(base, dir_fd=pfd)


def _write_file(src_fd: int, pfd: int, base: str, st: os.stat_result, owner: Owner) -> None:
    _replace(pfd, base)
    mode = owner.mode if owner.mode is not None else stat.S_IMODE(st.st_mode)
    out = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                  0o600, dir_fd=pfd)
    with os.fdopen(out, "wb") as w, os.fdopen(os.dup(src_fd), "rb") as r:
        r.seek(0)
        while chunk := r.read(_CHUNK):
            w.write(chunk)
        os.fchown(w.fileno(), owner.uid, owner.gid)
        os.fchmod(w.fileno(), mode)
    os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=pfd, follow_symlinks=False)


def _copy_tree(src_fd: int, dst_fd: int, owner: Owner) -> None:
    """The contents of one directory into another, recursively; links copied as links."""
    for name in sorted(os.listdir(src_fd)):
        st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            try:
                os.mkdir(name, 0o755, dir_fd=dst_fd)
            except FileExistsError:
                pass
            sub_s = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=src_fd)
            try:
                sub_d = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dst_fd)
            except OSError:
                os.close(sub_s)
                raise errors.InvalidArgumentError(
                    "COPY", f"{name}: the destination has a non-directory there") from None
            try:
                _copy_tree(sub_s, sub_d, owner)
                os.fchown(sub_d, owner.uid, owner.gid)
                os.fchmod(sub_d, owner.mode if owner.mode is not None else stat.S_IMODE(st.st_mode))
            finally:
                os.close(sub_s)
                os.close(sub_d)
        elif stat.S_ISLNK(st.st_mode):
            _replace(dst_fd, name)
            os.symlink(os.readlink(name, dir_fd=src_fd), name, dir_fd=dst_fd)
            os.chown(name, owner.uid, owner.gid, dir_fd=dst_fd, follow_symlinks=False)
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
            try:
                _write_file(fd, dst_fd, name, st, owner)
            finally:
                os.close(fd)


def _unpack(fd: int, root: RootDir, rootfs: Path, dest: str) -> None:
    """ADD of a local archive: unpacked (checked) into a scratch dir, then copied in."""
    with tempfile.TemporaryDirectory(prefix="lk-add-", dir=rootfs.parent) as tmp:
        blob = Path(tmp) / "archive"
        with os.fdopen(os.dup(fd), "rb") as r, open(blob, "wb") as w:
            r.seek(0)
            while chunk := r.read(_CHUNK):
                w.write(chunk)
        tree = Path(tmp) / "tree"
        apply_layer(blob, tree, whiteouts=FLATTEN)
        dfd = _mkdirs(root, dest, Owner())
        sfd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
        try:
            _copy_tree_keep(sfd, dfd)
        finally:
            os.close(sfd)
            os.close(dfd)


def _copy_tree_keep(src_fd: int, dst_fd: int) -> None:
    """Like _copy_tree, keeping each entry's own owner and mode (an ADDed tar's)."""
    for name in sorted(os.listdir(src_fd)):
        st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        keep = Owner(st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
        if stat.S_ISDIR(st.st_mode):
            try:
                os.mkdir(name, 0o755, dir_fd=dst_fd)
            except FileExistsError:
                pass
            sub_s = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=src_fd)
            sub_d = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dst_fd)
            try:
                _copy_tree_keep(sub_s, sub_d)
                os.fchown(sub_d, st.st_uid, st.st_gid)
                os.fchmod(sub_d, stat.S_IMODE(st.st_mode))
            finally:
                os.close(sub_s)
                os.close(sub_d)
        elif stat.S_ISLNK(st.st_mode):
            _replace(dst_fd, name)
            os.symlink(os.readlink(name, dir_fd=src_fd), name, dir_fd=dst_fd)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_fd, follow_symlinks=False)
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
            try:
                _write_file(fd, dst_fd, name, st, keep)
            finally:
                os.close(fd)
