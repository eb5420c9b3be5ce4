"""A bcc program on a kprobe that fires: labkit.probes.kcount on do_sys_openat2 counts the
23 opens this test makes (bcc's CONTRIBUTING-SCRIPTS: a known workload, a prime number)."""

from __future__ import annotations

import os

import pytest

from labkit._sys import features
from labkit.probes import kcount

pytestmark = pytest.mark.privileged


def test_kernel_has_kprobes_and_headers() -> None:
    assert features.has_kprobes()
    assert os.path.exists(f"/lib/modules/{os.uname().release}/build/Makefile")


def test_kcount_kprobe_counts_23_opens(tmp_path: object) -> None:
    with kcount.attach(kcount.Options(function="do_sys_openat2", pid=os.getpid())) as p:
        assert p.hooks == ["kprobe:do_sys_openat2"]
        before = p.total()
        for _ in range(23):
            os.close(os.open("/etc/hostname", os.O_RDONLY))
        rows = p.read()
        after = p.total()
    assert after - before >= 23
    assert {r.pid for r in rows} == {os.getpid()}
