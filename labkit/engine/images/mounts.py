"""A mount as data (containerd's ``mount.Mount``), and the mount(2) calls that perform it.

STYLE C10: the overlay snapshotter and the OCI runtime *describe* mounts with ``Mount``;
performing them is a separate step (``mount``).  ``Mount.calls()`` turns a description into
the exact list of mount(2) calls, so unit tests can check it without root.

Options are the words of mount(8) and of config.json "mounts[].options" (runtime-spec
config.md).  Words that name a per-mount or propagation flag become MS_* bits; every other
word (``lowerdir=..``, ``size=64m``, ``mode=755``) goes, in order, into the filesystem's data
string.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from labkit import errors
from labkit._sys import consts, syscalls

__all__ = [
    "FLAG_OPTIONS",
    "PROPAGATION_FLAGS",
    "Mount",
    "MountCall",
    "mount",
    "mount_all",
    "unmount",
]

C = consts

# option -> (clear it?, MS_* bits).  "rw" *clears* MS_RDONLY: later words win, as in
# mount(8) and runc's parseMountOptions, so ("ro", "rw") means read-write.
FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "defaults": (False, 0),  # mount(8) spelling of "no flags"; never sent to the kernel
    "ro": (False, C.MS_RDONLY),
    "rw": (True, C.MS_RDONLY),
    "nosuid": (False, C.MS_NOSUID),
    "suid": (True, C.MS_NOSUID),
    "nodev": (False, C.MS_NODEV),
    "dev": (True, C.MS_NODEV),
    "noexec": (False, C.MS_NOEXEC),
    "exec": (True, C.MS_NOEXEC),
    "sync": (False, C.MS_SYNCHRONOUS),
    "async": (True, C.MS_SYNCHRONOUS),
    "dirsync": (False, C.MS_DIRSYNC),
    "remount": (False, C.MS_REMOUNT),
    "bind": (False, C.MS_BIND),
    "rbind": (False, C.MS_BIND | C.MS_REC),
    "private": (False, C.MS_PRIVATE),
    "rprivate": (False, C.MS_PRIVATE | C.MS_REC),
    "slave": (False, C.MS_SLAVE),
    "rslave": (False, C.MS_SLAVE | C.MS_REC),
    "shared": (False, C.MS_SHARED),
    "rshared": (False, C.MS_SHARED | C.MS_REC),
    "unbindable": (False, C.MS_UNBINDABLE),
    "runbindable": (False, C.MS_UNBINDABLE | C.MS_REC),
    "relatime": (False, C.MS_RELATIME),
    "norelatime": (True, C.MS_RELATIME),
    "strictatime": (False, C.MS_STRICTATIME),
    "nostrictatime": (True, C.MS_STRICTATIME),
    "noatime": (False, C.MS_NOATIME),
    "atime": (True, C.MS_NOATIME),
    "nodiratime": (False, C.MS_NODIRATIME),
    "diratime": (True, C.MS_NODIRATIME),
    "nosymfollow": (False, C.MS_NOSYMFOLLOW),
}

PROPAGATION_FLAGS = C.MS_SHARED | C.MS_PRIVATE | C.MS_SLAVE | C.MS_UNBINDABLE
# Flags a bind mount ignores on its first call and only honours on a remount (mount(2),
# "Creating a bind mount": "the remaining bits ... are ignored" except MS_REC).
_BIND_REMOUNT_FLAGS = (C.MS_RDONLY | C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC | C.MS_NOATIME
                       | C.MS_NODIRATIME | C.MS_RELATIME | C.MS_STRICTATIME | C.MS_NOSYMFOLLOW)


@dataclass(frozen=True, slots=True)
class MountCall:
    """The arguments of one mount(2) call."""

    source: str | None
    target: str
    fstype: str | None
    flags: int
    data: str | None


@dataclass(frozen=True, slots=True)
class Mount:
    """A mount described, not performed (containerd mount.Mount; runtime-spec config.md).

    ``type`` is the filesystem ("overlay", "tmpfs", "proc"; "bind" or "none" for a bind
    mount), ``source`` what is mounted, ``target`` where (may be left empty and given to
    ``mount()`` instead), ``options`` mount(8) words.
    """

    type: str
    source: str
    target: str = ""
    options: tuple[str, ...] = ()

    def flags_and_data(self) -> tuple[int, str]:
        """Split ``options`` into MS_* flags and the comma-joined data string.

        Known flag words (FLAG_OPTIONS) set or clear bits in order, so a later word wins;
        anything else is passed to the filesystem verbatim, in order.  Propagation words
        (``private``, ``rshared``, ...) are included in the flags; ``calls()`` sends them
        in a call of their own.

        >>> Mount("tmpfs", "tmpfs", options=("nosuid", "size=64m", "ro")).flags_and_data()
        (3, 'size=64m')
        """
        flags, prop, data = self._parse()
        return flags | prop, data

    def _parse(self) -> tuple[int, int, str]:
        flags, prop, data = _parse(self.options)
        if self.type == "bind":
            # runtime-spec config.md allows type "bind" with options like ["ro"]; the
            # type alone means a bind mount (runc treats it the same way).
            flags |= C.MS_BIND
        return flags, prop, data

    def calls(self, target: str | os.PathLike[str] | None = None) -> list[MountCall]:
        """The mount(2) calls that perform this mount at ``target`` (default: self.target).

        The kernel needs more than one call in two cases (mount(2)):
        * a bind mount ignores ro/nosuid/nodev/noexec/atime flags on creation, so a second
          call with MS_REMOUNT|MS_BIND applies them (runc does the same);
        * propagation (MS_SHARED/PRIVATE/SLAVE/UNBINDABLE) cannot be combined with other
          flags, so it is changed by a call of its own, with only MS_REC beside it.
        A mount whose only options are propagation words (type "none") is just that call.
        """
        dest = os.fspath(target) if target is not None else self.target
        if not dest:
            raise errors.InvalidArgumentError(
                "mount target", f"no target for {self.type} mount of {self.source!r}")
        flags, prop, data = self._parse()
        fstype = self.type if self.type not in ("", "none", "bind") else None
        out: list[MountCall] = []
        if flags & C.MS_REMOUNT:
            # A remount changes an existing mount in one call; source is ignored.
            out.append(MountCall(self.source or None, dest, fstype, flags, data or None))
        elif flags & C.MS_BIND:
            out.append(MountCall(self.source, dest, None, flags & (C.MS_BIND | C.MS_REC), None))
            extra = flags & _BIND_REMOUNT_FLAGS
            if extra:
                out.append(MountCall(None, dest, None, C.MS_REMOUNT | C.MS_BIND | extra, None))
        elif not (prop and flags == 0 and fstype is None and not data):
            out.append(MountCall(self.source, dest, fstype, flags & ~C.MS_REC, data or None))
        if prop:
            out.append(MountCall(None, dest, None, prop, None))
        return out


_PROPAGATION_WORDS = frozenset(
    ("private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"))


def _parse(options: Sequence[str]) -> tuple[int, int, str]:
    """(flags without propagation, propagation flags with their own MS_REC, data)."""
    flags = prop = 0
    data: list[str] = []
    for opt in options:
        known = FLAG_OPTIONS.get(opt)
        if known is None:
            if not opt:
                raise errors.InvalidArgumentError("mount option", "empty option word")
            data.append(opt)
            continue
        clear, bits = known
        if opt in _PROPAGATION_WORDS:
            prop = bits  # one propagation type per call: the last word wins
        else:
            flags = flags & ~bits if clear else flags | bits
    return flags, prop, ",".join(data)


def mount(m: Mount, target: str | os.PathLike[str] | None = None) -> None:
    """mount(2): perform ``m`` at ``target`` (default ``m.target``), call by call.

    Raises SyscallError (with a hint from labkit.errors.HINTS) when the kernel refuses.
    """
    for c in m.calls(target):
        syscalls.mount(c.source, c.target, c.fstype, c.flags, c.data)


def unmount(target: str | os.PathLike[str], *, detach: bool = False) -> None:
    """umount2(2): unmount ``target``; ``detach`` uses MNT_DETACH (lazy unmount)."""
    syscalls.umount2(os.fspath(target), consts.MNT_DETACH if detach else 0)


def mount_all(mounts: Sequence[Mount]) -> None:
    """Perform ``mounts`` in order; on failure, unmount the ones done so far and re-raise."""
    done: list[str] = []
    try:
        for m in mounts:
            mount(m)
            done.append(m.target)
    except BaseException:
        for t in reversed(done):
            try:
                unmount(t, detach=True)
            except errors.SyscallError:
                pass  # best effort: the original error is the one to report
        raise
