"""Checks used only by the unit tests of labkit.lab.exercises (notebook "99" does not exist)."""

from __future__ import annotations

from labkit.lab.exercises import Namespace, defined, exercise, need


@exercise("99.double")
def double(ns: Namespace) -> str:
    fn = defined(ns, "double")
    got = fn(21)
    need(got == 42, f"double(21) returned {got!r}; it should return 42")
    return "double(21) == 42"
