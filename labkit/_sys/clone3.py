"""fork(2) into a cgroup: clone3(2) with CLONE_INTO_CGROUP, done the way os.fork() is.

Why: moving a process into a cgroup v2 directory (writing cgroup.procs) takes the global
cgroup_threadgroup_rwsem for writing, and the percpu rwsem's writer waits for an RCU grace
period (kernel/cgroup/cgroup.c, cgroup_procs_write_start): 6-11 ms on this host.  A child
*born* in the cgroup (CLONE_INTO_CGROUP, Linux 5.7) only takes that lock for reading
(cgroup_css_set_fork), as every fork does.  crun forks its container this way.

How: CPython's os.fork() is PyOS_BeforeFork(); fork(); PyOS_AfterFork_Child/Parent() with
the GIL held throughout (Modules/posixmodule.c).  This does the same around the raw
clone3 syscall, called through a PyDLL handle so the GIL is not released.  Only for a
single-threaded caller: a raw clone, unlike glibc's fork(), does not take malloc's and
stdio's locks first, so another thread holding one would leave it locked in the child.

The child's glibc thread descriptor keeps the parent's tid (glibc's fork() updates it);
glibc's raise()/pthread_kill on self ask the kernel for the tid (2.34+), and a fork(2) in
the child sets its own child's tid, so nothing labkit uses reads the stale value.
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct

from labkit import errors

__all__ = ["CLONE_INTO_CGROUP", "fork_into_cgroup"]

# include/uapi/linux/sched.h
CLONE_INTO_CGROUP = 0x200000000
# struct clone_args (CLONE_ARGS_SIZE_VER2, 88 bytes): flags, pidfd, child_tid, parent_tid,
# exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup; all __aligned_u64.
_ARGS = struct.Struct("=11Q")


def _single_threaded() -> bool:
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def fork_into_cgroup(cgroup_fd: int) -> int:
    """os.fork(), but the child starts in the cgroup v2 directory open at ``cgroup_fd``.

    Returns 0 in the child, the child's pid in the parent.

    Raises:
        UnsupportedError: the caller has several threads (use os.fork and cgroup.procs).
        SyscallError: clone3 failed: ENOSYS (before Linux 5.3, or a seccomp profile that
            hides clone3, as Docker's does), E2BIG/EINVAL (before 5.7), EBADF (not a v2
            cgroup), EBUSY (a cgroup with controllers and its own processes)...
    """
    if not _single_threaded():
        raise errors.UnsupportedError(
            "clone3 CLONE_INTO_CGROUP", "the caller has more than one thread",
            hint="fork with os.fork() and write cgroup.procs instead")
    args = ctypes.create_string_buffer(_ARGS.size)
    _ARGS.pack_into(args, 0, CLONE_INTO_CGROUP, 0, 0, 0, int(signal.SIGCHLD), 0, 0, 0, 0, 0,
                    cgroup_fd)
    api = ctypes.pythonapi
    # PyDLL: the GIL stays held across the call, as os.fork() holds it across fork().
    call = ctypes.PyDLL(None, use_errno=True).syscall
    call.restype = ctypes.c_long
    call.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_size_t]
    nr = 435  # clone3: the same number on every architecture (asm-generic/unistd.h)
    api.PyOS_BeforeFork()
    pid = int(call(nr, ctypes.addressof(args), _ARGS.size))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise errors.from_errno(err, "clone3", "CLONE_INTO_CGROUP")
    return pid
