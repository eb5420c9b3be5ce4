"""Stats for Docker's `stats`: the shim's cgroup reading plus the host's CPU time.

Docker computes CPU % as (container delta / system delta) * online cpus * 100, where the
system time comes from the first line of /proc/stat (proc(5): jiffies in USER_HZ units).
"""

from __future__ import annotations

import os
import time
from typing import Any

from labkit.engine.supervisor.api import supervisor_pb2 as pb


def system_cpu_ns(procfs: str = "/proc") -> int:
    """Sum of the "cpu" line of /proc/stat (user..steal), in nanoseconds."""
    with open(f"{procfs}/stat", "rb") as f:
        fields = f.readline().split()[1:9]
    return sum(int(x) for x in fields) * 10**9 // os.sysconf("SC_CLK_TCK")


def host_memory(procfs: str = "/proc") -> int:
    """MemTotal in bytes: Docker's limit for a container without one."""
    with open(f"{procfs}/meminfo", "rb") as f:
        for line in f:
            if line.startswith(b"MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _u(v: Any) -> int:
    return int(v) if isinstance(v, int) and v > 0 else 0


def to_stats(cid: str, s: dict[str, Any], procfs: str = "/proc") -> pb.Stats:
    """A shim `stats` reply (labkit.cgroups.Stats fields) -> the proto's Stats."""
    limit = s.get("memory_max")
    return pb.Stats(
        id=cid, read_at=time.time(), memory_usage=_u(s.get("memory_current")),
        memory_limit=_u(limit) if isinstance(limit, int) and limit > 0 else host_memory(procfs),
        memory_max_usage=_u(s.get("memory_peak")),
        cpu_usage_ns=_u(s.get("cpu_usage_usec")) * 1000, cpu_user_ns=_u(s.get("cpu_user_usec")) * 1000,
        cpu_system_ns=_u(s.get("cpu_system_usec")) * 1000, system_cpu_ns=system_cpu_ns(procfs),
        online_cpus=len(os.sched_getaffinity(0)), throttled_periods=_u(s.get("nr_throttled")),
        throttled_ns=_u(s.get("throttled_usec")) * 1000, pids_current=_u(s.get("pids_current")),
        pids_limit=_u(s.get("pids_max")), oom_kills=_u(s.get("oom_kills")))
