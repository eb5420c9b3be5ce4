"""labkit bench startup: container start latency, every way labkit has and every peer, side by
side in one run (issue 11 items 3 and 7).

Workload: a busybox bundle (bench_runtime.make_bundle, labkit-runtime's config) whose process
is /bin/true.  Each sample is the wall time from the bench's request to the container's exit
being seen (time.perf_counter_ns), so it holds the whole start, the exit and the clean-up.
Candidates (CANDIDATES; each only when installed and working, else a row with the reason):

* floors, timed by the same harness (fork+exec of the command, wait4): ``fork+exec`` the
  bundle's /bin/true; ``clone+ns``: labkit/measure/floor/floor.c (``cc -O2`` on first use)
  clones into new pid, mount, uts, ipc and net namespaces and execs it; ``hand-built floor``:
  the same plus mkdir of a cgroup in every hierarchy labkit-runtime uses, the join, private /,
  the rootfs bind, proc, pivot_root, exec of the bundle's /bin/true, rmdir.  Both C floors pay
  one exec of floor itself, as the CLI runtimes pay theirs;
* ``labkit-runtime warm``: a long-lived, warmed process (bench_startup_warm) doing create
  through the shim's in-process path, start, wait, delete; ``labkit-runtime cli``, ``runc``,
  ``crun``: ``X run`` (bench_runtime's runners, crun inside its unshare -m wrapper here);
* ``labkit engine``, ``podman``, ``dockerd``: ``docker run --rm --network none busybox true``
  against a throw-away labkit daemon (sandbox.LabEngine), podman's own ``run`` with
  bench_engine's ulimits and runc, the Docker CLI against dockerd in a netns of the bench's own
  (peer_daemons.Dockerd).  These include a client and a daemon round trip: compare them with
  each other, not with the runtimes.

Host conditions (HOSTS): ``warm``: bench_runtime's warmer keeps cgroup attach busy; ``cold``:
the warmer is SIGSTOPped and each sample waits COLD_GAP_S first, so every start is the first
cgroup attach after a quiet spell (5-15 ms of RCU grace period on this kernel).  Rounds are
interleaved round-robin (hosts and candidates rotate each round); warm-up rounds are dropped.

Probe overhead (item 7): after the round-robin, labkit-runtime warm alone, in PROBE_CYCLES
cycles of ABBA blocks (off, on, on, off: linear drift cancels; see probe_plan()), probes attached in this process for the "on" block
and drained between samples, outside the timing.  A probe module is any labkit.probes.NAME
with an ``attach()``; one that cannot attach is named in the note.

Notebook API: available(), run(), summarize(), targets(), print_table(), write_csv(), plot(),
write_png().  Targets are reported, never asserted.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from labkit import errors
from labkit.measure import bench_runtime as br
from labkit.measure import parentcg
from labkit.measure.bench_startup_report import (
    FLOOR,
    PROBES_OFF,
    PROBES_ON,
    StartupRow,
    Target,
    plot,
    print_table,
    summarize,
    targets,
    to_json,
    write_csv,
    write_png,
)

__all__ = ["CANDIDATES", "DEFAULT_PROBES", "HOSTS", "StartupRow", "Target", "available",
           "floor_binary", "plot", "print_table", "probe_plan", "run", "steps", "summarize",
           "targets", "to_json", "write_csv", "write_png"]

CANDIDATES = ("fork+exec", "clone+ns", FLOOR, "labkit-runtime warm", "labkit-runtime cli",
              "runc", "crun", "labkit engine", "podman", "dockerd")
HOSTS = br.HOSTS
DEFAULT_PROBES = ("lifecycle", "nssyscalls", "cgattach", "runqlat", "netio", "oomkill")  # the container-aware set
COLD_GAP_S = 0.05  # quiet spell before each cold sample (longer than an RCU grace period)
WARMER_LEAD_S = 0.02  # the warmer's head start after SIGCONT
PROBE_CYCLES = 4  # ABBA cycles of the probe-overhead phase
FLOOR_SRC = Path(__file__).with_name("floor") / "floor.c"
Timer = Callable[[], "tuple[float, str | None]"]
ENGINES = ("labkit engine", "podman", "dockerd")


def floor_binary() -> Path:
    """floor.c compiled (cc -O2) into LABKIT_ROOT/cache/floor/, rebuilt when the source is
    newer; UnsupportedError when there is no C compiler."""
    from labkit.engine import paths

    out = paths.root() / "cache" / "floor" / "floor"
    if out.exists() and out.stat().st_mtime >= FLOOR_SRC.stat().st_mtime:
        return out
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise errors.UnsupportedError("the hand-built floor", "no C compiler (cc) on PATH",
                                      hint="apt-get install build-essential "
                                           "(scripts/debian-packages.txt lists it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".floor.{os.getpid()}")
    p = subprocess.run([cc, "-O2", "-Wall", "-o", str(tmp), str(FLOOR_SRC)],
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise errors.UnsupportedError("the hand-built floor", f"cc failed: "
                                      f"{(p.stderr.strip().splitlines() or ['?'])[-1]}")
    tmp.rename(out)  # atomic: a concurrent bench never runs a half-written binary
    return out


def available() -> dict[str, str | None]:
    """candidate -> None when it can be tried here, else why not (cheap checks: nothing is
    started; run() may still find a candidate failing and say so in its row)."""
    root = None if os.geteuid() == 0 else "needs root (namespaces, cgroups, mounts)"
    cc = None if shutil.which("cc") or shutil.which("gcc") else \
        "no C compiler (cc): apt-get install build-essential"
    lk_path, lk_why = br._find_labkit_runtime()
    docker = shutil.which("docker")
    out: dict[str, str | None] = {
        "fork+exec": None, "clone+ns": root or cc, FLOOR: root or cc,
        "labkit-runtime warm": root,
        "labkit-runtime cli": root or (None if lk_path else lk_why or "labkit-runtime not found"),
    }
    for rt in ("runc", "crun", "podman"):
        out[rt] = root or (None if shutil.which(rt) else f"not installed: apt-get install {rt}")
    out["labkit engine"] = root or (None if docker else "no `docker` CLI on PATH (make setup)")
    out["dockerd"] = root or (None if docker and shutil.which("dockerd") else
                              "not installed: apt-get install docker.io")
    return out


def steps(runs: int, warmup: int, n_candidates: int, hosts: int, probes: bool) -> int:
    """How many progress() calls run() makes (for a progress bar's total)."""
    return (runs + warmup) * n_candidates * hosts + (2 * runs * hosts if probes else 0)


class _Ctx:
    """What the candidates share: the temp dir, the bundle, the ExitStack of clean-ups."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.tmp = Path(tempfile.mkdtemp(prefix="lk-bst-"))
        stack.callback(shutil.rmtree, self.tmp, True)
        self.bundle = br.make_bundle(self.tmp / "bundle", "labkit")
        self.rootfs = self.bundle / "rootfs"
        self.seq = 0
        self._tar: Path | None = None

    def cid(self, tag: str) -> str:
        self.seq += 1
        return f"lk-bst-{os.getpid()}-{tag}-{self.seq}"

    def layer_tar(self) -> Path:
        from labkit.measure.bench_engine import _layer_tar

        if self._tar is None:
            self._tar = _layer_tar(self.tmp)
        return self._tar


def _runner_timer(ctx: _Ctx, r: br.Runner, tag: str) -> Timer:
    """Time ``r`` with bench_runtime's harness; a failed run's container is deleted."""
    def timer() -> tuple[float, str | None]:
        cid = ctx.cid(tag)
        ms, _, err = br._time_one(r, ctx.bundle, cid)
        if err is not None and (argv := r.delete_argv(cid)) is not None:
            subprocess.run(argv, capture_output=True, check=False)
        return ms, err
    return timer


def _floor(ctx: _Ctx, name: str) -> Timer:
    true = str(ctx.rootfs / "bin" / "true")
    if name == "fork+exec":
        return _runner_timer(ctx, br.Runner(name, true, baseline=(true,)), "fe")
    binary = str(floor_binary())
    if name == "clone+ns":
        return _runner_timer(ctx, br.Runner(name, binary, baseline=(binary, "ns", true)), "ns")
    from labkit.cgroups import open_cgroup

    cg = open_cgroup(f"lk-bst-floor-{os.getpid()}")
    dirs = getattr(cg, "dirs", None)
    paths = list(dict.fromkeys(str(d) for d in (dirs.values() if dirs else [cg.path])))
    def remove() -> None:  # a cgroup left by a failed run only
        if cg.exists():
            cg.remove()

    ctx.stack.callback(remove)
    return _runner_timer(ctx, br.Runner(name, binary,
                                        baseline=(binary, "full", str(ctx.rootfs), *paths)), "fl")


class _WarmProcess:
    """bench_startup_warm as a child: one container per request line."""

    def __init__(self, ctx: _Ctx) -> None:
        self.ctx = ctx
        self.root = str(ctx.tmp / "warm-root")
        self.err = open(ctx.tmp / "warm.log", "w+b")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labkit.measure.bench_startup_warm", self.root,
             str(ctx.bundle)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
            text=True, bufsize=1)
        ctx.stack.callback(self.stop)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.out: IO[str] = self.proc.stdout
        self.inp: IO[str] = self.proc.stdin
        if self._line(120.0) != "ready":
            raise errors.LabkitError(f"the warm runtime process did not start: {self._log()}")

    def _log(self) -> str:
        self.err.seek(0)
        return (self.err.read().decode(errors="replace").strip().splitlines() or ["?"])[-1]

    def _line(self, timeout: float) -> str:
        if not select.select([self.out], [], [], timeout)[0]:
            return ""
        return self.out.readline().strip()

    def __call__(self) -> tuple[float, str | None]:
        if self.proc.poll() is not None:
            return 0.0, f"the warm process exited: {self._log()}"
        t0 = time.perf_counter_ns()
        self.inp.write(self.ctx.cid("w") + "\n")
        self.inp.flush()
        line = self._line(120.0)
        ms = (time.perf_counter_ns() - t0) / 1e6
        if line == "ok":
            return ms, None
        return ms, line[4:] if line.startswith("err ") else f"no answer: {self._log()}"

    def stop(self) -> None:
        from labkit.engine.runtime.delete import delete

        try:
            self.inp.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()  # our own child, by pid
            self.proc.wait()
        self.err.close()
        # containers a dead warm process left (their cgroups outlive the temp dir)
        for cid in os.listdir(self.root) if os.path.isdir(self.root) else []:
            try:
                delete(self.root, cid, force=True)
            except errors.LabkitError:
                pass


def _engine_timer(argv: list[str], env: dict[str, str]) -> Timer:
    from labkit.measure import bench_engine as be

    cand = be.Candidate("engine", argv, env)
    return lambda: be._time_one(cand)


def _engine(ctx: _Ctx, name: str) -> tuple[Timer, str]:
    from labkit.measure.bench_engine import PODMAN_ULIMITS, WORKLOAD, _import

    docker = shutil.which("docker") or "docker"
    if name == "labkit engine":
        from labkit.measure.sandbox import LabEngine

        engine = LabEngine("bst")
        ctx.stack.callback(engine.stop)
        engine.start()
        return _engine_timer([docker, *WORKLOAD], engine.docker_env), "docker CLI, labkit daemon"
    if name == "podman":
        pod = shutil.which("podman") or "podman"
        image = f"localhost/lk-bst-{os.getpid()}:latest"  # ours alone: removed at the end
        env = dict(os.environ)
        ctx.stack.callback(subprocess.run, [pod, "rmi", "-f", image], capture_output=True,
                           check=False)
        if (why := _import([pod], env, ctx.layer_tar(), image)) is not None:
            raise errors.LabkitError(f"podman import: {why}")
        # crun (podman's default) refuses hybrid cgroup hosts; runc copes.
        rt = ["--runtime", "runc"] if shutil.which("runc") else []
        return _engine_timer([pod, *rt, "run", "--rm", "--network", "none", *PODMAN_ULIMITS,
                              image, "true"], env), "podman run" + (" --runtime runc" if rt
                                                                     else "")
    from labkit.measure.peer_daemons import Dockerd

    d = Dockerd(ctx.tmp)
    ctx.stack.callback(d.stop)
    d.start()
    if (why := _import([docker], d.env, ctx.layer_tar(), "busybox:latest")) is not None:
        raise errors.LabkitError(f"docker import: {why}")
    return _engine_timer([docker, *WORKLOAD], d.env), f"docker CLI, dockerd in netns {d.netns}"


def _setup(ctx: _Ctx, name: str) -> tuple[Timer, str]:
    """The timer of one candidate and its note; raises when it cannot be set up."""
    if name in ("fork+exec", "clone+ns", FLOOR):
        note = {"fork+exec": "busybox /bin/true", "clone+ns": "floor.c: pid,mnt,uts,ipc,net",
                FLOOR: "floor.c: + cgroup, bind, proc, pivot_root"}[name]
        return _floor(ctx, name), note
    if name == "labkit-runtime warm":
        return _WarmProcess(ctx), "create (shim path), start, wait, delete in a warm process"
    if name in ENGINES:
        return _engine(ctx, name)
    want = {"labkit-runtime cli": br.LABKIT_RUNTIME}.get(name, name)
    r = next(x for x in br.runners([n for n in ("runc", "crun") if n == name])
             if x.name == want)
    if r.binary is None:
        raise errors.UnsupportedError(name, r.note or "not installed")
    return _runner_timer(ctx, r, name.replace(" ", "-")), ("`run`, fresh interpreter"
                                                          if name == "labkit-runtime cli"
                                                          else "`run`" + (", " + r.note
                                                                          if r.note else ""))


def _check(candidates: Sequence[str], runs: int, warmup: int, hosts: Sequence[str],
           probes: Sequence[str]) -> None:
    if runs < 1 or warmup < 0:
        raise errors.InvalidArgumentError("runs/warmup", f"{runs}/{warmup}: need runs >= 1, "
                                          "warmup >= 0")
    for what, got, known in (("candidate", candidates, CANDIDATES), ("host", hosts, HOSTS)):
        bad = [x for x in got if x not in known] or ([] if got else ["(none)"])
        if bad:
            raise errors.InvalidArgumentError(what, f"{bad[0]!r}: one of {', '.join(known)}")
    for p in probes:
        if not p.isidentifier() or importlib.util.find_spec(f"labkit.probes.{p}") is None:
            raise errors.InvalidArgumentError("probe", f"{p!r}: no module labkit.probes.{p}")
        if not hasattr(importlib.import_module(f"labkit.probes.{p}"), "attach"):
            raise errors.InvalidArgumentError("probe", f"{p!r}: labkit.probes.{p} has no "
                                              "attach()")


def run(*, candidates: Sequence[str] | None = None, runs: int = 20, warmup: int = 3,
        hosts: Sequence[str] = HOSTS, probes: Sequence[str] = DEFAULT_PROBES,
        progress: Callable[[str], None] | None = None) -> list[StartupRow]:
    """Set up every candidate, time them round-robin in each host condition, then the probe
    overhead (when ``probes`` and labkit-runtime warm is among the candidates), stop and
    remove everything; returns summarized rows, one per candidate and host, then the two
    probe rows per host.  ``progress(what)`` is called once per sample (see steps()).

    Raises:
        InvalidArgumentError: runs < 1, warmup < 0, an unknown candidate, host or probe.
    """
    names = list(CANDIDATES if candidates is None else candidates)
    hosts = list(hosts)
    _check(names, runs, warmup, hosts, probes)
    from labkit.measure._bytecode import ensure_compiled

    ensure_compiled()
    why = available()
    rows: list[StartupRow] = []
    with ExitStack() as stack:
        stack.enter_context(parentcg.cleaned())  # left last: after every container went
        ctx = _Ctx(stack)
        timers: dict[str, Timer] = {}
        notes: dict[str, str] = {}
        failed: dict[str, str] = {}
        for name in names:
            if (reason := why.get(name)) is not None:
                failed[name] = reason
                continue
            try:
                timers[name], notes[name] = _setup(ctx, name)
            except (errors.LabkitError, OSError) as err:
                failed[name] = " ".join(str(err).split())[:160]
        if progress is not None:  # the steps (see steps()) of those that will not run
            for _ in range((runs + warmup) * len(hosts) * (len(names) - len(timers))):
                progress("set up")
        warmer = br._Warmer() if "warm" in hosts and timers else None
        if warmer is not None:
            stack.callback(warmer.stop)
            warmer.start()
        cond = _Hosts(warmer)
        samples = _rounds(timers, hosts, runs, warmup, cond, failed, progress)
        for name in names:
            for host in hosts:
                why_not = failed.get(name)
                rows.append(StartupRow(name, host, () if why_not else tuple(
                    samples[(name, host)]), why_not, notes.get(name, "")))
        warm = timers.get("labkit-runtime warm")
        if probes and warm is not None and "labkit-runtime warm" not in failed:
            rows += _probe_phase(warm, list(probes), hosts, runs, cond, progress)
    return summarize(rows)


class _Hosts:
    """Switches the host condition before a sample: "warm" SIGCONTs the warmer (and gives it
    WARMER_LEAD_S to be attaching again when it was stopped), "cold" SIGSTOPs it and waits
    COLD_GAP_S, so the sample's first cgroup attach comes after a quiet spell."""

    def __init__(self, warmer: br._Warmer | None) -> None:
        self.warmer = warmer
        self.current = "cold"  # _Warmer.start() leaves it stopped

    def enter(self, host: str) -> None:
        if self.warmer is not None and host != self.current:
            (self.warmer.resume if host == "warm" else self.warmer.pause)()
            if host == "warm":
                time.sleep(WARMER_LEAD_S)
        self.current = host
        if host == "cold":
            time.sleep(COLD_GAP_S)


def _rounds(timers: dict[str, Timer], hosts: list[str], runs: int, warmup: int,
            cond: _Hosts, failed: dict[str, str],
            progress: Callable[[str], None] | None) -> dict[tuple[str, str], list[float]]:
    """Round-robin: each round rotates the hosts and the candidates' order."""
    samples: dict[tuple[str, str], list[float]] = {(n, h): [] for n in timers for h in hosts}
    active = list(timers)
    for i in range(warmup + runs):
        for host in hosts[i % len(hosts):] + hosts[:i % len(hosts)]:
            for name in active[i % len(active):] + active[:i % len(active)]:
                if name not in failed:
                    cond.enter(host)
                    ms, err = timers[name]()
                    if err is not None:
                        failed[name] = err
                    elif i >= warmup:
                        samples[(name, host)].append(ms)
                if progress is not None:
                    progress(f"{name}, {host} host")
    return samples


def probe_plan(runs: int, cycles: int = PROBE_CYCLES) -> list[tuple[bool, int]]:
    """(probes on?, samples) blocks: ``cycles`` ABBA cycles (off, on, off; the "on" halves of
    two ABBA halves merged, so one attach per cycle), ``runs`` samples per state in all.
    More cycles follow a drifting machine more closely; each costs one compile + attach."""
    plan: list[tuple[bool, int]] = []
    cycles = max(1, min(cycles, runs))
    for c in range(cycles):
        n = runs // cycles + (1 if c < runs % cycles else 0)
        plan += [(False, (n + 1) // 2), (True, n), (False, n // 2)]
    return [(on, n) for on, n in plan if n]


def _attach(names: list[str]) -> tuple[list[Any], list[str]]:
    """Attach each probe module's attach(); (probes attached, "name: why" for the rest)."""
    attached, skipped = [], []
    for name in names:
        try:
            attached.append((name, importlib.import_module(f"labkit.probes.{name}").attach()))
        except (errors.LabkitError, TypeError, OSError) as err:
            skipped.append(f"{name}: {' '.join(str(err).split())[:100]}")
    return attached, skipped


def _probe_phase(timer: Timer, probes: list[str], hosts: list[str], runs: int,
                 cond: _Hosts,
                 progress: Callable[[str], None] | None) -> list[StartupRow]:
    """labkit-runtime warm with probes off and on in the blocks of probe_plan(), the hosts
    alternating sample by sample."""
    plan = probe_plan(runs)
    samples: dict[tuple[bool, str], list[float]] = {(on, h): [] for on in (False, True)
                                                    for h in hosts}
    error: str | None = None
    attached: list[Any] = []
    skipped: list[str] = []
    try:
        for on, count in plan:
            if on:
                attached, skipped = _attach(probes)
                if not attached:
                    error = "no probe attached: " + "; ".join(skipped)
                    break
            for i in range(count):
                for host in hosts[i % len(hosts):] + hosts[:i % len(hosts)]:
                    cond.enter(host)
                    ms, err = timer()
                    if err is not None:
                        error = error or err
                    else:
                        samples[(on, host)].append(ms)
                    for _, p in attached:  # drain the perf buffers, outside the timing
                        p.read()
                    if progress is not None:
                        progress(f"probes {'on' if on else 'off'}, {host} host")
            for _, p in attached:
                p.close()
            attached = []
    finally:
        for _, p in attached:
            p.close()
    on_note = "probes: " + ", ".join(p for p in probes if not any(
        s.startswith(p + ":") for s in skipped)) + (
        f" (not attached: {'; '.join(skipped)})" if skipped else "")
    rows = []
    for on, name in ((False, PROBES_OFF), (True, PROBES_ON)):
        for host in hosts:
            why = error if on or (error and "no probe attached" not in error) else None
            rows.append(StartupRow(name, host, tuple(samples[(on, host)]), why,
                                   on_note if on else "ABBA blocks with the row below"))
    return rows
