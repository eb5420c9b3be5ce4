"""The cgroup v2 backend against a kernel with the unified hierarchy and every controller.

Each test makes one cgroup lk-vm-<pid>-<n>, puts a child process of its own in it, checks
that the kernel enforced the limit (the kernel's own counters, not timings), and removes
it.  cgroup-v2.rst names the files.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.cgroups import Mode, Resources, V2Cgroup, convert, detect_mode, open_cgroup

pytestmark = pytest.mark.privileged


@pytest.fixture
def cg(unique: str) -> Iterator[V2Cgroup]:
    g = open_cgroup(f"lk-vm-test-{unique}")
    assert isinstance(g, V2Cgroup)
    g.create()
    try:
        yield g
    finally:
        g.kill()
        g.remove()
    assert not g.exists()


def _child(code: str) -> subprocess.Popen[bytes]:
    """A Python child that waits for one byte on stdin before running ``code``."""
    return subprocess.Popen([sys.executable, "-c", f"import sys; sys.stdin.read(1)\n{code}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _go(p: subprocess.Popen[bytes]) -> tuple[int, bytes]:
    out, _ = p.communicate(b"x", timeout=120)
    return p.returncode, out


def test_host_is_unified() -> None:
    assert detect_mode() is Mode.UNIFIED
    wanted = {"cpu", "memory", "pids", "io"}
    have = set(Path("/sys/fs/cgroup/cgroup.controllers").read_text().split())
    assert wanted <= have


def test_memory_max_ooms_a_child_that_exceeds_it(cg: V2Cgroup) -> None:
    cg.set(Resources(memory_max=32 << 20))
    p = _child("b = b'x' * (128 << 20)\nprint(len(b))")  # touches every page
    cg.add(p.pid)
    rc, out = _go(p)
    assert rc == -9 and out == b""  # SIGKILLed by the OOM killer, never printed
    st = cg.stats()
    assert st.memory_max == 32 << 20
    assert st.oom_kills is not None and st.oom_kills >= 1


def test_pids_max_stops_forks(cg: V2Cgroup) -> None:
    cg.set(Resources(pids_max=5))
    # The grandchildren close stdout, so only the child holds the pipe; it reports how many
    # forks succeeded and the errno of the first failure, then waits for the test to look.
    p = _child("import os, time\nn = 0\n"
               "try:\n    for _ in range(20):\n        if os.fork() == 0:\n"
               "            os.close(1); time.sleep(60); os._exit(0)\n        n += 1\n"
               "except OSError as e:\n    print(n, e.errno, flush=True)\nsys.stdin.read(1)\n")
    cg.add(p.pid)
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(b"x")
    p.stdin.flush()
    forked, err = p.stdout.readline().split()
    assert int(forked) == 4  # the child itself plus 4 = pids.max
    assert int(err) == 11  # EAGAIN from fork(2)
    st = cg.stats()
    assert st.pids_max == 5 and st.pids_current == 5
    _go(p)


def test_cpu_quota_throttles(cg: V2Cgroup) -> None:
    cg.set(Resources(cpu_quota_us=10_000, cpu_period_us=100_000))
    assert (cg.path / "cpu.max").read_text().split() == ["10000", "100000"]
    # Burn ~0.3 s of CPU time: with 10 ms per 100 ms that spans many throttled periods.
    p = _child("import time\nt = time.process_time()\n"
               "while time.process_time() - t < 0.3: pass\n")
    cg.add(p.pid)
    rc, _ = _go(p)
    assert rc == 0
    st = cg.stats()
    assert st.nr_throttled is not None and st.nr_throttled > 0
    assert st.cpu_usage_usec is not None and st.cpu_usage_usec >= 300_000


def test_io_weight_is_written_in_v2_scale(cg: V2Cgroup) -> None:
    cg.set(Resources(io_weight=500))
    f = cg.path / "io.weight"
    if f.exists():
        want = f"default {convert.blkio_weight_to_io_weight(500)}"
    else:
        f, want = cg.path / "io.bfq.weight", "default 500"
    assert f.read_text().splitlines()[0] == want


def test_memory_current_counts_a_childs_pages(cg: V2Cgroup) -> None:
    before = cg.stats().memory_current or 0
    p = _child("b = b'x' * (16 << 20)\nprint('ok', flush=True)\nsys.stdin.read(1)")
    cg.add(p.pid)
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(b"x")
    p.stdin.flush()
    assert p.stdout.readline() == b"ok\n"
    during = cg.stats().memory_current or 0
    _go(p)
    assert during - before >= 16 << 20


def test_no_internal_processes_rule_is_a_clear_error(cg: V2Cgroup) -> None:
    # A cgroup that enables controllers for a child may not hold processes (cgroup-v2.rst,
    # "No Internal Process Constraint"): the kernel says EBUSY, labkit says why.
    from labkit.errors import SyscallBusyError

    leaf = open_cgroup(f"{cg.name}/leaf")
    leaf.create()
    leaf.set(Resources(pids_max=10))  # makes the parent hand the pids controller down
    p = _child("pass")
    try:
        with pytest.raises(SyscallBusyError) as info:
            cg.add(p.pid)
        assert "no internal processes" in (info.value.hint or "")
        leaf.add(p.pid)  # the leaf takes it
        assert leaf.procs() == [p.pid]
    finally:
        _go(p)
