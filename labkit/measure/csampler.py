"""Per-container samplers: psutil summed over a container's cgroup, beside the cgroup's own counters.

A container is a cgroup (plus namespaces).  ``ContainerSampler`` takes a labkit-runtime
container id (its state.json names the cgroup) or a cgroup name, and every interval reads
both views into one row:

* psutil, summed over every process in the cgroup (cgroup.procs of it and its children):
  CPU seconds (user + system, plus reaped children's), resident and anonymous memory,
  storage bytes read/written (/proc/PID/io), processes and threads;
* the cgroup's counters: cpuacct.usage / cpu.stat usage_usec, memory.usage_in_bytes /
  memory.current and memory.stat's anon (v1 ``rss``, v2 ``anon``), blkio.throttle.
  io_service_bytes / io.stat, pids.current.

Where they differ, both are right about different things: psutil forgets processes that
have exited and were reaped outside the cgroup, counts file pages a process maps (charged
to whichever cgroup first read them) and counts buffered writes when they dirty the page
cache; the cgroup counts every task that ever ran in it, its page cache and kernel memory,
and (v1) block I/O only as it is submitted by the task (writeback is the flusher's).

``host_view`` runs psutil *inside* new namespaces and a limited cgroup and shows which of
its answers are the host's (cpu_count, virtual_memory, boot_time, disk usage) and which
the container's own (pids, hostname, network counters, CPU affinity).

Overhead: per interval, one psutil walk of the container's processes (a few /proc reads
each) and a handful of cgroupfs reads, in the sampling thread of this process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import psutil

from labkit import errors
from labkit.cgroups import Cgroup, Resources, open_cgroup
from labkit.measure.sampler import Sampler

__all__ = ["ContainerSample", "ContainerSampler", "HostViewRow", "agreement", "busy_workload", "cgroup_of",
           "host_view", "host_view_rows", "last_alive", "parse_blkio", "parse_io_stat", "sample_run"]


# --- where the container is -----------------------------------------------------------------
def cgroup_of(target: str | Cgroup, *, runtime_root: str | None = None) -> Cgroup:
    """The cgroup of ``target``: a Cgroup, a labkit-runtime container id, or a cgroup name.

    A name that is a container id under ``runtime_root`` (default: labkit-runtime's state
    root) wins; otherwise it is taken as a cgroup name, which must exist.

    Raises:
        NotFoundError: neither a container nor an existing cgroup has that name.
        InvalidArgumentError: the name is not a valid cgroup name.
    """
    if not isinstance(target, str):
        return target
    from labkit.engine.runtime import state as statemod

    root = runtime_root or statemod.default_root()
    try:
        st = statemod.load(root, target)
    except (errors.NotFoundError, errors.InvalidArgumentError):
        st = None
    if st is not None and st.cgroup:
        cg = open_cgroup(st.cgroup)
    else:
        cg = open_cgroup(target)
    if not cg.exists():
        raise errors.NotFoundError("container or cgroup", target,
                                   hint=f"a labkit-runtime id under {root}, or a cgroup name")
    return cg


def _ctrl_dir(cg: Cgroup, ctrl: str) -> str | None:
    """This cgroup's directory for controller ``ctrl``: v1 has one per hierarchy, v2 one."""
    per_ctrl = getattr(cg, "controller_dir", None)
    if per_ctrl is not None:
        d: str | None = per_ctrl(ctrl)
        return d
    return str(cg.path)


