"""One Cgroup contract, run against every backend (containerd's SnapshotterSuite pattern).

Backends: V1 on a fake tree, V2 on a fake tree, and with --privileged the real v1 hierarchies
of this host and the real cgroup2 mount (/sys/fs/cgroup/unified on a hybrid host, or
/sys/fs/cgroup on a unified one).  A tiny FakeKernel gives the fake trees the three things
only a kernel does: dead processes leave cgroup.procs, cgroup.events follows cgroup.freeze,
and cgroup.kill kills.  Limits are checked where the backend has the controller and must be
refused with UnsupportedError (nothing written) where it has not.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fakes import cgroups as fake

from labkit.cgroups import (
    Cgroup,
    Mode,
    Resources,
    Stats,
    V1Cgroup,
    V2Cgroup,
    _io,
    detect_mode,
)
from labkit.errors import AlreadyExistsError, ConflictError, LabkitError, UnsupportedError

_counter = itertools.count()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class FakeKernel:
    """Just enough kernel behaviour for plain-file cgroup trees."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.read, self.write, self.read_pids = _io.read, _io.write, _io.read_pids
        mp.setattr(_io, "read", self._read)
        mp.setattr(_io, "write", self._write)
        mp.setattr(_io, "read_pids", self._read_pids)

    # The backends pass str paths (os.path: no pathlib on labkit-runtime's start path).
    def _read_pids(self, path: str | Path) -> list[int]:
        return [p for p in self.read_pids(path) if _alive(p)]

    def _read(self, path: str | Path) -> str | None:
        path = Path(path)
        if path.name == "cgroup.events":
            frozen = (self.read(path.parent / "cgroup.freeze") or "0").strip()
            populated = int(any(self._read_pids(Path(d) / "cgroup.procs")
                                for d, _, _ in os.walk(path.parent)))
            return f"populated {populated}\nfrozen {frozen}\n"
        return self.read(path)

    def _write(self, path: str | Path, data: str) -> None:
        path = Path(path)
        if path.name == "cgroup.procs":  # the kernel adds to the list
            data = (self.read(path) or "") + data + "\n"
        self.write(path, data)
        if path.name == "cgroup.kill" and data == "1":
            for d, _, _ in os.walk(path.parent):
                for pid in self._read_pids(Path(d) / "cgroup.procs"):
                    os.kill(pid, signal.SIGKILL)


@dataclass
class Backend:
    kind: str
    make: Callable[[str], Cgroup]
    real: bool
    made: list[Cgroup] = field(default_factory=list)

    def new(self, suffix: str = "c") -> Cgroup:
        cg = self.make(f"lk-test-{os.getpid()}-{next(_counter)}/{suffix}")
        self.made.append(cg)
        return cg

    def has(self, cg: Cgroup, fname: str) -> bool:
        cg = getattr(cg, "_inner", cg)
        if isinstance(cg, V1Cgroup):
            d = cg.dirs.get(fname.split(".")[0])
            return d is not None and (d / fname).exists()
        return (cg.path / fname).exists()


def _host_v2_root() -> Path | None:
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        try:
            if detect_mode(root) is Mode.UNIFIED:
                return root
        except (UnsupportedError, OSError):
            continue
    return None


@pytest.fixture(params=[
    "v1-fake", "v2-fake",
    pytest.param("v1-host", marks=pytest.mark.privileged),
    pytest.param("v2-host", marks=pytest.mark.privileged),
])
def backend(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    kind: str = request.param
    if kind == "v1-fake":
        root = fake.make_tree(tmp_path, Mode.HYBRID)
        FakeKernel(monkeypatch)

        def make(name: str) -> Cgroup:
            return _Populating(V1Cgroup(root, name, mountinfo=root / "none"))
        b = Backend(kind, make, real=False)
    elif kind == "v2-fake":
        root = fake.make_tree(tmp_path, Mode.UNIFIED)
        FakeKernel(monkeypatch)
        b = Backend(kind, lambda name: _Populating(V2Cgroup(root, name)), real=False)
    elif kind == "v1-host":
        host = Path("/sys/fs/cgroup")
        if detect_mode(host) is Mode.UNIFIED:
            pytest.skip("host has no cgroup v1 hierarchies (unified mode)")
        b = Backend(kind, lambda name: V1Cgroup(host, name), real=True)
    else:
        v2 = _host_v2_root()
        if v2 is None:
            pytest.skip("no cgroup2 mount on this host")
        b = Backend(kind, lambda name: V2Cgroup(v2, name), real=True)
    yield b
    # Teardown, even after a failure: kill and remove every cgroup, then its lk-test parent.
    for cg in reversed(b.made):
        for target in (cg, b.make(cg.name.split("/")[0])):
            try:
                if target.exists():
                    target.kill(timeout=2)
                    target.remove()
            except (LabkitError, OSError) as err:  # report, but keep cleaning the rest
                print(f"cleanup of {target!r} failed: {err!r}")


class _Populating:
    """A fake-tree cgroup whose create() also writes the kernel's control files."""

    def __init__(self, inner: V1Cgroup | V2Cgroup) -> None:
        self._inner = inner

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return repr(self._inner)

    def create(self, *, exist_ok: bool = True) -> None:
        self._inner.create(exist_ok=exist_ok)
        fake.populate(self._inner)


@pytest.fixture
def spawn() -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    children: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["sleep", "300"])
        children.append(p)
        return p

    yield start
    for p in children:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_lifecycle(backend: Backend) -> None:
    cg = backend.new()
    assert not cg.exists()
    cg.create()
    assert cg.exists()
    cg.create()  # idempotent
    with pytest.raises(AlreadyExistsError):
        cg.create(exist_ok=False)
    assert cg.procs() == []
    cg.remove()
    assert not cg.exists()
    cg.remove()  # absent is fine


