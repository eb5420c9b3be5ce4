"""labkit vm on this host for real: boot the cached image (building it first if needed),
run commands, and check that every path out (success, failing command, boot time-out,
destroy) leaves no qemu behind.  Skips when qemu is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit.vm import session
from labkit.vm._errors import BootTimeoutError
from labkit.vm.recipe import cache_dir

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu is not installed: apt-get install qemu-system-x86 "
                              "(scripts/debian-packages-vm.txt)"),
    pytest.mark.timeout(1800),  # a cold image build happens here when nothing is cached
]
REPO = Path(__file__).resolve().parents[2]


def _qemus(marker: str) -> list[int]:
    """Pids of processes with an argument starting with ``marker`` (our unique VM name)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                args = (d / "cmdline").read_bytes().split(b"\0")
                if any(a.startswith(marker.encode()) for a in args):
                    found.append(int(d.name))
            except OSError:
                continue
    return found


def test_cli_run_returns_status_and_streams() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "labkit.cli", "vm", "run", "--",
         "sh", "-c", "echo out; uname -r; echo err >&2; exit 3"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = proc.communicate(timeout=1700)
    res = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert res.returncode == 3, res.stderr.decode()
    out = res.stdout.decode().splitlines()
    assert out[0] == "out" and out[1].endswith("-amd64")  # the VM's Debian kernel
    assert len(out) == 2  # the timing table went to stderr, not into the output
    assert b"err\n" in res.stderr and b"boot-to-command" in res.stderr
    assert _qemus(f"labkit-vm-tmp-{proc.pid}-") == []  # the ephemeral VM is gone


def test_boot_timeout_leaves_no_qemu() -> None:
    name = f"lk-timeout-{os.getpid()}"
    with pytest.raises(BootTimeoutError) as ei:
        session.VM.boot(name=name, timeout=1.5)
    assert "did not become ready" in str(ei.value)
    assert _qemus(f"labkit-vm-{name}") == []
    shutil.rmtree(cache_dir() / "run" / name)  # kept for its console log; ours to remove


def test_up_run_destroy() -> None:
    name = f"lk-kept-{os.getpid()}"
    vm = session.up(name)
    try:
        assert _qemus(f"labkit-vm-{name}") == [vm.pid]
        vm.channel.close()  # qemu's socket serves one client at a time
        again = session.attach(name)
        assert again is not None
        r = again.run(["sh", "-c", "test -d /sys/fs/cgroup/cgroup.controllers || exit 9"],
                      capture=True)
        assert r.exit_code == 9
        r = again.run(["python", "-c", "import labkit; print(labkit.__file__)"], capture=True)
        assert (r.exit_code, r.stdout) == (0, b"/mnt/labkit/labkit/__init__.py\n")
        missing = again.run(["lk-no-such-command"], capture=True)
        assert missing.exit_code == 127 and b"lk-no-such-command" in missing.stderr
        again.channel.close()
    finally:
        assert session.destroy(name)
    assert _qemus(f"labkit-vm-{name}") == []
    assert session.attach(name) is None and not session.destroy(name)


def test_ephemeral_vm_powers_off_when_its_client_dies() -> None:
    """A caller killed with SIGKILL (no cleanup runs) still leaves no qemu behind."""
    code = ("from labkit.vm import VM; import os, sys; vm = VM.boot(name=sys.argv[1]); "
            "print(vm.pid, flush=True); os.kill(os.getpid(), 9)")
    name = f"lk-orphan-{os.getpid()}"
    res = subprocess.run([sys.executable, "-c", code, name], cwd=REPO, capture_output=True,
                         timeout=900, check=False)
    assert res.returncode == -9, res.stderr.decode()
    pid = int(res.stdout.split()[0])
    deadline = time.monotonic() + 60
    while _qemus(f"labkit-vm-{name}") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _qemus(f"labkit-vm-{name}") == [], f"qemu {pid} outlived its client"
    shutil.rmtree(cache_dir() / "run" / name)
