"""Traced container starts (labkit.measure.timeline) on the real runtime and engine, and the
trace file's safety: 0600, never inherited by the container, nothing written when unset."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from labkit._sys import trace
from labkit.measure import timeline
from labkit.measure.bench_runtime import _find_labkit_runtime, make_bundle

pytestmark = pytest.mark.privileged


def _check(tls: list[timeline.StartTimeline], via: str, n: int) -> None:
    chain = [name for _, name in timeline.CHAINS[via][1:]]
    assert len(tls) == n
    for tl in tls:
        assert tl.missing == [], tl.missing
        assert [p.name for p in tl.phases] == chain
        assert all(a.end_ns == b.start_ns for a, b in zip(tl.phases, tl.phases[1:], strict=False))
        assert all(p.end_ns >= p.start_ns for p in tl.phases)
        assert sum(p.end_ns - p.start_ns for p in tl.phases) == tl.end_ns - tl.start_ns
        assert {p.source for p in tl.phases} == {"mark", "ebpf"}
    keys = {tl.key for tl in tls}
    assert len(keys) == n  # one container per start


def _leftovers() -> tuple[set[str], set[str]]:
    netns = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               check=False).stdout.split())
    cgroups = {str(p) for p in Path("/sys/fs/cgroup").glob("*/lk/lktl*")}
    return {n for n in netns if n.startswith("lk-tl-")}, cgroups


def test_three_runtime_starts_give_whole_ordered_timelines() -> None:
    tls = timeline.trace_starts(3, via="runtime")
    _check(tls, "runtime", 3)
    for tl in tls:
        print(tl.key, f"{tl.total_ms:.1f} ms",
              {p.name: round(p.ms, 2) for p in tl.phases})
    assert _leftovers() == (set(), set())


def test_two_engine_starts_give_whole_ordered_timelines() -> None:
    tls = timeline.trace_starts(2, via="engine")
    _check(tls, "engine", 2)
    assert all(len(tl.key) == 64 for tl in tls)  # the daemon's full container ids
    assert _leftovers() == (set(), set())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if _find_labkit_runtime()[0] is None:
        pytest.skip("labkit-runtime is not installed (make setup)")
    return make_bundle(tmp_path_factory.mktemp("lk-tlb") / "bundle")


def _run(bundle: Path, cid: str, env: dict[str, str], script: str) -> str:
    conf = json.loads((bundle / "config.json").read_text())
    conf["process"]["args"] = ["/bin/sh", "-c", script]
    (bundle / "config.json").write_text(json.dumps(conf))
    exe = _find_labkit_runtime()[0]
    assert exe is not None
    p = subprocess.run([exe, "run", "--bundle", str(bundle), cid], env=env, capture_output=True,
                       text=True, check=False, timeout=60, cwd=bundle)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_trace_file_is_0600_and_out_of_the_containers_reach(bundle: Path, tmp_path: Path) -> None:
    tfile = tmp_path / "trace"
    env = dict(os.environ, **{trace.ENV: str(tfile)})
    out = _run(bundle, f"lktlf{os.getpid()}", env,
               f"ls -l /proc/self/fd/; test -e {tfile} && echo VISIBLE; "
               f"env | grep -c {trace.ENV}; echo done")
    assert out.strip().endswith("done"), out
    assert "VISIBLE" not in out and str(tfile) not in out and "trace" not in out.split("done")[0]
    assert out.split()[-2] == "0"  # the variable is not in the container's environment
    assert stat.S_IMODE(tfile.stat().st_mode) == 0o600
    phases = [m.phase for m in timeline.read_marks(tfile)]
    assert phases[-1] == "runtime.exec" and "runtime.pivot_root" in phases
    rootfs = bundle / "rootfs"
    assert not any(p.name == "trace" for p in rootfs.rglob("trace"))


def test_unset_writes_nothing(bundle: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != trace.ENV}
    before = {str(p) for p in bundle.rglob("*")}
    out = _run(bundle, f"lktlu{os.getpid()}", env, "echo done")
    assert out.strip() == "done"
    after = {str(p) for p in bundle.rglob("*")}
    assert after - before == set()


def test_startup_probe_counts_23_execs_and_unshares_of_its_tree_exactly() -> None:
    from labkit.probes import startup

    n = 23  # prime: a doubled or dropped event cannot hide
    with startup.attach([os.getpid()]) as probe:
        probe.read()
        kids = [subprocess.Popen(["unshare", "--uts", "/bin/true"]) for _ in range(n)]
        for k in kids:
            assert k.wait() == 0
        subprocess.run(["/bin/true"], check=True)  # the last exits reach the buffer first
        evs = probe.read()
        lost = probe.lost
    assert lost == 0
    pids = {k.pid for k in kids}
    assert len([e for e in evs if e.kind == "unshare" and e.pid in pids and e.ret == 0]) == n
    true_execs = [e for e in evs if e.kind == "exec" and e.pid in pids and e.text == "/bin/true"]
    assert len(true_execs) == n
    assert all(e.enter_ns <= e.ts_ns for e in evs if e.kind == "unshare")
