"""Kernel constants under their kernel names (linux/sched.h, linux/mount.h, linux/prctl.h).

Python 3.11 has no os.CLONE_* (3.12 added them), so they are spelled out here once.
"""

from __future__ import annotations

# clone(2) / unshare(2) namespace flags, include/uapi/linux/sched.h
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags, include/uapi/linux/mount.h
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

# umount2(2) flags
MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# prctl(2) options, include/uapi/linux/prctl.h
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# The eight namespace kinds: /proc/PID/ns/<name> -> clone flag.  The order is the order in
# which a runtime must create or join them: user first (it owns the others), mnt last
# (joining a mount ns changes what later /proc paths resolve to).  See namespaces(7).
NS_FLAGS: dict[str, int] = {
    "user": CLONE_NEWUSER,
    "pid": CLONE_NEWPID,
    "net": CLONE_NEWNET,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
    "mnt": CLONE_NEWNS,
}

# OCI runtime-spec names (config-linux.md "namespaces") -> /proc/PID/ns names.
OCI_NS_NAMES: dict[str, str] = {
    "user": "user",
    "pid": "pid",
    "network": "net",
    "ipc": "ipc",
    "uts": "uts",
    "cgroup": "cgroup",
    "time": "time",
    "mount": "mnt",
}

# x86_64 / aarch64 syscall numbers for calls glibc 2.36 does not export.
SYS_NR: dict[str, dict[str, int]] = {
    "x86_64": {"clone3": 435, "pidfd_open": 434, "pidfd_send_signal": 424, "capget": 125,
               "capset": 126, "seccomp": 317},
    "aarch64": {"clone3": 435, "pidfd_open": 434, "pidfd_send_signal": 424, "capget": 90,
                "capset": 91, "seccomp": 277},
}
# Numbers from 424 on are the same on every architecture (asm-generic/unistd.h).
for _nrs in SYS_NR.values():
    _nrs["pidfd_getfd"] = 438
    _nrs["openat2"] = 437
