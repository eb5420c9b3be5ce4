"""labkit bench runtime smoke test: -n 3, every installed runtime gets a median > 0."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

import pytest

from labkit.measure import bench_runtime

pytestmark = pytest.mark.privileged


def _containers(binary: str) -> list[str]:
    out = subprocess.run([binary, "list", "-q"], capture_output=True, text=True, check=False)
    return [c for c in out.stdout.split() if c.startswith(f"lk-bench-{os.getpid()}-")]


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_bench_runtime_smoke() -> None:
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "lk-bench-*")))
    rows = bench_runtime.run(runs=3, warmup=1, peers=["runc", "crun", "lk-no-such-runtime"],
                             progress=False)
    by_name = {r.runtime: r for r in rows}
    assert by_name["lk-no-such-runtime"].status == "not installed"
    assert by_name["runc"].status == "ok"
    assert by_name["runc"].ratio_to_runc == 1.0
    for r in rows:
        if r.status == "ok":
            assert r.runs == 3 and len(r.samples_ms) == 3
            assert r.median_ms is not None and r.median_ms > 0
            assert r.p10_ms is not None and r.p90_ms is not None
            assert r.p10_ms <= r.median_ms <= r.p90_ms
    # Clean-up: no bundle directory and no container of ours left behind.
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "lk-bench-*"))) <= before
    assert _containers("runc") == []
    if shutil.which("crun"):
        assert _containers("crun") == []


def test_cli_bench_json() -> None:
    import json
    import sys

    out = subprocess.run([sys.executable, "-m", "labkit.cli.main", "bench", "runtime", "-n", "2",
                          "--warmup", "0", "--peers", "", "--bundles", "labkit", "--hosts", "cold",
                          "--no-floor", "--json"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["runtime"] for r in rows] == ["labkit-runtime"]


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_bench_runtime_both_bundles_both_hosts_with_cpu() -> None:
    from labkit.cgroups import open_cgroup

    rows = bench_runtime.run(runs=2, warmup=0, peers=["runc"], progress=False,
                             bundles=("labkit", "runc"), hosts=("cold", "warm"), floor=True)
    got = {(r.runtime, r.bundle, r.host): r for r in rows}
    for bundle in ("labkit", "runc"):
        for host in ("cold", "warm"):
            for name in ("labkit-runtime", "runc", "python -c pass"):
                r = got[(name, bundle, host)]
                assert r.status == "ok", r
                assert r.runs == 2 and r.cpu_ms is not None and r.cpu_ms > 0
            assert got[("runc", bundle, host)].ratio_to_runc == 1.0
    # the warm helper's cgroups are gone
    for x in "ab":
        assert not open_cgroup(f"lk-bench-warm-{os.getpid()}-{x}").exists()
    assert _containers("runc") == []


def test_bench_runtime_refuses_an_unknown_condition() -> None:
    from labkit.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="host"):
        bench_runtime.run(runs=1, hosts=("tepid",), progress=False)
    with pytest.raises(InvalidArgumentError, match="bundle"):
        bench_runtime.run(runs=1, bundles=("podman",), progress=False)
