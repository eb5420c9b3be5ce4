"""The probes without eBPF: the same kinds from procfs and cgroupfs, and what they miss.

When bcc cannot run (not root, no bcc, headers that do not compile, a missing tracepoint),
``labkit.probes.open`` returns one of these instead: same ``read()`` records (the eBPF
module's dataclasses), ``.mode == "procfs"``, and ``.missing`` naming what polling cannot
see.  Nothing here needs root beyond reading the cgroup files.

* lifecycle: a thread polls each target's cgroup.procs (the v2 directory, subtree
  included) every ``interval`` seconds; a pid that appeared is a "fork" (its ppid from
  /proc/PID/stat), one whose command line changed is an "exec", one that went is an
  "exit".  Without targets, every pid in /proc, as "host".
* cgattach: the same poll; a pid that appeared in a target's cgroup is an "attach" (a move
  and a fork inside look alike from here).
* syscalls: nothing: no file shows syscalls as they happen; ``read()`` is [].

Overhead: one directory walk and a few small reads per target per ``interval``.
"""

from __future__ import annotations

import builtins
import os
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from labkit import errors
from labkit.probes import attribution
from labkit.probes.cgattach import Attach
from labkit.probes.lifecycle import Event
from labkit.probes.nssyscalls import Summary, SyscallEvent
from labkit.probes.target import Target, _v2_mount

__all__ = ["FALLBACKS", "MISSING", "AttachPoller", "LifecyclePoller", "NothingProbe",
           "PollProbe", "open"]

MODE = "procfs"
DEFAULT_INTERVAL = 0.05

MISSING: dict[str, tuple[str, ...]] = {
    "lifecycle": ("processes that start and end between two polls",
                  "an exec that keeps the command line, and exec file names (argv[0] instead)",
                  "exit codes", "threads", "exact event times (poll times instead)"),
    "cgattach": ("moves and departures between two polls", "who moved a process",
                 "the v1 hierarchies", "a fork inside the cgroup (it looks like a move)",
                 "attach latency"),
    "syscalls": ("every syscall: no file shows syscalls as they happen (needs eBPF)",),
}


def _read(path: str) -> bytes | None:
    try:
        with builtins.open(path, "rb") as f:  # this module's open() is the probe factory
            return f.read()
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    raw = _read(f"/proc/{pid}/cmdline") or b""
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _comm(pid: int) -> str:
    return (_read(f"/proc/{pid}/comm") or b"").decode(errors="replace").strip()


def _ppid(pid: int) -> int | None:
    data = _read(f"/proc/{pid}/stat")
    if not data:
        return None
    return int(data[data.rfind(b")") + 2:].split()[1]) or None


def _cgroup_pids(top: str) -> set[int]:
    """The pids in cgroup directory ``top`` and its child cgroups."""
    found: set[int] = set()
    for sub, _, _ in os.walk(top):
        for line in (_read(os.path.join(sub, "cgroup.procs")) or b"").split():
            found.add(int(line))
    return found


def _all_pids() -> set[int]:
    return {int(d) for d in os.listdir("/proc") if d.isdigit()}


class _Base:
    """Shared by the fallback probes: mode, missing, context manager."""

    mode = MODE
    kind = ""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.missing: tuple[str, ...] = MISSING.get(self.kind, ("everything: needs eBPF",))
        self.lost = 0

    def close(self) -> None:
        """Nothing to detach."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class NothingProbe(_Base):
    """A kind procfs cannot show: ``read()`` is always [], ``missing`` says what and why."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        super().__init__(reason)
        if kind not in MISSING:
            self.missing = (f"every {kind} event: needs eBPF ({reason})",)

    def read(self) -> list[Any]:
        return []

    def summary(self) -> dict[tuple[str, str], Summary]:
        return {}


