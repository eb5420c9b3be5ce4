"""The event journal (rotation, bound, privacy, cut lines) and the bus's replays from it."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from labkit import errors
from labkit.engine.containers.events import EventBus
from labkit.engine.containers.journal import EventJournal


def ev(n: int, t: int | None = None, action: str = "start") -> dict[str, Any]:
    return {"status": action, "id": f"c{n}", "Type": "container", "Action": action,
            "Actor": {"ID": f"c{n}", "Attributes": {"name": f"n{n}", "image": "busybox"}},
            "time": (t or n) // 10**9, "timeNano": t if t is not None else n}


def test_appends_lines_and_replays_in_order(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events")
    for n in range(1, 6):
        j.append(ev(n))
    assert [e["id"] for e in j.replay()] == ["c1", "c2", "c3", "c4", "c5"]
    assert [e["id"] for e in j.replay(2, 4)] == ["c2", "c3", "c4"]
    assert (tmp_path / "events" / "events.log").read_bytes().count(b"\n") == 5


def test_private_modes(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events")
    j.append(ev(1))
    assert stat.S_IMODE(os.stat(tmp_path / "events").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(j.path()).st_mode) == 0o600


def test_rotation_keeps_n_files_under_the_bound(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events", max_bytes=2048, keep=3)
    for n in range(1, 201):
        j.append(ev(n))
    files = sorted(p.name for p in (tmp_path / "events").iterdir())
    assert files == ["events.log", "events.log.1", "events.log.2"]
    assert all(p.stat().st_size <= 2048 for p in (tmp_path / "events").iterdir())
    got = [e["timeNano"] for e in j.replay()]
    # the newest events survive, in order, with no gap; the oldest were dropped
    assert got == list(range(got[0], 201)) and got[0] > 1
    assert sum(p.stat().st_size for p in (tmp_path / "events").iterdir()) <= 3 * 2048


def test_reopen_continues_the_same_file(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events")
    j.append(ev(1))
    j.close()
    j2 = EventJournal(tmp_path / "events")  # a restarted daemon
    j2.append(ev(2))
    assert [e["id"] for e in j2.replay()] == ["c1", "c2"]


def test_cut_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events")
    j.append(ev(1))
    with open(j.path(), "ab") as f:
        f.write(b'["not", "an event"]\n{"timeNano": "x"}\n{"status": "start", "id": "c2", "ti')
    j.close()
    j = EventJournal(tmp_path / "events")
    j.append(ev(3))  # a new line after a cut one: the cut one is skipped, this one is read
    assert [e["id"] for e in j.replay()] == ["c1"]
    with open(j.path(), "ab") as f:
        f.write(b"\n")
    j.append(ev(4))
    assert [e["id"] for e in j.replay()] == ["c1", "c4"]


def test_refuses_a_journal_others_can_read_or_a_symlink(tmp_path: Path) -> None:
    d = tmp_path / "events"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    with pytest.raises(errors.ConflictError, match="no group/other access"):
        EventJournal(d).append(ev(1))
    os.chmod(d, 0o700)
    target = tmp_path / "elsewhere"
    target.write_text("")
    (d / "events.log").symlink_to(target)
    with pytest.raises(errors.SyscallError):
        EventJournal(d).append(ev(1))
    assert target.read_text() == ""


def test_bad_bounds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="max_bytes"):
        EventJournal(tmp_path, max_bytes=10)
    with pytest.raises(errors.InvalidArgumentError, match="keep"):
        EventJournal(tmp_path, keep=0)


def _collect(bus: EventBus, since: float | None, until: float | None,
             filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        return [e async for e in bus.stream(since, until, filters or {})]
    return asyncio.run(main())


def test_bus_replays_events_of_a_previous_bus_with_filters(tmp_path: Path) -> None:
    old = EventBus(journal=EventJournal(tmp_path / "events"))
    t0 = time.time()
    old.emit("create", "a" * 64, "busybox", "web", {"app": "x"})
    old.emit("start", "a" * 64, "busybox", "web", {"app": "x"})
    old.emit("create", "b" * 64, "alpine", "db")
    old.journal.close()  # type: ignore[union-attr]
    new = EventBus(journal=EventJournal(tmp_path / "events"))  # the daemon restarted
    assert new.recent == type(new.recent)()  # nothing in memory: all from the journal
    past = _collect(new, t0 - 1, time.time())
    assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in past] == \
        [("create", "web"), ("start", "web"), ("create", "db")]
    assert [e["Action"] for e in _collect(new, t0 - 1, time.time(), {"container": ["db"]})] == \
        ["create"]
    assert [e["Action"] for e in _collect(new, t0 - 1, time.time(), {"event": ["start"]})] == \
        ["start"]
    assert [e["id"][0] for e in _collect(new, t0 - 1, time.time(), {"label": ["app=x"]})] == \
        ["a", "a"]
    assert _collect(new, t0 - 1, t0 - 0.5) == []  # until before any of them
    # until alone replays everything before it (dockerd's loadBufferedEvents)
    assert len(_collect(new, None, time.time())) == 3


def test_bus_default_journal_is_under_labkit_root(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_ROOT", str(tmp_path / "root"))
    EventBus().emit("create", "c" * 64, "busybox", "x")
    assert (tmp_path / "root" / "events" / "events.log").read_bytes().count(b"\n") == 1


def test_bus_without_journal_answers_from_memory(tmp_path: Path) -> None:
    bus = EventBus(journal=None)
    t0 = time.time()
    bus.emit("create", "c" * 64, "busybox", "x")
    assert [e["Action"] for e in _collect(bus, t0 - 1, time.time())] == ["create"]
    assert not (tmp_path / "events").exists()


def test_a_failing_journal_does_not_fail_the_event(tmp_path: Path) -> None:
    d = tmp_path / "events"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)  # refused by the journal
    bus = EventBus(journal=EventJournal(d))
    t0 = time.time()
    assert bus.emit("create", "c" * 64, "busybox", "x")["Action"] == "create"
    assert [e["Action"] for e in _collect(bus, t0 - 1, time.time())] == ["create"]