def test_add_and_procs(backend: Backend, spawn: Callable[[], subprocess.Popen[bytes]]) -> None:
    cg = backend.new()
    cg.create()
    a, b = spawn(), spawn()
    cg.add(a.pid)
    cg.add(b.pid)
    assert cg.procs() == sorted([a.pid, b.pid])
    if backend.real:
        with open(f"/proc/{a.pid}/cgroup") as f:
            assert cg.name in f.read()


def test_freeze_and_thaw(backend: Backend, spawn: Callable[[], subprocess.Popen[bytes]]) -> None:
    cg = backend.new()
    cg.create()
    p = spawn()
    cg.add(p.pid)
    cg.freeze(True)
    assert cg.is_frozen()
    cg.freeze(False)
    assert not cg.is_frozen()
    assert p.poll() is None  # thawed, still running


def test_kill_empties_the_subtree(backend: Backend,
                                  spawn: Callable[[], subprocess.Popen[bytes]]) -> None:
    cg = backend.new()
    cg.create()
    # Processes go into leaves: on v2 a cgroup that enables controllers for its children may
    # hold none itself (cgroup-v2.rst, "No Internal Process Constraint").
    one, child = backend.make(cg.name + "/one"), backend.make(cg.name + "/inner")
    one.create()
    child.create()
    a, b = spawn(), spawn()
    one.add(a.pid)
    child.add(b.pid)
    cg.kill()
    assert one.procs() == [] and child.procs() == []
    assert a.wait() == -signal.SIGKILL and b.wait() == -signal.SIGKILL


def test_remove_refuses_while_processes_remain(
        backend: Backend, spawn: Callable[[], subprocess.Popen[bytes]]) -> None:
    cg = backend.new()
    cg.create()
    inner = backend.make(cg.name + "/inner")
    inner.create()
    p = spawn()
    inner.add(p.pid)
    with pytest.raises(ConflictError):
        cg.remove()
    assert cg.exists() and inner.exists()  # nothing removed
    cg.kill()
    p.wait()
    cg.remove()  # children first
    assert not inner.exists() and not cg.exists()


def test_set_and_stats(backend: Backend) -> None:
    cg = backend.new()
    cg.create()
    r = Resources(pids_max=50)
    if backend.has(cg, "pids.max"):
        cg.set(r)
        assert cg.stats().pids_max == 50
    else:
        with pytest.raises(UnsupportedError, match="pids"):
            cg.set(r)
    mem_file = _mem_file(cg)
    if backend.has(cg, mem_file):
        cg.set(Resources(memory_max=64 << 20))
        assert cg.stats().memory_max == 64 << 20
        cg.set(Resources(memory_max=-1))
        assert cg.stats().memory_max == -1
    else:
        with pytest.raises(UnsupportedError, match="memory"):
            cg.set(Resources(memory_max=64 << 20))
    st = cg.stats()
    assert isinstance(st, Stats)
    for name in Stats.__slots__:
        value = getattr(st, name)
        assert value is None or (isinstance(value, int) and value >= -1), name


def _mem_file(cg: Cgroup) -> str:
    v1 = isinstance(getattr(cg, "_inner", cg), V1Cgroup)
    return "memory.limit_in_bytes" if v1 else "memory.max"


def test_unsupported_field_refuses_the_whole_set(backend: Backend) -> None:
    cg = backend.new()
    cg.create()
    if not backend.has(cg, "pids.max"):
        pytest.skip(f"{backend.kind}: no pids controller to observe")
    if not backend.real:  # make io weight absent on the fakes, as it is on this host
        for d in {cg.path, *getattr(cg, "dirs", {}).values()}:
            for fname in ("io.weight", "blkio.weight", "blkio.bfq.weight"):
                (d / fname).unlink(missing_ok=True)
    elif backend.has(cg, "blkio.weight") or backend.has(cg, "blkio.bfq.weight") \
            or backend.has(cg, "io.weight"):
        pytest.skip(f"{backend.kind}: io weight is supported here")
    with pytest.raises(UnsupportedError, match="weight"):
        cg.set(Resources(pids_max=7, io_weight=500))
    assert cg.stats().pids_max == -1  # pids.max was not written


def test_kernel_refusal_is_undone(backend: Backend) -> None:
    if not backend.real:
        pytest.skip("only a real kernel refuses values")
    cg = backend.new()
    cg.create()
    if not (backend.has(cg, _mem_file(cg)) and backend.has(cg, "cpuset.cpus")):
        pytest.skip(f"{backend.kind}: needs the memory and cpuset controllers")
    with pytest.raises(OSError) as exc:
        cg.set(Resources(memory_max=64 << 20, cpuset_cpus="999"))
    assert 'write "999" to cpuset.cpus' in str(exc.value)
    assert cg.stats().memory_max == -1  # the memory limit written first was undone
