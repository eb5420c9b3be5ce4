"""Directory fds inside a layer's root that no symlink can lead out of (the write side of layers.py).

Every write while applying a layer goes through a directory fd from here plus one final name
(``*at`` calls with AT_SYMLINK_NOFOLLOW / O_NOFOLLOW), never through a host path string that
the kernel would resolve again: a path checked first and used later can be swapped for a
symlink in between (the CVE-2018-15664 / CVE-2021-30465 pattern).

Two resolution modes:

* ``follow=True`` (a flattened rootfs): symlinks inside the root are followed as if the root
  were ``/`` (an absolute target restarts at the root, ``..`` stops there), the semantics of
  openat2's RESOLVE_IN_ROOT and of Go's securejoin.  Lower layers legitimately leave symlinks
  such as ``lib -> usr/lib`` that later layers write through.
* ``follow=False`` (a new overlay layer directory): any symlink on the way is refused
  (RESOLVE_NO_SYMLINKS); the layer only ever writes through directories it made itself.

With openat2(2) the kernel does the walk in one call; without it (Linux < 5.6, or a seccomp
filter that hides it) the walk is done here, one component at a time, each opened with
O_PATH|O_NOFOLLOW relative to the directory fd before it, so a swap can at worst make the
walk fail, never step outside.
"""

from __future__ import annotations

import errno
import os
import stat

from labkit._sys import openat2 as oa2

__all__ = ["USE_OPENAT2", "RootDir"]

# Tests set this to False to exercise the component-by-component fallback on a new kernel.
USE_OPENAT2 = True
_MAX_LINKS = 40  # path_resolution(7): Linux gives up after 40 symlinks (ELOOP)
_PATH = os.O_PATH | os.O_CLOEXEC


def _parts(rel: str) -> list[str]:
    return [p for p in rel.split("/") if p not in ("", ".")]


class RootDir:
    """An open root directory; ``dir()`` and ``parent()`` return O_PATH fds the caller closes."""

    def __init__(self, root: str, *, follow: bool) -> None:
        # The root itself is the caller's choice and trusted (it may sit behind a symlink).
        self.fd = os.open(root, _PATH | os.O_DIRECTORY)
        self.root, self.follow = root, follow

    def close(self) -> None:
        os.close(self.fd)

    def dir(self, rel: str, *, create: bool = False) -> int:
        """An O_PATH fd of the directory ``rel`` inside the root; missing directories are
        made (mode 0755 before umask) when ``create``.

        Raises FileNotFoundError (missing, not ``create``), NotADirectoryError (a component
        is not a directory), OSError ELOOP (a symlink where ``follow`` is False, or a loop).
        """
        parts = _parts(rel)
        if not parts:
            return os.dup(self.fd)
        if USE_OPENAT2 and oa2.supported():
            resolve = (oa2.RESOLVE_IN_ROOT | oa2.RESOLVE_NO_MAGICLINKS if self.follow
                       else oa2.RESOLVE_BENEATH | oa2.RESOLVE_NO_SYMLINKS)
            try:
                return oa2.openat2(self.fd, "/".join(parts), _PATH | os.O_DIRECTORY, 0, resolve)
            except FileNotFoundError:
                if not create:
                    raise
                # Fall through: the walk below makes the missing directories one by one.
        return self._walk(parts, create)

    def parent(self, rel: str, *, create: bool = False) -> tuple[int, str]:
        """(O_PATH fd of the parent directory, final name) for ``rel``; see ``dir``."""
        parts = _parts(rel)
        if not parts:
            raise IsADirectoryError(errno.EISDIR, "the root has no parent inside the root", rel)
        return self.dir("/".join(parts[:-1]), create=create), parts[-1]

    def _walk(self, parts: list[str], create: bool) -> int:
        stack = [os.dup(self.fd)]  # the directories on the current path; [0] is the root
        todo = parts[::-1]
        links = 0
        try:
            while todo:
                part = todo.pop()
                if part in ("", "."):
                    continue
                if part == "..":  # never the kernel's "..": it could climb past the root
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                cur = stack[-1]
                fd = self._step(cur, part, create)
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(fd)
                    continue
                os.close(fd)
                if not stat.S_ISLNK(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", part)
                links += 1
                if not self.follow or links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, "symlink refused in the layer path", part)
                # A swap between the open above and this read only changes which target is
                # walked next, and that walk is again inside the root.
                target = os.readlink(part, dir_fd=cur)
                if target.startswith("/"):
                    for extra in stack[1:]:
                        os.close(extra)
                    del stack[1:]
                todo.extend(target.split("/")[::-1])
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)

    @staticmethod
    def _step(cur: int, part: str, create: bool) -> int:
        try:
            return os.open(part, _PATH | os.O_NOFOLLOW, dir_fd=cur)
        except FileNotFoundError:
            if not create:
                raise
        try:
            os.mkdir(part, 0o755, dir_fd=cur)
        except FileExistsError:
            pass  # made meanwhile: open whatever is there now, still without following
        return os.open(part, _PATH | os.O_NOFOLLOW, dir_fd=cur)


def proc_path(dirfd: int, name: str) -> str:
    """A path naming ``name`` inside the directory behind ``dirfd`` for calls that have no
    ``*at`` form (l*xattr): /proc/self/fd/N jumps to the directory itself (proc(5), magic
    links), and ``name`` is a single component the l* call does not follow."""
    return f"/proc/self/fd/{dirfd}/{name}"
