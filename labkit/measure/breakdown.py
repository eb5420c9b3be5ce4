"""Where one `docker run --rm` spends its time and CPU, hop by hop, from the kernel's view.

The proctree probe (labkit.probes.proctree) records every fork, exec and exit with its
time, and each process's time on a CPU.  Given the engine's long-lived processes (daemon,
supervisor, shim template), each process of a run is put in one room of DESIGN.md's path:

    docker CLI -> daemon -> supervisor -> shim -> runtime -> container

by descent: a process forked by the shim template is a shim; one forked by a shim (the
runtime's create, in-process) or by a runtime process is the runtime; a runtime process that
exec'd is the container from that exec on (its CPU before the exec stays the runtime's).
The daemon's and the supervisor's CPU for the run is the growth of their counters over it.

Wall time is cut at the kernel's own marks: the CLI's exec, the first shim fork, the
container's exec and exit, the CLI's exit.  Nothing in the components is instrumented, so
the figures are those of the engine as users run it (plus the probe's own cost on every
context switch, which the plain benchmark does not pay: compare ratios within one table).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from labkit.probes.proctree import Event

__all__ = ["ROOMS", "RunBreakdown", "attribute", "summarize", "trace_runs"]

ROOMS = ("docker CLI", "daemon", "supervisor", "shim", "runtime", "container")
LABKIT_ROOMS = ("daemon", "supervisor", "shim", "runtime")  # "labkit's own share"
PHASES = ("CLI start -> shim forked", "shim forked -> container exec",
          "container exec -> exit", "container exit -> CLI exit")


@dataclass(slots=True)
class RunBreakdown:
    """One traced run: CPU ms per room, and wall ms per phase (None where a mark is missing)."""

    cpu_ms: dict[str, float] = field(default_factory=dict)
    phase_ms: dict[str, float | None] = field(default_factory=dict)
    wall_ms: float = 0.0


def attribute(events: Iterable[Event], cli_pid: int, long_lived: dict[int, str],
              cpu_before: dict[int, int], cpu_after: dict[int, int]) -> RunBreakdown:
    """Put one run's processes in rooms and add up their CPU and wall time.

    ``long_lived`` maps the engine's lasting pids to a room ("daemon", "supervisor"; the shim
    template as "supervisor"); ``cpu_before``/``cpu_after`` are proctree cpu_ns() snapshots
    taken around the run."""
    room: dict[int, str] = {cli_pid: "docker CLI"}
    template = {pid for pid, r in long_lived.items() if r == "template"}
    pre_exec_cpu: dict[str, int] = {}
    marks: dict[str, int] = {}
    parent_of: dict[int, int] = {}
    for e in events:
        if e.kind == "fork":
            if e.pid in template:
                # The template forks twice per shim (setsid child, then the shim itself:
                # containerd-shim's daemonizing dance, labkit.engine.shim.template).
                child = "shim"
                marks.setdefault("shim", e.ts_ns)
            elif room.get(e.pid) == "shim" and parent_of.get(e.pid) in template:
                child = "shim"
            elif (parent := room.get(e.pid)) is not None:
                child = "runtime" if parent == "shim" else parent
            else:
                continue
            parent_of[e.child] = e.pid
            room.setdefault(e.child, child)
        elif e.kind == "exec":
            if e.pid == cli_pid:
                marks.setdefault("cli", e.ts_ns)
            elif room.get(e.pid) == "runtime":
                pre_exec_cpu["runtime"] = pre_exec_cpu.get("runtime", 0) + e.cpu_ns
                room[e.pid] = "container"
                marks.setdefault("container", e.ts_ns)
                marks["container_pid"] = e.pid
        elif e.kind == "exit":
            if e.pid == cli_pid:
                marks["cli_exit"] = e.ts_ns
            elif e.pid == marks.get("container_pid"):
                marks.setdefault("container_exit", e.ts_ns)
    out = RunBreakdown(cpu_ms=dict.fromkeys(ROOMS, 0.0))
    for pid, r in room.items():  # since its last exec: the CLI's fork in Python is not its
        out.cpu_ms[r] += cpu_after.get(pid, 0) / 1e6
    for r, ns in pre_exec_cpu.items():
        out.cpu_ms[r] += ns / 1e6
    for pid, r in long_lived.items():
        r = "supervisor" if r == "template" else r
        out.cpu_ms[r] += max(0, cpu_after.get(pid, 0) - cpu_before.get(pid, 0)) / 1e6

    def span(a: str, b: str) -> float | None:
        return (marks[b] - marks[a]) / 1e6 if a in marks and b in marks else None
    out.phase_ms = dict(zip(PHASES, (span("cli", "shim"), span("shim", "container"),
                                     span("container", "container_exit"),
                                     span("container_exit", "cli_exit")), strict=True))
    out.wall_ms = span("cli", "cli_exit") or 0.0
    return out


def summarize(runs: list[RunBreakdown]) -> dict[str, dict[str, float | None]]:
    """Medians over runs: {"cpu_ms": {room: ms, "labkit": ms}, "phase_ms": {...}, "wall_ms"}."""
    def med(values: list[float | None]) -> float | None:
        got = [v for v in values if v is not None]
        return statistics.median(got) if got else None
    cpu: dict[str, float | None] = {r: med([b.cpu_ms.get(r) for b in runs]) for r in ROOMS}
    cpu["labkit"] = med([sum(b.cpu_ms.get(r, 0.0) for r in LABKIT_ROOMS) for b in runs])
    return {"cpu_ms": cpu,
            "phase_ms": {p: med([b.phase_ms.get(p) for b in runs]) for p in PHASES},
            "wall_ms": {"run": med([b.wall_ms for b in runs])}}


def trace_runs(argv: list[str], env: dict[str, str], long_lived: dict[int, str], runs: int,
               progress: Callable[[str], None] | None = None) -> list[RunBreakdown]:
    """Run ``argv`` (a `docker run --rm ...`) ``runs`` times under proctree, one at a time.

    Raises:
        UnsupportedError: the probe cannot load here (no bcc, not root, no tracepoints).
    """
    from labkit.probes import proctree

    out: list[RunBreakdown] = []
    with proctree.attach() as probe:
        for i in range(runs):
            probe.read()  # drop what happened between runs
            before = probe.cpu_ns()
            cli = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cli.wait()
            time.sleep(0.05)  # the shim's and runtime's last exits reach the perf buffer
            out.append(attribute(probe.read(), cli.pid, long_lived, before, probe.cpu_ns()))
            if progress is not None:
                progress(f"traced run {i + 1}/{runs}")
    return out
