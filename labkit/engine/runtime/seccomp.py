"""linux.seccomp: our default profile, and the compiler from OCI JSON to a libseccomp filter.

The default profile is an allow-list in the spirit of Docker's (moby profiles/seccomp),
written here from the syscall tables: anything not named below fails with EPERM.  What it
leaves out, and why (each is a way out of a container or a host-wide effect):

* mount, umount2, pivot_root, unshare, setns, clone with CLONE_NEW* flags: new namespaces
  and mounts are the runtime's job, not the workload's;
* bpf, perf_event_open, ptrace, process_vm_readv/writev, userfaultfd: kernel attack
  surface and cross-process memory access;
* init_module, finit_module, delete_module, kexec_load, kexec_file_load, reboot,
  swapon, swapoff, acct, quotactl, syslog: host-wide administration;
* settimeofday, clock_settime, clock_adjtime, adjtimex: the clock is not namespaced;
* keyctl, add_key, request_key: the kernel keyring is not namespaced;
* open_by_handle_at (the "shocker" escape), name_to_handle_at, iopl, ioperm, io_uring_*.

config-linux.md "Seccomp" defines the JSON; seccomp_rule_add(3) the semantics.
"""

from __future__ import annotations

import errno

# typing costs ~1.5 ms to import; annotations are strings here (PEP 563), and mypy treats
# any name TYPE_CHECKING as true (the same trick as labkit.ns).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from labkit import errors
from labkit._sys import seccomp as sc

# Grouped by what a program needs them for; names unknown to an architecture are skipped
# when compiling (the 32-bit *_time64 and *32 variants exist only on x86/arm).
_ALLOW_GROUPS: dict[str, tuple[str, ...]] = {
    "file i/o": (
        "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
        "preadv2", "pwritev2", "open", "openat", "openat2", "close", "close_range", "creat",
        "lseek", "_llseek", "dup", "dup2", "dup3", "fcntl", "fcntl64", "ioctl", "flock",
        "fsync", "fdatasync", "sync", "syncfs", "sync_file_range", "sync_file_range2",
        "truncate", "truncate64", "ftruncate", "ftruncate64", "fallocate", "fadvise64",
        "fadvise64_64", "arm_fadvise64_64", "arm_sync_file_range", "sendfile", "sendfile64",
        "splice", "tee", "vmsplice", "copy_file_range", "readahead",
    ),
    "waiting on fds": (
        "pipe", "pipe2", "select", "_newselect", "pselect6", "pselect6_time64", "poll",
        "ppoll", "ppoll_time64", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
        "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd", "signalfd4",
        "timerfd_create", "timerfd_settime", "timerfd_settime64", "timerfd_gettime",
        "timerfd_gettime64", "inotify_init", "inotify_init1", "inotify_add_watch",
        "inotify_rm_watch", "io_setup", "io_destroy", "io_getevents", "io_pgetevents",
        "io_pgetevents_time64", "io_submit", "io_cancel",
    ),
    "file metadata": (
        "stat", "stat64", "fstat", "fstat64", "lstat", "lstat64", "newfstatat", "fstatat64",
        "statx", "statfs", "statfs64", "fstatfs", "fstatfs64", "access", "faccessat",
        "faccessat2", "readlink", "readlinkat", "getdents", "getdents64", "getcwd", "chdir",
        "fchdir", "mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2", "link",
        "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "chmod", "fchmod",
        "fchmodat", "fchmodat2", "chown", "chown32", "fchown", "fchown32", "fchownat",
        "lchown", "lchown32", "utime", "utimes", "utimensat", "utimensat_time64",
        "futimesat", "mknod", "mknodat", "umask", "getxattr", "lgetxattr", "fgetxattr",
        "setxattr", "lsetxattr", "fsetxattr", "listxattr", "llistxattr", "flistxattr",
        "removexattr", "lremovexattr", "fremovexattr", "chroot",
    ),
    "memory": (
        "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "pkey_mprotect", "pkey_alloc",
        "pkey_free", "madvise", "mlock", "mlock2", "munlock", "mlockall", "munlockall",
        "mincore", "msync", "memfd_create", "membarrier", "get_mempolicy", "set_mempolicy",
        "remap_file_pages",
    ),
    "processes and threads": (
        "execve", "execveat", "exit", "exit_group", "fork", "vfork", "wait4", "waitid",
        "waitpid", "kill", "tkill", "tgkill", "getpid", "getppid", "gettid", "getpgid",
        "setpgid", "getpgrp", "getsid", "setsid", "set_tid_address", "set_robust_list",
        "get_robust_list", "futex", "futex_time64", "futex_waitv", "rseq", "arch_prctl",
        "set_thread_area", "get_thread_area", "set_tls", "cacheflush", "breakpoint", "prctl",
        "capget", "capset", "restart_syscall", "pidfd_open", "pidfd_send_signal", "seccomp",
    ),
    "credentials": (
        "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid",
        "getegid32", "getresuid", "getresuid32", "getresgid", "getresgid32", "setuid",
        "setuid32", "setgid", "setgid32", "setreuid", "setreuid32", "setregid", "setregid32",
        "setresuid", "setresuid32", "setresgid", "setresgid32", "setfsuid", "setfsuid32",
        "setfsgid", "setfsgid32", "getgroups", "getgroups32", "setgroups", "setgroups32",
    ),
    "scheduling and limits": (
        "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam",
        "sched_setparam", "sched_getscheduler", "sched_setscheduler",
        "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval",
        "sched_rr_get_interval_time64", "sched_getattr", "sched_setattr", "getpriority",
        "setpriority", "ioprio_get", "ioprio_set", "getrlimit", "ugetrlimit", "setrlimit",
        "prlimit64", "getrusage", "times", "uname", "sysinfo", "getrandom",
    ),
    "signals": (
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending",
        "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
        "sigaction", "sigprocmask", "sigreturn", "sigsuspend", "sigpending", "sigaltstack",
        "signal", "pause", "alarm", "getitimer", "setitimer",
    ),
    "reading clocks (not setting them)": (
        "clock_gettime", "clock_gettime64", "clock_getres", "clock_getres_time64",
        "clock_nanosleep", "clock_nanosleep_time64", "nanosleep", "gettimeofday", "time",
        "timer_create", "timer_delete", "timer_settime", "timer_settime64", "timer_gettime",
        "timer_gettime64", "timer_getoverrun",
    ),
    "sockets (the network namespace isolates them)": (
        "socket", "socketpair", "bind", "connect", "listen", "accept", "accept4",
        "getsockname", "getpeername", "sendto", "send", "recvfrom", "recv", "sendmsg",
        "sendmmsg", "recvmsg", "recvmmsg", "recvmmsg_time64", "shutdown", "getsockopt",
        "setsockopt", "socketcall",
    ),
    "System V and POSIX IPC (the ipc namespace isolates them)": (
        "ipc", "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop",
        "semtimedop_time64", "semctl", "msgget", "msgsnd", "msgrcv", "msgctl", "mq_open",
        "mq_unlink", "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive",
        "mq_timedreceive_time64", "mq_notify", "mq_getsetattr",
    ),
}

