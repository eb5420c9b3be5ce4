"""Where one container start spends its time: labkit's trace points joined with eBPF events.

A start is a chain of *points*, each a moment that causally follows the one before it (the
client sent create before it sent start; the runtime forked the intermediate before that
process joined the cgroup; ...).  Each point comes from labkit's own marks
(labkit._sys.trace, LABKIT_TRACE) or from the kernel (labkit.probes.startup); where both
know it, the kernel's moment is taken (the syscall's own exit, not the Python line after
it).  The phase ending at a point is named after what happened in it; phases are
contiguous, so they add up to the start's total (first point -> last point).

    engine:  CLI exec -> request -> daemon create -> client (attach, wait, start) ->
             daemon start -> supervisor -> shim -> runtime setup -> clone -> cgroup ->
             namespaces -> mounts -> pivot_root -> finalize -> create reply -> start
             request -> start to shim -> start handshake -> execve -> container runs ->
             exit seen -> teardown and CLI exit
    runtime: CLI exec -> interpreter -> runtime setup -> clone -> ... -> finalize ->
             start handshake -> execve -> container runs -> delete and exit

A point that cannot be found (no eBPF: the kernel-only points; a component that did not
mark) is left out: its phase merges into the next one, whose name then says so
("finalize + start handshake (no runtime.ready)"), and it is listed in ``missing``.  A point
earlier than the one before it (it cannot be, causally: a mark from another start) is
left out the same way.  labkit runs these starts one at a time, so marks are given to the
start whose client was running when they were made (and by container id where they
carry one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit import errors
from labkit._sys import trace
from labkit.measure import parentcg

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    from labkit.probes.startup import Event

__all__ = ["ENGINE_CHAIN", "RUNTIME_CHAIN", "Mark", "Phase", "StartTimeline", "join",
           "medians", "off_chain_marks", "read_marks", "to_dataframe", "trace_starts"]

VIAS = ("engine", "runtime")

# (point, name of the phase that ends at it); the first point opens the start.
ENGINE_CHAIN: tuple[tuple[str, str], ...] = (
    ("cli.exec", ""),
    ("daemon.create.recv", "request"),
    ("daemon.create.sent", "daemon create"),
    ("daemon.start.recv", "client attach+start"),
    ("supervisor.create.recv", "daemon start"),
    ("supervisor.shim.forked", "supervisor"),
    ("shim.create.begin", "shim"),
    ("clone.enter", "runtime setup"),
    ("runtime.clone", "clone"),
    ("cgroup", "cgroup"),
    ("namespaces", "namespaces"),
    ("mounts", "mounts"),
    ("pivot_root", "pivot_root"),
    ("runtime.ready", "finalize"),
    ("shim.create.end", "create reply"),
    ("supervisor.start.recv", "start request"),
    ("shim.start.begin", "start to shim"),
    ("runtime.exec", "start handshake"),
    ("exec", "execve"),
    ("exit", "container runs"),
    ("shim.exit", "exit seen"),
    ("cli.exit", "teardown"),
)
RUNTIME_CHAIN: tuple[tuple[str, str], ...] = (
    ("cli.exec", ""),
    ("runtime.create", "interpreter"),
    ("clone.enter", "runtime setup"),
    ("runtime.clone", "clone"),
    ("cgroup", "cgroup"),
    ("namespaces", "namespaces"),
    ("mounts", "mounts"),
    ("pivot_root", "pivot_root"),
    ("runtime.ready", "finalize"),
    ("runtime.exec", "start handshake"),
    ("exec", "execve"),
    ("exit", "container runs"),
    ("cli.exit", "delete and exit"),
)
CHAINS = {"engine": ENGINE_CHAIN, "runtime": RUNTIME_CHAIN}
# Before the container's program runs: every phase up to and including execve.
BEFORE_EXEC_END = "exec"


@dataclass(frozen=True, slots=True)
class Mark:
    """One record of a LABKIT_TRACE file (labkit._sys.trace)."""

    ts_ns: int
    pid: int
    tid: int
    phase: str
    key: str = ""


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase of a start: [start_ns, end_ns) CLOCK_MONOTONIC; ``source`` of its end point:
    "mark" (labkit's trace point), "ebpf" (the kernel's event) or "harness" (the caller's
    clock around the client, when there is no eBPF)."""

    name: str
    start_ns: int
    end_ns: int
    source: str

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(slots=True)
class StartTimeline:
    """One start: its phases in order, the points that were missing, what it was joined from."""

    key: str
    via: str
    phases: list[Phase]
    missing: list[str] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    wall_ns: int = 0  # the harness's own clock around the client (for comparison)

    @property
    def start_ns(self) -> int:
        return self.phases[0].start_ns if self.phases else 0

    @property
    def end_ns(self) -> int:
        return self.phases[-1].end_ns if self.phases else 0

    @property
    def total_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)


