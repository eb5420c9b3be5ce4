"""Samplers: read a process tree (psutil) or a cgroup (labkit.cgroups) every interval.

Each sampler runs in a background thread and returns frozen rows (STYLE C15), the way
psutil returns named tuples; ``to_dataframe(rows)`` turns them into a table to plot.

Example (notebook 02: memory climbing to a cgroup limit)::

    from labkit.measure import sampler
    with sampler.CgroupSampler(cg, interval=0.05) as s:
        run_the_hog()
    df = sampler.to_dataframe(s.rows)      # t, memory_current, memory_max, ...

Overhead: one psutil walk of the process tree (a few /proc reads per process) or one read
of a handful of cgroup files per interval; the thread sleeps in between.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar

import psutil

from labkit import errors

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

__all__ = ["CgroupSample", "CgroupSampler", "ProcessSample", "ProcessSampler", "Sampler",
           "to_dataframe"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One reading of a process and its descendants.

    ``rss`` is summed over the tree (shared pages are counted once per process, as ps does);
    ``cpu_user``/``cpu_system`` are seconds, including children already reaped (getrusage(2)
    RUSAGE_CHILDREN, via psutil cpu_times().children_*); ``cpu_percent`` is the tree's CPU
    time over the last interval divided by the wall time (100 = one full core).
    """

    t: float
    pid: int
    num_procs: int
    rss: int
    cpu_user: float
    cpu_system: float
    cpu_percent: float


@dataclass(frozen=True, slots=True)
class CgroupSample:
    """One reading of a cgroup (labkit.cgroups Stats); None where the kernel has no file."""

    t: float
    memory_current: int | None
    memory_max: int | None
    memory_limit_hits: int | None
    cpu_usage_usec: int | None
    nr_periods: int | None
    nr_throttled: int | None
    throttled_usec: int | None
    pids_current: int | None
    oom_kills: int | None


class _HasStats(Protocol):
    """What CgroupSampler needs of a labkit.cgroups.Cgroup."""

    def stats(self) -> Any: ...


class Sampler(Generic[T]):
    """Calls ``_sample`` every ``interval`` seconds in a daemon thread until ``stop()``."""

    def __init__(self, interval: float = 0.1) -> None:
        if not interval > 0:
            raise errors.InvalidArgumentError("interval", f"{interval!r} must be > 0 seconds")
        self.interval = interval
        self.rows: list[T] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self.error: BaseException | None = None

    def _sample(self, t: float) -> T | None:
        """One row, or None when the target is gone (ends sampling)."""
        raise NotImplementedError

    def _loop(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                row = self._sample(time.monotonic() - self._t0)
                if row is None:
                    return
                self.rows.append(row)
                # Fixed-rate schedule: a slow read does not push later samples back.
                next_at += self.interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        except Exception as err:  # noqa: BLE001 - re-raised by stop(): a thread cannot raise
            self.error = err

    def start(self) -> Self:
        """Start sampling in the background (t=0 is now)."""
        if self._thread is not None:
            raise errors.InvalidStateError("started", "started", what="sampler")
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="labkit-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[T]:
        """Stop, take one last sample, and return all rows.  Re-raises a sampling error."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            if self.error is None:
                last = self._sample(time.monotonic() - self._t0)
                if last is not None:
                    self.rows.append(last)
        if self.error is not None:
            raise self.error
        return self.rows

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ProcessSampler(Sampler[ProcessSample]):
    """Samples ``pid`` (and, with ``children=True``, all its descendants) via psutil."""

    def __init__(self, pid: int, interval: float = 0.1, *, children: bool = True) -> None:
        super().__init__(interval)
        try:
            self._proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            raise errors.NotFoundError("process", str(pid)) from None
        self.pid, self.children = pid, children
        self._last: tuple[float, float] | None = None  # (t, cpu seconds) of the last sample

    def _sample(self, t: float) -> ProcessSample | None:
        try:
            procs = [self._proc]
            if self.children:
                procs += self._proc.children(recursive=True)
            rss = user = system = 0.0
            alive = 0
            for p in procs:
                try:
                    with p.oneshot():
                        rss += p.memory_info().rss
                        ct = p.cpu_times()
                except psutil.NoSuchProcess:
                    continue  # a child exited between children() and now
                alive += 1
                user += ct.user
                system += ct.system
                if p is self._proc:  # reaped children's time is counted in their parent
                    user += ct.children_user
                    system += ct.children_system
        except psutil.NoSuchProcess:
            return None
        cpu = user + system
        pct = 0.0
        if self._last is not None and t > self._last[0]:
            pct = 100.0 * (cpu - self._last[1]) / (t - self._last[0])
        self._last = (t, cpu)
        return ProcessSample(t=t, pid=self.pid, num_procs=alive, rss=int(rss), cpu_user=user,
                             cpu_system=system, cpu_percent=max(0.0, pct))


class CgroupSampler(Sampler[CgroupSample]):
    """Samples a labkit.cgroups Cgroup's ``stats()`` (any version: the fields are shared)."""

    def __init__(self, cgroup: _HasStats, interval: float = 0.1) -> None:
        super().__init__(interval)
        self.cgroup = cgroup

    def _sample(self, t: float) -> CgroupSample | None:
        try:
            s = self.cgroup.stats()
        except (errors.NotFoundError, FileNotFoundError):
            return None  # the cgroup was removed: the run is over
        # The row is stamped when the reading is complete, not when it began: a counter
        # (oom_kill, nr_throttled) may go up while the files are read, and "the first row
        # whose count went up" must never be stamped before the event it saw (an eBPF
        # probe's stamp of that event came 0.8 ms after a start-of-read stamp once)
        t = max(t, time.monotonic() - self._t0)
        return CgroupSample(
            t=t, memory_current=s.memory_current, memory_max=s.memory_max,
            memory_limit_hits=s.memory_limit_hits, cpu_usage_usec=s.cpu_usage_usec,
            nr_periods=s.nr_periods, nr_throttled=s.nr_throttled,
            throttled_usec=s.throttled_usec, pids_current=s.pids_current,
            oom_kills=s.oom_kills)


def to_dataframe(rows: Sequence[object]) -> pd.DataFrame:
    """Rows of any labkit dataclass or Frozen record (e.g. cgroups Stats) as a pandas
    DataFrame (one column per field)."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    return pd.DataFrame([r._asdict() if hasattr(r, "_asdict")  # labkit/_record.py
                         else dataclasses.asdict(r)  # type: ignore[call-overload,unused-ignore]
                         for r in rows])
