"""detect_mode() from statfs magics (injected) and controllers() from mountinfo or dirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import cgroups as fake

from labkit.cgroups import Mode, V1Cgroup, V2Cgroup, controllers, detect_mode, open_cgroup
from labkit.errors import UnsupportedError

CG2, TMPFS, CG1, EXT4 = 0x63677270, 0x01021994, 0x27E0EB, 0xEF53


def fstype_table(table: dict[str, int]):  # type: ignore[no-untyped-def]
    def fstype(path: str) -> int:
        if path not in table:
            raise FileNotFoundError(path)
        return table[path]
    return fstype


@pytest.mark.parametrize(
    ("table", "mode"),
    [({"/r": CG2}, Mode.UNIFIED),
     ({"/r": TMPFS, "/r/unified": CG2}, Mode.HYBRID),
     ({"/r": TMPFS}, Mode.LEGACY),
     ({"/r": TMPFS, "/r/unified": TMPFS}, Mode.LEGACY),
     ({"/r": CG1}, Mode.LEGACY)],
)
def test_detect_from_magic(table: dict[str, int], mode: Mode) -> None:
    assert detect_mode(Path("/r"), fstype=fstype_table(table)) is mode


def test_not_a_cgroup_mount() -> None:
    with pytest.raises(UnsupportedError, match="not a cgroup mount"):
        detect_mode(Path("/r"), fstype=fstype_table({"/r": EXT4}))
    with pytest.raises(UnsupportedError, match="does not exist"):
        detect_mode(Path("/r"), fstype=fstype_table({}))


@pytest.mark.parametrize("mode", list(Mode))
def test_detect_fake_trees_by_marker_files(tmp_path: Path, mode: Mode) -> None:
    root = fake.make_tree(tmp_path, mode)
    assert detect_mode(root, fstype=fake.marker_fstype) is mode


def test_real_host_is_detected_and_cached() -> None:
    root = Path("/sys/fs/cgroup")
    if not root.is_dir():
        pytest.skip("no /sys/fs/cgroup")
    first = detect_mode(root)
    assert detect_mode(root) is first
    cg = open_cgroup("lk-detect-only/x")  # a handle only: nothing is created
    assert isinstance(cg, V2Cgroup if first is Mode.UNIFIED else V1Cgroup)
    assert not cg.exists()


MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd,release_agent=/x
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /other/cgroup rw,relatime - cgroup cgroup rw,pids
"""


def test_v1_controllers_from_mountinfo(tmp_path: Path) -> None:
    mi = tmp_path / "mountinfo"
    mi.write_text(MOUNTINFO)
    got = controllers(Path("/sys/fs/cgroup"), mode=Mode.HYBRID, mountinfo=mi)
    base = Path("/sys/fs/cgroup")
    assert got == {"cpu": base / "cpu,cpuacct", "cpuacct": base / "cpu,cpuacct",
                   "cpuset": base / "cpuset", "memory": base / "memory",
                   "name=systemd": base / "systemd"}


def test_v1_controllers_from_dirs_with_comount(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "cpu,cpuacct").mkdir(parents=True)
    (root / "cpu").symlink_to("cpu,cpuacct")
    (root / "memory").mkdir()
    (root / "systemd").mkdir()
    (root / "unified").mkdir()
    got = controllers(root, mode=Mode.LEGACY, mountinfo=tmp_path / "none")
    assert got == {"cpu": root / "cpu,cpuacct", "cpuacct": root / "cpu,cpuacct",
                   "memory": root / "memory", "name=systemd": root / "systemd"}
    cg = V1Cgroup(root, "lk-a/b", mountinfo=tmp_path / "none")
    assert cg.dirs["cpu"] == cg.dirs["cpuacct"] == root / "cpu,cpuacct" / "lk-a/b"


def test_v2_controllers(tmp_path: Path) -> None:
    root = fake.make_tree(tmp_path, Mode.UNIFIED, v2_controllers="cpu memory")
    assert controllers(root, mode=Mode.UNIFIED) == {"cpu": root, "memory": root}


def test_v1_without_hierarchies_is_unsupported(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError):
        V1Cgroup(tmp_path, "lk-x", mountinfo=tmp_path / "none")
