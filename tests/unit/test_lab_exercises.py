"""labkit.lab.exercises: a check passes, hints (never raises) on a wrong answer, and is strict
only when asked."""

from __future__ import annotations

import pytest

from labkit.lab import exercises


def test_worked_answer_passes(capsys: pytest.CaptureFixture[str]) -> None:
    r = exercises.check("99.double", {"double": lambda x: 2 * x})
    assert r.passed
    assert capsys.readouterr().out.startswith("PASS [99.double]")


def test_missing_definition_gives_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(exercises.STRICT_ENV, raising=False)
    r = exercises.check("99.double", {})
    assert not r.passed and "define a function named 'double'" in r.message


def test_wrong_value_and_exception_give_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(exercises.STRICT_ENV, raising=False)
    assert "returned 22" in exercises.check("99.double", {"double": lambda x: x + 1}).message
    r = exercises.check("99.double", {"double": lambda x: 1 // 0})
    assert not r.passed and "ZeroDivisionError" in r.message


def test_strict_mode_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(exercises.STRICT_ENV, "1")
    with pytest.raises(exercises.ExerciseFailed, match="99.double"):
        exercises.check("99.double", {"double": lambda x: x})


def test_unknown_id_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="99.double"):
        exercises.check("99.nope", {})
    with pytest.raises(ValueError, match="NN.name"):
        exercises.check("double", {})