class PollProbe(_Base):
    """A thread compares each target's pids every ``interval`` s; subclasses turn the
    differences into records."""

    def __init__(self, targets: Sequence[Target], reason: str,
                 interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__(reason)
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
            raise errors.InvalidArgumentError("interval", f"{interval!r}: a positive number of seconds")
        self.targets = tuple(targets)
        self.interval = float(interval)
        mount = _v2_mount()
        self._dirs: list[tuple[str, str | None, int | None]] = []
        for t in self.targets:
            d = None
            if mount is not None and t.cgroup_path:
                d = os.path.join(mount, t.cgroup_path.lstrip("/"))
            self._dirs.append((t.name, d, t.pid))
        self._lock = threading.Lock()
        self._pending: list[Any] = []
        self._known: dict[str, dict[int, str]] = {}   # container -> pid -> command line
        self._stop = threading.Event()
        self._sample(initial=True)
        self._thread = threading.Thread(target=self._run, name=f"lk-poll-{self.kind}",
                                        daemon=True)
        self._thread.start()

    def _members(self) -> dict[str, set[int]]:
        if not self.targets:
            return {attribution.HOST: _all_pids()}
        out = {}
        for name, d, pid in self._dirs:
            if d is not None and os.path.isdir(d):
                out[name] = _cgroup_pids(d)
            else:
                # a legacy host: the init's process, if it still runs
                out[name] = {pid} if pid is not None and os.path.exists(f"/proc/{pid}") else set()
        return out

    def _sample(self, initial: bool = False) -> None:
        now = time.monotonic_ns()
        for name, pids in self._members().items():
            old = self._known.setdefault(name, {})
            # the command line is re-read every poll: a change is how an exec shows here
            new = {p: _cmdline(p) or old.get(p, "") for p in pids}
            if not initial:
                events = self._diff(name, old, new, pids, now)
                if events:
                    with self._lock:
                        self._pending.extend(events)
            self._known[name] = new

    def _diff(self, name: str, old: dict[int, str], new: dict[int, str], pids: set[int],
              now: int) -> list[Any]:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sample()
            except OSError:
                continue  # a cgroup removed under us: the next poll sees what is left

    def read(self) -> list[Any]:
        """The records since the last read (one poll is made first, so nothing the last
        interval saw is left out)."""
        if not self._stop.is_set():
            self._sample()
        with self._lock:
            out, self._pending = self._pending, []
        return sorted(out, key=lambda e: e.ts_ns)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


class LifecyclePoller(PollProbe):
    """lifecycle from cgroup.procs: "fork" (appeared), "exec" (command line changed), "exit"."""

    kind = "lifecycle"

    def _diff(self, name: str, old: dict[int, str], new: dict[int, str], pids: set[int],
              now: int) -> list[Any]:
        out: list[Any] = []
        for pid in sorted(set(new) - set(old)):
            out.append(Event(ts_ns=now, kind="fork", container=name, pid=pid,
                             ppid=_ppid(pid), comm=_comm(pid)))
        for pid in sorted(set(new) & set(old)):
            if new[pid] != old[pid] and new[pid]:
                out.append(Event(ts_ns=now, kind="exec", container=name, pid=pid,
                                 ppid=_ppid(pid), comm=_comm(pid), filename=new[pid]))
        for pid in sorted(set(old) - set(new)):
            out.append(Event(ts_ns=now, kind="exit", container=name, pid=pid, ppid=None,
                             comm=""))
        return out


class AttachPoller(PollProbe):
    """cgattach from cgroup.procs: a pid that appeared in a target's cgroup."""

    kind = "cgattach"

    def _diff(self, name: str, old: dict[int, str], new: dict[int, str], pids: set[int],
              now: int) -> list[Any]:
        by_name = {t.name: t for t in self.targets}
        t = by_name.get(name)
        return [Attach(ts_ns=now, kind="attach", container=name, pid=pid, comm=_comm(pid),
                       dst_root=0, dst_level=-1, dst_id=(t.cgroup_id or 0) if t else 0,
                       dst_path=(t.cgroup_path or "") if t else "", by_pid=None, by_comm="",
                       lat_ns=None)
                for pid in sorted(set(new) - set(old))]


FALLBACKS: dict[str, type[PollProbe] | None] = {
    "lifecycle": LifecyclePoller,
    "cgattach": AttachPoller,
    "syscalls": None,       # nothing to poll: NothingProbe
}


def open(kind: str, targets: Sequence[Target], reason: str, *,
         interval: float = DEFAULT_INTERVAL, **opts: Any) -> Any:
    """The procfs stand-in for probe ``kind``; ``reason``: why eBPF is not used.

    Options the eBPF probe takes that polling cannot honour are refused, not ignored.

    Raises:
        UnsupportedError: an option (threads=True, mode="kprobe") polling cannot apply.
    """
    if opts.get("threads"):
        raise errors.UnsupportedError("threads=True", f"polling sees processes, not threads ({reason})",
                                      hint="run as root with bcc for threads")
    if opts.get("mode") == "kprobe":
        raise errors.UnsupportedError("mode='kprobe'", f"eBPF is not usable here: {reason}")
    cls = FALLBACKS.get(kind)
    if cls is None:
        return NothingProbe(kind, reason)
    return cls(targets, reason, interval)


# The record types the stand-ins share with the eBPF probes (for isinstance checks).
RECORDS = {"lifecycle": Event, "cgattach": Attach, "syscalls": SyscallEvent}
