"""V1Cgroup against a fake v1 cgroupfs in tmp_path: exactly what gets written, and in what order."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import cgroups as fake

from labkit.cgroups import IoLimit, Mode, Resources, V1Cgroup, _io, open_cgroup
from labkit.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    SyscallError,
    UnsupportedError,
)

Writes = list[tuple[str, str]]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return fake.make_tree(tmp_path, Mode.HYBRID)


@pytest.fixture
def cg(root: Path) -> V1Cgroup:
    c = open_cgroup("lk-t/c1", root=root, mode=Mode.HYBRID)
    assert isinstance(c, V1Cgroup)
    c.create()
    fake.populate(c)
    return c


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch, root: Path) -> Iterator[Writes]:
    log: Writes = []
    real = _io.write

    def recording(path: str | Path, data: str) -> None:
        log.append((str(Path(path).relative_to(root)), data))
        real(path, data)

    monkeypatch.setattr(_io, "write", recording)
    yield log


def test_create_makes_one_dir_per_hierarchy_and_inherits_cpuset(root: Path) -> None:
    cg = V1Cgroup(root, "lk-t/c1", mountinfo=root / "none")
    assert not cg.exists()
    # A real cpuset dir starts with empty cpus/mems; simulate it for the first level.
    os.mkdir(root / "cpuset" / "lk-t")
    (root / "cpuset" / "lk-t" / "cpuset.cpus").write_text("\n")
    (root / "cpuset" / "lk-t" / "cpuset.mems").write_text("")
    cg.create()
    assert cg.exists()
    for ctrl in ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices"):
        assert (root / ctrl / "lk-t" / "c1").is_dir()
    assert (root / "systemd" / "lk-t" / "c1").is_dir()
    assert (root / "cpuset" / "lk-t" / "cpuset.cpus").read_text() == "0-1"
    assert (root / "cpuset" / "lk-t" / "cpuset.mems").read_text() == "0"
    assert cg.path == root / "memory" / "lk-t" / "c1"


def test_create_exist_ok(cg: V1Cgroup) -> None:
    cg.create()  # idempotent by default
    with pytest.raises(AlreadyExistsError):
        cg.create(exist_ok=False)


def test_create_rolls_back_on_failure(root: Path) -> None:
    (root / "pids" / "lk-t").write_text("a file where a directory must go")
    cg = V1Cgroup(root, "lk-t/c1", mountinfo=root / "none")
    with pytest.raises(SyscallError) as exc:
        cg.create()
    assert "mkdir" in str(exc.value)
    assert not (root / "cpu" / "lk-t").exists() and not (root / "cpuset" / "lk-t").exists()


def test_add_writes_cgroup_procs_everywhere(cg: V1Cgroup, writes: Writes) -> None:
    cg.add(4242)
    assert sorted(writes) == sorted(
        (str(d.relative_to(cg.root) / "cgroup.procs"), "4242") for d in cg.dirs.values())
    assert cg.procs() == [4242]
    with pytest.raises(InvalidArgumentError):
        cg.add(-1)


def test_add_self_writes_zero_to_tasks_once_per_hierarchy(root: Path, writes: Writes) -> None:
    mounts = {c: root / c for c in ("cpu", "memory", "pids")}
    mounts["cpuacct"] = root / "cpu"  # a co-mount (cpu,cpuacct) is written once
    cg = V1Cgroup(root, "lk-t/c2", hierarchies=mounts)
    cg.create()
    fake.populate(cg)
    cg.add_self()
    assert sorted(writes) == [(f"{c}/lk-t/c2/tasks", "0") for c in ("cpu", "memory", "pids")]


def test_add_self_before_create(root: Path) -> None:
    with pytest.raises(NotFoundError):
        V1Cgroup(root, "lk-t/none", mountinfo=root / "none").add_self()


def test_add_before_create(root: Path) -> None:
    with pytest.raises(NotFoundError):
        V1Cgroup(root, "lk-t/none", mountinfo=root / "none").add(1)


def test_set_writes_exact_files(cg: V1Cgroup, writes: Writes) -> None:
    cg.set(Resources(memory_max=64 << 20, memory_reservation=32 << 20, cpu_quota_us=20000,
                     cpu_period_us=100000, cpu_weight=100, cpuset_cpus="0", cpuset_mems="0",
                     pids_max=50, io_limits=(IoLimit(8, 0, rbps=1048576, wiops=10),)))
    assert writes == [
        ("memory/lk-t/c1/memory.limit_in_bytes", str(64 << 20)),
        ("memory/lk-t/c1/memory.soft_limit_in_bytes", str(32 << 20)),
        ("cpu/lk-t/c1/cpu.cfs_period_us", "100000"),
        ("cpu/lk-t/c1/cpu.cfs_quota_us", "20000"),
        ("cpu/lk-t/c1/cpu.shares", "1024"),
        ("cpuset/lk-t/c1/cpuset.cpus", "0"),
        ("cpuset/lk-t/c1/cpuset.mems", "0"),
        ("pids/lk-t/c1/pids.max", "50"),
        ("blkio/lk-t/c1/blkio.throttle.read_bps_device", "8:0 1048576"),
        ("blkio/lk-t/c1/blkio.throttle.write_iops_device", "8:0 10"),
    ]


def test_set_memory_only_writes_limit(cg: V1Cgroup, writes: Writes) -> None:
    cg.set(Resources(memory_max=64 << 20, pids_max=-1))
    assert writes == [("memory/lk-t/c1/memory.limit_in_bytes", str(64 << 20)),
                      ("pids/lk-t/c1/pids.max", "max")]


def test_swap_order_when_raising_and_lowering(cg: V1Cgroup, writes: Writes) -> None:
    # Lowering from unlimited: memory first, so limit <= memsw holds after each write.
    cg.set(Resources(memory_max=64 << 20, memory_swap_max=128 << 20))
    assert [f.rsplit("/", 1)[1] for f, _ in writes] == [
        "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    writes.clear()
    # Raising above the current 64M limit: memory+swap first.
    cg.set(Resources(memory_max=256 << 20, memory_swap_max=512 << 20))
    assert writes == [("memory/lk-t/c1/memory.memsw.limit_in_bytes", str(512 << 20)),
                      ("memory/lk-t/c1/memory.limit_in_bytes", str(256 << 20))]
    writes.clear()
    # Unlimited memory with unset swap: both unlimited, memsw first (runc).
    cg.set(Resources(memory_max=-1))
    assert writes == [("memory/lk-t/c1/memory.memsw.limit_in_bytes", "-1"),
                      ("memory/lk-t/c1/memory.limit_in_bytes", "-1")]


def test_cpu_shares_written_as_is(cg: V1Cgroup) -> None:
    cg.set(Resources(cpu_shares=512))
    assert fake.read(cg, "cpu.shares") == "512"


def test_missing_controller_is_unsupported_only_when_used(root: Path) -> None:
    tree = fake.make_tree(root.parent / "other", Mode.LEGACY,
                          v1_controllers=("cpu", "cpuacct", "memory"))
    cg = V1Cgroup(tree, "lk-t/c1", mountinfo=tree / "none")
    cg.create()
    fake.populate(cg)
    cg.set(Resources(memory_max=1 << 30))  # fine: memory is there
    with pytest.raises(UnsupportedError) as exc:
        cg.set(Resources(memory_max=64 << 20, pids_max=10))
    assert exc.value.feature == "cgroup controller pids"
    assert fake.read(cg, "memory.limit_in_bytes") == str(1 << 30)  # nothing half-applied
    with pytest.raises(UnsupportedError):
        cg.freeze(True)
    cg.remove()


def test_io_weight_unsupported_without_weight_file(cg: V1Cgroup, writes: Writes) -> None:
    with pytest.raises(UnsupportedError, match="blkio.bfq.weight"):
        cg.set(Resources(pids_max=5, io_weight=500))
    assert writes == []
    (cg.dirs["blkio"] / "blkio.bfq.weight").write_text("100")
    cg.set(Resources(io_weight=500))
    assert fake.read(cg, "blkio.bfq.weight") == "500"


def test_refused_write_names_file_and_value_and_undoes(cg: V1Cgroup) -> None:
    # pids.max -> a read-only sysctl: readable, but the write is refused (EACCES), as the
    # kernel refuses a value it does not like.
    (cg.dirs["pids"] / "pids.max").unlink()
    (cg.dirs["pids"] / "pids.max").symlink_to("/proc/sys/kernel/ostype")
    with pytest.raises(SyscallError) as exc:
        cg.set(Resources(memory_max=64 << 20, cpu_quota_us=50000, pids_max=7))
    assert 'write "7" to pids.max' in str(exc.value)
    assert exc.value.filename == str(cg.dirs["pids"] / "pids.max")
    # The earlier writes were undone.
    assert fake.read(cg, "memory.limit_in_bytes") == fake.V1_FILES["memory"]["memory.limit_in_bytes"]
    assert fake.read(cg, "cpu.cfs_quota_us") == "-1"


def test_stats_parses_v1_files(cg: V1Cgroup) -> None:
    m, c, a = cg.dirs["memory"], cg.dirs["cpu"], cg.dirs["cpuacct"]
    (m / "memory.usage_in_bytes").write_text("1000\n")
    (m / "memory.max_usage_in_bytes").write_text("5000\n")
    (m / "memory.memsw.usage_in_bytes").write_text("1500\n")
    (m / "memory.failcnt").write_text("3\n")
    (m / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (a / "cpuacct.usage").write_text("7000000\n")
    hz = os.sysconf("SC_CLK_TCK")
    (a / "cpuacct.stat").write_text(f"user {hz}\nsystem {2 * hz}\n")
    (c / "cpu.stat").write_text("nr_periods 10\nnr_throttled 4\nthrottled_time 9000000\n")
    (cg.dirs["pids"] / "pids.current").write_text("3\n")
    (cg.dirs["pids"] / "pids.max").write_text("50\n")
    st = cg.stats()
    assert (st.memory_current, st.memory_peak, st.memory_swap_current) == (1000, 5000, 500)
    assert st.memory_max == -1  # 9223372036854771712 means unlimited
    assert (st.memory_limit_hits, st.oom_kills, st.oom_events) == (3, 2, None)
    assert (st.cpu_usage_usec, st.cpu_user_usec, st.cpu_system_usec) == (7000, 1_000_000, 2_000_000)
    assert (st.nr_periods, st.nr_throttled, st.throttled_usec) == (10, 4, 9000)
    assert (st.pids_current, st.pids_max) == (3, 50)


def test_freeze_writes_state_and_waits(cg: V1Cgroup, writes: Writes) -> None:
    cg.freeze(True)
    assert cg.is_frozen()
    cg.freeze(False)
    assert not cg.is_frozen()
    assert writes == [("freezer/lk-t/c1/freezer.state", "FROZEN"),
                      ("freezer/lk-t/c1/freezer.state", "THAWED")]


def test_freeze_timeout_thaws_and_raises(cg: V1Cgroup, monkeypatch: pytest.MonkeyPatch) -> None:
    real = _io.write

    def stuck(path: Path, data: str) -> None:  # the kernel stays in FREEZING
        real(path, "FREEZING" if data == "FROZEN" else data)

    monkeypatch.setattr(_io, "write", stuck)
    with pytest.raises(ConflictError):
        cg.freeze(True, timeout=0.05)
    assert fake.read(cg, "freezer.state") == "THAWED"


def test_kill_signals_our_child_and_waits(cg: V1Cgroup) -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        (cg.dirs["freezer"] / "cgroup.procs").write_text(f"{child.pid}\n")

        def reap_and_clear(path: Path, data: str) -> None:
            real(path, data)
            if data == "THAWED":  # after the kill: the "kernel" empties the cgroup
                child.wait()
                (cg.dirs["freezer"] / "cgroup.procs").write_text("")

        real = _io.write
        mp = pytest.MonkeyPatch()
        mp.setattr(_io, "write", reap_and_clear)
        try:
            cg.kill(timeout=2)
        finally:
            mp.undo()
        assert child.returncode == -9
        assert cg.procs() == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_kill_times_out_when_procs_stay(cg: V1Cgroup) -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        (cg.dirs["pids"] / "cgroup.procs").write_text(f"{child.pid}\n")
        with pytest.raises(ConflictError, match="still there"):
            cg.kill(timeout=0.05)
    finally:
        child.kill()
        child.wait()


def test_remove_refuses_with_processes_then_removes(cg: V1Cgroup, root: Path) -> None:
    (cg.dirs["memory"] / "cgroup.procs").write_text("123\n")
    with pytest.raises(ConflictError):
        cg.remove()
    assert cg.exists()
    (cg.dirs["memory"] / "cgroup.procs").write_text("")
    (cg.dirs["memory"] / "child").mkdir()
    (cg.dirs["memory"] / "child" / "cgroup.procs").write_text("")
    cg.remove()
    assert not cg.exists()
    assert (root / "memory" / "lk-t").is_dir()  # the parent is not ours to remove
    cg.remove()  # absent is fine


def test_pressure_is_unsupported_on_v1(cg: V1Cgroup) -> None:
    with pytest.raises(UnsupportedError):
        cg.pressure("cpu")


def test_swappiness_and_oom_killer_written(cg: V1Cgroup, root: Path, writes: Writes) -> None:
    cg.set(Resources(memory_swappiness=0, oom_kill_disable=True))
    assert writes == [("memory/lk-t/c1/memory.swappiness", "0"),
                      ("memory/lk-t/c1/memory.oom_control", "1")]
