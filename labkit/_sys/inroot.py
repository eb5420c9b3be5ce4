"""openat2(2) with RESOLVE_IN_ROOT: open a path as if a directory fd were ``/``.

The daemon reads and writes inside containers' root filesystems (docker cp, export).  A
path there may cross symlinks the container made (``etc -> /``); followed by the host's
path walk they would lead out of the container.  openat2(2) (Linux 5.6) resolves the whole
path in the kernel with ``RESOLVE_IN_ROOT``: absolute symlinks and ``..`` stay clamped at
the directory fd, atomically (no check-then-use race).  ``RESOLVE_NO_MAGICLINKS`` also
refuses /proc/<pid>/fd-style links, which could point anywhere.

Where the kernel lacks openat2 (ENOSYS), ``open_in_root`` walks the path component by
component with ``O_NOFOLLOW`` opens relative to the previous fd, reading symlinks itself and
restarting absolute ones at the root fd: slower, equally confined (each step holds an fd).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from labkit._sys.libc import libc

__all__ = ["RESOLVE_IN_ROOT", "RESOLVE_NO_MAGICLINKS", "RESOLVE_NO_XDEV", "open_in_root"]

# include/uapi/linux/openat2.h
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
_NR_OPENAT2 = 437  # the same on every architecture (asm-generic/unistd.h, >= 424)
_MAX_LINKS = 40  # path_resolution(7): ELOOP after 40 symlinks


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_have_openat2: bool | None = None


def _openat2(dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int:
    global _have_openat2
    lib = libc()
    # openat2(2): EINVAL for a non-zero mode without O_CREAT/O_TMPFILE
    # (O_TMPFILE contains O_DIRECTORY's bit, so it is tested whole)
    creates = flags & os.O_CREAT or flags & os.O_TMPFILE == os.O_TMPFILE
    how = _OpenHow(flags | os.O_CLOEXEC, mode if creates else 0, resolve)
    p = os.fsencode(path)
    while True:
        fd = lib.syscall(_NR_OPENAT2, ctypes.c_int(dirfd), ctypes.c_char_p(p),
                         ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            _have_openat2 = True
            return int(fd)
        err = ctypes.get_errno()
        if err == errno.EINTR or err == errno.EAGAIN:  # EAGAIN: a concurrent rename (openat2(2))
            continue
        if err == errno.ENOSYS:
            _have_openat2 = False
        raise OSError(err, os.strerror(err), path)


def _walk(rootfd: int, path: str, flags: int, mode: int, follow_last: bool) -> int:
    """The userspace fallback: resolve ``path`` under ``rootfd`` one O_NOFOLLOW step at a
    time, following symlinks by hand with the root clamped at ``rootfd``."""
    todo = [p for p in path.split("/") if p not in ("", ".")][::-1]
    stack = [os.dup(rootfd)]  # fds of the directories walked so far; [0] is the root
    links = 0
    try:
        while todo:
            part = todo.pop()
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            last = not todo
            try:
                st = os.stat(part, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                if last and flags & os.O_CREAT:
                    break
                raise
            if stat.S_ISLNK(st.st_mode) and (not last or follow_last):
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(part, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extend(p for p in target.split("/")[::-1] if p not in ("", "."))
                continue
            if last:
                break
            stack.append(os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, dir_fd=stack[-1]))
        else:
            return os.open(".", flags | os.O_CLOEXEC, mode, dir_fd=stack[-1])
        return os.open(part, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=stack[-1])
    finally:
        for fd in stack:
            os.close(fd)


def open_in_root(rootfd: int, path: str, flags: int = os.O_PATH, mode: int = 0o644, *,
                 follow_last: bool = True) -> int:
    """Open ``path`` resolved inside the directory ``rootfd`` as if it were ``/``.

    ``follow_last=False`` adds O_NOFOLLOW: a final symlink is opened itself (with O_PATH)
    or refused (ELOOP).  Raises OSError as open(2) would (ENOENT, ENOTDIR, ELOOP...).
    """
    if not follow_last:
        flags |= os.O_NOFOLLOW
    if _have_openat2 is not False:
        try:
            return _openat2(rootfd, path or ".", flags, mode,
                            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        except OSError as err:
            if err.errno != errno.ENOSYS:
                raise
    return _walk(rootfd, path, flags, mode, follow_last)

