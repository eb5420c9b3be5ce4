"""The `labkit` command against a real labkit daemon: Docker's output and exit codes."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable

import pytest

from labkit.lab.engine import LabEngine

pytestmark = pytest.mark.privileged

LABKIT = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", ".venv", "bin",
                      "labkit")
Run = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def labkit(engine: LabEngine) -> Run:
    def run(*args: str, input: bytes | None = None, timeout: float = 60
            ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([LABKIT, *args], env=engine.env, input=input,
                              capture_output=True, timeout=timeout, check=False)
    return run


def test_run_rm_output_and_status(labkit: Run) -> None:
    r = labkit("run", "--rm", "busybox", "echo", "hi")
    assert (r.returncode, r.stdout) == (0, b"hi\n"), r.stderr
    r = labkit("run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo e >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"", b"e\n")


def test_run_stdin(labkit: Run) -> None:
    r = labkit("run", "--rm", "-i", "busybox", "wc", "-c", input=b"12345")
    assert (r.returncode, r.stdout.strip()) == (0, b"5")


def test_run_missing_command_127(labkit: Run, name: str) -> None:
    r = labkit("run", "--name", name, "busybox", "no-such-command")
    labkit("rm", "-f", name)
    assert r.returncode == 127 and b"executable file not found" in r.stderr, r.stderr


def test_detached_ps_exec_logs_stop_rm(labkit: Run, name: str) -> None:
    r = labkit("run", "-d", "--name", name, "-e", "GREETING=hey", "busybox", "sh", "-c",
               "echo $GREETING; sleep 600")
    assert r.returncode == 0 and re.fullmatch(rb"[0-9a-f]{64}\n", r.stdout), r.stderr
    cid = r.stdout.decode().strip()
    try:
        ps = labkit("ps", "--format", "{{.ID}}|{{.Names}}|{{.Image}}|{{.State}}")
        assert f"{cid[:12]}|{name}|busybox|running\n".encode() in ps.stdout
        assert labkit("ps", "-q", "--no-trunc").stdout.decode().split().count(cid) == 1
        r = labkit("exec", name, "sh", "-c", "echo x$GREETING; exit 7")
        assert (r.returncode, r.stdout) == (7, b"xhey\n")
        assert labkit("logs", name).stdout == b"hey\n"
        r = labkit("inspect", "--format", "{{.State.Status}}", name)
        assert r.stdout == b"running\n"
        assert labkit("stop", "-t", "1", name).stdout == f"{name}\n".encode()
        assert labkit("inspect", "-f", "{{.State.Running}}", name).stdout == b"false\n"
    finally:
        assert labkit("rm", "-f", name).returncode == 0
    r = labkit("inspect", name)
    assert r.returncode == 1 and f"No such container: {name}".encode() in r.stderr


def test_name_conflict_125(labkit: Run, name: str) -> None:
    assert labkit("create", "--name", name, "busybox", "true").returncode == 0
    try:
        r = labkit("run", "--name", name, "busybox", "true")
        assert r.returncode == 125 and b"is already in use" in r.stderr
    finally:
        labkit("rm", "-f", name)


def test_invalid_restart_125(labkit: Run) -> None:
    r = labkit("run", "--restart", "sometimes", "busybox", "true")
    assert r.returncode == 125 and b"--restart" in r.stderr


def test_autostart_when_no_daemon_answers() -> None:
    """`labkit run` in fresh dirs starts a daemon, says so once on stderr, and runs."""
    eng = LabEngine("ba")  # short: shim socket paths under LABKIT_RUN must fit in 108 bytes
    try:
        env = dict(eng.env)
        r = subprocess.run([LABKIT, "run", "--rm", "busybox", "echo", "hi"], env=env,
                           capture_output=True, timeout=120, check=False)
        assert (r.returncode, r.stdout) == (0, b"hi\n"), r.stderr
        assert r.stderr.count(b"started one") == 1
        assert (eng.run / "daemon.log").exists()
        r = subprocess.run([LABKIT, "ps", "-a", "-q"], env=env, capture_output=True,
                           timeout=60, check=False)
        assert (r.returncode, r.stdout, b"started one" in r.stderr) == (0, b"", False)
    finally:
        eng.stop()
