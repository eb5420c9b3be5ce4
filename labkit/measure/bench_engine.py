"""labkit bench engine: `X run --rm --network none busybox true`, end to end, against peers.

Workload: one container running /bin/true in the busybox image, started and removed by a
client, timed from fork to exit of the client (time.perf_counter_ns), so each sample holds the
whole way: client -> daemon -> supervisor -> shim -> runtime -> exit -> wait -> remove.
Candidates, interleaved round-robin (the first one rotates each round; warm-up rounds dropped):

* ``docker CLI -> labkit``: the Docker CLI on PATH with DOCKER_HOST on labkit's daemon;
* ``labkit run -> labkit``: the labkit command itself (its own cost: imports, parsing);
* ``docker CLI -> dockerd``: Debian's docker.io, only with ``with_dockerd`` (installed then if
  missing).  dockerd runs inside a network namespace made here (``lk-bench-<pid>``) with its
  own --data-root/--exec-root/--pidfile/-H in a temp dir, --iptables=false --ip-masq=false
  --bridge=none, so the host's network is never touched; it is stopped by pid and the netns
  deleted afterwards;
* ``podman``: when installed, with ``--ulimit nofile=1024:1024 --ulimit nproc=1024:1024``
  (root here lacks CAP_SYS_RESOURCE, so podman's default rlimits fail) and ``--runtime runc``
  (its default, crun, refuses hybrid cgroup hosts); the imported image is removed after.

labkit's daemon is a throw-away one in /tmp/lk-bn-* (labkit.measure.sandbox), so the host's
/run/labkit is not touched.  The busybox image reaches dockerd and podman as labkit's own
busybox layer (``docker import`` / ``podman import``).  Targets (labkit >= 3x faster than
dockerd and podman; labkit run within 1.5x of the Docker CLI) are reported, never asserted.
Overhead of the tool: one fork+exec of the client per sample; nothing else runs meanwhile.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.measure._bytecode import ensure_compiled
from labkit.measure.peer_daemons import Dockerd as _Dockerd  # the name other modules import
from labkit.measure.peer_daemons import install_docker_io

__all__ = [
    "Candidate",
    "EngineRow",
    "TargetRow",
    "install_docker_io",
    "print_table",
    "row_dict",
    "run",
    "targets",
]

WORKLOAD = ("run", "--rm", "--network", "none", "busybox", "true")
PODMAN_ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    argv: list[str] | None  # None: not available (see note)
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True, slots=True)
class EngineRow:
    """One candidate's timings (ms) of the whole `run --rm ... true`."""

    name: str
    status: str  # "ok", "not installed", "failed: ..."
    runs: int
    median_ms: float | None
    p10_ms: float | None
    p90_ms: float | None
    note: str
    samples_ms: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class TargetRow:
    """A target of the issue with the figure measured in this run (None: not measured)."""

    target: str
    ratio: float | None
    goal: str
    met: bool | None


def _summ(c: Candidate, samples: list[float]) -> EngineRow:
    med = statistics.median(samples)
    q = statistics.quantiles(samples, n=10) if len(samples) >= 2 else [med, med]
    return EngineRow(c.name, "ok", len(samples), med, q[0], q[-1], c.note, tuple(samples))


