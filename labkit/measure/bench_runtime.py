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

Overhead of the tool: one fork+exec of the runtime per run; nothing else runs meanwhile.
The target "labkit-runtime no slower than runc" is reported as a ratio, never asserted.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labkit import errors
from labkit.measure._bytecode import ensure_compiled

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["BenchRow", "Runner", "make_bundle", "print_table", "row_dict", "run", "runners",
           "summarize"]

LABKIT_RUNTIME = "labkit-runtime"
UNIFIED = "/sys/fs/cgroup/unified"


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


def runners(peers: list[str]) -> list[Runner]:
    """labkit-runtime first, then each peer; crun wrapped (plus overhead rows) on hybrid hosts."""
    path, why = _find_labkit_runtime()
    out = [Runner(LABKIT_RUNTIME, path, note=why)]
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


def make_bundle(dest: Path) -> Path:
    """An OCI bundle at ``dest``: busybox rootfs + config.json running /bin/true, no terminal."""
    from labkit.engine.images.busybox import build_rootfs

    build_rootfs(dest / "rootfs")
    lk = _labkit_runtime()
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
              note: str = "") -> BenchRow:
    """Median, p10, p90 of the samples (statistics.quantiles, exclusive method)."""
    med = statistics.median(samples_ms)
    if len(samples_ms) >= 2:
        q = statistics.quantiles(samples_ms, n=10)
        p10, p90 = q[0], q[-1]
    else:
        p10 = p90 = med
    ratio = med / runc_median if runc_median else None
    return BenchRow(name, "ok", len(samples_ms), med, p10, p90, ratio, note, tuple(samples_ms))


def _time_one(r: Runner, bundle: Path, cid: str) -> tuple[float, str | None]:
    t0 = time.perf_counter_ns()
    proc = subprocess.run(r.argv(bundle, cid), stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    ms = (time.perf_counter_ns() - t0) / 1e6
    if proc.returncode != 0:
        first = (proc.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        return ms, f"exit {proc.returncode}: {first[:120]}"
    return ms, None


def run(runs: int = 30, warmup: int = 3, peers: list[str] | None = None, *,
        progress: bool = True, console: Console | None = None) -> list[BenchRow]:
    """Build the bundle, time every runtime round-robin, clean up, return one row each.

    Raises:
        InvalidArgumentError: runs < 1 or warmup < 0.
        UnsupportedError: no runtime could write a config.json (no labkit-runtime, no runc).
    """
    ensure_compiled()
    if runs < 1 or warmup < 0:
        raise errors.InvalidArgumentError("runs/warmup", f"{runs}/{warmup}: need runs >= 1, "
                                          "warmup >= 0")
    all_runners = runners(["runc", "crun"] if peers is None else peers)
    active = [r for r in all_runners if r.binary is not None]
    samples: dict[str, list[float]] = {r.name: [] for r in active}
    failed: dict[str, str] = {}
    leftovers: list[tuple[Runner, str]] = []
    current: tuple[Runner, str] | None = None  # the run in flight, if we are interrupted
    tmp = Path(tempfile.mkdtemp(prefix="lk-bench-"))
    try:
        bundle = make_bundle(tmp / "bundle") if active else tmp
        rounds = warmup + runs
        bar = _progress(progress, console, rounds * len(active))
        for i in range(rounds):
            # Rotate the starting runtime each round, so none always runs first.
            order = active[i % len(active):] + active[:i % len(active)] if active else []
            for r in order:
                if r.name in failed:
                    bar.advance()
                    continue
                cid = f"lk-bench-{os.getpid()}-{r.name.replace(' ', '_')}-{i}"
                current = (r, cid)
                ms, err = _time_one(r, bundle, cid)
                current = None
                if err is not None:
                    failed[r.name] = err
                    leftovers.append((r, cid))
                elif i >= warmup:
                    samples[r.name].append(ms)
                bar.advance(r.name)
        bar.close()
    finally:
        if current is not None:
            leftovers.append(current)
        for r, cid in leftovers:
            if (argv := r.delete_argv(cid)) is not None:
                subprocess.run(argv, capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    runc_med = statistics.median(samples["runc"]) if samples.get("runc") else None
    rows = []
    for r in all_runners:
        if r.binary is None:
            rows.append(BenchRow(r.name, "not installed", 0, None, None, None, None, r.note))
        elif r.name in failed:
            rows.append(BenchRow(r.name, f"failed: {failed[r.name]}", 0, None, None, None, None,
                                 r.note))
        else:
            rows.append(summarize(r.name, samples[r.name], runc_med, r.note))
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
    """median / p10 / p90 in ms and the ratio to runc, one line per runtime."""
    from rich.console import Console
    from rich.table import Table

    def ms(v: float | None) -> str:
        return f"{v:.1f}" if v is not None else "-"

    console = console or Console()
    n = max((r.runs for r in rows), default=0)
    table = Table(title=f"runtime start-to-exit, /bin/true in busybox (n={n})")
    for col in ("runtime", "status", "median ms", "p10 ms", "p90 ms", "x runc", "note"):
        table.add_column(col, justify="right" if "ms" in col or col == "x runc" else "left",
                         no_wrap=col == "runtime")
    for r in rows:
        colour = "green" if r.status == "ok" else ("yellow" if r.status == "not installed"
                                                   else "red")
        ratio = f"{r.ratio_to_runc:.2f}" if r.ratio_to_runc is not None else "-"
        table.add_row(r.runtime, f"[{colour}]{r.status}[/{colour}]", ms(r.median_ms),
                      ms(r.p10_ms), ms(r.p90_ms), ratio, r.note)
    console.print(table)
