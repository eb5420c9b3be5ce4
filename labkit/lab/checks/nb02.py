"""Checks of notebook 02's exercises: the learner's limits applied to a fresh lk cgroup."""

from __future__ import annotations

import os
import sys

from labkit.lab.exercises import Namespace, defined, exercise, fail, need

LIMIT = 7  # a prime: an off-by-one in the learner's arithmetic cannot hide behind it


def fork_bomb(tries: int = 40, hold_s: float = 5.0) -> list[str]:
    """argv of a *bounded* fork bomb: fork up to ``tries`` children that sleep, stop at the
    first failed fork(2) (EAGAIN once pids.max is reached), exit with the number it made."""
    code = (f"import os, time\nn = 0\nfor _ in range({int(tries)}):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            f"    if pid == 0:\n        time.sleep({float(hold_s)})\n        os._exit(0)\n"
            "    n += 1\nos._exit(n)\n")
    return [sys.executable, "-S", "-c", code]


@exercise("02.pids_cap")
def pids_cap(ns: Namespace) -> str:
    from labkit.cgroups import Resources
    from labkit.measure import workloads

    fn = defined(ns, "cap_fork_bomb")
    res = fn(LIMIT)
    if not isinstance(res, Resources):
        fail(f"cap_fork_bomb({LIMIT}) returned {type(res).__name__}; return a "
             "labkit.cgroups.Resources")
    need(res.pids_max is not None, "your Resources sets no pids_max, so the cgroup can have "
                                   "any number of processes")
    need(res.pids_max == LIMIT, f"cap_fork_bomb({LIMIT}) set pids_max={res.pids_max}; the "
                                f"cgroup should hold at most {LIMIT} processes in all")
    run = workloads.run_limited(f"lk-ex-pids-{os.getpid()}", res, fork_bomb())
    made = run.returncode
    need(made == LIMIT - 1, f"the fork bomb made {made} children under your limit; with "
                            f"pids.max={LIMIT} the kernel should refuse the fork after "
                            f"{LIMIT - 1} (the bomb itself is one of the {LIMIT})")
    return (f"fork() failed after {made} children: the bomb plus {made} children = "
            f"pids.max {LIMIT}")


@exercise("02.memory_bytes")
def memory_bytes(ns: Namespace) -> str:
    fn = defined(ns, "memory_limit")
    for mib in (16, 48):
        res = fn(mib)
        need(getattr(res, "memory_max", None) == mib << 20,
             f"memory_limit({mib}) set memory_max={getattr(res, 'memory_max', None)!r}; "
             f"the kernel counts bytes: {mib} MiB is {mib << 20}")
        need(getattr(res, "memory_swap_max", None) == mib << 20,
             f"memory_limit({mib}) set memory_swap_max="
             f"{getattr(res, 'memory_swap_max', None)!r}; without the same swap limit the "
             "hog is pushed to swap instead of being OOM-killed")
    return "memory_max and memory_swap_max in bytes, both at the limit"
