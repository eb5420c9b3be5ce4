"""Attribution's foundations without root: the hybrid cgroup mirror on a fake tree, the
runtime's kernel_ids record, Target resolution (runtime and engine), the attribution C."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import tests.fakes.cgroups as fake
from labkit import errors
from labkit._sys import features
from labkit.cgroups import _io
from labkit.cgroups.detect import Mode
from labkit.cgroups.v1 import V1Cgroup, _unified_mount
from labkit.engine.containers.record import ContainerRecord
from labkit.engine.runtime import state as statemod
from labkit.probes import attribution, target
from labkit.probes.target import Target

# --- the cgroup v1 backend's unified mirror (hybrid hosts) -------------------------------


@pytest.fixture
def hybrid(tmp_path: Path) -> Path:
    root = fake.make_tree(tmp_path, Mode.HYBRID)
    (root / "unified" / "cgroup.procs").write_text("")
    return root


def _populate_unified(cg: V1Cgroup) -> None:
    d = cg.unified_dir
    assert d is not None
    for sub in (os.path.dirname(d), d):
        for fname in ("cgroup.procs", "cgroup.controllers"):
            p = os.path.join(sub, fname)
            if not os.path.exists(p):
                Path(p).write_text("")


def test_hybrid_mirror_is_created_joined_and_removed(hybrid: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cg = V1Cgroup(hybrid, "lk-t/c1", mountinfo=hybrid / "none", unified=hybrid / "unified")
    assert cg.unified_dir == str(hybrid / "unified" / "lk-t" / "c1")
    cg.create()
    fake.populate(cg)
    _populate_unified(cg)
    assert (hybrid / "unified" / "lk-t" / "c1").is_dir()
    writes: list[tuple[str, str]] = []
    real = _io.write

    def rec(path: str, data: str) -> None:
        writes.append((os.path.relpath(path, hybrid), data))
        real(path, data)

    monkeypatch.setattr(_io, "write", rec)
    cg.add_self()
    # v2 has no "tasks" file, and cgroup.threads cannot leave the domain: cgroup.procs.
    assert ("unified/lk-t/c1/cgroup.procs", "0") in writes
    assert ("pids/lk-t/c1/tasks", "0") in writes
    writes.clear()
    cg.add(4242)
    assert ("unified/lk-t/c1/cgroup.procs", "4242") in writes
    # the pid written to the fake file counts as a member, in both hierarchies
    assert 4242 in cg.procs()
    (hybrid / "unified" / "lk-t" / "c1" / "cgroup.procs").write_text("")
    for d in cg.dirs.values():
        (d / "cgroup.procs").write_text("")
    cg.remove()
    assert not (hybrid / "unified" / "lk-t" / "c1").exists()
    assert not cg.exists()


def test_remove_refuses_while_the_unified_mirror_has_a_process(hybrid: Path) -> None:
    cg = V1Cgroup(hybrid, "lk-t/c2", mountinfo=hybrid / "none", unified=hybrid / "unified")
    cg.create()
    fake.populate(cg)
    _populate_unified(cg)
    (hybrid / "unified" / "lk-t" / "c2" / "cgroup.procs").write_text("77\n")
    with pytest.raises(errors.ConflictError, match="77"):
        cg.remove()
    assert (hybrid / "unified" / "lk-t" / "c2").is_dir()


def test_no_unified_mirror_on_fake_trees_or_legacy_hosts(hybrid: Path) -> None:
    # Only a real cgroup2 mount at root/unified counts (mountinfo), so fake trees and
    # legacy hosts keep the v1-only behaviour.
    assert V1Cgroup(hybrid, "lk-t/c3", mountinfo=hybrid / "none").unified_dir is None


def test_unified_mount_read_from_mountinfo(tmp_path: Path) -> None:
    mi = tmp_path / "mountinfo"
    mi.write_text(
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
    assert _unified_mount("/sys/fs/cgroup", str(mi)) == "/sys/fs/cgroup/unified"
    mi.write_text("39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
                  "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - tmpfs tmpfs rw\n")
    assert _unified_mount("/sys/fs/cgroup", str(mi)) is None
    assert _unified_mount("/sys/fs/cgroup", str(tmp_path / "absent")) is None


# --- kernel_ids in the runtime's state ---------------------------------------------------


def test_kernel_ids_are_the_cgroup_inode_and_namespace_inodes(tmp_path: Path) -> None:
    ids = statemod.kernel_ids(os.getpid(), str(tmp_path), "/lk/x")
    assert ids["cgroup_id"] == os.stat(tmp_path).st_ino
    assert ids["cgroup_path"] == "/lk/x"
    for kind, ino in ids["ns"].items():
        assert ino == os.stat(f"/proc/self/ns/{kind}").st_ino
    assert set(ids["ns"]) == set(features.namespaces())
    gone = statemod.kernel_ids(os.getpid(), str(tmp_path / "absent"), "/lk/x")
    assert gone["cgroup_id"] is None and gone["cgroup_path"] is None
    assert statemod.kernel_ids(os.getpid(), None, None)["cgroup_id"] is None


def _runtime_state(root: Path, cid: str, pid: int, ids: dict[str, Any] | None) -> None:
    d = root / cid
    d.mkdir(parents=True)
    start = statemod.proc_start_time(pid)
    assert start is not None
    st = statemod.State(id=cid, bundle="/b", pid=pid, cgroup=f"lk/{cid}",
                        init_start=start[0], dir=str(d), kernel_ids=ids)
    st.transition(statemod.CREATED)
    st.transition(statemod.RUNNING)
    st.save()


IDS = {"cgroup_id": 4242, "cgroup_path": "/lk/web", "ns": {"pid": 11, "net": 12}}


def test_state_round_trips_kernel_ids_and_old_states_load(tmp_path: Path) -> None:
    _runtime_state(tmp_path, "web", os.getpid(), IDS)
    assert statemod.load(str(tmp_path), "web").kernel_ids == IDS
    _runtime_state(tmp_path, "old", os.getpid(), None)
    raw = (tmp_path / "old" / "state.json").read_text().replace(', "kernel_ids": {}', "")
    (tmp_path / "old" / "state.json").write_text(raw)
    assert "kernel_ids" not in raw
    assert statemod.load(str(tmp_path), "old").kernel_ids == {}


# --- Target ------------------------------------------------------------------------------


def test_resolve_a_runtime_container_from_its_state(tmp_path: Path) -> None:
    _runtime_state(tmp_path, "web", os.getpid(), IDS)
    t = target.resolve("web", state_root=tmp_path)
    assert t == Target("web", "web", os.getpid(), 4242, "/lk/web", {"pid": 11, "net": 12})
    assert dict(t.ns) == {"pid": 11, "net": 12}
    with pytest.raises(TypeError):
        t.ns["pid"] = 1  # type: ignore[index]
    assert [x.name for x in target.running(state_root=tmp_path)] == ["web"]


def test_resolve_falls_back_to_the_kernel_for_states_without_ids(tmp_path: Path) -> None:
    _runtime_state(tmp_path, "old", os.getpid(), None)
    t = target.resolve("old", state_root=tmp_path)
    assert t.pid == os.getpid()
    assert t.ns["net"] == os.stat("/proc/self/ns/net").st_ino


def test_unknown_name_lists_what_exists(tmp_path: Path) -> None:
    _runtime_state(tmp_path, "web", os.getpid(), IDS)
    with pytest.raises(errors.NotFoundError) as info:
        target.resolve("nope", state_root=tmp_path)
    assert "web" in (info.value.hint or "")
    with pytest.raises(errors.NotFoundError, match="no such container"):
        target.resolve("nope", state_root=tmp_path / "empty")
    with pytest.raises(errors.InvalidArgumentError):
        target.resolve("", state_root=tmp_path)


def _engine_record(cid: str, name: str, status: str) -> None:
    d = Path(os.environ["LABKIT_ROOT"]) / "containers" / cid
    d.mkdir(parents=True)
    r = ContainerRecord(cid, name, "busybox", "sha256:" + "0" * 64, time.time(), "sh", [],
                        {}, {}, str(d))
    if status == "running":
        r.transition("running")  # type: ignore[arg-type]
    r.save()


def test_resolve_an_engine_container_by_name_and_prefix() -> None:
    cid = "ab" * 32
    _engine_record(cid, "web", "running")
    _runtime_state(Path(statemod.default_root()), cid, os.getpid(), IDS)
    by_name = target.resolve("web")
    assert (by_name.name, by_name.id, by_name.cgroup_id) == ("web", cid, 4242)
    assert target.resolve("/web") == by_name
    assert target.resolve("abab") == by_name
    assert [t.name for t in target.running()] == ["web"]
    # read-only: a directory with no record is the daemon's to tidy, not ours
    stray = Path(os.environ["LABKIT_ROOT"]) / "containers" / "stray"
    stray.mkdir()
    target.resolve("web")
    assert stray.is_dir()


def test_an_engine_container_that_does_not_run_is_named_in_the_error() -> None:
    _engine_record("cd" * 32, "idle", "created")
    with pytest.raises(errors.NotFoundError, match="running container") as info:
        target.resolve("idle")
    assert "start it first" in (info.value.hint or "")


def test_from_pid_reads_the_v2_line_and_namespaces() -> None:
    t = target.from_pid(os.getpid(), "me")
    assert t.name == "me" and t.pid == os.getpid()
    assert t.ns["mnt"] == os.stat("/proc/self/ns/mnt").st_ino
    line = [x for x in Path("/proc/self/cgroup").read_text().splitlines() if x.startswith("0::")]
    if line and t.cgroup_id is not None:
        assert t.cgroup_path == line[0][3:]
    with pytest.raises(errors.InvalidArgumentError):
        target.from_pid(0)
    with pytest.raises(errors.NotFoundError):
        target.from_pid(2**22 + 12345)


# --- attribution -------------------------------------------------------------------------


def _t(name: str, cg: int | None, path: str | None) -> Target:
    return Target(name, name, 1, cg, path, {})


def test_attribution_render_filters_by_default_keeps_host_without_targets() -> None:
    none = attribution.render(())
    assert "BPF_HASH(lk_targets, u64, u32," in none
    assert "return 1;\n}" in none.split("*ix = 0;")[1]  # everything kept, as host
    some = attribution.render([_t("a", 5, "/lk/a")])
    assert "return 0;\n}" in some.split("*ix = 0;")[1]
    kept = attribution.render([_t("a", 5, "/lk/a")], host=True)
    assert "return 1;\n}" in kept.split("*ix = 0;")[1]
    for text in (none, some, kept):
        assert "LK_ANCESTORS" not in text and "LK_KEEP_HOST" not in text
        assert "#define LK_TARGET(ix) u32 ix = 0; if (!lk_target_of(&ix)) return 0;" in text


def test_attribution_matches_sub_cgroups_at_each_targets_depth() -> None:
    ts = [_t("a", 5, "/lk/a"), _t("b", 6, "/x/y/b"), _t("c", 7, "/lk/c")]
    assert attribution.levels(ts) == [3, 2]
    text = attribution.render(ts)
    assert "bpf_get_current_ancestor_cgroup_id(3)" in text
    assert "bpf_get_current_ancestor_cgroup_id(2)" in text
    assert "bpf_get_current_ancestor_cgroup_id(" not in attribution.render(())


@pytest.mark.parametrize(("ts", "what"), [
    ([_t("a", None, None)], "no cgroup v2 id"),
    ([_t("a", 1, "/")], "root of the cgroup v2 hierarchy"),
    ([_t("a", 5, "/lk/a"), _t("b", 5, "/lk/a")], "share cgroup"),
])
def test_attribution_refuses_targets_it_cannot_tell_apart(ts: list[Target], what: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=what):
        attribution.check(ts)


def test_attribution_fill_and_name_of() -> None:
    table: dict[int, int] = {}

    class FakeTable:
        def __setitem__(self, k: Any, v: Any) -> None:
            table[k.value] = v.value

    ts = [_t("a", 5, "/lk/a"), _t("b", 9, "/lk/b")]
    attribution.fill({b"lk_targets": FakeTable()}, ts)
    assert table == {5: 1, 9: 2}
    assert [attribution.name_of(ts, i) for i in (0, 1, 2, 3)] == ["host", "a", "b", "?3"]


def test_fork_into_cgroup_refuses_a_threaded_caller() -> None:
    import threading

    from labkit._sys.clone3 import fork_into_cgroup

    stop = threading.Event()
    th = threading.Thread(target=stop.wait)
    th.start()
    try:
        with pytest.raises(errors.UnsupportedError, match="more than one thread"):
            fork_into_cgroup(-1)
    finally:
        stop.set()
        th.join()


def test_without_unified_keeps_the_v1_dirs(hybrid: Path) -> None:
    cg = V1Cgroup(hybrid, "lk-t/c4", mountinfo=hybrid / "none", unified=hybrid / "unified")
    v1 = cg.without_unified()
    assert v1.unified_dir is None and cg.unified_dir is not None
    assert v1.dirs == cg.dirs and v1.name == cg.name


def test_a_mirror_that_cannot_be_made_leaves_the_cgroup_working(
        hybrid: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    real = os.mkdir

    def mkdir(path: str, mode: int = 0o777) -> None:
        if "/unified/" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", path)
        real(path, mode)

    monkeypatch.setattr(os, "mkdir", mkdir)
    cg = V1Cgroup(hybrid, "lk-t/c5", mountinfo=hybrid / "none", unified=hybrid / "unified")
    cg.create()
    assert cg.unified_dir is None and (hybrid / "pids" / "lk-t" / "c5").is_dir()
    assert not (hybrid / "unified" / "lk-t").exists()


def test_a_cgroup_made_before_mirroring_is_joined_in_v1_only(
        hybrid: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = V1Cgroup(hybrid, "lk-t/c6", mountinfo=hybrid / "none")  # an older labkit: no mirror
    old.create()
    fake.populate(old)
    cg = V1Cgroup(hybrid, "lk-t/c6", mountinfo=hybrid / "none", unified=hybrid / "unified")
    writes: list[str] = []
    real = _io.write
    monkeypatch.setattr(_io, "write", lambda p, d: (writes.append(str(p)), real(p, d)))
    cg.add_self()
    cg.add(4242)
    assert writes and not any("/unified/" in w for w in writes)
