"""seccomp(2) filters through libseccomp (ctypes to libseccomp.so.2).

libseccomp compiles "allow these syscall names, for these architectures" into the classic
BPF program the kernel runs on every system call; it also knows each architecture's syscall
numbers, which is why we use it instead of writing BPF by hand (seccomp_rule_add(3)).

Its functions return a negative errno instead of setting ``errno``, so errors are turned
into SyscallErrors here with the libseccomp function as the "syscall" name.

A Filter is built in the runtime parent (so a bad profile is reported before anything is
created) and loaded in the container init after fork: the compiled context is plain memory,
inherited by the child.
"""

from __future__ import annotations

import ctypes
import functools

from labkit import errors

# seccomp.h: actions (the low 16 bits carry the errno/trace data).
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_ERRNO_BASE = 0x00050000
SCMP_ACT_TRACE_BASE = 0x7FF00000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000

# enum scmp_compare (seccomp.h)
SCMP_CMP: dict[str, int] = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr: SCMP_FLTATR_CTL_NNP makes seccomp_load() set no_new_privs first.
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_TSYNC = 4
SCMP_FLTATR_CTL_LOG = 6

_NR_SCMP_ERROR = -1


def SCMP_ACT_ERRNO(err: int) -> int:
    """The action "fail the call with ``err``"."""
    return SCMP_ACT_ERRNO_BASE | (err & 0xFFFF)


def SCMP_ACT_TRACE(msg: int) -> int:
    """The action "notify a ptrace tracer with ``msg``"."""
    return SCMP_ACT_TRACE_BASE | (msg & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    # struct scmp_arg_cmp { unsigned int arg; enum scmp_compare op; scmp_datum_t a, b; }
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


@functools.cache
def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError as err:
        raise errors.UnsupportedError(
            "seccomp", f"libseccomp.so.2 not loadable ({err})",
            hint="apt-get install libseccomp2") from None
    vp, u32, c_int, c_char_p = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_char_p
    lib.seccomp_init.argtypes, lib.seccomp_init.restype = [u32], vp
    lib.seccomp_release.argtypes, lib.seccomp_release.restype = [vp], None
    lib.seccomp_arch_add.argtypes = [vp, u32]
    lib.seccomp_arch_resolve_name.argtypes, lib.seccomp_arch_resolve_name.restype = [c_char_p], u32
    lib.seccomp_syscall_resolve_name.argtypes = [c_char_p]
    lib.seccomp_rule_add_array.argtypes = [vp, u32, c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_attr_set.argtypes = [vp, c_int, u32]
    lib.seccomp_load.argtypes = [vp]
    lib.seccomp_export_bpf.argtypes = [vp, c_int]
    return lib


def _check(ret: int, fn: str, target: str | None = None) -> None:
    if ret < 0:
        raise errors.from_errno(-ret, fn, target)


class Filter:
    """One libseccomp filter context (seccomp_init(3)); call :meth:`release` when done.

    Example::

        f = Filter(SCMP_ACT_ERRNO(errno.EPERM))
        f.add_arch("x86_64")
        f.add_rule(SCMP_ACT_ALLOW, "read")
        f.load()            # this process (and its future children) now run filtered
    """

    def __init__(self, default_action: int) -> None:
        self._lib = _lib()
        ctx = self._lib.seccomp_init(default_action)
        if not ctx:
            raise errors.InvalidArgumentError(
                "seccomp.defaultAction", f"libseccomp refused action {default_action:#x}")
        self._ctx: int | None = ctx

    def _c(self) -> int:
        if self._ctx is None:
            raise errors.InvalidStateError("released", "used", what="seccomp filter")
        return self._ctx

    def add_arch(self, name: str) -> None:
        """seccomp_arch_add(3) by libseccomp name ("x86_64", "x86", "x32", "aarch64", ...)."""
        token = self._lib.seccomp_arch_resolve_name(name.encode())
        if token == 0:
            raise errors.InvalidArgumentError("seccomp.architectures", f"unknown architecture {name!r}")
        ret = self._lib.seccomp_arch_add(self._c(), token)
        if ret != -17:  # -EEXIST: the native arch is in every new filter already
            _check(ret, "seccomp_arch_add", name)

    def add_rule(self, action: int, syscall: str,
                 args: tuple[tuple[int, int, int, int], ...] = ()) -> bool:
        """seccomp_rule_add_array(3); ``args`` are (index, op, value, value_two).

        Returns False (and adds nothing) for a syscall name this libseccomp does not know,
        which is how profiles stay portable across kernels and architectures.
        """
        nr = self._lib.seccomp_syscall_resolve_name(syscall.encode())
        if nr == _NR_SCMP_ERROR:
            return False
        arr = (_ArgCmp * max(len(args), 1))(*[_ArgCmp(i, op, a, b) for i, op, a, b in args])
        ret = self._lib.seccomp_rule_add_array(self._c(), action, nr, len(args), arr)
        _check(ret, "seccomp_rule_add", syscall)
        return True

    def set_nnp(self, on: bool) -> None:
        """Whether seccomp_load() sets no_new_privs itself (libseccomp's default is on)."""
        _check(self._lib.seccomp_attr_set(self._c(), SCMP_FLTATR_CTL_NNP, int(on)),
               "seccomp_attr_set", "CTL_NNP")

    def set_attr(self, attr: int, value: int) -> None:
        """seccomp_attr_set(3)."""
        _check(self._lib.seccomp_attr_set(self._c(), attr, value), "seccomp_attr_set", str(attr))

    def load(self) -> None:
        """seccomp_load(3): install the filter on the calling thread; cannot be undone."""
        _check(self._lib.seccomp_load(self._c()), "seccomp_load")

    def export_bpf(self, fd: int) -> None:
        """seccomp_export_bpf(3): write the compiled BPF program to ``fd`` (for inspection)."""
        _check(self._lib.seccomp_export_bpf(self._c(), fd), "seccomp_export_bpf")

    def bpf(self) -> bytes:
        """The compiled classic-BPF program (struct sock_filter[]), as load_bpf() takes it."""
        import os

        fd = os.memfd_create("lk-seccomp", os.MFD_CLOEXEC)
        try:
            self.export_bpf(fd)
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def release(self) -> None:
        """seccomp_release(3)."""
        if self._ctx is not None:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None


# seccomp(2) operations and flags, include/uapi/linux/seccomp.h
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4


class _SockFprog(ctypes.Structure):
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; } (linux/filter.h)
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_bpf(prog: bytes, flags: int = 0) -> None:
    """seccomp(2) SECCOMP_SET_MODE_FILTER with a ready BPF program (8 bytes per instruction).

    No libseccomp involved: a program compiled once (Filter.bpf()) can be cached and loaded
    by later containers directly.  The caller must have set no_new_privs or hold
    CAP_SYS_ADMIN (seccomp(2) EACCES otherwise).
    """
    from labkit._sys.libc import libc
    from labkit._sys.syscalls import _call, _nr

    if not prog or len(prog) % 8:
        raise errors.InvalidArgumentError("seccomp program", f"{len(prog)} bytes is not a BPF program")
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = _SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    lib = libc()
    nr = _nr("seccomp")
    _call(lambda: lib.syscall(nr, SECCOMP_SET_MODE_FILTER, ctypes.c_uint(flags),
                              ctypes.byref(fprog)), "seccomp", "SET_MODE_FILTER")
