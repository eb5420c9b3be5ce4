"""Limits measured: what each cgroup limit does to a workload that runs into it.

* memory: usage climbs (sampled) to ``memory_max`` and the OOM killer ends the hog; the kill
  is timed by the cgroup's own counter (the first sample whose oom_kill went up) and, where
  bcc and the oom:mark_victim tracepoint are there, by labkit.probes.oomkill (its
  bpf_ktime_get_ns stamp is CLOCK_MONOTONIC, the samplers' clock);
* CPU: the CFS quota (sched-bwc.rst) against the CPU a burner achieves in each interval,
  beside a baseline run without quota;
* pids: a forker asks for more children than pids.max allows; exactly the forks beyond the
  limit fail with EAGAIN (fork(2); pids.rst), and pids.events "max" counts them too;
* io: v1 blkio.throttle.write_bps_device (v2 io.max wbps) on a loop device of our own, and
  the bytes per interval that O_DIRECT writes achieve under it, beside a baseline.

Each run is one workloads.LimitedRun (cgroup counters sampled every ``interval`` seconds,
the process through psutil) in a fresh lk-* cgroup that is killed and removed afterwards.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labkit import errors
from labkit.cgroups import Cgroup, IoLimit, Resources, open_cgroup
from labkit.measure.sampler import CgroupSampler, ProcessSampler
from labkit.measure.workloads import LimitedRun, cpu_burner, memory_hog, start_in

__all__ = ["CpuPoint", "CpuQuotaRun", "IoPoint", "IoRun", "MemoryLimitRun", "PidsRun",
           "cpu_points", "cpu_quota", "cpu_run", "forker", "io_limit", "io_points", "memory_limit", "oom_time",
           "pids_limit"]

if TYPE_CHECKING:
    from labkit.probes.oomkill import OomKill, OomProbe

MIB = 1 << 20


def _run(name: str, resources: Resources, argv: Sequence[str], *, interval: float,
         timeout: float, prepare: Sequence[contextlib.AbstractContextManager[object]] = (),
         stdout: int = subprocess.DEVNULL,
         watch: Callable[[Cgroup], contextlib.AbstractContextManager[object]] | None = None,
         ) -> tuple[LimitedRun, float, bytes]:
    """workloads.run_limited, also returning the sampler's t=0 (time.monotonic) and stdout.

    ``prepare`` (a probe) and ``watch(cgroup)`` are entered after the cgroup exists and
    limited, before the workload starts, and left after it ended.
    """
    cg = open_cgroup(name)
    cg.create(exist_ok=False)
    out = b""
    try:
        cg.set(resources)
        before = cg.stats()
        with contextlib.ExitStack() as stack:
            for ctx in prepare:
                stack.enter_context(ctx)
            if watch is not None:
                stack.enter_context(watch(cg))
            sampler = CgroupSampler(cg, interval)
            sampler.start()
            t0 = sampler._t0  # the samples' clock: time.monotonic() at start
            try:
                w0 = time.perf_counter()
                proc = start_in(cg, argv, stdout=stdout, stderr=subprocess.DEVNULL)
                psampler = ProcessSampler(proc.pid, interval).start()
                try:
                    if proc.stdout is not None:  # start_in closed stdin: no communicate()
                        out = proc.stdout.read()
                    code = proc.wait(timeout)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                    psampler.stop()
                wall = time.perf_counter() - w0
            finally:
                sampler.stop()
        after = cg.stats()
    finally:
        try:
            cg.kill()
        finally:
            cg.remove()
    run = LimitedRun(name, resources, tuple(argv), code, wall, tuple(sampler.rows), before,
                     after, tuple(psampler.rows))
    return run, t0, out


# --- memory -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MemoryLimitRun:
    """A memory hog under ``limit`` bytes and when the OOM killer ended it.

    ``t_oom_cgroup``: the first sample whose oom_kills counter had gone up (seconds since
    sampling began; the kill happened in the interval before it).  ``t_oom_event``: when
    the cgroup's own OOM notification arrived (``event_note`` says which), same clock.  ``t_oom_probe``: the
    oomkill probe's stamp of the victim, same clock; None with ``probe_note`` saying why
    when no probe ran.  ``probe_kills`` counts the victims the probe saw in this cgroup's hog.
    """

    run: LimitedRun
    limit: int
    t_oom_cgroup: float | None
    t_oom_probe: float | None
    probe_kills: int | None
    probe_note: str
    t_oom_event: float | None = None  # the cgroup's OOM notification (v1 eventfd / v2 poll)
    event_note: str = ""

    @property
    def cgroup_kills(self) -> int:
        return self.run.oom_kills


def oom_time(run: LimitedRun) -> float | None:
    """t of the first sample whose oom_kills is above the count before the run."""
    base = run.before.oom_kills or 0
    for s in run.samples:
        if s.oom_kills is not None and s.oom_kills > base:
            return s.t
    return None


class _Probe(contextlib.AbstractContextManager[object]):
    """Attaches oomkill on enter (remembering why not, when it cannot), detaches on exit."""

    def __init__(self) -> None:
        self.probe: OomProbe | None = None
        self.note = ""
        self.events: list[OomKill] = []

    def __enter__(self) -> object:
        try:
            from labkit.probes import oomkill

            self.probe = oomkill.attach()
            self.note = "oomkill probe (tracepoint oom:mark_victim)"
        except errors.UnsupportedError as err:
            self.note = f"no probe: {err}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.probe is not None:
            self.events = list(self.probe.read())
            self.probe.close()


class _OomWatch(contextlib.AbstractContextManager[object]):
    """The cgroup's own OOM notification, stamped with time.monotonic() in a thread.

    v1 (memory-v1.rst 10, "OOM Control"): an eventfd registered for memory.oom_control via
    cgroup.event_control is signalled when the cgroup hits OOM, before the killer picks a
    victim.  v2 (cgroup-v2.rst "memory.events"): the file raises a "modified" event
    (POLLPRI) when a counter changes; oom_kill going up is the kill.  ``t`` stays None
    where neither works (``note`` says why); the counters are still sampled.
    """

    def __init__(self, cg: Cgroup) -> None:
        import threading

        self.cg = cg
        self.t: float | None = None
        self.note = ""
        self._fds: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="labkit-oomwatch", daemon=True)
        self._v1 = getattr(cg, "controller_dir", None) is not None

    def __enter__(self) -> object:
        try:
            if self._v1:
                d = self.cg.controller_dir("memory")  # type: ignore[attr-defined]
                efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                self._fds.append(efd)
                ofd = os.open(os.path.join(d, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
                self._fds.append(ofd)
                with open(os.path.join(d, "cgroup.event_control"), "w") as f:
                    f.write(f"{efd} {ofd}")
                self.note = "v1 eventfd on memory.oom_control"
            else:
                self._fds.append(os.open(os.path.join(str(self.cg.path), "memory.events"),
                                         os.O_RDONLY | os.O_CLOEXEC))
                self.note = "v2 memory.events (POLLPRI)"
        except OSError as err:
            self._close()
            self.note = f"no OOM notification: {err}"
            return self
        self._thread.start()
        return self

    def _kills_v2(self) -> int:
        os.lseek(self._fds[0], 0, os.SEEK_SET)
        for line in os.read(self._fds[0], 4096).decode().splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill":
                return int(v)
        return 0

    def _loop(self) -> None:
        import select

        poller = select.poll()
        poller.register(self._fds[0], select.POLLIN if self._v1 else select.POLLPRI)
        base = 0 if self._v1 else self._kills_v2()
        while self.t is None:
            # Poll once more after stop(): a notification already pending is still read.
            if not poller.poll(50):
                if self._stop.is_set():
                    return
                continue
            now = time.monotonic()
            if self._v1:
                os.eventfd_read(self._fds[0])
                self.t = now
            elif self._kills_v2() > base:
                self.t = now

    def _close(self) -> None:
        for fd in self._fds:  # closing the eventfd also unregisters it (memory-v1.rst)
            os.close(fd)
        self._fds = []

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._close()


def memory_limit(limit: int = 48 * MIB, *, name: str = "", interval: float = 0.02,
                 probe: bool = True, timeout: float = 60.0) -> MemoryLimitRun:
    """Run workloads.memory_hog() under ``limit`` (memory and memory+swap) until it is killed.

    Raises what Cgroup.create/set raise (AlreadyExistsError for an existing ``name``).
    """
    name = name or f"lk-limits-mem-{os.getpid()}"
    watch = _Probe() if probe else None
    events: list[_OomWatch] = []

    def oom_watch(cg: Cgroup) -> _OomWatch:
        events.append(_OomWatch(cg))
        return events[-1]

    run, t0, _ = _run(name, Resources(memory_max=limit, memory_swap_max=limit), memory_hog(),
                      interval=interval, timeout=timeout, prepare=[watch] if watch else [],
                      watch=oom_watch)
    t_event = None if events[0].t is None else events[0].t - t0
    t_probe = kills = None
    note = "probe not asked for"
    if watch is not None:
        note = watch.note
        if watch.probe is not None:
            # The hog's pid is the gate's (sh execs the workload in its place).
            hog = run.process_samples[0].pid if run.process_samples else None
            mine = [e for e in watch.events if getattr(e, "pid", None) == hog]
            kills = len(mine)
            if mine:
                t_probe = mine[0].ts_ns / 1e9 - t0
    return MemoryLimitRun(run, limit, oom_time(run), t_probe, kills, note, t_event,
                          events[0].note)


# --- CPU --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CpuPoint:
    """CPU achieved in one sampling interval ending at ``t``: percent of one CPU."""

    label: str
    t: float
    percent: float


def cpu_points(label: str, run: LimitedRun) -> list[CpuPoint]:
    """Per-interval CPU % from consecutive cgroup samples' cpu_usage_usec (pure)."""
    out = []
    rows = [s for s in run.samples if s.cpu_usage_usec is not None]
    for a, b in itertools.pairwise(rows):
        if b.t > a.t:
            pct = 100.0 * (b.cpu_usage_usec - a.cpu_usage_usec) / ((b.t - a.t) * 1e6)  # type: ignore[operator]
            out.append(CpuPoint(label, b.t, pct))
    return out


