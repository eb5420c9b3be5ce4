"""labkit.measure: samplers (on this test's own process, or a fake cgroup) and bench helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from labkit import errors
from labkit.measure import bench_runtime, sampler


def test_process_sampler_sees_a_child_and_its_memory() -> None:
    # A child that touches 64 MiB and then sleeps: the tree's rss must pass 64 MiB.
    child = subprocess.Popen([sys.executable, "-c",
                              "import time; a = b'x' * (64 << 20); time.sleep(0.6)"])
    try:
        with sampler.ProcessSampler(os.getpid(), interval=0.05) as s:
            child.wait()
    finally:
        child.kill()
        child.wait()
    rows = s.rows
    assert len(rows) >= 2
    assert all(r.pid == os.getpid() for r in rows)
    assert max(r.num_procs for r in rows) >= 2
    assert max(r.rss for r in rows) > 64 << 20
    assert rows[-1].cpu_user + rows[-1].cpu_system > 0  # the reaped child's time counts
    assert [r.t for r in rows] == sorted(r.t for r in rows)


def test_process_sampler_missing_pid() -> None:
    with pytest.raises(errors.NotFoundError):
        sampler.ProcessSampler(2**22 + 1)


def test_sampler_rejects_bad_interval() -> None:
    with pytest.raises(errors.InvalidArgumentError):
        sampler.ProcessSampler(os.getpid(), interval=0)


@dataclass
class FakeStats:
    memory_current: int
    memory_max: int = 16 << 20
    memory_limit_hits: int = 0
    cpu_usage_usec: int = 0
    nr_periods: int = 0
    nr_throttled: int = 0
    throttled_usec: int = 0
    pids_current: int = 1
    oom_kills: int = 0


class FakeCgroup:
    def __init__(self) -> None:
        self.n = 0

    def stats(self) -> FakeStats:
        self.n += 1
        if self.n > 4:
            raise errors.NotFoundError("cgroup", "lk-fake")  # removed: sampling ends
        return FakeStats(memory_current=self.n << 20)


def test_cgroup_sampler_stops_when_the_cgroup_goes() -> None:
    s = sampler.CgroupSampler(FakeCgroup(), interval=0.01).start()
    s._thread.join(timeout=5)  # type: ignore[union-attr]
    rows = s.stop()
    assert [r.memory_current for r in rows] == [1 << 20, 2 << 20, 3 << 20, 4 << 20]
    df = sampler.to_dataframe(rows)
    assert list(df["memory_max"]) == [16 << 20] * 4


def test_summarize_percentiles_and_ratio() -> None:
    row = bench_runtime.summarize("x", [float(v) for v in range(1, 12)], runc_median=3.0)
    assert row.median_ms == 6.0
    assert row.p10_ms is not None and row.p90_ms is not None
    assert row.p10_ms < row.median_ms < row.p90_ms
    assert row.ratio_to_runc == 2.0
    single = bench_runtime.summarize("y", [5.0], runc_median=None)
    assert (single.p10_ms, single.p90_ms, single.ratio_to_runc) == (5.0, 5.0, None)


def test_runner_argv_plain_and_wrapped() -> None:
    b = Path("/tmp/b")
    plain = bench_runtime.Runner("runc", "/usr/sbin/runc")
    assert plain.argv(b, "lk-1") == ["/usr/sbin/runc", "run", "--bundle", "/tmp/b", "lk-1"]
    assert plain.delete_argv("lk-1") == ["/usr/sbin/runc", "delete", "--force", "lk-1"]
    wrapped = bench_runtime.Runner("crun", "/usr/bin/crun", wrapped=True)
    argv = wrapped.argv(b, "lk-2")
    assert argv[:4] == ["unshare", "-m", "sh", "-c"]
    assert argv[4] == ("umount /sys/fs/cgroup/unified 2>/dev/null; "
                       "exec /usr/bin/crun run --bundle /tmp/b lk-2")
    base = bench_runtime.Runner("unshare -m true", "unshare", baseline=("unshare", "-m", "true"))
    assert base.argv(b, "x") == ["unshare", "-m", "true"]
    assert base.delete_argv("x") is None


def test_missing_peer_is_listed_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_runtime, "_is_hybrid", lambda: False)
    rs = bench_runtime.runners(["lk-no-such-runtime"])
    assert [r.name for r in rs] == ["labkit-runtime", "lk-no-such-runtime"]
    assert rs[1].binary is None


def test_bench_rejects_zero_runs() -> None:
    with pytest.raises(errors.InvalidArgumentError):
        bench_runtime.run(runs=0)
