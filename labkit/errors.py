"""One exception tree for all of labkit.

Two families live here:

* ``SyscallError`` and its errno-specific subclasses: a failed system call, carrying the
  syscall's name, the errno, the target (a path, a pid, a namespace) and a hint.  They stay
  ``OSError`` subclasses so ``except PermissionError`` and ``.errno`` keep working.
* Domain errors (``NotFoundError``, ``AlreadyExistsError``, ``InvalidStateError``,
  ``UnsupportedError``, ``ConflictError``, ``InvalidArgumentError``, ``UnavailableError``):
  a small fixed vocabulary in the spirit of containerd's errdefs, so the daemon can map each
  class to one HTTP status and the client can rebuild the same class on the other side.

Every class pickles (``__reduce__``), because errors cross the pipe from a spawned child to
its parent (see labkit.ns.spawn).
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "HINTS",
    "AlreadyExistsError",
    "ConflictError",
    "ForbiddenError",
    "InvalidArgumentError",
    "InvalidStateError",
    "LabkitError",
    "NotFoundError",
    "SyscallBusyError",
    "SyscallError",
    "SyscallExistsError",
    "SyscallInvalidError",
    "SyscallNotFoundError",
    "SyscallPermissionError",
    "UnavailableError",
    "UnsupportedError",
    "from_errno",
]


class LabkitError(Exception):
    """Base of every error labkit raises on purpose."""

    hint: str | None = None

    def _note_hint(self) -> None:
        if self.hint:
            # PEP 678 notes: shown under the message in tracebacks and in Jupyter.
            self.add_note(f"hint: {self.hint}")


class SyscallError(LabkitError, OSError):
    """A system call failed.

    ``str(err)`` reads like ``[Errno 1] unshare: Operation not permitted: 'net'``.
    """

    def __init__(
        self, err: int, syscall: str, target: str | None = None, hint: str | None = None
    ) -> None:
        if target is None:
            super().__init__(err, f"{syscall}: {os.strerror(err)}")
        else:
            super().__init__(err, f"{syscall}: {os.strerror(err)}", target)
        self.syscall = syscall
        self.hint = hint
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.errno, self.syscall, self.filename, self.hint))


class SyscallPermissionError(SyscallError, PermissionError):
    """EPERM / EACCES from a system call."""


class SyscallNotFoundError(SyscallError, FileNotFoundError):
    """ENOENT from a system call."""


class SyscallExistsError(SyscallError, FileExistsError):
    """EEXIST from a system call."""


class SyscallBusyError(SyscallError):
    """EBUSY from a system call."""


class SyscallInvalidError(SyscallError):
    """EINVAL from a system call: the kernel refused the arguments."""


_BY_ERRNO: dict[int, type[SyscallError]] = {
    _errno.EPERM: SyscallPermissionError,
    _errno.EACCES: SyscallPermissionError,
    _errno.ENOENT: SyscallNotFoundError,
    _errno.EEXIST: SyscallExistsError,
    _errno.EBUSY: SyscallBusyError,
    _errno.EINVAL: SyscallInvalidError,
}

# (syscall, errno) -> what a user can do about it.  Keep each hint to one actionable line.
HINTS: dict[tuple[str, int], str] = {
    ("unshare", _errno.EPERM): "needs CAP_SYS_ADMIN: run as root, or add a user namespace",
    ("unshare", _errno.EINVAL): (
        "the caller is multi-threaded (a Jupyter kernel?) or the flag is unknown to this "
        "kernel: use labkit.ns.spawn(), which unshares in a fresh child"
    ),
    ("unshare", _errno.ENOSPC): "namespace count limit reached: see /proc/sys/user/max_*_namespaces",
    ("setns", _errno.EINVAL): (
        "the caller is multi-threaded, or the fd is not a namespace of the given type"
    ),
    ("setns", _errno.EPERM): "needs CAP_SYS_ADMIN in the target namespace's owning user namespace",
    ("mount", _errno.EINVAL): (
        "bad flags or source; for overlay: workdir must be empty and on the same fs as upperdir"
    ),
    ("mount", _errno.ENODEV): "filesystem type not known to this kernel (see /proc/filesystems)",
    ("mount", _errno.EPERM): "needs CAP_SYS_ADMIN in the mount namespace's owning user namespace",
    ("pivot_root", _errno.EINVAL): (
        "new_root must be a mount point and not on the same mount as the current root; "
        "bind-mount the rootfs onto itself first"
    ),
    ("pivot_root", _errno.EBUSY): "new_root or put_old is already in use",
    ("write uid_map", _errno.EPERM): (
        "the kernel refused the uid map: an unprivileged writer may map only its own uid, "
        "and ranges may not overlap (user_namespaces(7))"
    ),
    ("write uid_map", _errno.EINVAL): (
        "the kernel refused the uid map: ranges overlap, a count is 0, or the map was "
        "already written (user_namespaces(7))"
    ),
    ("write gid_map", _errno.EPERM): (
        "the kernel refused the gid map: write 'deny' to setgroups first when unprivileged "
        "(user_namespaces(7))"
    ),
    ("write gid_map", _errno.EINVAL): (
        "the kernel refused the gid map: ranges overlap, a count is 0, or the map was "
        "already written (user_namespaces(7))"
    ),
    ("sethostname", _errno.EPERM): "hostname requires a UTS namespace of the container's own",
    ("clone", _errno.EPERM): "needs CAP_SYS_ADMIN for new namespaces",
    ("execve", _errno.ENOENT): "the executable was not found in the container's rootfs",
}


def from_errno(
    err: int, syscall: str, target: str | None = None, hint: str | None = None
) -> SyscallError:
    """Build the SyscallError subclass that fits ``err``, with a hint from HINTS."""
    cls = _BY_ERRNO.get(err, SyscallError)
    if hint is None:
        hint = HINTS.get((syscall, err))
    return cls(err, syscall, target, hint)


class NotFoundError(LabkitError, LookupError):
    """A named object (container, cgroup, image, namespace, ...) does not exist."""

    def __init__(self, kind: str, name: str, hint: str | None = None) -> None:
        super().__init__(f"no such {kind}: {name}")
        self.kind, self.name, self.hint = kind, name, hint
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.kind, self.name, self.hint))


class AlreadyExistsError(LabkitError):
    """Creating an object whose name is taken."""

    def __init__(self, kind: str, name: str, hint: str | None = None) -> None:
        super().__init__(f"{kind} already exists: {name}")
        self.kind, self.name, self.hint = kind, name, hint
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.kind, self.name, self.hint))


class InvalidStateError(LabkitError):
    """A state transition the object's state machine forbids (runc stateTransitionError)."""

    def __init__(self, frm: str, to: str, what: str = "container", hint: str | None = None) -> None:
        super().__init__(f"invalid {what} state transition from {frm} to {to}")
        self.frm, self.to, self.what, self.hint = frm, to, what, hint
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.frm, self.to, self.what, self.hint))


class UnsupportedError(LabkitError):
    """This host lacks a kernel feature or tool; ``hint`` says how to get it."""

    def __init__(self, feature: str, reason: str, hint: str | None = None) -> None:
        super().__init__(f"{feature} is not supported here: {reason}")
        self.feature, self.reason, self.hint = feature, reason, hint
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.feature, self.reason, self.hint))


class ConflictError(LabkitError):
    """The request conflicts with the current state (in use, busy, name clash)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.hint))


class ForbiddenError(LabkitError):
    """The request names a thing that may never be changed that way (Docker's 403: a
    predefined network removed, a network with active endpoints removed)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.hint))


class UnavailableError(LabkitError):
    """The service is not available in this node's current state (Docker's 503: not a swarm
    manager, swarm locked, not part of a swarm); ``message`` is Docker's own text."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.hint))


class InvalidArgumentError(LabkitError, ValueError):
    """Bad input: names the field (``what``) and says what is wrong with it."""

    def __init__(self, what: str, problem: str, hint: str | None = None) -> None:
        super().__init__(f"{what}: {problem}")
        self.what, self.problem, self.hint = what, problem, hint
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.what, self.problem, self.hint))
