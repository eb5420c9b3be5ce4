"""nscount against a known workload: 23 unshare(CLONE_NEWUTS) calls (a prime, bcc's rule)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labkit.probes import nscount

pytestmark = pytest.mark.privileged

N = 23
UNSHARE_23 = [sys.executable, "-S", "-c",
              # Python 3.11 has no os.unshare: libc's, through ctypes, in the child only.
              ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
               f"for _ in range({N}):\n    assert libc.unshare(0x04000000) == 0\n")]


def test_counts_exactly_the_tree_under_the_pid() -> None:
    with nscount.attach() as probe:
        child = subprocess.run(UNSHARE_23, check=True)
        rows = [r for r in probe.read() if r.syscall == "unshare"]
    assert child.returncode == 0
    assert [(r.kinds, r.count) for r in rows] == [(("uts",), N)], rows


def test_another_tree_is_not_counted() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with nscount.attach(nscount.Options(pid=sleeper.pid)) as probe:
            subprocess.run(UNSHARE_23, check=True)
            assert probe.read() == []
    finally:
        sleeper.kill()
        sleeper.wait()