@dataclass(frozen=True, slots=True)
class CpuQuotaRun:
    """A CPU burner under ``quota_pct`` % of one CPU, and the same burner with no quota."""

    quota_pct: float
    limited: LimitedRun
    baseline: LimitedRun | None
    points: tuple[CpuPoint, ...]

    @property
    def achieved_pct(self) -> float:
        """CPU used over the whole run (cgroup counter / wall): compare with quota_pct."""
        return self.limited.cpu_percent

    @property
    def error(self) -> float:
        """(achieved - quota) / quota: 0.05 is 5 % above the quota."""
        return (self.achieved_pct - self.quota_pct) / self.quota_pct


def cpu_run(quota_us: int, period_us: int = 100_000, *, seconds: float = 1.5, name: str = "",
            interval: float = 0.1) -> LimitedRun:
    """One CPU burner (``seconds`` of wall time) under ``quota_us`` per ``period_us``
    (-1: no quota) in a fresh cgroup; ``run.cpu_percent`` is what it achieved.

    Raises InvalidArgumentError (from Resources) for a quota below 1000 us or a period
    outside 1000 us..1 s (sched-bwc.rst).
    """
    res = Resources(cpu_quota_us=quota_us, cpu_period_us=period_us)
    run, _, _ = _run(name or f"lk-limits-cpu-{os.getpid()}", res, cpu_burner(seconds),
                     interval=interval, timeout=seconds * 20 + 30)
    return run


