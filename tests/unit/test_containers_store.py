"""Records on disk, the state machine, name/ID resolution, list filters and shapes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.containers import listing
from labkit.engine.containers.record import ContainerRecord, rfc3339
from labkit.engine.containers.store import ContainerStore


def rec(store: ContainerStore, cid: str, name: str, **kw: object) -> ContainerRecord:
    d = store.root / cid
    d.mkdir(parents=True)
    r = ContainerRecord(cid, name, "busybox", "sha256:" + "0" * 64, kw.pop("created", time.time()),  # type: ignore[arg-type]
                        "sh", [], {"Labels": kw.pop("labels", {})}, {}, str(d), **kw)  # type: ignore[arg-type]
    r.save()
    store.add(r)
    return r


def test_save_load_roundtrip_and_atomicity(tmp_path: Path) -> None:
    s = ContainerStore(tmp_path)
    r = rec(s, "a" * 64, "web")
    r.transition("running")
    r.save()
    assert ContainerRecord.load(tmp_path / ("a" * 64)).status == "running"
    assert [p.name for p in (tmp_path / ("a" * 64)).iterdir()] == ["config.v2.json"]


def test_transitions_are_checked(tmp_path: Path) -> None:
    r = rec(ContainerStore(tmp_path), "a" * 64, "web")
    with pytest.raises(errors.InvalidStateError):
        r.transition("paused")  # created -> paused is not a Docker transition
    r.transition("running")
    r.transition("paused")


def test_resolution(tmp_path: Path) -> None:
    s = ContainerStore(tmp_path)
    a, b = rec(s, "abc1" + "0" * 60, "web"), rec(s, "abc2" + "0" * 60, "db")
    assert s.get(a.id) is a and s.get("web") is a and s.get("/db") is b
    assert s.get("abc1") is a
    with pytest.raises(errors.InvalidArgumentError, match="multiple IDs"):
        s.get("abc")
    with pytest.raises(errors.NotFoundError):
        s.get("nosuch")


def test_name_conflict_has_dockers_text(tmp_path: Path) -> None:
    s = ContainerStore(tmp_path)
    a = rec(s, "a" * 64, "dup")
    with pytest.raises(errors.ConflictError) as ei:
        rec(s, "b" * 64, "dup")
    assert str(ei.value) == (
        f'Conflict. The container name "/dup" is already in use by container "{a.id}". '
        "You have to remove (or rename) that container to be able to reuse that name.")


def test_load_all_drops_half_created_dirs(tmp_path: Path) -> None:
    s = ContainerStore(tmp_path)
    rec(s, "a" * 64, "web")
    (tmp_path / ("b" * 64)).mkdir()  # a create that died before its record
    s2 = ContainerStore(tmp_path)
    assert [r.name for r in s2.load_all()] == ["web"]
    assert not (tmp_path / ("b" * 64)).exists()


def test_rename_and_generated_names(tmp_path: Path) -> None:
    s = ContainerStore(tmp_path)
    a = rec(s, "a" * 64, "web")
    s.rename(a, "web2")
    assert s.get("web2") is a
    with pytest.raises(errors.NotFoundError):
        s.get("web")
    n = s.generate_name("f" * 64)
    assert "_" in n and n not in s.names


def test_list_filters(tmp_path: Path) -> None:
    s = ContainerStore(tmp_path)
    now = time.time()
    a = rec(s, "a" * 64, "web", created=now - 3, labels={"tier": "front"})
    b = rec(s, "b" * 64, "db", created=now - 2, status="exited", has_been_started=True,
            exit_code=3)
    c = rec(s, "c" * 64, "cache", created=now - 1)
    a.status = "running"
    recs = s.all()
    assert [r.name for r in recs] == ["cache", "db", "web"]
    names = lambda out: [r.name for r in out]
    assert names(listing.filter_list(recs, False, -1, {})) == ["web"]
    assert names(listing.filter_list(recs, True, 2, {})) == ["cache", "db"]
    assert names(listing.filter_list(recs, True, -1, {"label": ["tier=front"]})) == ["web"]
    assert names(listing.filter_list(recs, True, -1, {"exited": ["3"]})) == ["db"]
    assert names(listing.filter_list(recs, True, -1, {"status": ["created"]})) == ["cache"]
    assert names(listing.filter_list(recs, True, -1, {"name": ["ca"]})) == ["cache"]
    assert names(listing.filter_list(recs, True, -1, {"before": ["db"]})) == ["web"]
    assert names(listing.filter_list(recs, True, -1, {"since": ["db"]})) == ["cache"]
    assert names(listing.filter_list(recs, True, -1, {"ancestor": ["busybox"]})) == [
        "cache", "db", "web"]
    del b, c


def test_parse_filters_both_forms() -> None:
    assert listing.parse_filters(json.dumps({"name": {"x": True}})) == {"name": ["x"]}
    assert listing.parse_filters(json.dumps({"name": ["x"]})) == {"name": ["x"]}
    with pytest.raises(errors.InvalidArgumentError):
        listing.parse_filters("{")


def test_inspect_shape(tmp_path: Path) -> None:
    r = rec(ContainerStore(tmp_path), "a" * 64, "web")
    out = listing.inspect(r)
    assert out["Name"] == "/web" and out["State"]["Status"] == "created"
    assert out["State"]["StartedAt"] == "0001-01-01T00:00:00Z"
    assert set(out["State"]) >= {"Status", "Running", "Paused", "Restarting", "OOMKilled",
                                 "Dead", "Pid", "ExitCode", "Error", "StartedAt", "FinishedAt"}
    assert listing.summary(r)["Status"] == "Created"
    assert rfc3339(1.5) == "1970-01-01T00:00:01.5Z"
