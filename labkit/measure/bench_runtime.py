"""labkit bench runtime: start-to-exit latency of an OCI runtime's ``run``, against peers.

Workload: one busybox bundle (labkit.engine.images.busybox) whose process is /bin/true,
config.json from ``labkit-runtime spec`` (``runc spec`` while labkit-runtime cannot make
one); then ``X run --bundle B <unique id>`` for X in labkit-runtime, runc, crun, timed from
fork to exit with time.perf_counter_ns.  Runs are interleaved round-robin (the starting
runtime rotates each round), so drift on the machine (page cache, frequency, other jobs)
touches every runtime alike.  Warm-up rounds are run and dropped.

crun on a hybrid cgroup host: crun refuses a cgroup2 mount that holds no controllers next
to v1 ones ("cgroups in hybrid mode not supported").  It is therefore run as
``unshare -m sh -c 'umount /sys/fs/cgroup/unified; exec crun run ...'`` (a private mount
namespace, see unshare(1)), and that wrapper is timed with it; the wrapper alone (with
``true`` in crun's place) and plain ``unshare -m true`` are timed too and reported, so the
reader can subtract them.

Two bundles and two host conditions, each combination timed in the same interleaved run:

* bundle ``labkit``: config.json from ``labkit-runtime spec`` (Docker's seccomp profile, which
  runc compiles with libseccomp on every start); bundle ``runc``: from ``runc spec`` (no
  seccomp, fewer mounts);
* host ``cold``: nothing else touches cgroups; host ``warm``: a helper process moves itself
  between two cgroups in a loop.  On this kernel the first cgroup attach after a quiet spell
  waits 5-15 ms for an RCU grace period (cgroup_attach_lock / percpu_rwsem), which a busy
  host does not pay; the helper is SIGSTOPped during the cold rounds.

Beside wall time (fork to exit), each row gives the CPU time the runtime and the processes it
waited for used (wait4(2) rusage: user + system), so a start that is short only because it
runs on the other core is visible.  A floor row times labkit-runtime's own interpreter doing
nothing (``python -c pass``): what any Python runtime pays before its first line runs.

Overhead of the tool: one fork+exec of the runtime per run; nothing else runs meanwhile.
The target "labkit-runtime no slower than runc" is reported as a ratio, never asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labkit import errors
from labkit.measure import parentcg
from labkit.measure._bytecode import ensure_compiled

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["BUNDLES", "HOSTS", "BenchRow", "Runner", "make_bundle", "print_table", "row_dict",
           "run", "runners", "summarize"]

LABKIT_RUNTIME = "labkit-runtime"
UNIFIED = "/sys/fs/cgroup/unified"
BUNDLES = ("labkit", "runc")  # whose `spec` wrote config.json
HOSTS = ("cold", "warm")


@dataclass(frozen=True, slots=True)
class Runner:
    """How to start one container with a runtime: ``argv(bundle, id)``; ``delete`` cleans up."""

    name: str
    binary: str | None  # None: not installed
    wrapped: bool = False  # run inside the unshare -m wrapper (crun on hybrid hosts)
    baseline: tuple[str, ...] | None = None  # a plain command to time instead (overheads)
    note: str = ""

    def _wrap(self, inner: str) -> list[str]:
        return ["unshare", "-m", "sh", "-c", f"umount {UNIFIED} 2>/dev/null; exec {inner}"]

    def argv(self, bundle: Path, cid: str) -> list[str]:
        if self.baseline is not None:
            return list(self.baseline)
        assert self.binary is not None
        if self.wrapped:
            return self._wrap(f"{self.binary} run --bundle {bundle} {cid}")
        return [self.binary, "run", "--bundle", str(bundle), cid]

    def delete_argv(self, cid: str) -> list[str] | None:
        if self.baseline is not None or self.binary is None:
            return None
        if self.wrapped:
            return self._wrap(f"{self.binary} delete --force {cid}")
        return [self.binary, "delete", "--force", cid]


@dataclass(frozen=True, slots=True)
class BenchRow:
    """Timings of one runtime (ms).  ``ratio_to_runc`` is median / runc's median."""

    runtime: str
    status: str  # "ok", "not installed", or "failed: <first stderr line>"
    runs: int
    median_ms: float | None
    p10_ms: float | None
    p90_ms: float | None
    ratio_to_runc: float | None
    note: str
    samples_ms: tuple[float, ...] = ()
    bundle: str = "labkit"
    host: str = "cold"
    cpu_ms: float | None = None  # median user+system CPU of one start (wait4 rusage)


