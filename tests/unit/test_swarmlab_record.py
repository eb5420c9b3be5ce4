"""SwarmLab's record and its shared-parent-cgroup rule, without making a lab.

The containers' parent cgroup (measure.parentcg) outlives them; a lab whose nodes caused it
removes it at down(), and only then (notebooks 12-16 left it behind before).
"""

from __future__ import annotations

import json

import pytest

from labkit import errors
from labkit.measure import parentcg, swarmlab
from labkit.measure.swarmlab import SwarmLab


class FakeParent:
    def __init__(self, exists: bool = True, busy: bool = False) -> None:
        self.present, self.busy, self.removed = exists, busy, 0

    def exists(self) -> bool:
        return self.present

    def remove(self) -> None:
        if self.busy:
            raise errors.ConflictError("cgroup lk: a process is inside")
        self.removed += 1
        self.present = False


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RUN", str(tmp_path))
    # no kernel object is touched: the lab has no nodes, its netns removal is recorded
    gone: list[str] = []
    monkeypatch.setattr(swarmlab, "remove_netns", gone.append)
    return gone


def _empty_lab(name: str) -> SwarmLab:
    return SwarmLab(1, 0, name=name)


@pytest.mark.parametrize("made", [True, False])
def test_the_record_keeps_whether_the_lab_made_the_parent(run_dir, made):
    lab = _empty_lab("rec")
    lab.made_parent = made
    lab.save()
    assert SwarmLab.load("rec").made_parent is made


def test_a_record_from_before_the_field_never_claims_the_parent(run_dir):
    lab = _empty_lab("old")
    lab.save()
    path = SwarmLab.record_path("old")
    data = json.loads(path.read_text())
    del data["made_parent"]
    path.write_text(json.dumps(data))
    assert SwarmLab.load("old").made_parent is False


@pytest.mark.parametrize(("made", "removed"), [(True, 1), (False, 0)])
def test_down_removes_the_parent_only_when_the_lab_made_it(run_dir, monkeypatch, made, removed):
    parent = FakeParent()
    monkeypatch.setattr(parentcg, "_parent", lambda: parent)
    lab = _empty_lab("dn")
    lab.nodes = []
    lab.made_parent = made
    lab.save()
    lab.down()
    assert parent.removed == removed
    assert parent.present is not made
    assert run_dir == [lab.bridge_ns]
    assert not SwarmLab.record_path("dn").exists()


def test_down_leaves_a_parent_another_engine_uses_and_still_finishes(run_dir, monkeypatch):
    parent = FakeParent(busy=True)
    monkeypatch.setattr(parentcg, "_parent", lambda: parent)
    lab = _empty_lab("busy")
    lab.nodes = []
    lab.made_parent = True
    lab.save()
    lab.down()
    assert parent.present and parent.removed == 0
    assert not SwarmLab.record_path("busy").exists()
