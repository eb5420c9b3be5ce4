"""Engine-side benchmark: start of /bin/true through the supervisor, against `crun run`.

    python -m labkit.measure.bench_supervisor [--runs 20] [--containers 0,10,100]

Workload: labkit.measure.bench_runtime.make_bundle (busybox rootfs, /bin/true, no tty).
"engine" is Create + Start + Wait from the gRPC client (client -> supervisor -> template
fork -> shim -> runtime create in a fork of the shim -> exec fifo -> exit -> exit.json ->
Wait reply), timed with perf_counter; the Delete after it is not timed.  "crun run" is the
same bundle run by crun, in its unshare -m wrapper on a hybrid cgroup host (see
bench_runtime), timed from fork to exit.  Rounds alternate between the two.  Overhead of the
tool: one gRPC client in this process; the supervisor runs as in production, in a sandbox
(temp LABKIT_RUN/LABKIT_ROOT).

Memory: PSS (psutil memory_full_info, /proc/PID/smaps_rollup) of the supervisor, its
template and the shims with 0, 10 and 100 running busybox `sleep 1000` containers.  PSS
charges each shared page to its sharers in equal parts, so the per-shim figure falls as
shims are added; the one-shim figure (one container) is the honest worst case.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from labkit.engine.supervisor.harness import Harness
from labkit.measure import parentcg


@dataclass(frozen=True, slots=True)
class StartRow:
    what: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int


@dataclass(frozen=True, slots=True)
class MemRow:
    containers: int
    supervisor_pss_kb: int
    template_pss_kb: int
    shim_pss_kb_median: int | None
    shims_pss_kb_total: int


def _row(what: str, ms: list[float]) -> StartRow:
    q = statistics.quantiles(ms, n=10) if len(ms) >= 2 else [ms[0]] * 9
    return StartRow(what, statistics.median(ms), q[0], q[-1], len(ms))


def _pss(pid: int) -> int:
    return int(psutil.Process(pid).memory_full_info().pss) // 1024


def start_latency(h: Harness, runs: int = 20, warmup: int = 3) -> list[StartRow]:
    """Median Create+Start+Wait of /bin/true through the supervisor, and crun run."""
    from labkit.measure.bench_runtime import make_bundle, runners

    bundle = make_bundle(h.base / "bench-bundle")
    crun = next((r for r in runners(["crun"]) if r.name == "crun" and r.binary), None)
    engine: list[float] = []
    peer: list[float] = []
    for i in range(warmup + runs):
        order = ("engine", "crun") if i % 2 == 0 else ("crun", "engine")
        for which in order:
            cid = h.new_id("bench")
            if which == "engine":
                t0 = time.perf_counter()
                h.client.create(cid, str(bundle))
                h.client.start(cid)
                ex = h.client.wait(cid)
                dt = time.perf_counter() - t0
                h.client.delete(cid)
                if ex.exit_status != 0:
                    raise RuntimeError(f"engine run of /bin/true exited {ex.exit_status}")
                if i >= warmup:
                    engine.append(dt * 1000)
            elif crun is not None:
                t0 = time.perf_counter()
                p = subprocess.run(crun.argv(bundle, cid), capture_output=True, check=False)
                dt = time.perf_counter() - t0
                if p.returncode != 0:
                    raise RuntimeError(f"crun run failed: {p.stderr.decode()[-300:]}")
                if i >= warmup:
                    peer.append(dt * 1000)
    rows = [_row("engine Create+Start+Wait", engine)]
    if peer:
        rows.append(_row("crun run (unshare -m wrapper)" if crun and crun.wrapped else "crun run", peer))
    return rows


def memory(h: Harness, counts: tuple[int, ...] = (0, 1, 10, 100)) -> list[MemRow]:
    """PSS of supervisor, template and shims with ``counts`` running sleep containers."""
    bundle = h.bundle("sleep", ["sleep", "1000"])
    assert h.proc is not None
    sup = psutil.Process(h.proc.pid)
    template = next((c for c in sup.children() if c.status() != "zombie"), None)
    running: list[int] = []
    rows = []
    for n in sorted(counts):
        while len(running) < n:
            cid = h.new_id("mem")
            t = h.client.create(cid, str(bundle))
            h.client.start(cid)
            running.append(t.shim_pid)
        time.sleep(1.0)  # let every shim go idle (no allocation in flight)
        shims = [_pss(p) for p in running]
        rows.append(MemRow(n, _pss(sup.pid), _pss(template.pid) if template else 0,
                           int(statistics.median(shims)) if shims else None, sum(shims)))
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else 20
    counts = tuple(int(x) for x in (argv[argv.index("--containers") + 1].split(",")
                                    if "--containers" in argv else ["0", "1", "10", "100"]))
    h = Harness(Path(tempfile.mkdtemp(prefix="lk-bench-")))
    made_parent = parentcg.missing()  # its bundles name no cgroupsPath: lk/<id>
    try:
        h.start()
        rows = start_latency(h, runs)
        print(f"{'start of /bin/true':<34}{'median':>9}{'p10':>9}{'p90':>9}{'runs':>6}")
        for r in rows:
            print(f"{r.what:<34}{r.median_ms:>7.1f}ms{r.p10_ms:>7.1f}ms{r.p90_ms:>7.1f}ms{r.runs:>6}")
        if len(rows) == 2:
            print(f"ratio engine / crun: {rows[0].median_ms / rows[1].median_ms:.2f}")
        mem = memory(h, counts)
        print(f"\n{'containers':>10}{'supervisor':>12}{'template':>10}{'shim (median)':>15}{'all shims':>11}   (PSS, KiB)")
        for m in mem:
            print(f"{m.containers:>10}{m.supervisor_pss_kb:>12}{m.template_pss_kb:>10}"
                  f"{m.shim_pss_kb_median if m.shim_pss_kb_median is not None else '-':>15}"
                  f"{m.shims_pss_kb_total:>11}")
    finally:
        h.cleanup()
        if made_parent:
            parentcg.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
