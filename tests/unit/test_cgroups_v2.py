"""V2Cgroup against a fake cgroup2 tree in tmp_path: subtree_control, exact writes, parsing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import cgroups as fake

from labkit.cgroups import IoLimit, Mode, Resources, V2Cgroup, _io, open_cgroup
from labkit.errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    SyscallError,
    UnsupportedError,
)

Writes = list[tuple[str, str]]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return fake.make_tree(tmp_path, Mode.UNIFIED)


def _fresh(path: Path, controllers: str) -> None:
    # What the kernel shows in a new child: the parent's enabled controllers are available.
    (path / "cgroup.controllers").write_text(controllers + "\n")
    (path / "cgroup.subtree_control").write_text("")


@pytest.fixture
def cg(root: Path) -> V2Cgroup:
    c = open_cgroup("lk-t/c1", root=root, mode=Mode.UNIFIED)
    assert isinstance(c, V2Cgroup)
    c.create()
    fake.populate(c)
    return c


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch, root: Path) -> Iterator[Writes]:
    log: Writes = []
    real = _io.write

    def recording(path: str | Path, data: str) -> None:
        path = Path(path)  # the backend passes str paths (no pathlib on the start path)
        log.append((str(path.relative_to(root)), data))
        if path.name != "cgroup.subtree_control":
            real(path, data)
            return
        # The kernel merges "+a -b" into the enabled set, and shows it to each child.
        enabled = path.read_text().split()
        for word in data.split():
            if word[0] == "+" and word[1:] not in enabled:
                enabled.append(word[1:])
            elif word[0] == "-" and word[1:] in enabled:
                enabled.remove(word[1:])
        path.write_text(" ".join(enabled) + "\n")
        for child in path.parent.iterdir():
            if child.is_dir():
                _fresh(child, " ".join(enabled))

    monkeypatch.setattr(_io, "write", recording)
    yield log


def test_create_enables_controllers_on_ancestors_only(root: Path, writes: Writes) -> None:
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma\n")
    (root / "cgroup.subtree_control").write_text("cpu\n")
    orig_mkdir = __import__("os").mkdir

    def mkdir_like_kernel(p: Path, mode: int = 0o777) -> None:
        orig_mkdir(p, mode)
        parent_enabled = (Path(p).parent / "cgroup.subtree_control").read_text()
        _fresh(Path(p), " ".join(parent_enabled.split()))

    mp = pytest.MonkeyPatch()
    mp.setattr("os.mkdir", mkdir_like_kernel)
    try:
        V2Cgroup(root, "lk-t/c1").create()
    finally:
        mp.undo()
    assert writes == [
        ("cgroup.subtree_control", "+cpuset +io +memory +pids"),  # cpu was on already
        ("lk-t/cgroup.subtree_control", "+cpuset +cpu +io +memory +pids"),
    ]
    assert (root / "lk-t" / "c1").is_dir()
    assert (root / "lk-t" / "c1" / "cgroup.subtree_control").read_text() == ""  # leaf untouched


def test_refused_controller_is_remembered_for_set(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = _io.write
    tried: list[str] = []

    def refuse_memory(path: str | Path, data: str) -> None:
        path = Path(path)  # the backend passes str paths
        tried.append(data)
        if "+memory" in data:
            raise SyscallError(16, f'write "{data}" to {path.name}', str(path))
        real(path, data)

    monkeypatch.setattr(_io, "write", refuse_memory)
    cg = V2Cgroup(root, "lk-t/c1")
    cg.create()
    # The batch was refused, then each one was tried alone.
    assert tried == ["+cpuset +cpu +io +memory +pids", "+cpuset", "+cpu", "+io", "+memory",
                     "+pids"]
    with pytest.raises(UnsupportedError) as exc:
        cg.set(Resources(memory_max=1 << 20))
    assert exc.value.feature == "cgroup controller memory"
    assert "write" in exc.value.reason


def test_set_writes_exact_files(cg: V2Cgroup, writes: Writes) -> None:
    cg.set(Resources(memory_max=64 << 20, memory_swap_max=96 << 20, memory_reservation=16 << 20,
                     cpu_quota_us=20000, cpu_shares=1024, cpuset_cpus="0-1", cpuset_mems="0",
                     pids_max=50, io_weight=500,
                     io_limits=(IoLimit(8, 0, rbps=1048576, wiops=10),)))
    assert writes == [
        ("lk-t/c1/memory.max", str(64 << 20)),
        ("lk-t/c1/memory.swap.max", str(32 << 20)),  # Docker total 96M minus memory 64M
        ("lk-t/c1/memory.low", str(16 << 20)),
        ("lk-t/c1/cpu.max", "20000 100000"),
        ("lk-t/c1/cpu.weight", "100"),  # 1024 shares
        ("lk-t/c1/cpuset.cpus", "0-1"),
        ("lk-t/c1/cpuset.mems", "0"),
        ("lk-t/c1/pids.max", "50"),
        ("lk-t/c1/io.weight", "default 4950"),  # blkio 500 -> io 4950
        ("lk-t/c1/io.max", "8:0 rbps=1048576 wiops=10"),
    ]


def test_cpu_max_keeps_the_half_not_given(cg: V2Cgroup) -> None:
    cg.set(Resources(cpu_quota_us=50000, cpu_period_us=200000))
    cg.set(Resources(cpu_period_us=100000))
    assert fake.read(cg, "cpu.max") == "50000 100000"
    cg.set(Resources(cpu_quota_us=-1))
    assert fake.read(cg, "cpu.max") == "max 100000"


def test_unlimited_values_are_max(cg: V2Cgroup, writes: Writes) -> None:
    cg.set(Resources(memory_max=-1, pids_max=-1))
    assert writes == [("lk-t/c1/memory.max", "max"), ("lk-t/c1/memory.swap.max", "max"),
                      ("lk-t/c1/pids.max", "max")]


def test_missing_controller_unsupported_nothing_written(root: Path, writes: Writes) -> None:
    cg = V2Cgroup(root, "lk-t/c2")
    cg.create()
    (cg.path / "cgroup.procs").write_text("")
    (cg.path / "pids.max").write_text("max")
    with pytest.raises(UnsupportedError) as exc:
        cg.set(Resources(pids_max=10, memory_max=1 << 20))
    assert exc.value.feature == "cgroup controller memory"
    assert "cgroup.subtree_control" in str(exc.value)
    assert (cg.path / "pids.max").read_text() == "max"
    cg.set(Resources(pids_max=10))  # pids alone is fine
    assert (cg.path / "pids.max").read_text() == "10"


def test_refused_write_undoes_earlier_ones(cg: V2Cgroup) -> None:
    (cg.path / "pids.max").unlink()
    (cg.path / "pids.max").symlink_to("/proc/sys/kernel/ostype")
    with pytest.raises(SyscallError) as exc:
        cg.set(Resources(memory_max=64 << 20, cpu_weight=200, pids_max=7))
    assert 'write "7" to pids.max' in str(exc.value)
    assert fake.read(cg, "memory.max") == "max"
    assert fake.read(cg, "cpu.weight") == "100"


def test_swap_without_memory_is_rejected_before_writing() -> None:
    with pytest.raises(InvalidArgumentError):
        Resources(memory_swap_max=1 << 30)


def test_stats_parses_v2_files(cg: V2Cgroup) -> None:
    p = cg.path
    (p / "memory.current").write_text("4096\n")
    (p / "memory.peak").write_text("8192\n")
    (p / "memory.max").write_text("67108864\n")
    (p / "memory.swap.current").write_text("0\n")
    (p / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n")
    (p / "cpu.stat").write_text("usage_usec 300\nuser_usec 200\nsystem_usec 100\n"
                                "nr_periods 9\nnr_throttled 5\nthrottled_usec 777\n")
    (p / "pids.current").write_text("2\n")
    st = cg.stats()
    assert (st.memory_current, st.memory_peak, st.memory_max, st.memory_swap_current) == (
        4096, 8192, 64 << 20, 0)
    assert (st.memory_limit_hits, st.oom_events, st.oom_kills) == (12, 2, 1)
    assert (st.cpu_usage_usec, st.cpu_user_usec, st.cpu_system_usec) == (300, 200, 100)
    assert (st.nr_periods, st.nr_throttled, st.throttled_usec) == (9, 5, 777)
    assert (st.pids_current, st.pids_max) == (2, -1)


def test_stats_without_controllers_gives_none(root: Path) -> None:
    cg = V2Cgroup(root, "lk-bare")
    cg.create()
    (cg.path / "cpu.stat").write_text("usage_usec 5\nuser_usec 3\nsystem_usec 2\n")
    st = cg.stats()
    assert st.cpu_usage_usec == 5 and st.nr_throttled is None and st.memory_current is None


def test_pressure(cg: V2Cgroup) -> None:
    (cg.path / "memory.pressure").write_text(
        "some avg10=1.50 avg60=0.25 avg300=0.00 total=1234\n"
        "full avg10=0.50 avg60=0.00 avg300=0.00 total=99\n")
    pr = cg.pressure("memory")
    assert (pr.some.avg10, pr.some.total_usec) == (1.5, 1234)
    assert pr.full is not None and pr.full.total_usec == 99
    with pytest.raises(UnsupportedError):
        cg.pressure("io")
    with pytest.raises(InvalidArgumentError):
        cg.pressure("gpu")


def test_freeze_waits_for_events(cg: V2Cgroup, writes: Writes) -> None:
    (cg.path / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    cg.freeze(True)
    assert cg.is_frozen()
    (cg.path / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    cg.freeze(False)
    assert writes == [("lk-t/c1/cgroup.freeze", "1"), ("lk-t/c1/cgroup.freeze", "0")]


def test_freeze_timeout_thaws(cg: V2Cgroup) -> None:
    with pytest.raises(ConflictError):
        cg.freeze(True, timeout=0.05)  # events never say "frozen 1"
    assert fake.read(cg, "cgroup.freeze") == "0"


def test_kill_uses_cgroup_kill(cg: V2Cgroup, writes: Writes) -> None:
    cg.kill(timeout=0.5)
    assert writes == [("lk-t/c1/cgroup.kill", "1")]
    (cg.path / "cgroup.procs").write_text("999999\n")
    with pytest.raises(ConflictError):
        cg.kill(timeout=0.05)


def test_kill_without_cgroup_kill_freezes(cg: V2Cgroup, writes: Writes) -> None:
    (cg.path / "cgroup.kill").unlink()
    (cg.path / "cgroup.events").write_text("frozen 1\n")
    real_read = _io.read

    def events_follow_freeze(path: str | Path) -> str | None:
        path = Path(path)  # the backend passes str paths
        if path.name == "cgroup.events":
            return f"frozen {real_read(cg.path / 'cgroup.freeze')}\n"
        return real_read(path)

    mp = pytest.MonkeyPatch()
    mp.setattr(_io, "read", events_follow_freeze)
    try:
        cg.kill(timeout=0.5)
    finally:
        mp.undo()
    assert writes == [("lk-t/c1/cgroup.freeze", "1"), ("lk-t/c1/cgroup.freeze", "0")]


def test_remove_and_not_found(cg: V2Cgroup, root: Path) -> None:
    (cg.path / "cgroup.procs").write_text("1\n")
    with pytest.raises(ConflictError):
        cg.remove()
    (cg.path / "cgroup.procs").write_text("")
    cg.remove()
    assert not cg.exists() and (root / "lk-t").is_dir()
    with pytest.raises(NotFoundError):
        cg.add(1)
    with pytest.raises(NotFoundError):
        cg.set(Resources(pids_max=1))


def test_add_self_writes_zero_to_cgroup_procs(cg: V2Cgroup, writes: Writes, root: Path) -> None:
    cg.add_self()
    assert writes == [("lk-t/c1/cgroup.procs", "0")]
    with pytest.raises(NotFoundError):
        V2Cgroup(root, "lk-t/none").add_self()


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"memory_swappiness": 10}, "linux.resources.memory.swappiness"),
    ({"oom_kill_disable": True}, "linux.resources.memory.disableOOMKiller")])
def test_v1_only_memory_knobs_are_refused(cg: V2Cgroup, writes: Writes, kwargs: dict[str, Any],
                                          field: str) -> None:
    with pytest.raises(UnsupportedError, match=field):
        cg.set(Resources(memory_max=64 << 20, **kwargs))
    assert writes == []  # refused before anything was written
    cg.set(Resources(oom_kill_disable=False))  # the killer on: v2's only behaviour