def _read(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _all_pids(cg: Cgroup) -> list[int]:
    """Pids in the cgroup and its child cgroups (one hierarchy is enough: a process is in
    every hierarchy; pids, else memory, else the first)."""
    top = _ctrl_dir(cg, "pids") or _ctrl_dir(cg, "memory") or str(cg.path)
    found: set[int] = set()
    for sub, _, _ in os.walk(top):
        text = _read(os.path.join(sub, "cgroup.procs")) or ""
        found.update(int(w) for w in text.split())
    return sorted(found)


def parse_blkio(text: str | None) -> tuple[int, int] | None:
    """v1 blkio.throttle.io_service_bytes ("MAJ:MIN Read N" lines, "Total N"): (read, write)
    bytes summed over devices; None when there is no file."""
    if text is None:
        return None
    rd = wr = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "Read":
            rd += int(parts[2])
        elif len(parts) == 3 and parts[1] == "Write":
            wr += int(parts[2])
    return rd, wr


def parse_io_stat(text: str | None) -> tuple[int, int] | None:
    """v2 io.stat ("MAJ:MIN rbytes=N wbytes=N ..." per device): (read, write) bytes summed."""
    if text is None:
        return None
    rd = wr = 0
    for line in text.splitlines():
        for kv in line.split()[1:]:
            k, _, v = kv.partition("=")
            if k == "rbytes":
                rd += int(v)
            elif k == "wbytes":
                wr += int(v)
    return rd, wr


def _keyed(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if v.strip().isdigit():
            out[k] = int(v)
    return out


def _cgroup_io(cg: Cgroup) -> tuple[int, int] | None:
    d = _ctrl_dir(cg, "blkio")
    if d is not None and getattr(cg, "controller_dir", None) is not None:
        return parse_blkio(_read(os.path.join(d, "blkio.throttle.io_service_bytes")))
    return parse_io_stat(_read(os.path.join(str(cg.path), "io.stat")))


def _cgroup_anon(cg: Cgroup) -> int | None:
    d = _ctrl_dir(cg, "memory")
    if d is None:
        return None
    stat = _keyed(_read(os.path.join(d, "memory.stat")))
    # memory-v1.rst 5.2: "rss" is this cgroup's anonymous + swap cache memory ("total_rss"
    # adds its children); cgroup-v2.rst: memory.stat "anon" covers the subtree.
    return stat.get("total_rss", stat.get("anon"))


# --- the rows ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ContainerSample:
    """One reading of a container: psutil's sums (``ps_*``) beside the cgroup's counters (``cg_*``).

    CPU in seconds (cumulative) and percent of one CPU over the last interval; memory and io
    in bytes.  A ``cg_*`` field is None where this kernel or cgroup version has no such file.
    """

    t: float
    ps_procs: int
    ps_threads: int
    cg_pids_current: int | None
    ps_cpu_s: float
    cg_cpu_s: float | None
    ps_cpu_percent: float
    cg_cpu_percent: float | None
    ps_rss: int
    ps_anon: int
    cg_memory_current: int | None
    cg_anon: int | None
    ps_read_bytes: int
    ps_write_bytes: int
    cg_read_bytes: int | None
    cg_write_bytes: int | None


def _psutil_sums(pids: list[int]) -> tuple[int, int, float, int, int, int, int]:
    procs = threads = rss = anon = rd = wr = 0
    cpu = 0.0
    for pid in pids:
        try:
            p = psutil.Process(pid)
            with p.oneshot():
                ct = p.cpu_times()
                mi = p.memory_info()
                nthreads = p.num_threads()
                io = p.io_counters()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # exited between cgroup.procs and now
        procs += 1
        threads += nthreads
        # children_*: time of children this process reaped (getrusage RUSAGE_CHILDREN); they
        # ran in the container too (a child is born in its parent's cgroup, cgroups(7)).
        cpu += ct.user + ct.system + ct.children_user + ct.children_system
        rss += mi.rss
        anon += max(0, mi.rss - mi.shared)  # statm: resident - shared = RssAnon (proc(5))
        rd += io.read_bytes
        wr += io.write_bytes
    return procs, threads, cpu, rss, anon, rd, wr


class ContainerSampler(Sampler[ContainerSample]):
    """Samples one container (a labkit-runtime id, a cgroup name, or a Cgroup) every interval."""

    def __init__(self, target: str | Cgroup, interval: float = 0.1, *,
                 runtime_root: str | None = None) -> None:
        super().__init__(interval)
        self.cgroup = cgroup_of(target, runtime_root=runtime_root)
        self._last: tuple[float, float, float | None] | None = None

    def _sample(self, t: float) -> ContainerSample | None:
        if not self.cgroup.exists():
            return None  # the container is gone: the run is over
        procs, threads, cpu, rss, anon, rd, wr = _psutil_sums(_all_pids(self.cgroup))
        try:
            s = self.cgroup.stats()
        except (errors.NotFoundError, FileNotFoundError):
            return None
        cg_cpu = None if s.cpu_usage_usec is None else s.cpu_usage_usec / 1e6
        io = _cgroup_io(self.cgroup)
        ps_pct, cg_pct = 0.0, None if cg_cpu is None else 0.0
        if self._last is not None and t > self._last[0]:
            dt = t - self._last[0]
            # A process reaped outside the cgroup takes its psutil time with it: never < 0.
            ps_pct = max(0.0, 100.0 * (cpu - self._last[1]) / dt)
            if cg_cpu is not None and self._last[2] is not None:
                cg_pct = 100.0 * (cg_cpu - self._last[2]) / dt
        self._last = (t, cpu, cg_cpu)
        return ContainerSample(
            t=t, ps_procs=procs, ps_threads=threads, cg_pids_current=s.pids_current,
            ps_cpu_s=cpu, cg_cpu_s=cg_cpu, ps_cpu_percent=ps_pct, cg_cpu_percent=cg_pct,
            ps_rss=rss, ps_anon=anon, cg_memory_current=s.memory_current,
            cg_anon=_cgroup_anon(self.cgroup),
            ps_read_bytes=rd, ps_write_bytes=wr,
            cg_read_bytes=None if io is None else io[0],
            cg_write_bytes=None if io is None else io[1])


@dataclass(frozen=True, slots=True)
class Agreement:
    """How far psutil's sum is from the cgroup's counter for one quantity, at one sample."""

    quantity: str
    psutil: float
    cgroup: float | None
    ratio: float | None  # psutil / cgroup


def last_alive(rows: list[ContainerSample]) -> ContainerSample:
    """The last sample taken while the most processes were in the container: psutil's sums
    lose a process once it exits (the cgroup's counters keep it), so this is the one where
    both views cover the same processes.

    Raises NotFoundError when no sample saw a process."""
    most = max((r.ps_procs for r in rows), default=0)
    if most == 0:
        raise errors.NotFoundError("sample with a live process", f"{len(rows)} samples")
    return next(r for r in reversed(rows) if r.ps_procs == most)


_PAIRS = (("threads vs pids.current", "ps_threads", "cg_pids_current"),
          ("cpu seconds", "ps_cpu_s", "cg_cpu_s"),
          ("anon memory", "ps_anon", "cg_anon"),
          ("rss vs memory usage", "ps_rss", "cg_memory_current"),
          ("read bytes", "ps_read_bytes", "cg_read_bytes"),
          ("write bytes", "ps_write_bytes", "cg_write_bytes"))


def agreement(row: ContainerSample) -> list[Agreement]:
    """The psutil-vs-cgroup table of one sample: one row per quantity, with the ratio."""
    out = []
    for name, ps, cg in _PAIRS:
        a, b = getattr(row, ps), getattr(row, cg)
        out.append(Agreement(name, float(a), None if b is None else float(b),
                             None if not b else a / b))
    return out


def busy_workload(seconds: float = 1.0, mib: int = 32, write_mib: int = 4) -> list[str]:
    """argv of a small "container": a process and one child, each touching ``mib`` MiB of
    anonymous memory, writing ``write_mib`` MiB with O_DIRECT (so the bytes reach the block
    layer from this task, where both psutil and the cgroup count them) and spinning until it
    has used ``seconds`` of CPU time."""
    code = (
        "import mmap, os, tempfile, time\n"
        "pid = os.fork()\n"
        f"buf = bytearray({mib} << 20)\n"
        "for i in range(0, len(buf), 4096): buf[i] = 1\n"
        "blk = mmap.mmap(-1, 1 << 20)\nblk.write(b'x' * (1 << 20))\n"
        "fd, path = tempfile.mkstemp(prefix='lk-busy-', dir='/var/tmp')\n"
        "os.close(fd)\nfd = os.open(path, os.O_WRONLY | os.O_DIRECT)\nos.unlink(path)\n"
        f"for _ in range({write_mib}): os.write(fd, blk)\n"
        "os.close(fd)\n"
        # CPU time, not wall time: a loaded machine stretches the run, not the CPU used.
        f"end = time.process_time() + {seconds}\n"
        "while time.process_time() < end: pass\n"
        "if pid: os.waitpid(pid, 0)\n"
        # _exit: no interpreter teardown freeing the buffer while the samplers still look.
        "os._exit(0)\n")
    return [sys.executable, "-S", "-c", code]


def sample_run(argv: list[str], *, name: str = "", interval: float = 0.1,
               timeout: float = 60.0, io_dir: str | None = "/var/tmp") -> list[ContainerSample]:
    """Run ``argv`` in a fresh cgroup (``name``, default lk-csample-PID) sampled by a
    ContainerSampler until it exits; the cgroup is removed afterwards.

    ``io_dir``: the block device holding it gets a write-bps rule far above any disk
    (2**40 B/s) in this cgroup.  Why: blk-throttle keeps the cgroup's byte counters
    (blkio.throttle.io_service_bytes, v1) only for bios it looks at, i.e. on devices with a
    rule; without one the cgroup reads 0 while psutil counts the writes.  None: no rule.

    Raises AlreadyExistsError if the cgroup exists, subprocess.TimeoutExpired.
    """
    from labkit.cgroups import IoLimit
    from labkit.measure.workloads import start_in

    cg = open_cgroup(name or f"lk-csample-{os.getpid()}")
    cg.create(exist_ok=False)
    try:
        if io_dir is not None:
            dev = os.stat(io_dir).st_dev
            cg.set(Resources(io_limits=(IoLimit(os.major(dev), os.minor(dev), wbps=1 << 40),)))
        with ContainerSampler(cg, interval) as s:
            proc = start_in(cg, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        try:
            cg.kill()
        finally:
            cg.remove()
    return s.rows


# --- psutil inside a container ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HostViewRow:
    """One psutil answer inside a container beside the host's, and whose value it is.

    ``reports`` is "host" (the host's value leaks in), "limit" (it equals the container's
    limit), or "container" (its own, different from the host's).
    """

    call: str
    host: str
    inside: str
    limit: str
    reports: str


# Run inside: stdlib + psutil only; one JSON line on stdout.  /proc is mounted fresh first
# (new mnt + pid namespaces), as a container runtime does, so psutil reads the container's.
_INSIDE = r"""
import json, os, platform, psutil
n = psutil.net_io_counters()
print(json.dumps({
  "psutil.cpu_count()": psutil.cpu_count(),
  "len(Process().cpu_affinity())": len(psutil.Process().cpu_affinity()),
  "virtual_memory().total": psutil.virtual_memory().total,
  "swap_memory().total": psutil.swap_memory().total,
  "boot_time()": int(psutil.boot_time()),
  "disk_usage('/').total": psutil.disk_usage("/").total,
  "len(pids())": len(psutil.pids()),
  "net_io_counters() bytes": n.bytes_sent + n.bytes_recv,
  "len(net_if_addrs())": len(psutil.net_if_addrs()),
  "platform.node()": platform.node(),
}))
"""


def _host_values(extra_env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _INSIDE], capture_output=True, text=True,
                         check=True, timeout=60, env={**os.environ, **extra_env})
    return dict(json.loads(out.stdout))


def host_view_rows(host: dict[str, Any], inside: dict[str, Any],
                   limits: dict[str, Any]) -> list[HostViewRow]:
    """Shape the two readings into rows: "limit" where inside equals the limit for that
    call, "host" where it equals the host's, else "container"."""
    rows = []
    for call, value in inside.items():
        h, lim = host.get(call), limits.get(call)
        if lim is not None and value == lim:
            who = "limit"
        elif value == h:
            who = "host"
        else:
            who = "container"
        rows.append(HostViewRow(call, str(h), str(value), "" if lim is None else str(lim), who))
    return rows


def host_view(name: str = "", *, memory_max: int = 64 << 20, cpuset_cpus: str = "0",
              cpu_quota_us: int = 50_000) -> list[HostViewRow]:
    """Run psutil in new pid/mnt/uts/net/ipc namespaces and a cgroup with ``memory_max``,
    ``cpuset_cpus`` and a CPU quota (per 100 ms); compare what it reports with the host.

    The cgroup (``name``, default lk-hostview-PID) is removed afterwards.

    Raises:
        AlreadyExistsError: the cgroup exists already.
        SyscallError / UnsupportedError: from creating the namespaces or the cgroup.
    """
    from labkit.measure.workloads import _GATE
    from labkit.ns import NamespaceSpec, spawn

    name = name or f"lk-hostview-{os.getpid()}"
    host = _host_values({})
    spec = NamespaceSpec(new=frozenset({"pid", "mnt", "uts", "net", "ipc"}),
                         hostname="lk-hostview")
    argv = [*_GATE, "sh", "-c", 'mount -t proc proc /proc && exec "$@"', "lk-proc",
            sys.executable, "-c", _INSIDE]
    cg = open_cgroup(name)
    cg.create(exist_ok=False)
    try:
        cg.set(Resources(memory_max=memory_max, cpuset_cpus=cpuset_cpus,
                         cpu_quota_us=cpu_quota_us, cpu_period_us=100_000))
        child = spawn(spec, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
        try:
            cg.add(child.pid)  # before it runs psutil: the gate waits for one line
            out, err = child.communicate(b"go\n", timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
        if child.returncode != 0:
            raise errors.LabkitError(f"psutil inside the container failed: "
                                     f"{(err or b'').decode(errors='replace').strip()}")
        inside = dict(json.loads(out or b"{}"))
    finally:
        try:
            cg.kill()
        finally:
            cg.remove()
    ncpus = len([c for part in cpuset_cpus.split(",")
                 for c in _expand(part)])
    limits = {"virtual_memory().total": memory_max, "len(Process().cpu_affinity())": ncpus,
              "psutil.cpu_count()": ncpus}
    host["platform.node()"] = socket.gethostname()
    return host_view_rows(host, inside, limits)


def _expand(part: str) -> range:
    lo, _, hi = part.strip().partition("-")
    return range(int(lo), int(hi or lo) + 1)
