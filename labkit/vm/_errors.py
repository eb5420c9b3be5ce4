"""Errors of the VM room: a build or boot that failed, with what the user can do about it."""

from __future__ import annotations

from labkit.errors import LabkitError


class VMError(LabkitError):
    """The VM image could not be built, or the VM could not be booted or reached."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.hint))


class BootTimeoutError(VMError, TimeoutError):
    """The VM did not reach its ready marker (the agent's answer) in time."""


class NoSpaceError(VMError):
    """Too little free disk space under the cache directory to build the image."""
