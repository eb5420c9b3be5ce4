"""A mount as data (containerd's ``mount.Mount``), and the mount(2) calls that perform it.

STYLE C10: the overlay snapshotter and the OCI runtime *describe* mounts with ``Mount``;
performing them is a separate step (``mount``).  ``Mount.calls()`` turns a description into
the exact list of mount(2) calls, so unit tests can check it without root.

Options are the words of mount(8) and of config.json "mounts[].options" (runtime-spec
config.md); ``labkit.engine.images.mountopts`` translates them (the one table, shared with
the runtime): words that name a per-mount or propagation flag become MS_* bits; every other
word (``lowerdir=..``, ``size=64m``, ``mode=755``) goes, in order, into the filesystem's data
string.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from labkit import errors
from labkit._sys import consts, syscalls
from labkit.engine.images import mountopts
from labkit.engine.images.mountopts import FLAG_OPTIONS, PROPAGATION_FLAGS

__all__ = [
    "FLAG_OPTIONS",
    "PROPAGATION_FLAGS",
    "Mount",
    "MountCall",
    "mount",
    "mount_all",
    "unmount",
]


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
        flags, prop, data = mountopts.parse(self._options())
        if self.type == "bind":
            # runtime-spec config.md allows type "bind" with options like ["ro"]; the
            # type alone means a bind mount (runc treats it the same way).
            flags |= consts.MS_BIND
        return flags | prop, data

    def _options(self) -> tuple[str, ...]:
        if "" in self.options:
            raise errors.InvalidArgumentError("mount option", "empty option word")
        return self.options

    def calls(self, target: str | os.PathLike[str] | None = None) -> list[MountCall]:
        """The mount(2) calls that perform this mount at ``target`` (default: self.target);
        see ``mountopts.calls`` for when the kernel needs more than one."""
        dest = os.fspath(target) if target is not None else self.target
        if not dest:
            raise errors.InvalidArgumentError(
                "mount target", f"no target for {self.type} mount of {self.source!r}")
        return [MountCall(*c) for c in mountopts.calls(self.type, self.source, dest,
                                                        self._options())]


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
