"""Notebook workloads: a memory hog, a CPU burner, run inside a cgroup while it is sampled.

Notebooks may not define functions (STYLE C13), so the small experiments they repeat live
here.  Each returns records (STYLE C15) for a table or a plot:

    from labkit.cgroups import Resources
    from labkit.lab import workloads as wl
    run = wl.run_limited("lk-nb-demo", Resources(memory_max=32 << 20), wl.memory_hog())
    run.returncode, run.after.oom_kills          # -9, 1

Overhead: the cgroup is read every ``interval`` seconds from a sampler thread (a handful of
small cgroupfs reads, labkit.measure.sampler); timings use time.perf_counter.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.cgroups import Cgroup, Resources, Stats, open_cgroup
from labkit.measure.sampler import CgroupSample, CgroupSampler, ProcessSample, ProcessSampler

__all__ = ["LimitedRun", "Timing", "cpu_burner", "memory_hog", "run_limited", "start_in",
           "time_calls", "time_spawns", "time_writes"]

# The gate: sh(1) waits for one line on stdin, then execs the workload in its place, so the
# workload is already in the cgroup before its first instruction (cgroup membership is
# inherited across fork and kept across execve, cgroups(7)).
_GATE = ("sh", "-c", 'read _ && exec "$@"', "lk-gate")


def memory_hog(step_mib: int = 1, pause_s: float = 0.01) -> list[str]:
    """argv of a process that allocates (and touches) ``step_mib`` MiB every ``pause_s`` s, forever."""
    code = ("import time\nheap = []\nwhile True:\n"
            f"    heap.append(b'x' * ({step_mib} << 20))\n    time.sleep({pause_s})\n")
    return [sys.executable, "-S", "-c", code]


def cpu_burner(seconds: float = 1.0) -> list[str]:
    """argv of a process that spins on one CPU for ``seconds`` of wall-clock time."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
    return [sys.executable, "-S", "-c", code]


def start_in(cg: Cgroup, argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` inside cgroup ``cg`` (it runs nothing before it is in the cgroup).

    Raises what Cgroup.add raises (the gated process is killed first).
    """
    proc = subprocess.Popen([*_GATE, *argv], stdin=subprocess.PIPE, **popen)
    try:
        cg.add(proc.pid)
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


@dataclass(frozen=True, slots=True)
class LimitedRun:
    """One workload run in its own cgroup: exit status, samples, counters before and after."""

    cgroup: str
    resources: Resources
    argv: tuple[str, ...]
    returncode: int
    wall_s: float
    samples: tuple[CgroupSample, ...]
    before: Stats
    after: Stats
    process_samples: tuple[ProcessSample, ...] = ()

    def _delta(self, field: str) -> int:
        a, b = getattr(self.after, field), getattr(self.before, field)
        return 0 if a is None or b is None else int(a - b)

    @property
    def cpu_usec(self) -> int:
        """CPU time the cgroup used during the run (cpuacct.usage / cpu.stat usage_usec)."""
        return self._delta("cpu_usage_usec")

    @property
    def cpu_percent(self) -> float:
        """cpu_usec over the wall time: 100 is one full CPU."""
        return 100.0 * self.cpu_usec / (self.wall_s * 1e6) if self.wall_s > 0 else 0.0

    @property
    def throttled(self) -> int:
        """Periods in which the cgroup ran out of quota (cpu.stat nr_throttled)."""
        return self._delta("nr_throttled")

    @property
    def oom_kills(self) -> int:
        """Processes the OOM killer killed in this cgroup during the run."""
        return self._delta("oom_kills")

    def summary(self) -> dict[str, object]:
        """One flat row for a table."""
        return {"cgroup": self.cgroup, "returncode": self.returncode,
                "wall_s": round(self.wall_s, 3), "cpu_ms": self.cpu_usec // 1000,
                "cpu_percent": round(self.cpu_percent, 1), "nr_throttled": self.throttled,
                "memory_peak": self.after.memory_peak, "oom_kills": self.oom_kills}


def run_limited(name: str, resources: Resources, argv: Sequence[str], *,
                interval: float = 0.02, timeout: float = 60.0) -> LimitedRun:
    """Create cgroup ``name``, apply ``resources``, run ``argv`` in it while sampling; remove it.

    Two samplers run every ``interval`` seconds: the cgroup's counters (CgroupSampler) and,
    as a cross-check, the process itself through psutil (ProcessSampler: rss, CPU times).

    The cgroup is killed and removed on every path out, even when the run fails or times
    out.  Raises AlreadyExistsError if ``name`` exists (so nothing of someone else's is
    removed), what Cgroup.create/set raise, and subprocess.TimeoutExpired.
    """
    cg = open_cgroup(name)
    cg.create(exist_ok=False)
    try:
        cg.set(resources)
        before = cg.stats()
        with CgroupSampler(cg, interval) as sampler:
            t0 = time.perf_counter()
            proc = start_in(cg, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            psampler = ProcessSampler(proc.pid, interval).start()
            try:
                code = proc.wait(timeout)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                psampler.stop()
            wall = time.perf_counter() - t0
        after = cg.stats()
    finally:
        try:
            cg.kill()
        finally:
            cg.remove()
    return LimitedRun(name, resources, tuple(argv), code, wall, tuple(sampler.rows), before, after,
                      tuple(psampler.rows))


@dataclass(frozen=True, slots=True)
class Timing:
    """One timed call: what was timed (``label``), which repetition (``i``), how long (ms)."""

    label: str
    i: int
    ms: float


def time_calls(calls: Mapping[str, Callable[[], object]], repeat: int = 10) -> list[Timing]:
    """Time each call ``repeat`` times, interleaved (round-robin), with time.perf_counter."""
    if repeat < 1:
        raise errors.InvalidArgumentError("repeat", f"{repeat} must be >= 1")
    rows: list[Timing] = []
    for i in range(repeat):
        for label, call in calls.items():
            t0 = time.perf_counter()
            call()
            rows.append(Timing(label, i, 1000 * (time.perf_counter() - t0)))
    return rows


def time_spawns(specs: Mapping[str, Any], argv: Sequence[str] = ("true",),
                repeat: int = 10) -> list[Timing]:
    """Start-to-exit time of ``argv`` under each labkit.ns NamespaceSpec (labkit.ns.run)."""
    from labkit.ns import run

    calls: dict[str, Callable[[], object]] = {
        k: functools.partial(run, s, argv, check=True) for k, s in specs.items()}
    return time_calls(calls, repeat)


def time_writes(paths: Mapping[str, str | os.PathLike[str]], repeat: int = 2,
                data: bytes = b"!") -> list[Timing]:
    """Time appending ``data`` to each path (open, write, close), ``repeat`` times each.

    On an overlay the first write to a lower file copies it up (overlayfs.rst "copy up"),
    later writes do not; ``i`` says which write a row is.
    """
    def append(p: Path) -> None:
        with open(p, "ab") as f:
            f.write(data)

    rows: list[Timing] = []
    for i in range(repeat):
        for label, p in paths.items():
            t0 = time.perf_counter()
            append(Path(p))
            rows.append(Timing(label, i, 1000 * (time.perf_counter() - t0)))
    return rows
