"""Checks of notebook 11 (resource limits): cap a fork bomb, a quarter of a core."""

from __future__ import annotations

import json
import os
import subprocess

from labkit import errors
from labkit.cgroups import open_cgroup
from labkit.lab.exercises import Namespace, defined, exercise, fail, need
from labkit.measure import limits
from labkit.measure.workloads import start_in

BOMB_EXTRA = 23  # forks tried beyond the limit (a prime: a miscount shows)


def _remove(name: str) -> None:
    cg = open_cgroup(name)
    if cg.exists():
        try:
            cg.kill()
        finally:
            cg.remove()


@exercise("11.fork_bomb")
def fork_bomb(ns: Namespace) -> str:
    """``bomb`` must be a created Cgroup whose pids.max is ``bomb_limit``; the check sets a
    bounded fork bomb loose in it (``bomb_limit + 23`` forks), then removes the cgroup."""
    limit = defined(ns, "bomb_limit", "a number")
    cg = defined(ns, "bomb", "a Cgroup (open_cgroup(name))")
    need(isinstance(limit, int) and 2 <= limit <= 64,
         f"bomb_limit is {limit!r}: pick a whole number from 2 to 64")
    need(hasattr(cg, "stats") and hasattr(cg, "name"),
         f"bomb should be the Cgroup from open_cgroup(bomb_name), not {type(cg).__name__}")
    need(str(cg.name).startswith("lk"), f"name the cgroup with the lk prefix, not {cg.name!r}")
    need(cg.exists(), f"cgroup {cg.name} does not exist: call bomb.create() first")
    try:
        got = cg.stats().pids_max
        need(got == limit, f"pids.max of {cg.name} reads {got} (-1 is 'max'): set it with "
             f"bomb.set(Resources(pids_max=bomb_limit))")
        need(not cg.procs(), f"cgroup {cg.name} already holds processes {cg.procs()}")
        tries = limit + BOMB_EXTRA
        proc = start_in(cg, limits.forker(tries), stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(60)
        res = json.loads(out or b"[]")
        ok = res.count("ok")
        need(ok == limit - 1, f"{ok} of {tries} forks succeeded; with pids.max {limit} the "
             f"bomb itself is one pid, so exactly {limit - 1} should")
        need(res.count("EAGAIN") == tries - ok,
             f"the failed forks were {sorted(set(res) - {'ok'})}, not all EAGAIN")
    except errors.LabkitError as err:
        fail(f"labkit refused: {err}")
    finally:
        _remove(cg.name)
    return (f"the bomb got {limit - 1} children; the other {tries - ok} forks failed with "
            f"EAGAIN (cgroup {cg.name} removed)")


@exercise("11.quarter_core")
def quarter_core(ns: Namespace) -> str:
    """``quota_us`` / ``period_us`` must give ~25 % of one core; the check burns a CPU under it."""
    quota = defined(ns, "quota_us", "a number")
    period = defined(ns, "period_us", "a number")
    need(isinstance(quota, int) and isinstance(period, int),
         "quota_us and period_us are whole microseconds (int)")
    need(1000 <= period <= 1_000_000, f"period_us {period} is outside 1000..1000000 (sched-bwc.rst)")
    need(quota >= 1000, f"quota_us {quota} is below the kernel's minimum of 1000 us")
    share = quota / period
    need(abs(share - 0.25) <= 0.02,
         f"quota_us / period_us = {share:.3f}: that is {share * 100:.0f}% of one core, not 25%")
    run = limits.cpu_run(quota, period, seconds=1.0, name=f"lk-nb11-quarter-{os.getpid()}")
    need(abs(run.cpu_percent - 25) <= 25 * 0.15,
         f"the burner achieved {run.cpu_percent:.1f}% of a core, not within 15% of 25%")
    return f"a burner under {quota}/{period} us achieved {run.cpu_percent:.1f}% of one core"
