"""Mount option translation (images.mountopts, the runtime's too) and rootfs helpers without root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit._sys import consts as C
from labkit.engine.images import mountopts
from labkit.engine.runtime import rootfs
from labkit.engine.runtime.spec import default_config


def test_default_spec_mounts_translate() -> None:
    got = {m["destination"]: mountopts.calls(m["type"], m["source"], m["destination"], m.get("options", []))
           for m in default_config()["mounts"]}
    assert got["/dev"] == [("tmpfs", "/dev", "tmpfs", C.MS_NOSUID | C.MS_STRICTATIME,
                            "mode=755,size=65536k")]
    assert got["/sys"] == [("sysfs", "/sys", "sysfs",
                            C.MS_NOSUID | C.MS_NOEXEC | C.MS_NODEV | C.MS_RDONLY, None)]


def test_runc_extensions_are_ignored_and_mand_silent_are_flags() -> None:
    # Words only config.json uses: runc's own extensions never reach the kernel as data.
    assert mountopts.parse(["tmpcopyup", "mand", "silent", "mode=755", "idmap", "loud"]) == (
        C.MS_MANDLOCK, 0, "mode=755")
    assert mountopts.parse(["mand", "nomand", "rslave", "private"]) == (0, C.MS_PRIVATE, "")


def test_bind_needs_a_remount_for_flags_and_a_call_for_propagation() -> None:
    calls = mountopts.calls("bind", "/src", "/dst", ["rbind", "ro", "nosuid", "rprivate"])
    assert calls == [
        ("/src", "/dst", None, C.MS_BIND | C.MS_REC, None),
        (None, "/dst", None, C.MS_BIND | C.MS_REMOUNT | C.MS_RDONLY | C.MS_NOSUID, None),
        (None, "/dst", None, C.MS_PRIVATE | C.MS_REC, None),
    ]


def test_secure_join_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")             # absolute: resolved inside the rootfs
    os.symlink("../../../../etc", root / "up")   # climbing out stops at the root
    os.symlink("loop", root / "loop")
    assert rootfs.secure_join(str(root), "/abs/passwd") == str(root / "etc/passwd")
    assert rootfs.secure_join(str(root), "/up/x") == str(root / "etc/x")
    assert rootfs.secure_join(str(root), "/../../x") == str(root / "x")
    assert rootfs.secure_join(str(root), "/new/dir") == str(root / "new/dir")
    with pytest.raises(OSError):
        rootfs.secure_join(str(root), "/loop/x")


def test_host_cgroup_dirs_from_fake_proc(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self/cgroup").write_text(
        "4:memory:/lk/c1\n3:cpu,cpuacct:/lk/c1\n1:name=systemd:/lk/c1\n0::/lk/c1\n")
    (proc / "self/mountinfo").write_text(
        "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "32 31 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
        "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "50 23 0:40 / /proc rw - proc proc rw\n")
    assert rootfs.host_cgroup_dirs(str(proc)) == {
        "memory": "/sys/fs/cgroup/memory/lk/c1",
        "cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/lk/c1",
        "systemd": "/sys/fs/cgroup/systemd/lk/c1",
        "unified": "/sys/fs/cgroup/unified/lk/c1",
    }


def test_host_cgroup_dirs_pure_v2(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self/cgroup").write_text("0::/lk/c1\n")
    (proc / "self/mountinfo").write_text(
        "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n")
    assert rootfs.host_cgroup_dirs(str(proc)) == {"": "/sys/fs/cgroup/lk/c1"}


def test_device_rules_in_order_then_the_standard_devices() -> None:
    from labkit import errors
    from labkit.engine.runtime import devices

    got = devices.rules({"devices": [{"allow": False, "access": "rwm"},
                                     {"allow": True, "type": "c", "major": 10, "minor": 200,
                                      "access": "rw"}]})
    assert got[:2] == [(False, "a"), (True, "c 10:200 rw")]
    assert (True, "c 1:3 rwm") in got and (True, "c 136:* rwm") in got
    assert (True, "b *:* m") in got
    with pytest.raises(errors.InvalidArgumentError, match=r"linux.resources.devices\[0\]"):
        devices.rules({"devices": [{"allow": "yes"}]})
    with pytest.raises(errors.InvalidArgumentError, match="major"):
        devices.rules({"devices": [{"allow": True, "type": "c", "major": -1}]})


def test_device_rules_need_a_devices_directory(tmp_path: Path) -> None:
    from labkit.engine.runtime import devices

    class NoDirs:  # a backend without per-controller directories (cgroup v2)
        pass

    class V1Like:
        def __init__(self) -> None:
            self.dirs = {"devices": tmp_path}

    assert devices.apply(NoDirs(), None) is False
    (tmp_path / "devices.allow").write_text("")
    (tmp_path / "devices.deny").write_text("")
    assert devices.apply(V1Like(), {"devices": [{"allow": False}]}) is True
    assert (tmp_path / "devices.deny").read_text() == "a"  # each rule is its own write(2)


def test_host_cgroup_dirs_in_a_cgroup_namespace_mount_afresh(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self/cgroup").write_text("4:memory:/\n1:name=systemd:/\n0::/\n")
    (proc / "self/mountinfo").write_text(
        "32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n")
    assert rootfs.host_cgroup_dirs(str(proc), cgroupns=True) == {
        "memory": "fresh:cgroup:memory",
        "systemd": "fresh:cgroup:xattr,name=systemd",
        "unified": "fresh:cgroup2:",
    }
