"""Doctor rows about cgroups: layout (cgroups(7) "v1 and v2"), v1 and v2 controllers.

The layout comes from labkit.cgroups.detect_mode (statfs magics) on the real host.  For a
fake root, the filesystem types are looked up in the fake proc/self/mountinfo and handed
to detect_mode as its ``fstype`` seam, so both paths share one decision.
"""

from __future__ import annotations

from pathlib import Path

from labkit import errors
from labkit.doctor._check import VM, Check

__all__ = ["cgroup_checks", "cgroup_mode", "mount_table"]

# include/uapi/linux/magic.h
_MAGIC = {"cgroup2": 0x63677270, "cgroup": 0x0027E0EB, "tmpfs": 0x01021994}
WANTED = ("cpu", "memory", "pids")


def mount_table(root: Path) -> dict[str, tuple[str, str]]:
    """proc(5) /proc/self/mountinfo: mount point -> (fstype, super options)."""
    try:
        text = (root / "proc/self/mountinfo").read_text()
    except OSError:
        return {}
    out: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if sep and len(fields) >= 5 and len(rfields) >= 3:
            out[fields[4]] = (rfields[0], rfields[2])
    return out


def _mode(root: Path, mounts: dict[str, tuple[str, str]]) -> str | None:
    """"unified", "hybrid", "legacy", or None when no cgroupfs is mounted."""

    def fstype(path: str) -> int:
        rel = "/" + str(Path(path).relative_to(root)) if root != Path("/") else path
        if rel not in mounts:
            raise FileNotFoundError(path)
        return _MAGIC.get(mounts[rel][0], 0)

    from labkit.cgroups import detect_mode

    cg = root / "sys/fs/cgroup"
    try:
        return detect_mode(cg, fstype=None if root == Path("/") else fstype).value
    except (errors.LabkitError, OSError):  # nothing usable mounted there
        return None


def cgroup_mode(root: Path) -> str | None:
    """"unified", "hybrid", "legacy", or None (see _mode)."""
    return _mode(root, mount_table(root))


def _v1_controllers(root: Path, mounts: dict[str, tuple[str, str]]) -> list[str]:
    # Enabled controllers (/proc/cgroups, 4th column) that are mounted as a v1 hierarchy.
    enabled: set[str] = set()
    try:
        for line in (root / "proc/cgroups").read_text().splitlines():
            parts = line.split()
            if len(parts) == 4 and not line.startswith("#") and parts[3] == "1":
                enabled.add(parts[0])
    except OSError:
        pass
    mounted: set[str] = set()
    for point, (fstype, opts) in mounts.items():
        if fstype == "cgroup" and point.startswith("/sys/fs/cgroup/"):
            mounted.update(o for o in opts.split(",") if o in enabled)
    return sorted(mounted)


def cgroup_checks(root: Path) -> list[Check]:
    mounts = mount_table(root)
    mode = _mode(root, mounts)
    if mode is None:
        return [Check("cgroup mode", False, "no cgroup filesystem at /sys/fs/cgroup",
                      "mount -t cgroup2 none /sys/fs/cgroup, or " + VM)]
    v2_at = "/sys/fs/cgroup" if mode == "unified" else "/sys/fs/cgroup/unified"
    rows = [Check("cgroup mode", True, {
        "unified": "unified (cgroup v2 only)",
        "hybrid": "hybrid (v1 controllers; cgroup2 at /sys/fs/cgroup/unified)",
        "legacy": "legacy (cgroup v1 only)"}[mode], None)]
    if mode != "unified":
        v1 = _v1_controllers(root, mounts)
        lacking = [c for c in WANTED if c not in v1]
        rows.append(Check("cgroup v1", None if lacking else True,
                          " ".join(v1) or "no controllers mounted",
                          f"mount the {', '.join(lacking)} hierarchies" if lacking else None))
    v2: list[str] = []
    if mode != "legacy":
        try:
            v2 = (root / v2_at.lstrip("/") / "cgroup.controllers").read_text().split()
        except OSError:
            v2 = []
    if mode == "unified":
        lacking = [c for c in WANTED if c not in v2]
        rows.append(Check("cgroup v2", None if lacking else True, " ".join(v2) or "none",
                          f"controllers not enabled: {', '.join(lacking)}" if lacking else None))
    else:
        where = f"at {v2_at}, " if mode == "hybrid" else ""
        rows.append(Check(
            "cgroup v2", None if v2 else False,
            f"{where}controllers: {' '.join(v2) or 'none'}",
            f"{mode} v1 host: the v2 backend is tested in the VM (labkit vm)"))
    return rows
