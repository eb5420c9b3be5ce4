"""Reading and writing cgroupfs control files: one place that turns OSError into labkit errors.

Every write goes through write(): the error names the file and the data, like runc's
cgroups.WriteFile ('failed to write "100" to memory.max: ...') and youki's
WrappedIoError::Write. Reads of a file that is absent return None, because a missing
control file means "this controller or kernel feature is not here", which the callers
turn into Optional fields or UnsupportedError.
"""

from __future__ import annotations

import errno
import os

from labkit import errors

# Paths arrive as str (the backends use os.path) or as any os.PathLike; no pathlib or typing
# imports here (labkit-runtime's start path).  mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    StrPath = str | os.PathLike[str]

# (file, errno) -> a hint a user can act on.  Sources: cgroup-v1/memory.rst, cpusets.rst,
# cgroup-v2.rst ("no internal process" rule, "Threads"), kill(2)/ESRCH.
_HINTS: dict[tuple[str, int], str] = {
    ("memory.limit_in_bytes", errno.EINVAL): (
        "memory.limit_in_bytes must stay <= memory.memsw.limit_in_bytes; "
        "raise memory_swap_max too (Docker semantics: memory+swap total)"
    ),
    ("memory.memsw.limit_in_bytes", errno.EINVAL): (
        "memory.memsw.limit_in_bytes (memory+swap) must be >= memory.limit_in_bytes"
    ),
    ("memory.limit_in_bytes", errno.EBUSY): (
        "the cgroup already uses more memory than the new limit and could not reclaim it"
    ),
    ("memory.max", errno.EBUSY): "the cgroup uses more memory than the new limit",
    ("cpuset.cpus", errno.EINVAL): "CPUs must be a subset of the parent's cpuset.cpus",
    ("cpuset.mems", errno.EINVAL): "memory nodes must be a subset of the parent's cpuset.mems",
    ("cpuset.cpus", errno.ERANGE): "no such CPU on this machine (see /sys/devices/system/cpu/online)",
    ("cpuset.mems", errno.ERANGE): "no such memory node (see /sys/devices/system/node/online)",
    ("pids.max", errno.ERANGE): "pids.max is at most PID_MAX_LIMIT (4194304)",
    # cgroup-v2.rst "No Internal Process Constraint": a non-root cgroup that hands domain
    # controllers to its children (cgroup.subtree_control) cannot hold processes itself.
    ("cgroup.procs", errno.EBUSY): (
        "cgroup v2 'no internal processes' rule: this cgroup enables controllers for its "
        "children, so processes must go into a leaf child instead"
    ),
    ("cgroup.procs", errno.ESRCH): "no such process (it exited, or the pid is wrong)",
    ("cgroup.procs", errno.ENOSPC): (
        "v1 cpuset: cpuset.cpus/cpuset.mems of this cgroup are empty"
    ),
    ("cgroup.procs", errno.EOPNOTSUPP): (
        "cgroup v2 'no internal processes' rule: this cgroup has controllers enabled in "
        "cgroup.subtree_control; put processes in a leaf"
    ),
    ("cgroup.subtree_control", errno.EBUSY): (
        "cgroup v2 'no internal processes' rule: the cgroup has processes of its own"
    ),
    ("cgroup.subtree_control", errno.ENOENT): "the controller is not in the parent's cgroup.controllers",
    ("pids.max", errno.EINVAL): "pids.max takes a positive integer or 'max'",
    ("cpu.max", errno.EINVAL): "quota must be >= 1000us and period within 1000us..1s",
    ("cpu.cfs_quota_us", errno.EINVAL): "quota must be >= 1000us (or -1), period within 1000us..1s",
    ("cpu.cfs_period_us", errno.EINVAL): "period must be within 1000us..1s",
}


def write(path: StrPath, data: str) -> None:
    """write(2) ``data`` to the control file ``path`` in one call.

    Raises:
        SyscallError (errno subclass): the kernel refused; the syscall reads
            'write "DATA" to FILE' and the target is the full path.
    """
    name = os.path.basename(path)
    try:
        # O_TRUNC keeps fake trees (plain files) honest; cgroupfs ignores it.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as err:
        raise errors.from_errno(
            err.errno or errno.EIO, f'write "{data}" to {name}', os.fspath(path),
            _HINTS.get((name, err.errno or 0)),
        ) from None
    try:
        # One write(2) per value: the kernel parses each write as a whole.
        os.write(fd, data.encode())
    except OSError as err:
        raise errors.from_errno(
            err.errno or errno.EIO, f'write "{data}" to {name}', os.fspath(path),
            _HINTS.get((name, err.errno or 0)),
        ) from None
    finally:
        os.close(fd)


def read(path: StrPath) -> str | None:
    """read(2) a control file; None when it does not exist (controller absent)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise errors.from_errno(err.errno or errno.EIO, "read", os.fspath(path)) from None


def read_int(path: StrPath, *, unlimited: int | None = None) -> int | None:
    """A single-number file; 'max' (v2) or a value >= ``unlimited`` (v1) becomes -1."""
    text = read(path)
    if text is None or not text.strip():
        return None
    word = text.split()[0]
    if word == "max":
        return -1
    value = int(word)
    if unlimited is not None and value >= unlimited:
        return -1
    return value


def read_keyed(path: StrPath) -> dict[str, int] | None:
    """A flat-keyed file ('key value' per line: cpu.stat, memory.events, memory.oom_control)."""
    text = read(path)
    if text is None:
        return None
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def read_pids(path: StrPath) -> list[int]:
    """cgroup.procs: one pid per line; a missing file (cgroup removed) reads as empty."""
    text = read(path)
    if not text:
        return []
    return [int(w) for w in text.split()]
