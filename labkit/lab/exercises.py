"""Exercises a learner does in a notebook, and the checks that say pass or give a hint.

The shape follows rubber-docker's levels: each notebook has "Your turn" cells the learner
edits (tagged ``exercise`` in the notebook) and, after each, one check cell (tagged
``check``) that calls this module::

    # Your turn (exercise cell): bring lo up inside the namespace you are given.
    def bring_up_lo(netns_path):
        ...                                   # the learner's code

    # Check (check cell):
    lab.exercises.check("01.lo_up", globals())

A check reads what it needs from the notebook's namespace (``globals()``), runs it against
fresh kernel objects it makes and removes itself, and prints ``PASS: ...`` or ``HINT: ...``
naming what is wrong (a missing definition, a wrong value, an exception, with its message).
It never raises for a wrong answer, so a learner sees a hint, not a traceback.

Executed headless (nbval under ``make test``), the exercise cells hold a worked answer;
``LABKIT_EXERCISES_STRICT=1`` (set by ``make test``) turns a hint into an ``ExerciseFailed``
error, so a worked answer that stops working fails the suite.  ``labkit lab check NOTEBOOK``
runs a notebook outside Jupyter without it, printing each PASS or HINT.

Checks are registered per notebook in ``labkit.lab.checks.nbNN`` modules with ``@exercise``;
``check`` imports the module named by the exercise id's prefix ("01" -> checks.nb01) on first
use, so a notebook pays only for its own checks.
"""

from __future__ import annotations

import importlib
import os
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["STRICT_ENV", "ExerciseFailed", "Result", "check", "defined", "exercise", "fail",
           "need", "registered"]

STRICT_ENV = "LABKIT_EXERCISES_STRICT"

Namespace = Mapping[str, Any]
CheckFn = Callable[[Namespace], "Result"]
_CHECKS: dict[str, CheckFn] = {}


class ExerciseFailed(AssertionError):
    """A check gave a hint while strict mode was on (headless runs of worked answers)."""


class _Hint(Exception):
    """Raised inside a check (by ``need``/``fail``) to stop it with a hint."""


@dataclass(frozen=True, slots=True)
class Result:
    """What one check concluded: ``passed`` and the message shown to the learner."""

    exercise: str
    passed: bool
    message: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'HINT'} [{self.exercise}]: {self.message}"

    def _repr_html_(self) -> str:  # Jupyter shows it in colour
        colour = "#2e7d32" if self.passed else "#b26a00"
        from html import escape
        return f'<b style="color:{colour}">{escape(str(self))}</b>'


def exercise(exercise_id: str) -> Callable[[Callable[[Namespace], str]], CheckFn]:
    """Register ``fn(ns) -> pass message`` as the check of ``exercise_id`` ("NN.name").

    Inside ``fn``, ``need(cond, hint)`` / ``fail(hint)`` stop with a hint; an exception the
    learner's code raises becomes a hint that names it.
    """
    _split(exercise_id)

    def wrap(fn: Callable[[Namespace], str]) -> CheckFn:
        def run(ns: Namespace) -> Result:
            try:
                return Result(exercise_id, True, fn(ns))
            except _Hint as h:
                return Result(exercise_id, False, str(h))
            except Exception as err:  # noqa: BLE001  # the learner's code failed: a hint, not a traceback
                where = traceback.extract_tb(err.__traceback__)[-1]
                return Result(exercise_id, False,
                              f"your code raised {type(err).__name__}: {err} "
                              f"(line {where.lineno} of {where.name})")
        _CHECKS[exercise_id] = run
        return run

    return wrap


def need(condition: object, hint: str) -> None:
    """Stop the check with ``hint`` unless ``condition`` holds."""
    if not condition:
        raise _Hint(hint)


def fail(hint: str) -> None:
    """Stop the check with ``hint``."""
    raise _Hint(hint)


def defined(ns: Namespace, name: str, kind: str = "a function") -> Any:
    """The learner's ``name`` from the notebook namespace, or a hint to define it."""
    value = ns.get(name)
    need(value is not None and value is not Ellipsis,
         f"define {kind} named {name!r} in the 'Your turn' cell above, then run it")
    if kind == "a function":
        need(callable(value), f"{name!r} should be a function (def {name}(...): ...)")
    return value


def _split(exercise_id: str) -> tuple[str, str]:
    nb, sep, name = exercise_id.partition(".")
    if not (sep and nb.isdigit() and len(nb) == 2 and name):
        raise ValueError(f"exercise id {exercise_id!r} is not 'NN.name' (e.g. '01.lo_up')")
    return nb, name


def registered(notebook: str) -> list[str]:
    """The exercise ids of notebook ``NN`` (importing its checks module)."""
    importlib.import_module(f"labkit.lab.checks.nb{notebook}")
    return sorted(k for k in _CHECKS if k.startswith(f"{notebook}."))


def check(exercise_id: str, ns: Namespace) -> Result:
    """Run the check of ``exercise_id`` on the notebook namespace ``ns``; print and return it.

    Raises:
        KeyError: no check has that id (a typo in the notebook, not the learner's fault).
        ExerciseFailed: the check gave a hint and LABKIT_EXERCISES_STRICT=1.
    """
    nb, _ = _split(exercise_id)
    if exercise_id not in _CHECKS:
        importlib.import_module(f"labkit.lab.checks.nb{nb}")
    try:
        fn = _CHECKS[exercise_id]
    except KeyError:
        raise KeyError(f"no exercise {exercise_id!r}; notebook {nb} has: "
                       f"{', '.join(registered(nb)) or 'none'}") from None
    result = fn(ns)
    print(result)
    if not result.passed and os.environ.get(STRICT_ENV) == "1":
        raise ExerciseFailed(str(result))
    return result
