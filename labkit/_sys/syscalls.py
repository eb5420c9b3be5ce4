"""Each system call wrapped once: EINTR retried, failures raised as typed SyscallErrors.

The error names the syscall and its target and carries a hint (labkit.errors.HINTS), the
way runc's internal/linux wraps each call with os.NewSyscallError.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable

from labkit import errors
from labkit._sys import consts
from labkit._sys.libc import libc


def _call(fn: Callable[[], int], name: str, target: str | None) -> int:
    while True:
        ret = fn()
        if ret != -1:
            return ret
        err = ctypes.get_errno()
        if err != errno.EINTR:  # runc internal/linux/eintr.go: retry only on EINTR
            raise errors.from_errno(err, name, target)


def _b(s: str | bytes | None) -> bytes | None:
    if s is None or isinstance(s, bytes):
        return s
    return os.fsencode(s)


def unshare(flags: int, *, target: str | None = None) -> None:
    """unshare(2): move the calling process into new namespaces given by CLONE_* flags."""
    lib = libc()
    _call(lambda: lib.unshare(flags), "unshare", target)


def setns(fd: int, nstype: int = 0, *, target: str | None = None) -> None:
    """setns(2): move the calling *thread* into the namespace behind ``fd``."""
    lib = libc()
    _call(lambda: lib.setns(fd, nstype), "setns", target)


def mount(
    source: str | None,
    target: str,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """mount(2)."""
    lib = libc()
    s, t, f, d = _b(source), _b(target), _b(fstype), _b(data)
    _call(lambda: lib.mount(s, t, f, flags, d), "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    lib = libc()
    t = _b(target)
    _call(lambda: lib.umount2(t, flags), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2): make ``new_root`` the root mount of this mount namespace."""
    lib = libc()
    n, p = _b(new_root), _b(put_old)
    _call(lambda: lib.pivot_root(n, p), "pivot_root", new_root)


def sethostname(name: str) -> None:
    """sethostname(2): set the hostname of the caller's UTS namespace."""
    lib = libc()
    b = name.encode()
    _call(lambda: lib.sethostname(b, len(b)), "sethostname", name)


def setdomainname(name: str) -> None:
    """setdomainname(2): set the NIS domain name of the caller's UTS namespace."""
    lib = libc()
    b = name.encode()
    _call(lambda: lib.setdomainname(b, len(b)), "setdomainname", name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2)."""
    lib = libc()
    return _call(lambda: lib.prctl(option, arg2, arg3, arg4, arg5), "prctl", str(option))


def mknod(path: str, mode: int, dev: int) -> None:
    """mknod(2)."""
    lib = libc()
    p = _b(path)
    _call(lambda: lib.mknod(p, mode, dev), "mknod", path)


def mknodat(dirfd: int, name: str, mode: int, dev: int) -> None:
    """mknodat(2): make the node ``name`` in the directory behind ``dirfd`` (a final name in
    a directory already checked, so nothing on the way can be swapped for a symlink)."""
    _os_call(lambda: os.mknod(name, mode, dev, dir_fd=dirfd), "mknodat", name)


def _nr(name: str) -> int:
    # uname(2)'s machine field, which is what platform.machine() returns on Linux; the
    # platform module costs ~1 ms to import on labkit-runtime's start path.
    machine = os.uname().machine
    try:
        return consts.SYS_NR[machine][name]
    except KeyError:
        raise errors.UnsupportedError(name, f"no syscall number known for {machine}") from None


def pidfd_open(pid: int, flags: int = 0) -> int:
    """pidfd_open(2): an fd that refers to process ``pid`` (Linux 5.3)."""
    lib = libc()
    nr = _nr("pidfd_open")
    return _call(lambda: lib.syscall(nr, ctypes.c_int(pid), ctypes.c_uint(flags)), "pidfd_open", str(pid))


# capget/capset with _LINUX_CAPABILITY_VERSION_3: two 32-bit data structs (capability(7)).
_CAP_V3 = 0x20080522


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for the calling thread, 64-bit capability sets."""
    lib = libc()
    hdr = struct.pack("=Ii", _CAP_V3, 0)
    data = struct.pack(
        "=6I",
        effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF,
        effective >> 32, permitted >> 32, inheritable >> 32,
    )
    hbuf = ctypes.create_string_buffer(hdr, len(hdr))
    dbuf = ctypes.create_string_buffer(data, len(data))
    nr = _nr("capset")
    _call(lambda: lib.syscall(nr, hbuf, dbuf), "capset", None)


def capget(pid: int = 0) -> tuple[int, int, int]:
    """capget(2): (effective, permitted, inheritable) of ``pid`` (0: the caller)."""
    lib = libc()
    hbuf = ctypes.create_string_buffer(struct.pack("=Ii", _CAP_V3, pid), 8)
    dbuf = ctypes.create_string_buffer(24)
    nr = _nr("capget")
    _call(lambda: lib.syscall(nr, hbuf, dbuf), "capget", str(pid))
    e0, p0, i0, e1, p1, i1 = struct.unpack("=6I", dbuf.raw)
    return (e1 << 32 | e0, p1 << 32 | p0, i1 << 32 | i0)


def _os_call(fn: Callable[[], None], name: str, target: str | None) -> None:
    # The stdlib already wraps these (os.setresuid, ...); we only give the OSError our typed
    # shape (syscall name, target, hint).  CPython retries EINTR itself (PEP 475).
    try:
        fn()
    except OSError as err:
        raise errors.from_errno(err.errno or errno.EIO, name, target) from None


def setresuid(ruid: int, euid: int, suid: int) -> None:
    """setresuid(2): set the real, effective and saved user ids of the caller."""
    _os_call(lambda: os.setresuid(ruid, euid, suid), "setresuid", str(euid))


def setresgid(rgid: int, egid: int, sgid: int) -> None:
    """setresgid(2): set the real, effective and saved group ids of the caller."""
    _os_call(lambda: os.setresgid(rgid, egid, sgid), "setresgid", str(egid))


def setgroups(groups: list[int]) -> None:
    """setgroups(2): set the caller's supplementary groups (EPERM after setgroups 'deny')."""
    _os_call(lambda: os.setgroups(groups), "setgroups", ",".join(map(str, groups)))


# socket(2) constants (bits/socket.h); the socket module is not imported on the runtime's
# start path (it pulls in enum and selectors, several milliseconds).
AF_UNIX = 1
SOCK_STREAM = 1
SOCK_CLOEXEC = 0o2000000


def socketpair() -> tuple[int, int]:
    """socketpair(2): a connected AF_UNIX SOCK_STREAM pair of fds, both close-on-exec."""
    lib = libc()
    fds = (ctypes.c_int * 2)()
    _call(lambda: lib.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), "socketpair", None)
    return fds[0], fds[1]


def pidfd_getfd(pidfd: int, targetfd: int) -> int:
    """pidfd_getfd(2): a duplicate (close-on-exec) of fd ``targetfd`` of the process behind
    ``pidfd`` (Linux 5.6; needs ptrace access to it)."""
    lib = libc()
    nr = _nr("pidfd_getfd")
    return _call(lambda: lib.syscall(nr, ctypes.c_int(pidfd), ctypes.c_int(targetfd),
                                     ctypes.c_uint(0)), "pidfd_getfd", str(targetfd))
