"""labkit.doctor.check() against fake host trees: rows, statuses and hints (no root)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit import doctor
from labkit._sys import features

REL = "6.18.0-fake"

HYBRID_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
UNIFIED_MOUNTS = "31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"
PROC_CGROUPS = """#subsys_name\thierarchy\tnum_cgroups\tenabled
cpu\t1\t1\t1
memory\t4\t35\t1
pids\t8\t1\t1
hugetlb\t0\t1\t1
"""


def write(root: Path, rel: str, text: str = "") -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def fake_host(root: Path, *, mounts: str = HYBRID_MOUNTS, kprobes: bool = False,
              nearest: str | None = "linux-headers-6.1.0-56-amd64") -> Path:
    write(root, "proc/sys/kernel/osrelease", REL)
    for kind in features.NAMESPACE_KINDS:
        write(root, f"proc/self/ns/{kind}")
    write(root, "proc/sys/user/max_user_namespaces", "100\n")
    write(root, "proc/filesystems", "nodev\ttracefs\nnodev\toverlay\nnodev\tcgroup2\n")
    write(root, "proc/self/status", "Seccomp:\t0\n")
    write(root, "proc/sys/kernel/seccomp/actions_avail", "kill_process errno user_notif allow\n")
    write(root, f"boot/config-{REL}",
          f"CONFIG_TRACEPOINTS=y\n{'CONFIG_KPROBES=y' if kprobes else '# CONFIG_KPROBES is not set'}\n"
          "# CONFIG_IPVLAN is not set\nCONFIG_VXLAN=y\nCONFIG_MACVLAN=y\n")
    write(root, "sys/kernel/tracing/events/sched/sched_process_exec/format", "format:\n")
    write(root, "sys/kernel/btf/vmlinux")
    write(root, f"lib/modules/{REL}/build/Makefile")
    if nearest:
        write(root, f"lib/modules/{REL}/.labkit-nearest-headers", nearest + "\n")
    write(root, "proc/self/mountinfo", mounts)
    write(root, "proc/cgroups", PROC_CGROUPS)
    if mounts is UNIFIED_MOUNTS:
        write(root, "sys/fs/cgroup/cgroup.controllers", "cpu memory pids io\n")
    else:
        for c in ("cpu", "memory", "pids", "systemd"):
            (root / "sys/fs/cgroup" / c).mkdir(parents=True, exist_ok=True)
        write(root, "sys/fs/cgroup/unified/cgroup.controllers", "")
    return root


def rows_by_name(root: Path) -> dict[str, doctor.Check]:
    return {r.name: r for r in doctor.check(root, live=False)}


def test_every_row_that_is_not_ok_has_a_hint(tmp_path: Path) -> None:
    rows = doctor.check(fake_host(tmp_path), live=False)
    assert rows, "doctor returned nothing"
    for r in rows:
        if r.ok is not True and r.name != "root":  # root: depends on who runs the tests
            assert r.hint, f"{r.name} is {r.status} without a hint"


def test_hybrid_host(tmp_path: Path) -> None:
    rows = rows_by_name(fake_host(tmp_path))
    assert rows["cgroup mode"].ok is True
    assert rows["cgroup mode"].detail.startswith("hybrid")
    assert rows["cgroup v1"].detail == "cpu memory pids"  # hugetlb is enabled but not mounted
    assert rows["cgroup v2"].ok is False
    assert rows["cgroup v2"].hint == "hybrid v1 host: the v2 backend is tested in the VM (labkit vm)"


def test_unified_host(tmp_path: Path) -> None:
    rows = rows_by_name(fake_host(tmp_path, mounts=UNIFIED_MOUNTS))
    assert rows["cgroup mode"].detail.startswith("unified")
    assert rows["cgroup v2"].ok is True
    assert rows["cgroup v2"].detail == "cpu memory pids io"
    assert "cgroup v1" not in rows


def test_no_cgroupfs(tmp_path: Path) -> None:
    rows = rows_by_name(fake_host(tmp_path, mounts=""))
    assert rows["cgroup mode"].ok is False


def test_kprobes_missing_points_to_the_vm(tmp_path: Path) -> None:
    rows = rows_by_name(fake_host(tmp_path))
    assert rows["kprobes"].ok is False
    assert rows["kprobes"].hint is not None
    assert "fall back to tracepoints" in rows["kprobes"].hint
    assert "labkit vm" in rows["kprobes"].hint


def test_kprobes_present(tmp_path: Path) -> None:
    assert rows_by_name(fake_host(tmp_path, kprobes=True))["kprobes"].ok is True


def test_nearest_headers_is_a_warning(tmp_path: Path) -> None:
    row = rows_by_name(fake_host(tmp_path))["kernel headers"]
    assert row.ok is None
    assert row.detail == "nearest headers linked: linux-headers-6.1.0-56-amd64"


def test_exact_headers_are_ok(tmp_path: Path) -> None:
    assert rows_by_name(fake_host(tmp_path, nearest=None))["kernel headers"].ok is True


def test_ipvlan_absent_from_config(tmp_path: Path) -> None:
    rows = rows_by_name(fake_host(tmp_path))
    assert rows["ipvlan"].ok is False
    assert rows["ipvlan"].detail == "kernel module ipvlan absent"
    assert rows["vxlan"].ok is None  # not tried without live checks


def test_live_checks_not_tried_on_fake_root(tmp_path: Path) -> None:
    row = rows_by_name(fake_host(tmp_path))["BPF tracepoint attach"]
    assert row.ok is None and "not tried" in row.detail


def test_json_rows_and_dataframe(tmp_path: Path) -> None:
    rows = doctor.check(fake_host(tmp_path), live=False)
    data = json.loads(json.dumps(doctor.to_json_rows(rows)))
    assert {d["status"] for d in data} <= {"ok", "missing", "partial"}
    df = doctor.doctor_table(rows)
    assert list(df.columns) == ["status", "detail", "hint"]
    assert df.loc["kprobes", "status"] == "missing"


def test_check_is_frozen(tmp_path: Path) -> None:
    row = doctor.check(fake_host(tmp_path), live=False)[0]
    with pytest.raises(AttributeError):
        row.ok = False  # type: ignore[misc]
