"""Attributed probes where the kernel has kprobes and a unified cgroup hierarchy (the VM):
cgattach's kprobe mode measures each cgroup.procs write, lifecycle counts 23 execs in a
cgroup of our own (the cgroup id is the directory's inode, as labkit.probes.target says)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from labkit.cgroups import V2Cgroup, open_cgroup
from labkit.probes import cgattach, lifecycle
from labkit.probes.target import Target

pytestmark = pytest.mark.privileged


@pytest.fixture
def cg(unique: str) -> Iterator[V2Cgroup]:
    g = open_cgroup(f"lk-vm-probe-{unique}")
    assert isinstance(g, V2Cgroup)
    g.create()
    try:
        yield g
    finally:
        g.kill()
        g.remove()
    assert not g.exists()


def _target(g: V2Cgroup) -> Target:
    return Target(g.name, g.name, None, os.stat(g.path).st_ino, "/" + g.name, {})


def test_cgattach_kprobe_mode_times_the_write(cg: V2Cgroup) -> None:
    t = _target(cg)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read(1)"],
                             stdin=subprocess.PIPE)
    try:
        with cgattach.attach(cgattach.Options(targets=(t,), mode="kprobe")) as probe:
            assert probe.mode == "kprobe" and probe.missing == ()
            cg.add(child.pid)
            events = probe.read()
    finally:
        child.communicate(b"x", timeout=60)
    moves = [e for e in events if e.pid == child.pid]
    assert len(moves) == 1
    assert moves[0].container == cg.name and moves[0].dst_id == t.cgroup_id
    assert moves[0].lat_ns is not None and moves[0].lat_ns > 0


def test_lifecycle_counts_23_execs_in_a_cgroup(cg: V2Cgroup) -> None:
    t = _target(cg)
    code = ("import subprocess, sys; sys.stdin.read(1)\n"
            "for _ in range(23): subprocess.run(['/bin/true'], check=True)")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    cg.add(child.pid)
    with lifecycle.attach(lifecycle.Options(targets=(t,))) as probe:
        child.communicate(b"x", timeout=120)
        events = probe.read()
    execs = [e for e in events if e.kind == "exec" and e.filename == "/bin/true"]
    assert len(execs) == 23 and {e.container for e in execs} == {cg.name}
