"""Load libc once, with errno capture, and declare the prototypes we call.

pyroute2's netns module does the same (ctypes.CDLL(find_library('c'), use_errno=True));
we skip ctypes.util.find_library, which forks /sbin/ldconfig and costs milliseconds on the
runtime's start path: glibc's soname is fixed.
"""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def libc() -> ctypes.CDLL:
    lib = ctypes.CDLL("libc.so.6", use_errno=True)
    c_int, c_char_p, c_ulong, c_void_p, c_long = (
        ctypes.c_int, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_long)
    lib.unshare.argtypes = [c_int]
    lib.setns.argtypes = [c_int, c_int]
    lib.mount.argtypes = [c_char_p, c_char_p, c_char_p, c_ulong, c_void_p]
    lib.umount2.argtypes = [c_char_p, c_int]
    lib.pivot_root.argtypes = [c_char_p, c_char_p]
    lib.sethostname.argtypes = [c_char_p, ctypes.c_size_t]
    lib.setdomainname.argtypes = [c_char_p, ctypes.c_size_t]
    lib.prctl.argtypes = [c_int, c_ulong, c_ulong, c_ulong, c_ulong]
    lib.syscall.restype = c_long
    lib.mknod.argtypes = [c_char_p, ctypes.c_uint, ctypes.c_ulong]
    return lib