def _is_hybrid() -> bool:
    # The cgroup layout question belongs to labkit.cgroups (STYLE C6).
    from labkit.cgroups import Mode, detect_mode

    try:
        return detect_mode() is Mode.HYBRID
    except errors.LabkitError:
        return False


def _find_labkit_runtime() -> tuple[str | None, str]:
    """(path, "") for a working labkit-runtime beside this interpreter or on PATH, else
    (None, why not)."""
    cand = Path(sys.executable).parent / LABKIT_RUNTIME
    path = str(cand) if cand.exists() else shutil.which(LABKIT_RUNTIME)
    if path is None:
        return None, ""
    probe = subprocess.run([path, "--help"], capture_output=True, check=False, timeout=30)
    if probe.returncode != 0:
        last = (probe.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        return None, f"{LABKIT_RUNTIME} --help fails: {last[:80]}"
    return path, ""


def _labkit_runtime() -> str | None:
    return _find_labkit_runtime()[0]


def _interpreter(script: str | None) -> str | None:
    """The interpreter named by a console script's #! line (labkit-runtime's python)."""
    if script is None:
        return None
    try:
        with open(script, "rb") as fh:
            first = fh.readline().decode(errors="replace")
    except OSError:
        return None
    return first[2:].strip().split()[0] if first.startswith("#!") else None


def runners(peers: list[str], *, floor: bool = False) -> list[Runner]:
    """labkit-runtime first, then each peer; crun wrapped (plus overhead rows) on hybrid hosts;
    with ``floor``, labkit-runtime's interpreter doing nothing, as a row of its own."""
    path, why = _find_labkit_runtime()
    out = [Runner(LABKIT_RUNTIME, path, note=why)]
    py = _interpreter(path) if floor else None
    if py is not None:
        out.append(Runner("python -c pass", py, baseline=(py, "-c", "pass"),
                          note="floor: labkit-runtime's interpreter, doing nothing"))
    hybrid = _is_hybrid()
    for name in peers:
        binary = shutil.which(name)
        wrapped = hybrid and name == "crun" and binary is not None
        note = "in unshare -m wrapper" if wrapped else ""
        out.append(Runner(name, binary, wrapped=wrapped, note=note))
        if wrapped:
            out.append(Runner("unshare -m true", "unshare",
                              baseline=("unshare", "-m", "true"), note="wrapper overhead"))
            out.append(Runner("crun wrapper alone", "unshare",
                              baseline=("unshare", "-m", "sh", "-c",
                                        f"umount {UNIFIED} 2>/dev/null; exec true"),
                              note="wrapper overhead"))
    return out


def make_bundle(dest: Path, flavour: str = "labkit") -> Path:
    """An OCI bundle at ``dest``: busybox rootfs + config.json running /bin/true, no terminal.

    ``flavour`` "labkit": the config of ``labkit-runtime spec`` (``runc spec``'s if that
    fails); "runc": the config of ``runc spec`` only (UnsupportedError without runc)."""
    from labkit.engine.images.busybox import build_rootfs

    if flavour not in BUNDLES:
        raise errors.InvalidArgumentError("bundle", f"{flavour!r}: one of {', '.join(BUNDLES)}")
    if flavour == "runc" and not shutil.which("runc"):
        raise errors.UnsupportedError("the runc bundle", "runc is not installed",
                                      hint="apt-get install runc")
    build_rootfs(dest / "rootfs")
    lk = _labkit_runtime() if flavour == "labkit" else None
    for spec_cmd in ([lk, "spec", "--bundle", str(dest)] if lk else None,
                     ["runc", "spec", "--bundle", str(dest)]):
        if spec_cmd is None or (spec_cmd[0] == "runc" and not shutil.which("runc")):
            continue
        if subprocess.run(spec_cmd, capture_output=True, check=False).returncode == 0:
            break
    else:
        raise errors.UnsupportedError(
            "bench runtime", "neither labkit-runtime spec nor runc spec could write config.json",
            hint="apt-get install runc, or finish labkit-runtime")
    conf_path = dest / "config.json"
    conf = json.loads(conf_path.read_text())
    conf["process"]["args"] = ["/bin/true"]
    conf["process"]["terminal"] = False
    conf["root"] = {"path": "rootfs", "readonly": True}
    conf_path.write_text(json.dumps(conf, indent=2))
    return dest


def summarize(name: str, samples_ms: list[float], runc_median: float | None,
              note: str = "", *, cpu_ms: list[float] | None = None, bundle: str = "labkit",
              host: str = "cold") -> BenchRow:
    """Median, p10, p90 of the samples (statistics.quantiles, exclusive method)."""
    med = statistics.median(samples_ms)
    if len(samples_ms) >= 2:
        q = statistics.quantiles(samples_ms, n=10)
        p10, p90 = q[0], q[-1]
    else:
        p10 = p90 = med
    ratio = med / runc_median if runc_median else None
    cpu = statistics.median(cpu_ms) if cpu_ms else None
    return BenchRow(name, "ok", len(samples_ms), med, p10, p90, ratio, note, tuple(samples_ms),
                    bundle, host, cpu)


def _time_one(r: Runner, bundle: Path, cid: str) -> tuple[float, float, str | None]:
    """(wall ms, CPU ms of the runtime and what it waited for, error or None)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen(r.argv(bundle, cid), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        # wait4 rather than Popen.wait: the rusage of the child and of every descendant it
        # reaped (the container's process, the runtime's own forks), see getrusage(2).
        _, status, ru = os.wait4(proc.pid, 0)
        ms = (time.perf_counter_ns() - t0) / 1e6
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu = (ru.ru_utime + ru.ru_stime) * 1e3
        if proc.returncode != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines() or ["?"]
            return ms, cpu, f"exit {proc.returncode}: {lines[-1][:120]}"
    return ms, cpu, None


class _Warmer:
    """The "warm" host: a child moving itself between two cgroups (lk-bench-warm-PID-a/b)
    every 2 ms, so cgroup attach is never idle; SIGSTOPped while cold rounds run."""

    def __init__(self) -> None:
        self.names = [f"lk-bench-warm-{os.getpid()}-{x}" for x in "ab"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from labkit.cgroups import open_cgroup

        for n in self.names:
            open_cgroup(n).create()
        # cgroup.procs with its own pid (Cgroup.add), not add_self's "0" to ``tasks``: only a
        # threadgroup move takes cgroup_threadgroup_rwsem, whose rcu_sync this keeps busy
        # (kernel/cgroup/cgroup.c, cgroup_procs_write_start).  One move every 2 ms is enough
        # (shorter than a grace period; measured: first attach 0.1 ms) at ~5 % of a CPU,
        # where a tight loop took a whole core from what is being measured.
        code = ("import os, sys, time\nfrom labkit.cgroups import open_cgroup\n"
                "cgs = [open_cgroup(n) for n in sys.argv[1:]]\n"
                "while True:\n    for c in cgs:\n        c.add(os.getpid())\n"
                "        time.sleep(0.002)\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code, *self.names])
        self.pause()

    def pause(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        from labkit.cgroups import open_cgroup

        if self.proc is not None:
            self.proc.kill()  # our own child, by pid
            self.proc.wait()
            self.proc = None
        for n in self.names:
            try:
                open_cgroup(n).remove()
            except errors.LabkitError:
                pass


def run(runs: int = 30, warmup: int = 3, peers: list[str] | None = None, *,
        progress: bool = True, console: Console | None = None,
        bundles: tuple[str, ...] = ("labkit",), hosts: tuple[str, ...] = ("cold",),
        floor: bool = False) -> list[BenchRow]:
    """Build the bundles, time every runtime round-robin in every (bundle, host) condition,
    clean up, return one row per runtime and condition.

    Raises:
        InvalidArgumentError: runs < 1, warmup < 0, an unknown bundle or host.
        UnsupportedError: no runtime could write a config.json (no labkit-runtime, no runc).
    """
    ensure_compiled()
    if runs < 1 or warmup < 0:
        raise errors.InvalidArgumentError("runs/warmup", f"{runs}/{warmup}: need runs >= 1, "
                                          "warmup >= 0")
    for what, got, known in (("bundle", bundles, BUNDLES), ("host", hosts, HOSTS)):
        bad = [x for x in got if x not in known] or ([] if got else ["(none)"])
        if bad:
            raise errors.InvalidArgumentError(what, f"{bad[0]!r}: one of {', '.join(known)}")
    all_runners = runners(["runc", "crun"] if peers is None else peers, floor=floor)
    active = [r for r in all_runners if r.binary is not None]
    groups = [(b, h) for b in bundles for h in hosts]
    samples: dict[tuple[str, str, str], list[float]] = {}
    cpu: dict[tuple[str, str, str], list[float]] = {}
    failed: dict[tuple[str, str, str], str] = {}
    leftovers: list[tuple[Runner, str]] = []
    current: tuple[Runner, str] | None = None  # the run in flight, if we are interrupted
    tmp = Path(tempfile.mkdtemp(prefix="lk-bench-"))
    warmer = _Warmer() if "warm" in hosts and active else None
    made_parent = parentcg.missing()  # the bundles name no cgroupsPath: lk/<id>
    try:
        paths = {b: make_bundle(tmp / f"bundle-{b}", b) if active else tmp for b in bundles}
        if warmer is not None:
            warmer.start()
        rounds = warmup + runs
        bar = _progress(progress, console, rounds * len(active) * len(groups))
        for i in range(rounds):
            # Rotate the starting condition and runtime each round, so none always runs first.
            for bundle, host in groups[i % len(groups):] + groups[:i % len(groups)]:
                if warmer is not None:
                    (warmer.resume if host == "warm" else warmer.pause)()
                order = active[i % len(active):] + active[:i % len(active)] if active else []
                for r in order:
                    key = (r.name, bundle, host)
                    if key in failed:
                        bar.advance()
                        continue
                    cid = f"lk-bench-{os.getpid()}-{r.name.replace(' ', '_')}-{i}"
                    current = (r, cid)
                    ms, cpu_ms, err = _time_one(r, paths[bundle], cid)
                    current = None
                    if err is not None:
                        failed[key] = err
                        leftovers.append((r, cid))
                    elif i >= warmup:
                        samples.setdefault(key, []).append(ms)
                        cpu.setdefault(key, []).append(cpu_ms)
                    bar.advance(f"{r.name}, {bundle} bundle, {host}")
        bar.close()
    finally:
        if warmer is not None:
            warmer.stop()
        if current is not None:
            leftovers.append(current)
        for r, cid in leftovers:
            if (argv := r.delete_argv(cid)) is not None:
                subprocess.run(argv, capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        if made_parent:
            parentcg.remove()
    rows = []
    for bundle, host in groups:
        runc = samples.get(("runc", bundle, host))
        runc_med = statistics.median(runc) if runc else None
        for r in all_runners:
            key = (r.name, bundle, host)
            if r.binary is None:
                rows.append(BenchRow(r.name, "not installed", 0, None, None, None, None, r.note,
                                     (), bundle, host))
            elif key in failed:
                rows.append(BenchRow(r.name, f"failed: {failed[key]}", 0, None, None, None,
                                     None, r.note, (), bundle, host))
            else:
                rows.append(summarize(r.name, samples[key], runc_med, r.note, cpu_ms=cpu[key],
                                      bundle=bundle, host=host))
    return rows


class _Bar:
    """A rich progress bar, or nothing (for --json and tests)."""

    def __init__(self, total: int, console: Console | None, enabled: bool) -> None:
        self._p = None
        if enabled:
            from rich.progress import Progress

            self._p = Progress(console=console, transient=True)
            self._p.start()
            self._task = self._p.add_task("runs", total=total)

    def advance(self, name: str = "") -> None:
        if self._p is not None:
            self._p.update(self._task, advance=1, description=f"runs ({name})" if name else None)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


def _progress(enabled: bool, console: Console | None, total: int) -> _Bar:
    return _Bar(total, console, enabled)


def row_dict(row: BenchRow) -> dict[str, object]:
    """A row as plain JSON-able values."""
    d = asdict(row)
    d["samples_ms"] = list(row.samples_ms)
    return d


def print_table(rows: list[BenchRow], console: Console | None = None) -> None:
    """median / p10 / p90 in ms, CPU per start and the ratio to runc, one line per runtime
    and condition (bundle, host)."""
    from rich.console import Console
    from rich.table import Table

    def ms(v: float | None) -> str:
        return f"{v:.1f}" if v is not None else "-"

    console = console or Console()
    n = max((r.runs for r in rows), default=0)
    table = Table(title=f"runtime start-to-exit, /bin/true in busybox (n={n})")
    for col in ("runtime", "bundle", "host", "status", "median ms", "p10 ms", "p90 ms",
                "cpu ms", "x runc", "note"):
        table.add_column(col, justify="right" if "ms" in col or col == "x runc" else "left",
                         no_wrap=col == "runtime")
    for r in rows:
        colour = "green" if r.status == "ok" else ("yellow" if r.status == "not installed"
                                                   else "red")
        ratio = f"{r.ratio_to_runc:.2f}" if r.ratio_to_runc is not None else "-"
        table.add_row(r.runtime, r.bundle, r.host, f"[{colour}]{r.status}[/{colour}]",
                      ms(r.median_ms), ms(r.p10_ms), ms(r.p90_ms), ms(r.cpu_ms), ratio, r.note)
    console.print(table)
