"""labkit-runtime as a black box: the console script, its exit codes and its output.

The container tests (privileged) run an in-container probe and check the facts it prints;
the rest needs no root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUNTIME = str(Path(sys.executable).parent / "labkit-runtime")


def rt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNTIME, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60, check=False, stdin=subprocess.DEVNULL)


def test_help_and_usage_errors() -> None:
    assert rt("--help").returncode == 0
    p = rt("no-such-verb")
    assert p.returncode == 2 and "unknown command 'no-such-verb'" in p.stderr
    p = rt("--version")
    assert p.returncode == 0 and "labkit-runtime version" in p.stdout


def test_spec_writes_config_like_runc(tmp_path: Path) -> None:
    assert rt("spec", "--bundle", str(tmp_path)).returncode == 0
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["process"]["terminal"] is True and cfg["root"]["path"] == "rootfs"
    assert cfg["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    p = rt("spec", "--bundle", str(tmp_path))
    assert p.returncode == 1 and "already exists" in p.stderr


def test_state_of_unknown_container(tmp_path: Path) -> None:
    p = rt("--root", str(tmp_path), "state", "lk-missing")
    assert p.returncode == 1 and p.stderr.startswith("labkit-runtime: no such container")
    assert "Traceback" not in p.stderr


def test_create_refuses_bad_bundle_without_side_effects(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    rt("spec", "--bundle", str(tmp_path / "b"))
    p = rt("--root", str(tmp_path / "state"), "create", "--bundle", str(tmp_path / "b"), "lk-bb")
    assert p.returncode == 1 and "root.path: rootfs" in p.stderr
    assert not (tmp_path / "state" / "lk-bb").exists()


@pytest.mark.privileged
def test_probe_inside_container(tmp_path: Path) -> None:
    from labkit.engine.images.busybox import build_rootfs

    b = tmp_path / "b"
    b.mkdir()
    build_rootfs(b / "rootfs")
    rt("spec", "--bundle", str(b))
    cfg = json.loads((b / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", "hostname; cat /proc/1/comm; ls /sys/fs/cgroup"]
    cfg["hostname"] = "lk-probe"
    (b / "config.json").write_text(json.dumps(cfg))
    cid = f"lk-bb-{os.getpid()}"
    p = rt("--root", str(tmp_path / "state"), "run", "--bundle", str(b), cid)
    try:
        assert p.returncode == 0, p.stderr
        lines = p.stdout.split()
        assert lines[0] == "lk-probe" and lines[1] == "sh"
        assert "memory" in lines or "cgroup.procs" in lines  # v1 hierarchies, or one cgroup2
    finally:
        if (tmp_path / "state" / cid).exists():
            rt("--root", str(tmp_path / "state"), "delete", "--force", cid)


@pytest.mark.privileged
def test_run_with_hooks_and_a_shared_root(tmp_path: Path) -> None:
    """`labkit-runtime run` as a user calls it: a createRuntime hook sees the state on stdin,
    poststop runs after the container is gone, rootfsPropagation shared is applied."""
    from labkit.engine.images.busybox import build_rootfs

    b = tmp_path / "b"
    b.mkdir()
    build_rootfs(b / "rootfs")
    rt("spec", "--bundle", str(b))
    log = tmp_path / "log"
    cfg = json.loads((b / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", "awk '$5 == \"/\" {print $7}' /proc/self/mountinfo"]
    cfg["linux"]["rootfsPropagation"] = "shared"
    cfg["hooks"] = {phase: [{"path": "/bin/sh", "args": ["sh", "-c", f"cat >> {log}; echo >> {log}"],
                             "timeout": 30}] for phase in ("createRuntime", "poststop")}
    (b / "config.json").write_text(json.dumps(cfg))
    cid = f"lk-bbh-{os.getpid()}"
    p = rt("--root", str(tmp_path / "state"), "run", "--bundle", str(b), cid)
    try:
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("shared:")
        states = [json.loads(line) for line in log.read_text().splitlines()]
        assert [(s["id"], s["status"]) for s in states] == [(cid, "creating"), (cid, "stopped")]
        assert states[0]["pid"] > 0 and states[0]["bundle"] == str(b)
    finally:
        if (tmp_path / "state" / cid).exists():
            rt("--root", str(tmp_path / "state"), "delete", "--force", cid)
    assert not (tmp_path / "state" / cid).exists()
