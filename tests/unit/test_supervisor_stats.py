"""Stats: cgroup reading + /proc/stat host cpu -> the proto's Stats, on a fake procfs."""

from __future__ import annotations

import os
from pathlib import Path

from labkit.engine.supervisor.hoststats import host_memory, system_cpu_ns, to_stats


def fake_proc(tmp: Path) -> str:
    (tmp / "stat").write_text("cpu  100 0 50 1000 10 0 0 0 0 0\ncpu0 1 2 3\n")
    (tmp / "meminfo").write_text("MemTotal:       2048 kB\nMemFree: 1 kB\n")
    return str(tmp)


def test_system_cpu_and_memory(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path)
    assert system_cpu_ns(proc) == 1160 * 10**9 // os.sysconf("SC_CLK_TCK")
    assert host_memory(proc) == 2048 * 1024


def test_to_stats_units_and_unlimited(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path)
    s = to_stats("c", {"memory_current": 4096, "memory_max": -1, "memory_peak": None,
                       "cpu_usage_usec": 7, "cpu_user_usec": 5, "cpu_system_usec": 2,
                       "pids_current": 3, "pids_max": -1, "oom_kills": 1,
                       "nr_throttled": 4, "throttled_usec": 9}, proc)
    assert (s.memory_usage, s.memory_limit, s.memory_max_usage) == (4096, 2048 * 1024, 0)
    assert (s.cpu_usage_ns, s.cpu_user_ns, s.cpu_system_ns) == (7000, 5000, 2000)
    assert (s.pids_current, s.pids_limit, s.oom_kills) == (3, 0, 1)
    assert (s.throttled_periods, s.throttled_ns) == (4, 9000)
    assert s.online_cpus >= 1 and s.system_cpu_ns > 0
    limited = to_stats("c", {"memory_max": 1 << 20, "pids_max": 10}, proc)
    assert (limited.memory_limit, limited.pids_limit) == (1 << 20, 10)
