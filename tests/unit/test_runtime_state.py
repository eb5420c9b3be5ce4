"""The container state machine and its on-disk record (labkit.engine.runtime.state)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.runtime import state as S


def make(tmp_path: Path, status: str = S.CREATED, pid: int = 0, start: int = 0) -> S.State:
    d = tmp_path / "lk-unit"
    d.mkdir(exist_ok=True)
    return S.State(id="lk-unit", bundle="/b", status=status, pid=pid, init_start=start, dir=str(d))


@pytest.mark.parametrize("frm, to", [
    (S.CREATED, S.RUNNING), (S.CREATED, S.STOPPED), (S.CREATED, S.DELETED),
    (S.RUNNING, S.STOPPED), (S.RUNNING, S.PAUSED), (S.PAUSED, S.RUNNING),
    (S.STOPPED, S.DELETED),
])
def test_allowed_transitions(tmp_path: Path, frm: str, to: str) -> None:
    st = make(tmp_path, frm)
    st.transition(to)
    assert st.status == to


@pytest.mark.parametrize("frm, to", [
    (S.RUNNING, S.DELETED), (S.RUNNING, S.CREATED), (S.STOPPED, S.RUNNING),
    (S.DELETED, S.RUNNING), (S.PAUSED, S.DELETED),
])
def test_forbidden_transitions_raise(tmp_path: Path, frm: str, to: str) -> None:
    st = make(tmp_path, frm)
    with pytest.raises(errors.InvalidStateError) as ei:
        st.transition(to)
    assert (ei.value.frm, ei.value.to) == (frm, to)
    assert st.status == frm


def test_save_is_atomic_and_roundtrips(tmp_path: Path) -> None:
    st = make(tmp_path)
    st.annotations["a"] = "b"
    st.save()
    assert os.listdir(st.dir) == [S.STATE_FILE]  # no temp file left
    back = S.load(str(tmp_path), "lk-unit")
    assert (back.id, back.status, back.annotations, back.dir) == ("lk-unit", S.CREATED, {"a": "b"}, st.dir)
    assert "dir" not in json.loads((tmp_path / "lk-unit" / S.STATE_FILE).read_text())


def test_load_missing_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFoundError, match="no such container: lk-nope"):
        S.load(str(tmp_path), "lk-nope")


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "sp ace", "x\0"])
def test_bad_ids(bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        S.check_id(bad)


def fake_proc(tmp_path: Path, pid: int, start: int, state: str = "S") -> str:
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    # comm with spaces and parens, as proc(5) allows
    fields = [state] + ["0"] * 18 + [str(start)] + ["0"] * 10
    (proc / str(pid) / "stat").write_text(f"{pid} (a (b) c) " + " ".join(fields) + "\n")
    return str(proc)


def test_refresh_recomputes_status(tmp_path: Path) -> None:
    procfs = fake_proc(tmp_path, 4242, 777)
    st = make(tmp_path, S.CREATED, pid=4242, start=777)
    (Path(st.dir) / S.EXEC_FIFO).write_text("")
    assert st.refresh(procfs) == S.CREATED          # fifo still there: init waits on it
    os.unlink(Path(st.dir) / S.EXEC_FIFO)
    assert st.refresh(procfs) == S.RUNNING
    st.init_start = 778                              # same pid, other process: recycled
    assert st.refresh(procfs) == S.STOPPED
    assert st.oci()["pid"] == 0


def test_zombie_is_stopped(tmp_path: Path) -> None:
    procfs = fake_proc(tmp_path, 4243, 5, state="Z")
    st = make(tmp_path, S.RUNNING, pid=4243, start=5)
    assert st.refresh(procfs) == S.STOPPED


def test_oci_state_fields(tmp_path: Path) -> None:
    oci = make(tmp_path, S.CREATED, pid=7).oci()
    assert {"ociVersion", "id", "status", "pid", "bundle", "annotations"} <= set(oci)


def test_list_ids_only_containers(tmp_path: Path) -> None:
    make(tmp_path).save()
    (tmp_path / ".seccomp-cache").mkdir()
    (tmp_path / "junk").mkdir()
    assert S.list_ids(str(tmp_path)) == ["lk-unit"]
    assert S.list_ids(str(tmp_path / "none")) == []


def test_status_is_an_enum_read_back_from_json(tmp_path: Path) -> None:
    st = S.State("lk-x", "/b", "running", dir=str(tmp_path))
    assert st.status is S.Status.RUNNING
    st.save()
    assert S.load(str(tmp_path.parent), tmp_path.name).status is S.Status.RUNNING
    assert json.loads((tmp_path / "state.json").read_text())["status"] == "running"
    with pytest.raises(errors.InvalidArgumentError, match="'runnin' is not a container status"):
        S.State("lk-x", "/b", "runnin")
