"""Containers start with default signal handling, whatever the engine's launcher ignored.

Ignored dispositions survive execve (signal(7)); a container that inherits an ignored
SIGTERM cannot be stopped gracefully. The launcher here ignores SIGTERM, SIGHUP and signal
34 (a real-time signal) and blocks SIGUSR1 before running labkit-runtime, which must undo
all of it for pid 1 of the container.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.engine.images.busybox import build_rootfs

pytestmark = pytest.mark.privileged

LAUNCHER = """
import os, signal, sys
for s in (signal.SIGTERM, signal.SIGHUP, 34):
    signal.signal(s, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
os.execvp(sys.argv[1], sys.argv[1:])
"""


def test_container_init_has_no_ignored_or_blocked_signals(tmp_path: Path) -> None:
    bundle = tmp_path / "lk-sig"
    build_rootfs(bundle / "rootfs")
    runtime = shutil.which("labkit-runtime") or str(Path(sys.executable).with_name("labkit-runtime"))
    subprocess.run([runtime, "spec", "--bundle", str(bundle)], check=True)
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["cat", "/proc/self/status"]
    (bundle / "config.json").write_text(json.dumps(cfg))
    root = tmp_path / "state"
    cid = f"lk-sig-{os.getpid()}"
    out = subprocess.run(
        [sys.executable, "-c", LAUNCHER, runtime, "--root", str(root), "run", "--bundle",
         str(bundle), cid], capture_output=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    ign = re.search(rb"SigIgn:\s*([0-9a-f]+)", out.stdout)
    blk = re.search(rb"SigBlk:\s*([0-9a-f]+)", out.stdout)
    assert ign and int(ign.group(1), 16) == 0, out.stdout
    assert blk and int(blk.group(1), 16) == 0, out.stdout


def test_reset_signals_clears_glibc_reserved_numbers() -> None:
    # glibc refuses signal(32); the raw rt_sigaction path must still reset it.
    code = (
        "import ctypes, signal, os\n"
        "from labkit._sys.libc import libc\n"
        "from labkit._sys.signals import _KSigaction, _NR_RT_SIGACTION, reset_signals\n"
        "nr = _NR_RT_SIGACTION[os.uname().machine]\n"
        "act = _KSigaction(1, 0, None, 0)  # SIG_IGN\n"
        "assert libc().syscall(nr, 32, ctypes.byref(act), None, 8) == 0\n"
        "before = [l for l in open('/proc/self/status') if l.startswith('SigIgn')][0]\n"
        "reset_signals()\n"
        "after = [l for l in open('/proc/self/status') if l.startswith('SigIgn')][0]\n"
        "print(before.split()[1], after.split()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = out.stdout.split()
    assert int(before, 16) & (1 << 31), "signal 32 was not ignored before the reset"
    assert int(after, 16) == 0