def _time_one(c: Candidate) -> tuple[float, str | None]:
    assert c.argv is not None
    t0 = time.perf_counter_ns()
    p = subprocess.run(c.argv, env=c.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, check=False, timeout=120)
    ms = (time.perf_counter_ns() - t0) / 1e6
    if p.returncode != 0:
        last = (p.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        return ms, f"exit {p.returncode}: {last[:120]}"
    return ms, None


def _layer_tar(tmp: Path) -> Path:
    from labkit.engine.images.busybox import pack_rootfs_layer

    out = tmp / "busybox-layer.tar"
    pack_rootfs_layer(out, compression="none")
    return out


def _import(cli: list[str], env: dict[str, str], tar: Path, ref: str) -> str | None:
    p = subprocess.run([*cli, "import", str(tar), ref], env=env, capture_output=True,
                       text=True, check=False, timeout=300)
    return None if p.returncode == 0 else (p.stderr.strip().splitlines() or ["?"])[-1]


def run(runs: int = 20, warmup: int = 2, *, with_dockerd: bool = False,
        podman: bool = True, progress: Callable[[str], None] | None = None
        ) -> tuple[list[EngineRow], list[TargetRow]]:
    """Start the engines, time every candidate round-robin, stop everything; rows + targets."""
    if runs < 1 or warmup < 0:
        raise errors.InvalidArgumentError("runs/warmup", f"{runs}/{warmup}: need runs >= 1, "
                                          "warmup >= 0")
    from labkit.measure.sandbox import LabEngine

    ensure_compiled()
    tmp = Path(tempfile.mkdtemp(prefix="lk-bench-"))
    engine = LabEngine("bn")
    dockerd: _Dockerd | None = None
    cands: list[Candidate] = []
    podman_image = ""
    try:
        engine.start()
        labkit = str(Path(sys.executable).parent / "labkit")
        docker = shutil.which("docker")
        cands.append(Candidate("docker CLI -> labkit", [docker, *WORKLOAD] if docker
                               else None, engine.docker_env,
                               "" if docker else "no `docker` on PATH: make setup installs one"))
        cands.append(Candidate("labkit run -> labkit", [labkit, *WORKLOAD], engine.env))
        tar: Path | None = None
        if with_dockerd:
            why = "" if shutil.which("dockerd") else install_docker_io()
            docker = shutil.which("docker")
            if not why and shutil.which("dockerd") and docker:
                dockerd = _Dockerd(tmp)
                dockerd.start()
                env = dict(os.environ, DOCKER_HOST=f"unix://{dockerd.sock}",
                           DOCKER_CONFIG=str(tmp / "docker-config"))
                tar = _layer_tar(tmp)
                why = _import([docker], env, tar, "busybox:latest") or ""
            cands.append(Candidate("docker CLI -> dockerd", None if why else
                                   [docker or "docker", *WORKLOAD], env if not why else {},
                                   why or f"dockerd in netns lk-bench-{os.getpid()}"))
        else:
            cands.append(Candidate("docker CLI -> dockerd", None, {},
                                   "not run: pass --with-dockerd (installs Debian's docker.io)"))
        pod = shutil.which("podman") if podman else None
        if pod:
            tar = tar or _layer_tar(tmp)
            pwhy = _import([pod], dict(os.environ), tar, "localhost/busybox:latest")
            podman_image = "localhost/busybox:latest"
            # crun (podman's default runtime) refuses hybrid cgroup hosts; runc copes.
            rt = ["--runtime", "runc"] if shutil.which("runc") else []
            cands.append(Candidate("podman", None if pwhy else [
                pod, *rt, "run", "--rm", "--network", "none", *PODMAN_ULIMITS,
                podman_image, "true"], dict(os.environ),
                pwhy or f"with --ulimit{' --runtime runc' if rt else ''}"))
        else:
            cands.append(Candidate("podman", None, {}, "not installed: apt-get install podman"))
        rows = _measure(cands, runs, warmup, progress)
    finally:
        if podman_image:
            subprocess.run([shutil.which("podman") or "podman", "rmi", "-f", podman_image],
                           capture_output=True, check=False)
        if dockerd is not None:
            dockerd.stop()
        engine.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows, targets(rows)


def _measure(cands: list[Candidate], runs: int, warmup: int,
             progress: Callable[[str], None] | None) -> list[EngineRow]:
    active = [c for c in cands if c.argv is not None]
    samples: dict[str, list[float]] = {c.name: [] for c in active}
    failed: dict[str, str] = {}
    for i in range(warmup + runs):
        order = active[i % len(active):] + active[:i % len(active)] if active else []
        for c in order:
            if c.name in failed:
                continue
            ms, err = _time_one(c)
            if err is not None:
                failed[c.name] = err
            elif i >= warmup:
                samples[c.name].append(ms)
            if progress is not None:
                progress(c.name)
    rows = []
    for c in cands:
        if c.argv is None:
            status = "not installed" if "not installed" in c.note or "not run" in c.note \
                else f"failed: {c.note}"
            rows.append(EngineRow(c.name, status, 0, None, None, None, c.note))
        elif c.name in failed:
            rows.append(EngineRow(c.name, f"failed: {failed[c.name]}", 0, None, None, None,
                                  c.note))
        else:
            rows.append(_summ(c, samples[c.name]))
    return rows


def targets(rows: list[EngineRow]) -> list[TargetRow]:
    """The issue's targets as ratios of medians from this run."""
    med = {r.name: r.median_ms for r in rows}
    base = med.get("docker CLI -> labkit")

    def ratio(a: str | None, b: str | None) -> float | None:
        x, y = med.get(a or ""), med.get(b or "")
        return x / y if x and y else None

    out = []
    for peer, goal in (("docker CLI -> dockerd", 5.0), ("podman", 3.5)):
        r = ratio(peer, "docker CLI -> labkit") if base else None
        out.append(TargetRow(f"{peer} / docker CLI -> labkit", r, f">= {goal}",
                             None if r is None else r >= goal))
    r = ratio("labkit run -> labkit", "docker CLI -> labkit")
    out.append(TargetRow("labkit run / docker CLI -> labkit", r, "<= 1.5",
                         None if r is None else r <= 1.5))
    return out


def row_dict(row: EngineRow | TargetRow) -> dict[str, Any]:
    d = asdict(row)
    if "samples_ms" in d:
        d["samples_ms"] = list(d["samples_ms"])
    return d


def print_table(rows: list[EngineRow], goals: list[TargetRow]) -> None:
    from rich.console import Console
    from rich.table import Table

    def ms(v: float | None) -> str:
        return f"{v:.1f}" if v is not None else "-"

    n = max((r.runs for r in rows), default=0)
    t = Table(title=f"`run --rm --network none busybox true`, client fork to exit (n={n})")
    for col in ("client -> engine", "status", "median ms", "p10 ms", "p90 ms", "note"):
        t.add_column(col, justify="right" if "ms" in col else "left")
    for r in rows:
        t.add_row(r.name, r.status, ms(r.median_ms), ms(r.p10_ms), ms(r.p90_ms), r.note)
    g = Table(title="targets (reported, not asserted)")
    for col in ("ratio of medians", "measured", "target", "met"):
        g.add_column(col)
    for x in goals:
        g.add_row(x.target, "-" if x.ratio is None else f"{x.ratio:.2f}", x.goal,
                  "-" if x.met is None else ("yes" if x.met else "no"))
    console = Console()
    console.print(t)
    console.print(g)


LABKIT_SHARE_GOAL_MS = 15.0  # issue 7: labkit's own CPU per run


def breakdown(runs: int = 10, progress: Callable[[str], None] | None = None
              ) -> dict[str, dict[str, float | None]]:
    """Trace ``runs`` runs of the workload through the Docker CLI against a fresh labkit
    engine with the proctree probe: median CPU per room and wall time per phase
    (labkit.measure.breakdown).

    Raises:
        UnsupportedError: no Docker CLI, or the probe cannot load (no bcc, not root).
    """
    from labkit.measure import breakdown as bd
    from labkit.measure.peers import docker_cli
    from labkit.measure.sandbox import LabEngine

    if runs < 1:
        raise errors.InvalidArgumentError("breakdown", f"{runs}: need >= 1 traced run")
    ensure_compiled()
    cli = docker_cli()
    engine = LabEngine("bd")
    try:
        engine.start()
        rooms = {"daemon": "daemon", "supervisor": "supervisor", "shim template": "template"}
        long_lived = {pid: rooms[role] for role, pids in engine.engine_pids().items()
                      if role in rooms for pid in pids}
        subprocess.run([cli, *WORKLOAD], env=engine.docker_env, capture_output=True,
                       check=False, timeout=120)  # warm-up, untraced
        traced = bd.trace_runs([cli, *WORKLOAD], engine.docker_env, long_lived, runs, progress)
    finally:
        engine.stop()
    return bd.summarize(traced)


def print_breakdown(summary: dict[str, dict[str, float | None]], runs: int) -> None:
    """Two tables: CPU per room (labkit's share against its goal), wall time per phase."""
    from rich.console import Console
    from rich.table import Table

    def ms(v: float | None) -> str:
        return f"{v:.1f}" if v is not None else "-"

    cpu, phases = summary["cpu_ms"], summary["phase_ms"]
    t = Table(title=f"where one `docker run --rm` goes, CPU per room (proctree, n={runs}, "
                    "medians)")
    t.add_column("room")
    t.add_column("CPU ms", justify="right")
    for room, v in cpu.items():
        label = "labkit's share (daemon+supervisor+shim+runtime)" if room == "labkit" else room
        t.add_row(label, ms(v))
    share = cpu.get("labkit")
    t.caption = (f"target: labkit's share < {LABKIT_SHARE_GOAL_MS:.0f} ms: "
                 + ("-" if share is None else "met" if share < LABKIT_SHARE_GOAL_MS
                    else "not met") + "; the probe adds its own cost to every context switch")
    w = Table(title="wall time per phase (kernel marks: exec, fork, exit)")
    w.add_column("phase")
    w.add_column("ms", justify="right")
    for phase, v in phases.items():
        w.add_row(phase, ms(v))
    w.add_row("whole run (CLI exec -> exit)", ms(summary["wall_ms"].get("run")))
    console = Console()
    console.print(t)
    console.print(w)


def to_json(rows: list[EngineRow], goals: list[TargetRow]) -> str:
    return json.dumps({"rows": [row_dict(r) for r in rows],
                       "targets": [row_dict(g) for g in goals]}, indent=2)