def read_marks(path: str | os.PathLike[str]) -> list[Mark]:
    """Parse a LABKIT_TRACE file; lines that are not whole records are skipped."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5:
                continue
            try:
                out.append(Mark(int(parts[0]), int(parts[1]), int(parts[2]), parts[3], parts[4]))
            except ValueError:
                continue
    return sorted(out, key=lambda m: m.ts_ns)


def _same(key: str, cid: str) -> bool:
    # The daemon marks start with the id as the client sent it (a full id, or a prefix).
    return bool(key) and bool(cid) and (cid.startswith(key) or key.startswith(cid))


def kernel_points(events: Iterable[Event], clone_pid: int) -> dict[str, tuple[int, int]]:
    """The kernel's points of one start, from its intermediate's pid (the pid of its
    ``runtime.clone`` mark): {point: (ns, pid)}.  Missing events give missing points."""
    evs = list(events)
    pts: dict[str, tuple[int, int]] = {}
    for e in evs:  # the runtime's clone that made the intermediate
        if e.kind in ("clone", "clone3") and e.ret == clone_pid and e.enter_ns:
            pts["clone.enter"] = (e.enter_ns, e.pid)
    attach = [e for e in evs if e.kind == "cgroup_attach" and e.other == clone_pid]
    if attach:
        pts["cgroup"] = (attach[-1].ts_ns, clone_pid)
    ns = [e for e in evs if e.kind in ("unshare", "setns") and e.pid == clone_pid and e.ret == 0]
    if ns:
        pts["namespaces"] = (ns[-1].ts_ns, clone_pid)
    init = next((e.other for e in evs if e.kind == "fork" and e.pid == clone_pid), 0)
    if not init:
        return pts
    pivot = next((e for e in evs if e.kind == "pivot_root" and e.pid == init), None)
    before = [e for e in evs if e.kind == "mount" and e.pid == init
              and (pivot is None or e.ts_ns < pivot.enter_ns)]
    if before:
        pts["mounts"] = (before[-1].ts_ns, init)
    if pivot is not None:
        pts["pivot_root"] = (pivot.ts_ns, init)
    execd = next((e for e in evs if e.kind == "exec" and e.pid == init), None)
    if execd is not None:
        pts["exec"] = (execd.ts_ns, init)
    ended = next((e for e in evs if e.kind == "exit" and e.pid == init), None)
    if ended is not None:
        pts["exit"] = (ended.ts_ns, init)
    return pts


# Points a mark stands in for when the kernel's event is missing (no eBPF).
_MARK_FOR = {"cgroup": "runtime.cgroup", "namespaces": "runtime.ns", "mounts": "runtime.mounts",
             "pivot_root": "runtime.pivot_root", "exit": "shim.exit"}


def join(via: str, key: str, marks: Iterable[Mark], events: Iterable[Event] = (),
         client: tuple[int, int] | None = None, client_source: str = "ebpf") -> StartTimeline:
    """Phases of the start of container ``key`` from its marks and kernel events.

    ``client``: (exec ns, exit ns) of the client (the Docker CLI, or labkit-runtime run),
    from the kernel or, with ``client_source`` "harness", from the caller's own clock.
    Marks with another non-empty key are ignored; keyless ones count (the daemon's create
    mark precedes the id)."""
    if via not in CHAINS:
        raise errors.InvalidArgumentError("via", f"{via!r}: one of {', '.join(VIAS)}")
    mine = [m for m in marks if not m.key or _same(m.key, key)]
    evs = list(events)
    found: dict[str, tuple[int, str]] = {}
    if client is not None:
        found["cli.exec"] = (client[0], client_source)
        found["cli.exit"] = (client[1], client_source)
    sent = next((m for m in mine if m.phase == "daemon.create.sent"), None)
    for m in mine:
        if m.phase == "daemon.create.recv":
            if sent is not None and m.ts_ns <= sent.ts_ns:
                found[m.phase] = (m.ts_ns, "mark")  # the last one before the id was answered
        elif m.key and m.phase not in found:
            found[m.phase] = (m.ts_ns, "mark")
    clone = next((m for m in mine if m.phase == "runtime.clone"), None)
    if clone is not None and evs:
        for point, (ns, _pid) in kernel_points(evs, clone.pid).items():
            found[point] = (ns, "ebpf")
    for point, mark_name in _MARK_FOR.items():
        if point not in found and mark_name in found:
            found[point] = found[mark_name]
    return _phases(via, key, CHAINS[via], found, mine, evs)


def _phases(via: str, key: str, chain: tuple[tuple[str, str], ...],
            found: dict[str, tuple[int, str]], marks: list[Mark], evs: list[Any]) -> StartTimeline:
    phases: list[Phase] = []
    missing: list[str] = []
    last: int | None = None
    pending: list[tuple[str, str]] = []  # (phase, point) merged into the next: point missing
    for point, name in chain:
        got = found.get(point)
        if got is not None and last is not None and got[0] < last:
            missing.append(f"{point} (out of order)")
            pending.append((name, point))
            continue
        if got is None:
            missing.append(point)
            if last is not None:
                pending.append((name, point))
            continue
        ns, source = got
        if last is not None:
            label = name
            if pending:
                label = (" + ".join([p for p, _ in pending] + [name])
                         + f" (no {', '.join(pt for _, pt in pending)})")
                pending = []
            phases.append(Phase(label, last, ns, source))
        last = ns
    return StartTimeline(key, via, phases, missing, marks, evs)


def off_chain_marks(tl: StartTimeline) -> list[Mark]:
    """The start's marks that are no point of its chain (e.g. daemon.start.sent, shim.start.end:
    the answers that travel back while the container already runs), within its span."""
    points = {point for point, _ in CHAINS[tl.via]} | set(_MARK_FOR.values())
    return [m for m in tl.marks if m.phase not in points and m.key
            and tl.start_ns <= m.ts_ns <= tl.end_ns]


def to_dataframe(timelines: StartTimeline | Iterable[StartTimeline]) -> pd.DataFrame:
    """One row per phase: start (index of the start), key, via, phase, order, start_ms and
    end_ms (from the start's first point), ms, source."""
    import pandas as pd

    tls = [timelines] if isinstance(timelines, StartTimeline) else list(timelines)
    rows = []
    for i, tl in enumerate(tls):
        for j, p in enumerate(tl.phases):
            rows.append({"start": i, "key": tl.key[:12], "via": tl.via, "phase": p.name,
                         "order": j, "start_ms": (p.start_ns - tl.start_ns) / 1e6,
                         "end_ms": (p.end_ns - tl.start_ns) / 1e6, "ms": p.ms,
                         "source": p.source, "total_ms": tl.total_ms})
    return pd.DataFrame(rows, columns=["start", "key", "via", "phase", "order", "start_ms",
                                       "end_ms", "ms", "source", "total_ms"])


def medians(timelines: Iterable[StartTimeline]) -> pd.DataFrame:
    """Per phase (in chain order): median ms, p90 ms, share of the median total, n."""
    df = to_dataframe(timelines)
    if df.empty:
        return df
    g = df.groupby("phase", sort=False)
    out = g["ms"].agg(median_ms="median", p90_ms=lambda s: s.quantile(0.9), n="count")
    out["order"] = g["order"].median()
    out = out.sort_values("order").drop(columns="order")
    total = df.groupby("start")["total_ms"].first().median()
    out["share_%"] = 100 * out["median_ms"] / total if total else 0.0
    return out.reset_index()


# -- running traced starts ---------------------------------------------------------------

def _kernel_probe(roots: list[int]) -> Any:
    """The startup probe on ``roots``' trees, or None (no bcc, not root): marks only."""
    from labkit.probes import startup

    try:
        return startup.attach(roots)
    except errors.UnsupportedError:
        return None


def _client_times(evs: list[Event], pid: int) -> tuple[int, int] | None:
    execd = next((e.ts_ns for e in evs if e.kind == "exec" and e.pid == pid), None)
    ended = next((e.ts_ns for e in evs if e.kind == "exit" and e.pid == pid), None)
    return (execd, ended) if execd is not None and ended is not None else None


def _one(argv: list[str], env: dict[str, str], probe: Any,
         check: bool = True) -> tuple[int, int, int, list[Event]]:
    """Run the client once; (pid, harness start ns, harness end ns, kernel events)."""
    if probe is not None:
        probe.read()  # what happened before this start is not its
    t0 = time.monotonic_ns()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=120)
    t1 = time.monotonic_ns()
    if check and proc.returncode != 0:
        last = (err.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        raise errors.LabkitError(f"{' '.join(argv[:3])}...: exit {proc.returncode}: {last}")
    evs: list[Event] = []
    if probe is not None:
        lost = probe.lost
        time.sleep(0.05)  # the last exits reach the perf buffer
        evs = probe.read()
        if probe.lost != lost:  # a full perf buffer: this start's kernel side is not whole
            raise errors.LabkitError(f"the startup probe lost {probe.lost - lost} events "
                                     "during one start; run fewer things beside it")
    return proc.pid, t0, t1, evs


def _timeline(via: str, key: str, marks: list[Mark], pid: int, t0: int, t1: int,
              evs: list[Event]) -> StartTimeline:
    window = [m for m in marks if t0 <= m.ts_ns <= t1]
    if via == "engine":  # the container id: the daemon's answer to create in this window
        key = next((m.key for m in window if m.phase == "daemon.create.sent"), key)
    client = _client_times(evs, pid)
    source = "ebpf"
    if client is None:
        client, source = (t0, t1), "harness"
    tl = join(via, key, window, evs, client, source)
    tl.wall_ns = t1 - t0
    return tl


def trace_starts(n: int, via: str = "runtime", *, warmup: int = 1, ebpf: bool = True,
                 progress: Callable[[str], None] | None = None) -> list[StartTimeline]:
    """Run ``n`` traced container starts one at a time and return their timelines.

    ``via`` "runtime": ``labkit-runtime run`` of a busybox bundle (/bin/true);
    "engine": a labkit daemon of its own (in a network namespace made for it, with
    LABKIT_TRACE set), driven by ``docker run --rm --network none busybox true`` (the
    labkit CLI where no Docker CLI is installed).  ``warmup`` starts run first, untraced.
    With ``ebpf`` (and bcc, root) the kernel's events join the marks; without, marks only.
    Everything made is removed before returning.
    """
    if via not in VIAS:
        raise errors.InvalidArgumentError("via", f"{via!r}: one of {', '.join(VIAS)}")
    if n < 1 or warmup < 0:
        raise errors.InvalidArgumentError("n/warmup", f"{n}/{warmup}: need n >= 1, warmup >= 0")
    if os.geteuid() != 0:
        raise errors.UnsupportedError("trace_starts", "starting containers needs root",
                                      hint="run as root (sudo), or in the VM: labkit vm")
    say = progress or (lambda _msg: None)
    # either way the containers' parent cgroup may come into being (labkit-runtime's
    # bundle names no cgroupsPath): removed again if these starts caused it
    with parentcg.cleaned():
        if via == "runtime":
            return _trace_runtime(n, warmup, ebpf, say)
        return _trace_engine(n, warmup, ebpf, say)


def _trace_runtime(n: int, warmup: int, ebpf: bool,
                   say: Callable[[str], None]) -> list[StartTimeline]:
    from labkit.measure.bench_runtime import _find_labkit_runtime, make_bundle

    exe, why = _find_labkit_runtime()
    if exe is None:
        raise errors.UnsupportedError("labkit-runtime", why or "not installed",
                                      hint="make setup (installs the console scripts)")
    tmp = Path(tempfile.mkdtemp(prefix="lk-tl-"))
    out: list[StartTimeline] = []
    probe = None
    try:
        bundle = make_bundle(tmp / "bundle")
        tfile = tmp / "trace"
        env = dict(os.environ, **{trace.ENV: str(tfile)})
        for i in range(warmup):
            _one([exe, "run", "--bundle", str(bundle), f"lktlw{os.getpid()}-{i}"], env, None)
        probe = _kernel_probe([os.getpid()]) if ebpf else None
        runs = []
        for i in range(n):
            cid = f"lktl{os.getpid()}-{i}"
            runs.append((cid, *_one([exe, "run", "--bundle", str(bundle), cid], env, probe)))
            say(f"traced start {i + 1}/{n}")
        marks = read_marks(tfile) if tfile.exists() else []
        for cid, pid, t0, t1, evs in runs:
            out.append(_timeline("runtime", cid, [m for m in marks if not m.key or m.key == cid],
                                 pid, t0, t1, evs))
    finally:
        if probe is not None:
            probe.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _engine_client() -> tuple[list[str], bool]:
    """(argv of one start, True for the Docker CLI)."""
    from labkit.measure.bench_engine import WORKLOAD

    docker = shutil.which("docker")
    if docker:
        return [docker, *WORKLOAD], True
    return [str(Path(sys.executable).parent / "labkit"), *WORKLOAD], False


def _trace_engine(n: int, warmup: int, ebpf: bool,
                  say: Callable[[str], None]) -> list[StartTimeline]:
    from labkit.measure.peer_daemons import BenchNetns
    from labkit.measure.sandbox import LabEngine

    argv, docker = _engine_client()
    netns = BenchNetns(f"lk-tl-{os.getpid()}")
    engine: LabEngine | None = None
    probe = None
    out: list[StartTimeline] = []
    try:
        netns.create()
        engine = LabEngine("tl", netns=netns.name)
        tfile = engine.base / "trace"
        engine.env[trace.ENV] = str(tfile)  # the daemon, its supervisor, shims and runtime
        engine.start()
        env = engine.docker_env if docker else engine.env
        for _ in range(warmup):
            _one(argv, env, None)
        say("engine up")
        probe = _kernel_probe([engine.daemon_pid or 0, os.getpid()]) if ebpf else None
        runs = [_one(argv, env, probe) for _ in range(n)]
        marks = read_marks(tfile) if tfile.exists() else []
        for i, (pid, t0, t1, evs) in enumerate(runs):
            out.append(_timeline("engine", "", marks, pid, t0, t1, evs))
            say(f"traced start {i + 1}/{n}")
    finally:
        if probe is not None:
            probe.close()
        if engine is not None:
            engine.stop()
        netns.delete()
    return out
