"""labkit bench images with --runs 1 against dockerd and labkit's daemon (one dockerd start):
every row is there, dockerd's rows have figures, labkit's have figures or the daemon's reason,
and every netns, process, mount and temp dir the run made is gone afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

import psutil
import pytest

from labkit.measure import bench_images as bi

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(shutil.which("dockerd") is None or shutil.which("docker") is None
                       or shutil.which("docker-registry") is None,
                       reason="needs Debian's docker.io and docker-registry"),
]

PREFIXES = ("lk-bimg-", "lk-bi-", "lk-reg-")


def _dirs() -> set[str]:
    tmp = tempfile.gettempdir()
    return {p for pre in PREFIXES for p in glob.glob(os.path.join(tmp, pre + "*"))}


def _ours(made: set[str]) -> list[str]:
    """Processes whose command line names one of the run's temp dirs (dockerd, containerd,
    docker-registry, labkit's daemon and supervisor all carry theirs)."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            text = " ".join(p.info["cmdline"] or []) + " ".join(
                f"{k}={v}" for k, v in (p.info["environ"] or {}).items())
        except psutil.Error:
            continue
        if p.pid != os.getpid() and any(d in text for d in made):
            out.append(f"{p.pid}: {text[:120]}")
    return out


def test_bench_images_one_round_structure_and_cleanup(
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = _dirs()
    made: set[str] = set()
    real_mkdtemp = tempfile.mkdtemp

    def spy(*a: object, **kw: object) -> str:
        path = real_mkdtemp(*a, **kw)  # type: ignore[call-overload]
        made.add(str(path))
        return str(path)

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    rows = bi.run(runs=1, warmup=0)
    monkeypatch.undo()

    assert [(r.op, r.daemon) for r in rows] == [(op, d) for op in bi.OPS for d in bi.DAEMONS]
    for r in rows:
        if r.daemon == "dockerd":
            assert r.status == "ok" and r.error is None, r
            assert r.n == 1 and r.median_ms is not None and r.median_ms > 0
            assert r.p95_ms == r.median_ms
        else:  # labkit: a figure, or the daemon's own words for why not
            assert (r.n == 1 and r.median_ms is not None) or (
                r.error and r.status.startswith("cannot run: ") and r.median_ms is None), r
    dk = {r.op: r for r in rows if r.daemon == "dockerd"}
    assert dk["build cached"].note == "cache hits 2/2"  # the cached build really was cached
    assert dk["push"].note == "layers pushed 2/2"  # nothing was in the registry before
    assert "layers fetched 2/2" in dk["pull"].note  # no layer was present before the pull
    goals = {g.op: g for g in bi.targets(rows)}
    assert set(goals) == set(bi.OPS)
    for op, g in goals.items():
        lab = next(r for r in rows if r.op == op and r.daemon == "labkit")
        assert (g.ratio is None) == (lab.median_ms is None)

    # everything the run made is gone: netns, processes, mounts, temp dirs
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=True).stdout
    assert f"lk-bench-{os.getpid()}" not in netns
    assert made, "the run made no temp dir?"
    assert not _ours(made)
    with open("/proc/self/mounts") as f:
        mounts = [ln.split()[1] for ln in f]
    assert not [m for m in mounts if any(m.startswith(d) for d in made)]
    assert _dirs() <= before
    assert not [d for d in made if os.path.exists(d)]
