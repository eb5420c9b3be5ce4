"""Capabilities by name: the bit table, the bounding set, ambient raises (capabilities(7)).

capget/capset themselves are in labkit._sys.syscalls; this module turns the OCI spec's
``"CAP_NET_BIND_SERVICE"`` strings into bit masks and drops/raises the per-thread sets in
the order the kernel demands: bounding first (prctl PR_CAPBSET_DROP needs CAP_SETPCAP in
the effective set), then capset, then ambient (an ambient cap must already be permitted and
inheritable).
"""

from __future__ import annotations

from labkit import errors
from labkit._sys import consts
from labkit._sys.syscalls import capset, prctl

# include/uapi/linux/capability.h, in bit order.
CAP_NAMES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CAP_BITS: dict[str, int] = {name: bit for bit, name in enumerate(CAP_NAMES)}


def last_cap(procfs: str = "/proc") -> int:
    """The highest capability bit this kernel knows (/proc/sys/kernel/cap_last_cap)."""
    try:
        with open(f"{procfs}/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAP_NAMES) - 1


def mask(names: list[str] | tuple[str, ...], what: str = "capabilities") -> int:
    """Bit mask of capability ``names``; an unknown name raises InvalidArgumentError."""
    m = 0
    for i, name in enumerate(names):
        bit = CAP_BITS.get(name.upper())
        if bit is None:
            raise errors.InvalidArgumentError(
                f"{what}[{i}]", f"unknown capability {name!r}", hint="see capabilities(7)")
        m |= 1 << bit
    return m


def names(m: int) -> list[str]:
    """The capability names whose bits are set in ``m`` (for messages and tests)."""
    return [n for b, n in enumerate(CAP_NAMES) if m >> b & 1]


def bounding_set(top: int | None = None) -> int:
    """The caller's bounding set, read bit by bit with prctl(PR_CAPBSET_READ)."""
    top = last_cap() if top is None else top
    m = 0
    for bit in range(top + 1):
        if prctl(consts.PR_CAPBSET_READ, bit) == 1:
            m |= 1 << bit
    return m


def drop_bounding(keep: int, top: int | None = None) -> None:
    """prctl(2) PR_CAPBSET_DROP every bit not in ``keep`` (needs CAP_SETPCAP, so do it first)."""
    top = last_cap() if top is None else top
    for bit in range(top + 1):
        if not keep >> bit & 1 and prctl(consts.PR_CAPBSET_READ, bit) == 1:
            prctl(consts.PR_CAPBSET_DROP, bit)


def apply(effective: int, permitted: int, inheritable: int, ambient: int) -> None:
    """capset(2) the three thread sets, then raise ``ambient`` (PR_CAP_AMBIENT_RAISE).

    The kernel refuses an ambient bit that is not both permitted and inheritable; such bits are
    skipped, as runc does, rather than failing the whole container.
    """
    capset(effective, permitted, inheritable)
    prctl(consts.PR_CAP_AMBIENT, consts.PR_CAP_AMBIENT_CLEAR_ALL)
    usable = ambient & permitted & inheritable
    for bit in range(len(CAP_NAMES)):
        if usable >> bit & 1:
            prctl(consts.PR_CAP_AMBIENT, consts.PR_CAP_AMBIENT_RAISE, bit)
