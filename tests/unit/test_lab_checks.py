"""The checks of notebooks 00-04: a blank exercise or a wrong answer gives a hint, never a
traceback.  (Answers that need kernel objects are run in tests/privileged/test_lab_checks.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.cgroups import Resources
from labkit.lab import exercises
from labkit.lab.checks import nb00

ALL = [ex for nb in ("00", "01", "02", "03", "04") for ex in exercises.registered(nb)]


@pytest.fixture(autouse=True)
def lenient(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(exercises.STRICT_ENV, raising=False)
    yield


def hint(ex: str, ns: dict[str, Any]) -> str:
    r = exercises.check(ex, ns)
    assert not r.passed, r
    return r.message


def test_every_notebook_has_two_exercises() -> None:
    assert ALL == ["00.cgroup_mode", "00.tracepoint", "01.box_spec", "01.lo_up",
                   "02.memory_bytes", "02.pids_cap", "03.copy_up", "03.whiteout",
                   "04.memory_cgroup", "04.pause"]


@pytest.mark.parametrize("ex", ALL)
def test_a_blank_exercise_gives_a_hint(ex: str) -> None:
    assert "define a function named" in hint(ex, {})


@pytest.mark.parametrize("ex", ALL)
def test_a_stub_left_as_ellipsis_gives_a_hint(ex: str) -> None:
    name = {"00.cgroup_mode": "cgroup_mode_from_mountinfo", "00.tracepoint": "has_tracepoint",
            "01.box_spec": "box_spec", "01.lo_up": "bring_up_lo", "02.memory_bytes": "memory_limit",
            "02.pids_cap": "cap_fork_bomb", "03.copy_up": "predict_upper_size",
            "03.whiteout": "predict_whiteout", "04.pause": "pause_and_prove",
            "04.memory_cgroup": "memory_cgroup_dir"}[ex]
    assert "define a function" in hint(ex, {name: ...})
    assert "should be a function" in hint(ex, {name: 42})


def test_00_cgroup_mode_wrong_answers() -> None:
    assert "labkit doctor says" in hint("00.cgroup_mode", {"cgroup_mode_from_mountinfo": lambda t: "v3"})
    assert "return one of the strings" in hint("00.cgroup_mode",
                                               {"cgroup_mode_from_mountinfo": lambda t: None})
    from labkit.doctor import cgroup_mode

    here = cgroup_mode() or "none"
    # Right on this host only: one of the made-up tables catches it.
    assert "it is" in hint("00.cgroup_mode", {"cgroup_mode_from_mountinfo": lambda t: here})
    assert "your code raised IndexError" in hint(
        "00.cgroup_mode", {"cgroup_mode_from_mountinfo": lambda t: t.split()[10**6]})


@pytest.mark.parametrize("mode", list(nb00.SAMPLES))
def test_00_samples_mean_what_the_doctor_would_say(mode: str, tmp_path: Path) -> None:
    from labkit.doctor import cgroup_mode

    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(nb00.sample(mode))
    for point, _ in nb00.SAMPLES[mode]:
        (tmp_path / point.lstrip("/")).mkdir(parents=True, exist_ok=True)
    assert (cgroup_mode(tmp_path) or "none") == mode


def test_00_tracepoint_wrong_answers() -> None:
    assert "return True or False" in hint("00.tracepoint", {"has_tracepoint": lambda c, e: "yes"})
    assert "has_tracepoint('lk', 'no_such_event') said True" in hint(
        "00.tracepoint", {"has_tracepoint": lambda c, e: True})


def test_01_box_spec_wrong_type() -> None:
    assert "return a labkit.ns.NamespaceSpec" in hint("01.box_spec", {"box_spec": lambda h: {}})


def test_02_wrong_answers() -> None:
    assert "return a labkit.cgroups.Resources" in hint("02.pids_cap", {"cap_fork_bomb": lambda n: n})
    assert "sets no pids_max" in hint("02.pids_cap", {"cap_fork_bomb": lambda n: Resources()})
    assert "set pids_max=8" in hint("02.pids_cap",
                                    {"cap_fork_bomb": lambda n: Resources(pids_max=n + 1)})
    assert "the kernel counts bytes" in hint(
        "02.memory_bytes", {"memory_limit": lambda m: Resources(memory_max=m, memory_swap_max=m)})
    assert "memory_swap_max=None" in hint(
        "02.memory_bytes", {"memory_limit": lambda m: Resources(memory_max=m << 20)})


def test_03_wrong_shape_hints_before_mounting() -> None:
    assert "return a tuple (name, kind, (major, minor))" in hint(
        "03.whiteout", {"predict_whiteout": lambda n: f".wh.{n}"})


@pytest.mark.parametrize(("ex", "fn"), [("04.pause", "pause_and_prove"),
                                        ("04.memory_cgroup", "memory_cgroup_dir")])
def test_04_needs_the_engine_client(ex: str, fn: str) -> None:
    assert "the engine client" in hint(ex, {fn: lambda c, i: None})
