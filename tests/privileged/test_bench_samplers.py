"""Samplers on the real kernel: a cgroup's memory climbs to its limit (notebook 02's plot)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from labkit.cgroups import Resources, open_cgroup
from labkit.measure import sampler

pytestmark = pytest.mark.privileged

LIMIT = 32 << 20


def test_cgroup_sampler_sees_memory_reach_the_limit() -> None:
    cg = open_cgroup(f"lk-test-{os.getpid()}-sampler")
    cg.create()
    hog = None
    try:
        cg.set(Resources(memory_max=LIMIT, memory_swap_max=LIMIT))
        # Grows by 1 MiB steps to 96 MiB, so the OOM killer ends it at the limit.
        hog = subprocess.Popen([sys.executable, "-c",
                                ("import time\nx = []\nfor _ in range(96):\n"
                                "    x.append(b'x' * (1 << 20)); time.sleep(0.005)\n"
                                "time.sleep(0.2)")],
                               preexec_fn=lambda: cg.add(os.getpid()))  # noqa: PLW1509
        with sampler.CgroupSampler(cg, interval=0.02) as s:
            rc = hog.wait(timeout=60)
        rows = s.rows
        assert rc == -9  # OOM-killed at the limit
        assert all(r.memory_max == LIMIT for r in rows)
        peak = max(r.memory_current or 0 for r in rows)
        assert LIMIT // 2 < peak <= LIMIT
        assert rows[-1].oom_kills == 1
        df = sampler.to_dataframe(rows)
        assert df["t"].is_monotonic_increasing
    finally:
        if hog is not None and hog.poll() is None:
            hog.kill()
            hog.wait()
        cg.remove()


def test_process_sampler_cpu_percent_of_a_busy_child() -> None:
    busy = subprocess.Popen([sys.executable, "-c",
                             ("import time\nt = time.process_time()\n"
                             "while time.process_time() - t < 0.5: pass")])
    with sampler.ProcessSampler(busy.pid, interval=0.05) as s:
        busy.wait()
    cpu = [r.cpu_percent for r in s.rows]
    # A spinning process uses most of a core in at least one interval.
    assert max(cpu) > 25  # loose: the 2 cores are shared with other jobs
    assert s.rows[-1].cpu_user + s.rows[-1].cpu_system >= 0.25
