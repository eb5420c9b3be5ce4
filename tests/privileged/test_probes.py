"""Probes against known workloads on the real kernel (bcc CONTRIBUTING-SCRIPTS: 23 events).

Each test compiles one small program (~0.3-0.6 s); they are kept few on purpose.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit import errors
from labkit._sys import features
from labkit.probes import execsnoop, kcount, oomkill

pytestmark = pytest.mark.privileged

N = 23  # a prime number of events, so a doubled or dropped event cannot hide


def test_execsnoop_sees_exactly_23_execs_of_bin_true() -> None:
    with execsnoop.attach(execsnoop.Options(ppid=os.getpid())) as probe:
        pids = []
        for _ in range(N):
            p = subprocess.Popen(["/bin/true"])
            pids.append(p.pid)
            assert p.wait() == 0
        records = probe.read()
        lost = probe.lost
    assert lost == 0
    assert len(records) == N, records
    assert all(r.filename == "/bin/true" and r.comm == "true" for r in records)
    assert all(r.ppid == os.getpid() and r.uid == os.getuid() for r in records)
    # Cross-check with subprocess: the same pids, in the same order (records are time-sorted).
    assert [r.pid for r in records] == pids


def test_execsnoop_read_drains() -> None:
    with execsnoop.attach(execsnoop.Options(ppid=os.getpid())) as probe:
        subprocess.run(["/bin/true"], check=True)
        assert len(probe.read()) == 1
        assert probe.read() == []
    with pytest.raises(errors.InvalidStateError):
        probe.read()


def _memory_cgroup(name: str) -> Path:
    cg = Path("/sys/fs/cgroup/memory") / name
    if not (cg.parent / "memory.limit_in_bytes").exists():
        pytest.skip("needs the cgroup v1 memory controller at /sys/fs/cgroup/memory")
    cg.mkdir()
    return cg


@pytest.mark.skipif(not features.tracepoint_exists("oom", "mark_victim"),
                    reason="kernel has no oom:mark_victim tracepoint")
def test_oomkill_sees_the_victim_of_a_16m_cgroup() -> None:
    cg = _memory_cgroup(f"lk-test-{os.getpid()}-oom")
    hog = None
    try:
        (cg / "memory.limit_in_bytes").write_text(str(16 << 20))
        if (cg / "memory.memsw.limit_in_bytes").exists():
            (cg / "memory.memsw.limit_in_bytes").write_text(str(16 << 20))
        with oomkill.attach() as probe:
            # The shell joins the cgroup, then execs a python that touches 64 MiB.
            hog = subprocess.Popen(
                ["sh", "-c", (f"echo $$ > {cg}/cgroup.procs && exec {sys.executable} -c "
                             "\"a = b'x' * (64 << 20)\"")])
            rc = hog.wait(timeout=60)
            deadline = time.monotonic() + 5
            kills = probe.read()
            while not kills and time.monotonic() < deadline:
                time.sleep(0.05)
                kills = probe.read()
        assert rc == -9, "the hog should have been SIGKILLed by the OOM killer"
        mine = [k for k in kills if k.pid == hog.pid]
        assert len(mine) == 1, kills
        kill = mine[0]
        if kill.comm is not None:
            assert kill.comm.startswith("python")
        if kill.total_vm_kb is not None:
            assert kill.total_vm_kb > 0 and kill.anon_rss_kb is not None
        oom_control = (cg / "memory.oom_control").read_text()
        assert "oom_kill 1" in oom_control  # the kernel's own count agrees
    finally:
        if hog is not None and hog.poll() is None:
            hog.kill()
            hog.wait()
        cg.rmdir()


def test_kcount_counts_23_getpid_calls() -> None:
    # kprobe on __x64_sys_getpid where kprobes exist; the syscall tracepoint elsewhere.
    if not hasattr(os, "getpid") or os.uname().machine != "x86_64":
        pytest.skip("the symbol name is x86_64's")
    opts = kcount.Options(function="__x64_sys_getpid", pid=os.getpid(), fallback="tracepoint")
    with kcount.attach(opts) as probe:
        for _ in range(N):
            os.getpid()
        rows = probe.read()
    assert [(r.pid, r.count) for r in rows] == [(os.getpid(), N)]
    expected = "kprobe:__x64_sys_getpid" if features.has_kprobes() else "syscalls:sys_enter_getpid"
    assert rows[0].hook == expected


@pytest.mark.skipif(features.has_kprobes(), reason="this kernel has kprobes")
def test_kcount_without_kprobes_says_use_the_vm() -> None:
    with pytest.raises(errors.UnsupportedError) as info:
        kcount.attach(kcount.Options(function="do_sys_openat2"))
    assert "labkit vm" in (info.value.hint or "")
