"""The eBPF device filter on the real kernel, attached to a test-made cgroup on the cgroup2 mount.

A BPF_CGROUP_DEVICE program runs for a task's cgroup v2 even on a hybrid host (the kernel
checks the v2 program before the v1 controller), so this runs here and in the VM alike.
Each test makes lk-devf-<pid>-<n> and a scratch directory for the nodes, and removes both.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from labkit import errors
from labkit._sys import bpf
from labkit.engine.runtime import devfilter, devices

pytestmark = pytest.mark.privileged
_n = itertools.count()

PROBE = """
import os, stat, sys
d = sys.argv[1]
def try_open(path, flags):
    try:
        os.close(os.open(path, flags))
        return "ok"
    except OSError as e:
        return str(e.errno)
os.mknod(d + "/sda", 0o600 | stat.S_IFBLK, os.makedev(8, 0))
os.mknod(d + "/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
os.mknod(d + "/mem", 0o600 | stat.S_IFCHR, os.makedev(1, 1))
print(try_open(d + "/sda", os.O_RDONLY), try_open(d + "/null", os.O_RDWR),
      try_open(d + "/mem", os.O_RDONLY), try_open("/dev/urandom", os.O_RDONLY))
"""


def _cgroup2_root() -> str:
    with open("/proc/self/mounts") as f:
        for line in f:
            _dev, mnt, fstype = line.split()[:3]
            if fstype == "cgroup2":
                return mnt
    pytest.skip("no cgroup2 mount on this host")


@pytest.fixture
def cgdir() -> Iterator[str]:
    d = os.path.join(_cgroup2_root(), f"lk-devf-{os.getpid()}-{next(_n)}")
    os.mkdir(d)
    try:
        yield d
    finally:
        os.rmdir(d)  # every probe has exited; the attached programs go with the cgroup


@pytest.fixture
def scratch() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="lk-devf-")
    try:
        yield d
    finally:
        shutil.rmtree(d)


def _probe_in(cgdir: str, scratch: str) -> list[str]:
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read(1)\n" + PROBE, scratch],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with open(os.path.join(cgdir, "cgroup.procs"), "w") as f:
        f.write(str(p.pid))
    out, err = p.communicate(b"x", timeout=60)
    assert p.returncode == 0, err.decode()
    return out.decode().split()


def test_without_a_filter_the_disk_opens(cgdir: str, scratch: str) -> None:
    # The baseline the filter must change (a host without the v1 devices rules for us).
    sda, null, _, _ = _probe_in(cgdir, scratch)
    assert null == "ok"
    assert sda in ("ok", "6")  # ENXIO where the host has no sda at all: still not EPERM


def test_dockers_default_rules_deny_the_disk_and_allow_the_standard_nodes(
        cgdir: str, scratch: str) -> None:
    devfilter.attach(cgdir, devices.parse({"devices": [{"allow": False, "access": "rwm"}]}))
    assert len(devfilter.attached(cgdir)) == 1
    assert _probe_in(cgdir, scratch) == ["1", "ok", "1", "ok"]  # EPERM for sda and mem


def test_attaching_again_replaces_the_filter(cgdir: str, scratch: str) -> None:
    devfilter.attach(cgdir, [(True, "a", None, None, "rwm")])
    first = devfilter.attached(cgdir)
    devfilter.attach(cgdir, devices.parse({"devices": [{"allow": False}]}))
    second = devfilter.attached(cgdir)
    assert len(first) == len(second) == 1 and first != second
    assert _probe_in(cgdir, scratch)[0] == "1"  # the new, stricter program is the one in force


def test_the_verifier_log_is_in_the_error() -> None:
    exit_without_r0 = devfilter.insn(devfilter.EXIT)
    with pytest.raises(errors.SyscallError) as ei:
        bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, exit_without_r0)
    assert "BPF_PROG_LOAD" in str(ei.value)
    assert ei.value.hint is not None and "R0" in ei.value.hint  # "R0 !read_ok"


def test_a_directory_that_is_no_cgroup_is_refused_with_the_reason(scratch: str) -> None:
    with pytest.raises(errors.UnsupportedError, match="attaching it to .* failed"):
        devfilter.attach(scratch, [(True, "a", None, None, "rwm")])


def _attach_raw(cgdir: str, rules: list[devfilter.Rule], flags: int) -> None:
    fd = os.open(cgdir, os.O_RDONLY | os.O_DIRECTORY)
    prog = bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, devfilter.program(rules))
    try:
        bpf.prog_attach(fd, prog, bpf.BPF_CGROUP_DEVICE, flags)
    finally:
        os.close(prog)
        os.close(fd)


@pytest.mark.parametrize("flags,count", [(bpf.BPF_F_ALLOW_MULTI, 2), (0, 1)])
def test_every_program_the_cgroup_held_is_replaced(cgdir: str, scratch: str, flags: int,
                                                   count: int) -> None:
    allow_all: list[devfilter.Rule] = [(True, "a", None, None, "rwm")]
    for _ in range(count):
        _attach_raw(cgdir, allow_all, flags)
    before = devfilter.attached(cgdir)
    assert len(before) == count
    devfilter.attach(cgdir, devices.parse({"devices": [{"allow": False}]}))
    after = devfilter.attached(cgdir)
    assert len(after) == 1 and after[0] not in before
    assert _probe_in(cgdir, scratch) == ["1", "ok", "1", "ok"]
