"""What every probe shares: the Probe protocol, tracefs, and compiling/attaching with bcc.

A probe module (STYLE C14, the shape of a bcc tool) has:

* ``BPF_TEXT`` with UPPERCASE placeholders and a pure ``render(opts) -> str`` that fills them
  (unit-testable, and shown in a notebook like bcc's ``--ebpf``);
* ``attach(opts) -> Probe``: compiles, attaches, and returns an object with ``.read()`` and
  ``.close()`` that is also a context manager.

bcc is imported lazily (it takes ~0.3 s and loads LLVM), and only after tracefs is mounted,
because bcc decides where tracefs lives at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from labkit import errors
from labkit._sys import features
from labkit._sys.syscalls import mount

__all__ = ["BccProbe", "CounterFallback", "Probe", "ensure_tracefs", "load_bpf", "load_event_probe",
           "require_tracepoint"]

R = TypeVar("R")

TRACEFS = Path("/sys/kernel/tracing")
VM_HINT = "use the VM, whose kernel has it: labkit vm"


class Probe(Protocol[R]):
    """An attached probe: read what it saw, then close it (or use ``with``)."""

    def read(self) -> list[R]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def ensure_tracefs() -> Path:
    """mount(2) tracefs at /sys/kernel/tracing when no tracefs is mounted; return its path.

    systemd mounts it at boot; minimal containers and CI machines often do not.  The mount is
    left in place, as systemd would (Documentation/trace/ftrace.rst, "The File System").

    Raises:
        UnsupportedError: the kernel has no tracefs, or we are not root and it is unmounted.
    """
    found = features.tracefs()
    if found is not None:
        return found
    if "tracefs" not in features.filesystems():
        raise errors.UnsupportedError(
            "tracefs", "this kernel has no tracefs (CONFIG_TRACING)", hint=VM_HINT)
    if os.geteuid() != 0:
        raise errors.UnsupportedError(
            "tracefs", f"not mounted, and mounting it at {TRACEFS} needs root",
            hint=f"as root: mount -t tracefs tracefs {TRACEFS}")
    mount("tracefs", str(TRACEFS), "tracefs", 0)
    features.tracefs.cache_clear()
    features.tracepoint_fields.cache_clear()
    return TRACEFS


def require_root(tool: str) -> None:
    """Refuse early, with a hint, when we lack the privileges bpf(2) needs."""
    if os.geteuid() != 0:
        raise errors.UnsupportedError(
            tool, "loading eBPF programs needs root (CAP_BPF and CAP_PERFMON)",
            hint="run as root (sudo), or in the VM: labkit vm")


def require_tracepoint(category: str, event: str, tool: str) -> None:
    """UnsupportedError naming the tracepoint when this kernel does not have it."""
    ensure_tracefs()
    if not features.tracepoint_exists(category, event):
        raise errors.UnsupportedError(
            tool, f"this kernel has no tracepoint {category}:{event}", hint=VM_HINT)


def load_bpf(text: str, tool: str) -> Any:
    """Compile ``text`` with bcc and return the ``bcc.BPF`` object (untyped: bcc has no stubs).

    Raises:
        UnsupportedError: bcc is missing, we are not root, or compiling failed (usually
            kernel headers that do not match the running kernel: see ``labkit doctor``).
    """
    require_root(tool)
    ensure_tracefs()
    if not features.has_bcc():
        raise errors.UnsupportedError(
            "bcc", "the bcc Python module is not importable",
            hint="apt-get install python3-bpfcc, then make setup (links it into .venv)")
    import bcc  # type: ignore[import-untyped,unused-ignore]  # slow; deliberately late

    try:
        return bcc.BPF(text=text.encode())
    except Exception as err:  # bcc raises bare Exception on compile/load failures
        hint = "check the kernel headers with: labkit doctor"
        if (near := features.nearest_headers()) is not None:
            hint += f" (only the nearest headers are linked: {near})"
        raise errors.UnsupportedError(tool, f"bcc could not compile/load it: {err}",
                                      hint=hint) from err


P = TypeVar("P", bound="BccProbe[Any]")


def load_event_probe(cls: type[P], text: str, tool: str,
                     tracepoints: tuple[tuple[str, str], ...], table: str = "events") -> P:
    """Check root and each (category, event) tracepoint, compile ``text``, wrap it in
    ``cls`` and open its perf buffer ``table``; the probe is closed if that fails.

    TRACEPOINT_PROBE functions attach themselves when bcc loads them: only the perf buffer
    is left to open."""
    require_root(tool)
    for category, event in tracepoints:
        require_tracepoint(category, event, tool)
    probe = cls(load_bpf(text, tool), tool)
    try:
        probe._open_events(table)
    except BaseException:
        probe.close()
        raise
    return probe


def attach_tracepoint(bpf: Any, tp: str, fn_name: str, tool: str) -> None:
    """bcc attach_tracepoint with a typed error naming the tracepoint."""
    try:
        bpf.attach_tracepoint(tp=tp.encode(), fn_name=fn_name.encode())
    except Exception as err:
        raise errors.UnsupportedError(tool, f"attaching to tracepoint {tp} failed: {err}",
                                      hint=VM_HINT) from err


def c_string(raw: bytes) -> str:
    """A NUL-terminated C char array as text (bytes after the first NUL are garbage)."""
    return raw.split(b"\0", 1)[0].decode(errors="replace")


class BccProbe(Generic[R]):
    """Holds one bcc.BPF object; subclasses implement ``read``.

    Event probes gather records from a perf buffer into ``_pending``, which ``read()`` drains.
    """

    def __init__(self, bpf: Any, tool: str) -> None:
        self._bpf: Any = bpf
        self.tool = tool
        self.lost = 0  # perf buffer records the kernel dropped (the buffer was full)
        self._pending: list[R] = []

    @property
    def bpf(self) -> Any:
        if self._bpf is None:
            raise errors.InvalidStateError("closed", "read", what=f"probe {self.tool}")
        return self._bpf

    def _open_events(self, table: str) -> None:
        def lost(n: int) -> None:
            self.lost += n

        self.bpf[table.encode()].open_perf_buffer(self._on_event, page_cnt=64, lost_cb=lost)

    def _on_event(self, cpu: int, data: Any, size: int) -> None:
        raise NotImplementedError

    def _drain(self) -> list[R]:
        # perf_buffer_poll(0) reads everything already in the per-CPU buffers without
        # waiting; twice, in case a record landed between epoll_wait and the read.
        for _ in range(2):
            self.bpf.perf_buffer_poll(timeout=0)
        out, self._pending = self._pending, []
        return out

    def read(self) -> list[R]:
        raise NotImplementedError

    def close(self) -> None:
        """Detach and unload the program (idempotent)."""
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class CounterFallback:
    """What every procfs stand-in for an eBPF probe shares: ``mode`` "procfs", ``reason``
    (why eBPF did not run), nothing to detach (close() only marks it closed), ``with``."""

    mode = "procfs"

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        self.lost = 0
        self._closed = False

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
