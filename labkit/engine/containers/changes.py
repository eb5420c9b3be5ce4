"""docker diff: a container's filesystem changes, read from its overlay upper directory.

GET /containers/{id}/changes answers ``[{"Path": "/etc/new", "Kind": 1}, ...]`` with Kind
0 modified, 1 added, 2 deleted (moby pkg/archive/changes.go, the overlay walk):

* every upper entry is visited in sorted order, parents first;
* a whiteout (char device 0:0) or an opaque directory is a deletion of that path
  (moby overlayDeletedFile);
* an entry that some image layer also has is a modification, else an addition; a directory
  present in both with the same mode and size is not reported by itself (moby also compares
  mtimes: here a directory's mtime is ignored, because the runtime's mount points below
  would otherwise mark /etc changed in every container, see next point);
* an addition or deletion marks its parent directory modified (once);
* the mount points the runtime makes for the container (/etc/hosts, /etc/hostname,
  /etc/resolv.conf, /proc, /dev, ...) are not changes: Docker keeps them in a separate
  "init" layer below the container's own.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from labkit.engine.images.diff import classify_mode
from labkit.engine.images.overlay import OPAQUE_XATTR

__all__ = ["ADDED", "DELETED", "MODIFIED", "container_changes"]

MODIFIED, ADDED, DELETED = 0, 1, 2


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


def _in_lowers(rel: str, lowers: list[Path]) -> os.stat_result | None:
    """The entry ``rel`` as the image layers show it (top layer first), None if absent.

    Each layer is walked one lstat per component, never through a symlink: overlayfs looks
    names up that way, and a layer's absolute symlink (etc -> /etc) must not make the host's
    files count."""
    parts = rel.split("/")
    for layer in lowers:
        here = layer
        for i, part in enumerate(parts):
            here = here / part
            try:
                st = os.lstat(here)
            except (FileNotFoundError, NotADirectoryError):
                break  # not in this layer: look below
            if classify_mode(st.st_mode, st.st_rdev) == "whiteout":
                return None  # deleted by this layer
            if i == len(parts) - 1:
                return st
            if not stat.S_ISDIR(st.st_mode):
                return None  # a file or symlink here hides everything below it
    return None


def container_changes(upper: str | Path, lowers_top_first: Iterable[str | Path],
                      skip: Iterable[str] = ()) -> list[dict[str, object]]:
    """The changes of the upper dir ``upper`` over ``lowers_top_first``; ``skip`` holds
    container paths ("/etc/hosts") that are not the container's own changes."""
    root = os.fspath(upper)
    lowers = [Path(p) for p in lowers_top_first]
    skipped = {"/" + p.strip("/") for p in skip}
    out: list[dict[str, object]] = []
    changed_dirs: set[str] = set()
    if not os.path.isdir(root):
        return out

    def walk(dirfd: int, rel: str) -> None:
        # Directory fds opened O_NOFOLLOW: a running container that swaps a directory of its
        # upper for a symlink cannot make this walk list a host directory.
        for name in sorted(os.listdir(dirfd)):
            r = f"{rel}/{name}" if rel else name
            path = "/" + r
            if path in skipped:
                continue
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile
            kind = classify_mode(st.st_mode, st.st_rdev)
            sub = -1
            if kind == "dir":
                try:
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=dirfd)
                except OSError:
                    continue  # removed or swapped meanwhile
            try:
                _record(r, path, st, kind, sub)
                if sub >= 0:
                    walk(sub, r)
            finally:
                if sub >= 0:
                    os.close(sub)

    def _record(r: str, path: str, st: os.stat_result, kind: str, fd: int) -> None:
        is_dir = kind == "dir"
        record: int | None
        if kind == "whiteout" or (is_dir and _opaque(fd)):
            record = DELETED
        else:
            low = _in_lowers(r, lowers)
            record = ADDED if low is None else MODIFIED
            if low is not None and is_dir and stat.S_ISDIR(low.st_mode) and \
                    low.st_mode == st.st_mode and low.st_size == st.st_size:
                record = None  # the directory itself is unchanged
        if record is None:
            return
        if is_dir:
            changed_dirs.add(path)
        if record in (ADDED, DELETED):
            parent = os.path.dirname(path)
            if parent != "/" and parent not in changed_dirs:
                out.append({"Path": parent, "Kind": MODIFIED})
                changed_dirs.add(parent)
        out.append({"Path": path, "Kind": record})

    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        walk(top, "")
    finally:
        os.close(top)
    return out
