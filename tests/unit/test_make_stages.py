"""`make test` runs every stage to its end and names each one that failed (scripts/test-stages.sh)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "test-stages.sh"


def _fake_python(tmp: Path, fail_when: str) -> Path:
    """A stand-in for .venv/bin/python that logs its argv and fails when it sees fail_when."""
    log = tmp / "calls.log"
    py = tmp / "python"
    py.write_text(f'#!/bin/sh\necho "$*" >> {log}\ncase "$*" in *{fail_when}*) exit 3;; esac\n')
    py.chmod(0o755)
    return py


def _run(py: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LABKIT_SKIP_VM="1")
    return subprocess.run(["bash", str(SCRIPT), str(py), "-x"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_failing_first_stage_does_not_stop_the_others(tmp_path: Path) -> None:
    r = _run(_fake_python(tmp_path, "--privileged"))
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert r.returncode == 1, r.stdout + r.stderr
    assert any("--privileged tests -x" in c for c in calls)       # PYTEST_ARGS reach the suite
    assert any("--nbval-lax" in c for c in calls), calls          # the notebooks still ran
    tail = r.stdout.rsplit("stage(s) failed", 1)[-1]
    assert "host suite" in tail and "exit 3" in tail and "notebooks" not in tail
    assert "skipping the VM tests" in r.stdout


def test_all_stages_passing_exits_zero(tmp_path: Path) -> None:
    r = _run(_fake_python(tmp_path, "no-such-argument"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every stage passed" in r.stdout


def test_a_failing_last_stage_is_named(tmp_path: Path) -> None:
    r = _run(_fake_python(tmp_path, "--nbval-lax"))
    assert r.returncode == 1
    assert "notebooks: nbval (exit 3)" in r.stdout