def cpu_quota(quota_pct: float = 25.0, *, seconds: float = 1.5, period_us: int = 100_000,
              baseline: bool = True, name: str = "", interval: float = 0.1) -> CpuQuotaRun:
    """Burn one CPU for ``seconds`` under a quota of ``quota_pct`` % per ``period_us``, then
    (``baseline``) the same without a quota.

    Raises:
        InvalidArgumentError: the quota is below 1 ms per period (sched-bwc.rst).
    """
    quota = round(period_us * quota_pct / 100)
    if quota < 1000:
        raise errors.InvalidArgumentError("quota_pct", f"{quota_pct}% of {period_us} us is "
                                          f"{quota} us; the kernel needs >= 1000 us")
    limited = cpu_run(quota, period_us, seconds=seconds, name=name, interval=interval)
    points = cpu_points(f"quota {quota_pct:g}%", limited)
    base = None
    if baseline:
        base = cpu_run(-1, period_us, seconds=seconds, name=name, interval=interval)
        points += cpu_points("no quota", base)
    return CpuQuotaRun(quota_pct, limited, base, tuple(points))


# --- pids -------------------------------------------------------------------------------------
def forker(attempts: int) -> list[str]:
    """argv of a process that forks ``attempts`` children which all wait (so each holds a
    pid), then prints JSON: per attempt "ok" or the errno name, e.g. "EAGAIN"."""
    code = (
        "import errno, json, os\n"
        "r, w = os.pipe()\nres = []\n"
        f"for _ in range({attempts}):\n"
        "    try:\n        pid = os.fork()\n"
        "    except OSError as e:\n        res.append(errno.errorcode[e.errno]); continue\n"
        "    if pid == 0:\n        os.close(w); os.read(r, 1); os._exit(0)\n"
        "    res.append('ok')\n"
        "os.close(w)\n"
        "while True:\n    try: os.wait()\n    except ChildProcessError: break\n"
        "print(json.dumps(res), flush=True)\n")
    return [sys.executable, "-S", "-c", code]


