"""measure.parentcg: the shared parent cgroup is removed only by what caused it, and only
when empty (a fake cgroup: nothing is made here)."""

from __future__ import annotations

import pytest

from labkit import errors
from labkit.measure import parentcg


class FakeParent:
    def __init__(self, exists: bool, busy: bool = False) -> None:
        self.present, self.busy, self.removed = exists, busy, 0

    def exists(self) -> bool:
        return self.present

    def remove(self) -> None:
        if self.busy:
            raise errors.ConflictError("cgroup lk: a process is inside")
        self.removed += 1
        self.present = False


def _use(monkeypatch: pytest.MonkeyPatch, parent: FakeParent) -> FakeParent:
    monkeypatch.setattr(parentcg, "_parent", lambda: parent)
    return parent


def test_work_that_created_the_parent_removes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = _use(monkeypatch, FakeParent(exists=False))
    with parentcg.cleaned():
        parent.present = True  # a container started under it, then went
    assert parent.removed == 1 and not parent.present


def test_a_parent_that_was_there_before_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = _use(monkeypatch, FakeParent(exists=True))
    with parentcg.cleaned():
        pass
    assert parent.removed == 0 and parent.present


def test_a_parent_in_use_stays_and_the_error_is_not_raised(
        monkeypatch: pytest.MonkeyPatch) -> None:
    parent = _use(monkeypatch, FakeParent(exists=False))
    with parentcg.cleaned():
        parent.present, parent.busy = True, True
    assert parent.present and parent.removed == 0


def test_removed_also_when_the_work_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = _use(monkeypatch, FakeParent(exists=False))
    with pytest.raises(RuntimeError), parentcg.cleaned():
        parent.present = True
        raise RuntimeError("the bench failed")
    assert not parent.present


def test_a_parent_that_cannot_be_looked_at_is_never_claimed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> FakeParent:
        raise errors.UnsupportedError("cgroups", "no cgroup filesystem")

    monkeypatch.setattr(parentcg, "_parent", broken)
    assert parentcg.missing() is False
    parentcg.remove()  # and removing says nothing
