"""The container and exec lifecycle (labkit/engine/containers/lifecycle.py): the legal moves,
the refused ones, the record written with each move, and no status set anywhere else."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import labkit
from labkit import errors
from labkit.engine.containers.lifecycle import (
    DURABLE,
    EXEC_TRANSITIONS,
    TRANSITIONS,
    ExecState,
    State,
    can_move,
    move,
)
from labkit.engine.containers.record import ContainerRecord

S = State
LEGAL = {
    (S.CREATED, S.RUNNING), (S.CREATED, S.EXITED), (S.CREATED, S.REMOVING),
    (S.RUNNING, S.PAUSED), (S.RUNNING, S.EXITED), (S.RUNNING, S.RESTARTING),
    (S.RUNNING, S.REMOVING), (S.PAUSED, S.RUNNING), (S.PAUSED, S.EXITED),
    (S.PAUSED, S.REMOVING), (S.RESTARTING, S.RUNNING), (S.RESTARTING, S.EXITED),
    (S.RESTARTING, S.REMOVING), (S.EXITED, S.RUNNING), (S.EXITED, S.RESTARTING),
    (S.EXITED, S.REMOVING), (S.REMOVING, S.DEAD), (S.DEAD, S.REMOVING),
}


def test_states_are_dockers_words() -> None:
    assert [str(s) for s in State] == ["created", "running", "paused", "restarting",
                                       "removing", "exited", "dead"]
    assert [str(s) for s in ExecState] == ["created", "running", "exited"]


@pytest.mark.parametrize("frm", list(State))
@pytest.mark.parametrize("to", list(State))
def test_every_container_move_is_in_the_table_or_refused(frm: State, to: State) -> None:
    if frm == to or (frm, to) in LEGAL:
        assert move(frm, to, TRANSITIONS) is to
    else:
        with pytest.raises(errors.InvalidStateError) as exc:
            move(frm, to, TRANSITIONS)
        assert (exc.value.frm, exc.value.to) == (frm, to)
        assert f"from {frm} to {to}" in str(exc.value)


def test_removal_never_goes_back() -> None:
    """Once rm began, nothing but finishing it (or failing to: dead) is allowed."""
    for to in (S.RUNNING, S.RESTARTING, S.EXITED, S.PAUSED, S.CREATED):
        assert not can_move(S.REMOVING, to, TRANSITIONS)
        assert not can_move(S.DEAD, to, TRANSITIONS)
    assert S.REMOVING in DURABLE and S.RUNNING not in DURABLE


def test_exec_moves() -> None:
    assert move(ExecState.CREATED, ExecState.RUNNING, EXEC_TRANSITIONS, "exec") is \
        ExecState.RUNNING
    for frm, to in ((ExecState.CREATED, ExecState.EXITED),
                    (ExecState.EXITED, ExecState.RUNNING),
                    (ExecState.RUNNING, ExecState.CREATED)):
        with pytest.raises(errors.InvalidStateError, match="invalid exec state transition"):
            move(frm, to, EXEC_TRANSITIONS, "exec")


def _record(tmp: Path) -> ContainerRecord:
    return ContainerRecord("c" * 64, "x", "busybox", "sha256:ab", 1.0, "sh", [], {}, {},
                           str(tmp))


def test_transition_writes_the_record_and_refusal_changes_nothing(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    rec.save()
    rec.transition(State.RUNNING)
    rec.transition(State.REMOVING)
    on_disk = json.loads((tmp_path / "config.v2.json").read_text())
    assert on_disk["status"] == "removing"
    assert ContainerRecord.load(tmp_path).status is State.REMOVING
    with pytest.raises(errors.InvalidStateError):
        rec.transition(State.RUNNING)
    assert rec.status is State.REMOVING
    assert json.loads((tmp_path / "config.v2.json").read_text())["status"] == "removing"


def test_transition_that_cannot_be_written_does_not_move(tmp_path: Path) -> None:
    rec = _record(tmp_path / "gone")  # no directory: the write fails
    with pytest.raises(OSError):
        rec.transition(State.RUNNING)
    assert rec.status is State.CREATED


def test_a_record_with_an_unknown_status_is_corrupt(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    rec.save()
    raw = json.loads((tmp_path / "config.v2.json").read_text())
    (tmp_path / "config.v2.json").write_text(json.dumps({**raw, "status": "zombie"}))
    with pytest.raises(errors.InvalidArgumentError, match="corrupt"):
        ContainerRecord.load(tmp_path)


def _status_assignments(path: Path) -> list[tuple[int, str]]:
    """(line, enclosing function) of every assignment to an attribute named ``status``
    (x.status = ..., a, x.status = ..., x.status += ...)."""
    found = []

    def visit(node: ast.AST, func: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = node.name
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, ast.Attribute) and sub.attr == "status" and \
                        isinstance(sub.ctx, ast.Store):
                    found.append((node.lineno, func))
        for child in ast.iter_child_nodes(node):
            visit(child, func)
    visit(ast.parse(path.read_text()), "")
    return found


def test_no_status_is_set_outside_the_lifecycle() -> None:
    """Only ContainerRecord.transition and ExecRecord.transition set a status (both via
    lifecycle.move; a record's __post_init__ only types its initial one); the engine and
    the daemon never assign one themselves."""
    root = Path(labkit.__file__).parent / "engine"
    outside = {}
    owners = 0
    for path in [*(root / "containers").glob("*.py"), *(root / "daemon").rglob("*.py")]:
        if path.name == "fake.py":  # the fake supervisor's own task states (a test double)
            continue
        for line, func in _status_assignments(path):
            if func == "transition" or (path.name, func) == ("record.py", "__post_init__"):
                owners += 1
            else:
                outside.setdefault(path.name, []).append(line)
    assert outside == {}
    assert owners >= 2  # the scan does see the two transition() methods


def test_removing_and_dead_as_docker_shows_them(tmp_path: Path) -> None:
    from labkit.engine.containers import listing
    rec = _record(tmp_path)
    rec.save()
    rec.transition(State.REMOVING)
    assert listing.human_status(rec) == "Removal In Progress"
    assert listing.inspect(rec)["State"]["Status"] == "removing"
    rec.transition(State.DEAD)
    st = listing.inspect(rec)["State"]
    assert st["Dead"] and st["Status"] == "dead" and not st["Running"]
    assert listing.human_status(rec) == "Dead"
    assert listing.filter_list([rec], False, -1, {}) == []  # not running: only with -a
    assert listing.filter_list([rec], False, -1, {"status": ["dead"]}) == [rec]


def test_start_failure_code_comes_from_the_typed_error() -> None:
    from labkit.engine.containers.tasks import start_failure_code
    from labkit.engine.runtime.process import (
        ExecutableNotFoundError,
        ExecutablePermissionError,
    )
    assert start_failure_code(ExecutableNotFoundError("nosuch")) == 127
    assert start_failure_code(ExecutablePermissionError("/etc/passwd")) == 126
    # the type wins over the words
    assert start_failure_code(ExecutablePermissionError("/x", "not found")) == 126
    # an untyped error is never read by its words
    assert start_failure_code(errors.LabkitError("exec: no such file or directory")) == 126
    assert start_failure_code(errors.LabkitError("permission denied")) == 126
