"""openat2(2) (Linux 5.6): open a path with the kernel, not userspace, deciding how to resolve it.

``RESOLVE_IN_ROOT`` resolves the path as if the directory fd were ``/`` (absolute symlinks and
``..`` stay inside it), ``RESOLVE_NO_SYMLINKS`` refuses any symlink on the way, and both are
race-free: the kernel checks each step itself (openat2(2), "The open_how structure").  glibc
2.36 has no wrapper, so it is called through syscall(2).  Where the kernel lacks it (ENOSYS,
also what a seccomp filter such as Docker's default profile returns), ``supported()`` is False
and callers fall back to walking one O_NOFOLLOW component at a time.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct

from labkit import errors
from labkit._sys import features, syscalls
from labkit._sys.libc import libc

__all__ = [
    "RESOLVE_BENEATH",
    "RESOLVE_IN_ROOT",
    "RESOLVE_NO_MAGICLINKS",
    "RESOLVE_NO_SYMLINKS",
    "RESOLVE_NO_XDEV",
    "openat2",
    "supported",
]

# include/uapi/linux/openat2.h
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# EAGAIN: "a concurrent rename or mount was seen, retry" (openat2(2), RESOLVE_IN_ROOT).
_RETRIES = 32


def _raw(dirfd: int, path: str, flags: int, mode: int, resolve: int) -> tuple[int, int]:
    """One openat2 call: (fd, 0) on success, (-1, errno) on failure."""
    lib = libc()
    how = struct.pack("=QQQ", flags, mode, resolve)  # struct open_how: three __u64
    hbuf = ctypes.create_string_buffer(how, len(how))
    nr = syscalls._nr("openat2")
    fd = lib.syscall(nr, ctypes.c_int(dirfd), os.fsencode(path), hbuf, ctypes.c_size_t(len(how)))
    return (int(fd), 0) if fd >= 0 else (-1, ctypes.get_errno())


@functools.cache
def supported() -> bool:
    """True when openat2(2) works here: a new enough kernel (features.HAS_OPENAT2) and no
    seccomp filter answering ENOSYS/EPERM to it."""
    if not features.HAS_OPENAT2:
        return False
    fd, err = _raw(-100, "/", os.O_PATH | os.O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS)  # AT_FDCWD
    if fd >= 0:
        os.close(fd)
        return True
    return err not in (errno.ENOSYS, errno.EPERM)


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` under the ``resolve`` restrictions.

    EINTR and EAGAIN (a concurrent rename seen by RESOLVE_IN_ROOT/BENEATH) are retried.
    Raises a SyscallError subclass (an OSError: ELOOP/EXDEV for a refused symlink or
    crossing, ENOENT, ...) naming ``path``; UnsupportedError where the kernel has no openat2.
    """
    for _ in range(_RETRIES):
        fd, err = _raw(dirfd, path, flags | os.O_CLOEXEC, mode, resolve)
        if fd >= 0:
            return fd
        if err == errno.ENOSYS:
            raise errors.UnsupportedError("openat2", "this kernel has no openat2(2)",
                                          hint="Linux 5.6 or later; callers fall back to O_NOFOLLOW")
        if err not in (errno.EINTR, errno.EAGAIN):
            raise errors.from_errno(err, "openat2", path)
    raise errors.from_errno(errno.EAGAIN, "openat2", path)
