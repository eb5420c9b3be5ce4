"""Filesystem facts that need libc: statfs(2) f_type (the superblock magic).

os.statvfs() does not return f_type, so the cgroup mode detection (labkit.cgroups.detect)
asks libc directly, the way youki's get_cgroup_setup_with_root and crun's
libcrun_get_cgroup_mode do.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from labkit import errors
from labkit._sys.libc import libc

# Superblock magics, include/uapi/linux/magic.h
CGROUP_SUPER_MAGIC = 0x0027E0EB
CGROUP2_SUPER_MAGIC = 0x63677270
TMPFS_MAGIC = 0x01021994
SYSFS_MAGIC = 0x62656572

# struct statfs is 120 bytes on x86_64 and aarch64; f_type (__fsword_t, a long) comes first.
# A larger buffer costs nothing and guards against an arch with a bigger struct.
_STATFS_SIZE = 256


def statfs_type(path: str | os.PathLike[str]) -> int:
    """statfs(2): the filesystem type magic (f_type) of the filesystem holding ``path``.

    Raises:
        SyscallNotFoundError: ``path`` does not exist.
        SyscallError: any other statfs(2) failure, naming the path.
    """
    lib = libc()
    fn = lib.statfs
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    p = os.fsencode(path)
    while fn(p, buf) == -1:
        err = ctypes.get_errno()
        if err != errno.EINTR:  # runc internal/linux/eintr.go: retry only on EINTR
            raise errors.from_errno(err, "statfs", os.fsdecode(p))
    # f_type is a signed long; magics above 2**31 (none today) would come back negative.
    (f_type,) = struct.unpack_from("=q", buf.raw, 0)
    return int(f_type) & 0xFFFFFFFF