# clone(2) is allowed only without namespace flags: (flags & mask) == 0.  The flags are the
# first argument on x86 and arm (s390 swaps the first two; not in our architecture list).
_CLONE_NEW_MASK = 0x7E020000  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
# personality(2): only the values programs use for themselves (Linux, 32-bit UNAME26 off,
# ADDR_NO_RANDOMIZE for debuggers, 0xffffffff to query), as Docker's profile allows.
_PERSONALITY_VALUES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def default_profile() -> dict[str, Any]:
    """Our default linux.seccomp: allow-list, EPERM for the rest (config-linux.md "Seccomp")."""
    allow = sorted({name for group in _ALLOW_GROUPS.values() for name in group})
    rules: list[dict[str, Any]] = [{"names": allow, "action": "SCMP_ACT_ALLOW"}]
    rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": _CLONE_NEW_MASK, "valueTwo": 0,
                            "op": "SCMP_CMP_MASKED_EQ"}]})
    # clone3 passes its flags in a struct seccomp cannot look into: answer ENOSYS so that
    # glibc falls back to clone(2), which the rule above can check.
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS})
    for value in _PERSONALITY_VALUES:
        rules.append({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                          "SCMP_ARCH_AARCH64"],
        "syscalls": rules,
    }


def _action(name: Any, errno_ret: Any, what: str) -> int:
    if not isinstance(name, str):
        raise errors.InvalidArgumentError(what, f"expected a string, got {type(name).__name__}")
    if errno_ret is not None and (isinstance(errno_ret, bool) or not isinstance(errno_ret, int)):
        raise errors.InvalidArgumentError(what, "errnoRet must be an integer")
    if name == "SCMP_ACT_ERRNO":
        return sc.SCMP_ACT_ERRNO(errno.EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_TRACE":
        return sc.SCMP_ACT_TRACE(errno.EPERM if errno_ret is None else errno_ret)
    fixed = {"SCMP_ACT_KILL": sc.SCMP_ACT_KILL_THREAD, "SCMP_ACT_KILL_THREAD": sc.SCMP_ACT_KILL_THREAD,
             "SCMP_ACT_KILL_PROCESS": sc.SCMP_ACT_KILL_PROCESS, "SCMP_ACT_TRAP": sc.SCMP_ACT_TRAP,
             "SCMP_ACT_ALLOW": sc.SCMP_ACT_ALLOW, "SCMP_ACT_LOG": sc.SCMP_ACT_LOG}
    if name not in fixed:
        raise errors.InvalidArgumentError(
            what, f"unknown or unsupported seccomp action {name!r}",
            hint="SCMP_ACT_NOTIFY needs a listenerPath, which labkit-runtime does not support")
    return fixed[name]


def _args(raw: Any, what: str) -> tuple[tuple[int, int, int, int], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise errors.InvalidArgumentError(what, "expected a list")
    out = []
    for j, a in enumerate(raw):
        w = f"{what}[{j}]"
        if not isinstance(a, dict):
            raise errors.InvalidArgumentError(w, "expected an object")
        op = sc.SCMP_CMP.get(a.get("op", ""))
        if op is None:
            raise errors.InvalidArgumentError(f"{w}.op", f"unknown comparison {a.get('op')!r}")
        nums: list[int] = []
        for key, dflt in (("index", None), ("value", 0), ("valueTwo", 0)):
            x = a.get(key, dflt)
            if not isinstance(x, int) or isinstance(x, bool):
                raise errors.InvalidArgumentError(f"{w}.{key}", "must be an integer")
            nums.append(x)
        out.append((nums[0], op, nums[1], nums[2]))
    return tuple(out)


def compile_profile(profile: dict[str, Any]) -> sc.Filter:
    """Turn linux.seccomp JSON into a libseccomp Filter (not loaded yet).

    Raises InvalidArgumentError naming the field for a bad action, comparison or arch.
    Syscall names this libseccomp does not know are skipped (profiles name syscalls of
    every architecture and kernel version).
    """
    what = "linux.seccomp"
    default = _action(profile.get("defaultAction"), profile.get("defaultErrnoRet"),
                      f"{what}.defaultAction")
    flt = sc.Filter(default)
    try:
        for i, arch in enumerate(profile.get("architectures") or []):
            if not isinstance(arch, str):
                raise errors.InvalidArgumentError(f"{what}.architectures[{i}]", "expected a string")
            try:
                flt.add_arch(arch.removeprefix("SCMP_ARCH_").lower())
            except errors.InvalidArgumentError:
                raise errors.InvalidArgumentError(
                    f"{what}.architectures[{i}]", f"unknown architecture {arch!r}") from None
        rules = profile.get("syscalls") or []
        if not isinstance(rules, list):
            raise errors.InvalidArgumentError(f"{what}.syscalls", "expected a list")
        for i, rule in enumerate(rules):
            w = f"{what}.syscalls[{i}]"
            if not isinstance(rule, dict):
                raise errors.InvalidArgumentError(w, "expected an object")
            action = _action(rule.get("action"), rule.get("errnoRet"), f"{w}.action")
            if action == default:
                continue  # libseccomp refuses a rule that repeats the default (runc skips too)
            args = _args(rule.get("args"), f"{w}.args")
            names = rule.get("names") or ([rule["name"]] if "name" in rule else [])
            for name in names:
                if not isinstance(name, str):
                    raise errors.InvalidArgumentError(f"{w}.names", "expected strings")
                flt.add_rule(action, name, args)
    except BaseException:
        flt.release()
        raise
    return flt


_FLAGS = {"SECCOMP_FILTER_FLAG_LOG": sc.SECCOMP_FILTER_FLAG_LOG,
          "SECCOMP_FILTER_FLAG_SPEC_ALLOW": sc.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
          # one thread at load time (the container init): nothing to synchronize
          "SECCOMP_FILTER_FLAG_TSYNC": 0}


def load_flags(profile: dict[str, Any]) -> int:
    """linux.seccomp.flags -> seccomp(2) SECCOMP_FILTER_FLAG_* bits."""
    bits = 0
    for i, flag in enumerate(profile.get("flags") or []):
        if flag not in _FLAGS:
            raise errors.InvalidArgumentError(f"linux.seccomp.flags[{i}]", f"unknown flag {flag!r}")
        bits |= _FLAGS[flag]
    return bits


def program(profile: dict[str, Any], cache_dir: str | None = None) -> bytes:
    """The BPF program for ``profile``, from ``cache_dir`` when compiled before.

    libseccomp needs ~10 ms to turn 400 rule names into BPF for four architectures; the
    program depends only on the profile and the machine, so it is kept in the state root
    (a tmpfs: gone at reboot, as is the libseccomp that made it, in the common case).
    Files are named by the SHA-256 of the canonical profile JSON and written atomically.
    """
    import os

    from labkit._sys import fastjson  # json would pull in re (~4 ms) on the start path

    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # built into CPython 3.11; hashlib loads OpenSSL (~10 ms)
    except ImportError:  # pragma: no cover - other interpreters
        from hashlib import sha256
    key = sha256(fastjson.dumps([os.uname().machine, profile], sort_keys=True).encode()).hexdigest()
    path = os.path.join(cache_dir, f"{key}.bpf") if cache_dir else None
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data and len(data) % 8 == 0:
                return data
        except FileNotFoundError:
            pass
    flt = compile_profile(profile)
    try:
        data = flt.bpf()
    finally:
        flt.release()
    if path is not None and cache_dir is not None:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    return data