@dataclass(frozen=True, slots=True)
class PidsRun:
    """A forker under ``pids.max = limit``: each attempt's outcome, and the kernel's count."""

    limit: int
    attempts: tuple[str, ...]  # "ok" or an errno name, in order
    pids_events_max: int | None  # pids.events "max": forks refused at the limit
    peak_pids: int | None  # the highest pids.current sampled

    @property
    def ok(self) -> int:
        return sum(1 for a in self.attempts if a == "ok")

    @property
    def eagain(self) -> int:
        return sum(1 for a in self.attempts if a == "EAGAIN")


def _pids_events(cg: Cgroup) -> int | None:
    d = getattr(cg, "controller_dir", lambda _c: str(cg.path))("pids")
    try:
        with open(os.path.join(d, "pids.events")) as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == "max":
                    return int(v)
    except (FileNotFoundError, TypeError):
        return None
    return None


def pids_limit(limit: int = 23, attempts: int = 40, *, name: str = "",
               interval: float = 0.02) -> PidsRun:
    """Fork ``attempts`` children under pids.max = ``limit``; the forker is one of the pids,
    so ``limit - 1`` forks succeed and the rest fail with EAGAIN.

    Raises:
        InvalidArgumentError: limit < 1 or attempts < 0.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise errors.InvalidArgumentError("limit", f"{limit!r} must be an integer >= 1")
    if attempts < 0:
        raise errors.InvalidArgumentError("attempts", f"{attempts} must be >= 0")
    name = name or f"lk-limits-pids-{os.getpid()}"
    cg = open_cgroup(name)
    cg.create(exist_ok=False)
    try:
        cg.set(Resources(pids_max=limit))
        with CgroupSampler(cg, interval) as s:
            proc = start_in(cg, forker(attempts), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
            try:
                assert proc.stdout is not None
                out = proc.stdout.read()  # the forker ends by itself; EOF when it exits
                proc.wait(60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        events = _pids_events(cg)
    finally:
        try:
            cg.kill()
        finally:
            cg.remove()
    if proc.returncode != 0:
        raise errors.LabkitError(f"the forker exited with {proc.returncode}")
    peak = max((r.pids_current for r in s.rows if r.pids_current is not None), default=None)
    return PidsRun(limit, tuple(json.loads(out)), events, peak)


# --- io ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IoPoint:
    """Bytes per second written in the interval ending at ``t``."""

    label: str
    t: float
    bytes_per_s: float


@dataclass(frozen=True, slots=True)
class IoRun:
    """O_DIRECT writes to a loop device under a write-bps limit, and without one."""

    device: str
    wbps: int
    nbytes: int
    limited_s: float
    baseline_s: float
    points: tuple[IoPoint, ...]
    ps_write_bytes: int  # psutil's /proc/PID/io write_bytes of dd, last read while alive
    cg_write_bytes: int  # the cgroup's counter for the device after the limited run

    @property
    def achieved_bps(self) -> float:
        return self.nbytes / self.limited_s


@contextlib.contextmanager
def _loop_device(size: int) -> Iterator[tuple[str, int, int]]:
    """A loop device backed by a sparse file (losetup(8)); detached and removed on exit."""
    if shutil.which("losetup") is None:
        raise errors.UnsupportedError("io limits", "losetup(8) is not installed",
                                      hint="apt-get install mount")
    tmp = tempfile.mkdtemp(prefix="lk-limits-io-")
    backing = os.path.join(tmp, "disk")
    try:
        with open(backing, "wb") as f:
            f.truncate(size)
        p = subprocess.run(["losetup", "--find", "--show", backing], capture_output=True,
                           text=True, check=False)
        if p.returncode != 0:
            raise errors.UnsupportedError("io limits", f"losetup failed: {p.stderr.strip()}",
                                          hint="load the loop module: modprobe loop")
        dev = p.stdout.strip()
        try:
            st = os.stat(dev)
            yield dev, os.major(st.st_rdev), os.minor(st.st_rdev)
        finally:
            subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def io_points(label: str, t0: float, rows: Sequence[tuple[float, int]]) -> list[IoPoint]:
    """Bytes/s between consecutive (time.monotonic, bytes written) readings, t from ``t0`` (pure)."""
    out = []
    for (ta, a), (tb, b) in itertools.pairwise(rows):
        if tb > ta:
            out.append(IoPoint(label, tb - t0, (b - a) / (tb - ta)))
    return out


def _timed_io_run(name: str, dev: str, resources: Resources, nbytes: int,
                  interval: float, label: str) -> tuple[float, list[IoPoint], int, int]:
    """dd ``nbytes`` with O_DIRECT to ``dev`` in a fresh cgroup sampled by a ContainerSampler:
    (seconds, bytes/s per interval from the cgroup's counter, psutil's last write_bytes,
    the cgroup's write bytes at the end)."""
    argv = ["dd", "if=/dev/zero", f"of={dev}", "bs=256K", f"count={nbytes // (256 << 10)}",
            "oflag=direct", "status=none"]
    from labkit.measure.csampler import ContainerSampler

    cg = open_cgroup(name)
    cg.create(exist_ok=False)
    try:
        cg.set(resources)
        with ContainerSampler(cg, interval) as sampler:
            t0 = time.monotonic()
            proc = start_in(cg, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                assert proc.stderr is not None
                err = proc.stderr.read()  # dd ends by itself: EOF when it exits
                proc.wait(120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            took = time.monotonic() - t0
    finally:
        try:
            cg.kill()
        finally:
            cg.remove()
    if proc.returncode != 0:
        raise errors.LabkitError(f"dd to {dev} failed: {err.decode(errors='replace').strip()}")
    rows = sampler.rows
    ps = [r.ps_write_bytes for r in rows if r.ps_procs > 0]
    cg_bytes = [(r.t, r.cg_write_bytes or 0) for r in rows]
    return took, io_points(label, 0.0, cg_bytes), max(ps, default=0), cg_bytes[-1][1]


def io_limit(wbps: int = 4 * MIB, nbytes: int = 6 * MIB, *, name: str = "",
             interval: float = 0.1) -> IoRun:
    """Write ``nbytes`` with O_DIRECT to a fresh loop device under ``wbps`` bytes/s, then
    without a limit; the device, its backing file and the cgroups are removed afterwards.

    Raises:
        UnsupportedError: no losetup/loop devices, or the io controller lacks the throttle
            files (v1 blkio.throttle.*, v2 io.max) here; the reason is in the message.
    """
    name = name or f"lk-limits-io-{os.getpid()}"
    with _loop_device(max(nbytes * 2, 16 * MIB)) as (dev, major, minor):
        limited = Resources(io_limits=(IoLimit(major, minor, wbps=wbps),))
        took, pts, ps_bytes, cg_bytes = _timed_io_run(name, dev, limited, nbytes, interval,
                                                      f"wbps {wbps // 1024} KiB/s")
        # The baseline keeps a rule far above the device's speed: blk-throttle counts a
        # cgroup's bytes only on devices it has a rule for (see csampler.sample_run).
        unlimited = Resources(io_limits=(IoLimit(major, minor, wbps=1 << 40),))
        base_s, base_pts, _, _ = _timed_io_run(name, dev, unlimited, nbytes, interval, "no limit")
    return IoRun(dev, wbps, nbytes, took, base_s, tuple(pts + base_pts), ps_bytes,
                 cg_bytes)
