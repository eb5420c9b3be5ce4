"""Fake cgroupfs trees in a directory, for unit tests of anything that uses labkit.cgroups.

A real cgroupfs fills a new directory with control files; a plain directory does not.  So
after ``create()`` on a fake tree, call ``populate(cg)`` to write the files the kernel would
have made (with the kernel's initial contents), then check what set() wrote with
``read(cg, "memory.max")``.

    root = fake.make_tree(tmp_path, Mode.UNIFIED)
    cg = open_cgroup("lk-t/c1", root=root, mode=Mode.UNIFIED); cg.create(); fake.populate(cg)
"""

from __future__ import annotations

import os
from pathlib import Path

from labkit.cgroups.base import Cgroup
from labkit.cgroups.detect import Mode
from labkit.cgroups.v1 import V1_CONTROLLERS, V1Cgroup
from labkit.cgroups.v2 import V2Cgroup

__all__ = ["V1_FILES", "V2_FILES", "make_tree", "marker_fstype", "populate", "read"]

_V1_UNLIMITED = "9223372036854771712"

# Initial contents of a fresh child cgroup, as this kernel (6.18) shows them.
V1_FILES: dict[str, dict[str, str]] = {
    "cpu": {"cpu.shares": "1024", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000",
            "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"},
    "cpuacct": {"cpuacct.usage": "0", "cpuacct.stat": "user 0\nsystem 0\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {"memory.limit_in_bytes": _V1_UNLIMITED, "memory.memsw.limit_in_bytes": _V1_UNLIMITED,
               "memory.soft_limit_in_bytes": _V1_UNLIMITED, "memory.usage_in_bytes": "0",
               "memory.max_usage_in_bytes": "0", "memory.memsw.usage_in_bytes": "0",
               "memory.failcnt": "0", "memory.swappiness": "60",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "freezer": {"freezer.state": "THAWED"},
    "blkio": {"blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "",
              "blkio.throttle.read_iops_device": "", "blkio.throttle.write_iops_device": ""},
    "devices": {},
    "name=systemd": {},
}
V2_FILES: dict[str, str] = {
    "cgroup.procs": "", "cgroup.events": "populated 0\nfrozen 0\n", "cgroup.freeze": "0",
    "cgroup.kill": "", "cgroup.controllers": "", "cgroup.subtree_control": "",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\n"
                "throttled_usec 0\n",
    "cpu.max": "max 100000", "cpu.weight": "100", "memory.max": "max", "memory.swap.max": "max",
    "memory.low": "0", "memory.current": "0", "memory.peak": "0", "memory.swap.current": "0",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n", "pids.max": "max",
    "pids.current": "0", "cpuset.cpus": "", "cpuset.mems": "", "io.weight": "default 100",
    "io.max": "", "cpu.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
                                  "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
}


def _dirname(ctrl: str) -> str:
    return "systemd" if ctrl == "name=systemd" else ctrl


def make_tree(base: Path, mode: Mode, *, v2_controllers: str = "cpuset cpu io memory pids",
              v1_controllers: tuple[str, ...] = V1_CONTROLLERS) -> Path:
    """Build an empty cgroup root at ``base/cgroup`` for ``mode`` and return it."""
    root = base / "cgroup"
    root.mkdir(parents=True, exist_ok=True)
    if mode is Mode.UNIFIED:
        (root / "cgroup.controllers").write_text(v2_controllers + "\n")
        (root / "cgroup.subtree_control").write_text("")
        (root / "cgroup.procs").write_text("")
        return root
    for ctrl in v1_controllers:
        d = root / _dirname(ctrl)
        d.mkdir(exist_ok=True)
        (d / "cgroup.procs").write_text("")
        if ctrl == "cpuset":
            (d / "cpuset.cpus").write_text("0-1\n")
            (d / "cpuset.mems").write_text("0\n")
    if mode is Mode.HYBRID:
        (root / "unified").mkdir(exist_ok=True)
        (root / "unified" / "cgroup.controllers").write_text("")
    return root


def populate(cg: Cgroup) -> None:
    """Write the control files the kernel would have put in ``cg``'s fresh directories."""
    if isinstance(cg, V2Cgroup):
        for fname, text in V2_FILES.items():
            if not (cg.path / fname).exists():
                (cg.path / fname).write_text(text)
        return
    assert isinstance(cg, V1Cgroup)
    for ctrl, d in cg.dirs.items():
        for sub in [d, *[Path(p) for p, _, _ in os.walk(d)]]:
            for fname, text in {"cgroup.procs": "", "tasks": "",
                                **V1_FILES.get(ctrl, {})}.items():
                if not (sub / fname).exists():
                    (sub / fname).write_text(text)


def read(cg: Cgroup, fname: str) -> str:
    """Content of control file ``fname`` of ``cg`` (v1: in the hierarchy that owns it)."""
    if isinstance(cg, V1Cgroup):
        ctrl = fname.split(".")[0]
        return (cg.dirs[ctrl] / fname).read_text()
    return (cg.path / fname).read_text()


def marker_fstype(path: str) -> int:
    """An ``fstype`` for detect_mode() on fake trees: cgroup.controllers marks a cgroup2 root."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(path)
    if (p / "cgroup.controllers").exists():
        return 0x63677270  # CGROUP2_SUPER_MAGIC
    return 0x01021994  # TMPFS_MAGIC
