"""labkit.ns.inspect against a fake /proc tree (symlinks "net:[123]"), and netns names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit import errors
from labkit.ns import inspect
from labkit.ns.netns import list_netns, netns_path, remove_netns
from labkit.ns.spec import KINDS


def _proc(root: Path, pid: int, inodes: dict[str, int], cmdline: bytes = b"", comm: str = "") -> None:
    nsdir = root / str(pid) / "ns"
    nsdir.mkdir(parents=True)
    for kind, inode in inodes.items():
        os.symlink(f"{kind}:[{inode}]", nsdir / kind)
    (root / str(pid) / "cmdline").write_bytes(cmdline)
    (root / str(pid) / "comm").write_text(comm + "\n")


HOST = {k: 4026531830 + i for i, k in enumerate(KINDS)}


@pytest.fixture
def procfs(tmp_path: Path) -> Path:
    _proc(tmp_path, 1, HOST, b"/sbin/init\0splash\0")
    _proc(tmp_path, 2, HOST, b"", "kthreadd")
    _proc(tmp_path, 300, {**HOST, "uts": 5000, "net": 6000}, b"sleep\x00100\x00")
    _proc(tmp_path, 301, {**HOST, "uts": 5000, "net": 6000}, b"sh\0")
    # an old kernel without time namespaces, and a pid_for_children link to ignore
    _proc(tmp_path, 400, {k: v for k, v in HOST.items() if k != "time"}, b"old\0")
    os.symlink("pid:[999]", tmp_path / "400" / "ns" / "pid_for_children")
    (tmp_path / "self").symlink_to("300")
    (tmp_path / "sys").mkdir()  # not a pid
    return tmp_path


def test_namespaces_reads_kind_and_inode(procfs: Path) -> None:
    ns = inspect.namespaces(300, procfs=procfs)
    assert list(ns) == list(KINDS)
    assert ns["net"] == inspect.NsId("net", 6000, None)
    assert str(ns["uts"]) == "uts:[5000]"
    assert inspect.namespaces("self", procfs=procfs) == ns
    assert "time" not in inspect.namespaces(400, procfs=procfs)


def test_namespaces_unknown_pid(procfs: Path) -> None:
    with pytest.raises(errors.NotFoundError) as info:
        inspect.namespaces(12345, procfs=procfs)
    assert "12345" in str(info.value)


def test_compare(procfs: Path) -> None:
    same = inspect.compare(300, 301, procfs=procfs)
    assert all(same.values()) and len(same) == 8
    diff = inspect.compare(1, 300, procfs=procfs)
    assert {k for k, v in diff.items() if not v} == {"uts", "net"}
    assert "time" not in inspect.compare(1, 400, procfs=procfs)


def test_list_namespaces_like_lsns(procfs: Path) -> None:
    rows = inspect.list_namespaces(procfs)
    by = {(r.kind, r.inode): r for r in rows}
    assert by[("uts", 5000)] == inspect.NsRow("uts", 5000, 2, 300, "sleep 100")
    host_net = by[("net", HOST["net"])]
    assert (host_net.nprocs, host_net.pid, host_net.command) == (3, 1, "/sbin/init splash")
    assert by[("time", HOST["time"])].nprocs == 4  # pid 400 has no time link
    assert by[("pid", HOST["pid"])].nprocs == 5  # pid_for_children is not counted
    assert [r.kind for r in rows] == sorted((r.kind for r in rows), key=KINDS.index)
    assert len(rows) == 10


def test_list_namespaces_kernel_thread_command(tmp_path: Path) -> None:
    _proc(tmp_path, 2, {"net": 1}, b"", "kthreadd")
    assert inspect.list_namespaces(tmp_path)[0].command == "[kthreadd]"


@pytest.mark.parametrize("name", ["test", "", "lk/../x", "..", "LK-a", "x" * 70])
def test_netns_names_must_start_with_lk(name: str) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        netns_path(name)


def test_netns_path_and_list(tmp_path: Path) -> None:
    assert netns_path("lk-a", tmp_path) == tmp_path / "lk-a"
    assert list_netns(tmp_path / "missing") == []
    (tmp_path / "lk-b").touch()
    (tmp_path / "lk-a").touch()
    assert list_netns(tmp_path) == ["lk-a", "lk-b"]
    with pytest.raises(errors.NotFoundError):
        remove_netns("lk-zzz", tmp_path)
