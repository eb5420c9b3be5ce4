"""The doctor's row type."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VM", "Check"]

VM = "use the VM: labkit vm"


@dataclass(frozen=True, slots=True)
class Check:
    """One fact about the host.  ``ok`` is True, False, or None for "partial / warning"."""

    name: str
    ok: bool | None
    detail: str
    hint: str | None = None

    @property
    def status(self) -> str:
        return {True: "ok", False: "missing", None: "partial"}[self.ok]
