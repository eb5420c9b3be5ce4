"""rm writes `removing` before it acts, and restore finishes an interrupted removal (against
the fake supervisor; tests/privileged/test_daemon_live.py does it with a SIGKILLed daemon)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fakes.tasks import FakeTasks

from labkit.engine.containers.createbody import parse_create
from labkit.engine.containers.engine import Engine
from labkit.engine.containers.lifecycle import State
from labkit.engine.containers.store import ContainerStore
from labkit.engine.images.store import ImageStore


def images(tmp: Path) -> ImageStore:
    layer = tmp / "images" / "layers" / "ab"
    (layer / "bin").mkdir(parents=True)
    (layer / "bin" / "sleep").write_text("")
    store = ImageStore(tmp / "images")
    store.add("busybox", {"config": {"Cmd": ["sleep", "9"], "Env": ["PATH=/bin"]},
                          "rootfs": {"type": "layers", "diff_ids": ["sha256:ab"]}})
    return store


@pytest.mark.parametrize("running", [True, False])
def test_restore_finishes_a_removal_and_never_restarts(tmp_path: Path, running: bool) -> None:
    async def main() -> None:
        (tmp_path / "run").mkdir()
        tasks = FakeTasks(tmp_path / "run")
        eng = Engine(tasks, ContainerStore(tmp_path / "containers"), images(tmp_path))
        spec = parse_create({"Image": "busybox", "HostConfig": {
            "RestartPolicy": {"Name": "always"}}}, "doomed")
        rec = eng.containers.create(spec)
        await eng.containers.start(rec.id)
        if not running:  # it was killed already when the daemon died
            await tasks.kill(rec.id, 9)
            await eng.waiters.wait(rec, "not-running")
        eng.close()  # the daemon dies right after rm recorded its intent (as Control.remove)
        rec.manually_stopped = True
        rec.transition(State.REMOVING)
        starts = len([c for c in tasks.calls if c[0] == "start"])
        eng2 = Engine(tasks, ContainerStore(tmp_path / "containers"), eng.images)
        await eng2.restore()
        assert eng2.store.all() == [] and not (tmp_path / "containers" / rec.id).exists()
        assert await tasks.list() == []  # its task is gone too
        assert len([c for c in tasks.calls if c[0] == "start"]) == starts  # never restarted
        eng2.close()
        await tasks.close()
    asyncio.run(main())


def test_rm_records_removing_before_it_kills(tmp_path: Path) -> None:
    async def main() -> None:
        (tmp_path / "run").mkdir()
        seen: list[str] = []

        class Recording(FakeTasks):
            async def kill(self, id: str, signal: int, exec_id: str = "",
                           all: bool = False) -> None:
                raw = (tmp_path / "containers" / id / "config.v2.json").read_text()
                seen.append("removing" if '"status": "removing"' in raw else "other")
                await super().kill(id, signal, exec_id, all)
        tasks = Recording(tmp_path / "run")
        eng = Engine(tasks, ContainerStore(tmp_path / "containers"), images(tmp_path))
        rec = eng.containers.create(parse_create({"Image": "busybox"}, "lk-x"))
        await eng.containers.start(rec.id)
        await eng.control.remove(rec.id, force=True)
        assert seen == ["removing"]  # on disk before the signal went out
        assert eng.store.all() == []
        eng.close()
        await tasks.close()
    asyncio.run(main())


def test_prune_leaves_a_removal_in_progress_to_its_rm(tmp_path: Path) -> None:
    async def main() -> None:
        (tmp_path / "run").mkdir()
        tasks = FakeTasks(tmp_path / "run")
        eng = Engine(tasks, ContainerStore(tmp_path / "containers"), images(tmp_path))
        busy = eng.containers.create(parse_create({"Image": "busybox"}, "lk-busy"))
        idle = eng.containers.create(parse_create({"Image": "busybox"}, "lk-idle"))
        busy.transition(State.REMOVING)  # an rm is under way (held by its lock, say)
        out = await eng.ops.prune({})
        assert out["ContainersDeleted"] == [idle.id]
        assert [r.id for r in eng.store.all()] == [busy.id]
        eng.close()
        await tasks.close()
    asyncio.run(main())


def test_update_and_rename_refused_once_rm_began(tmp_path: Path) -> None:
    from labkit import errors

    async def main() -> None:
        (tmp_path / "run").mkdir()
        tasks = FakeTasks(tmp_path / "run")
        eng = Engine(tasks, ContainerStore(tmp_path / "containers"), images(tmp_path))
        rec = eng.containers.create(parse_create({"Image": "busybox"}, "lk-going"))
        rec.transition(State.REMOVING)
        with pytest.raises(errors.ConflictError, match="marked for removal"):
            await eng.ops.update(rec.id, {"Memory": 64 << 20})
        with pytest.raises(errors.ConflictError, match="marked for removal"):
            eng.containers.rename(rec.id, "lk-other")
        with pytest.raises(errors.ConflictError, match="marked for removal"):
            await eng.containers.start(rec.id)
        with pytest.raises(errors.ConflictError, match="already in progress"):
            await eng.control.remove(rec.id, force=True)
        assert rec.name == "lk-going" and rec.host_config.get("Memory") != 64 << 20
        eng.close()
        await tasks.close()
    asyncio.run(main())


def test_an_unreadable_record_is_moved_aside_and_its_task_left_running(tmp_path: Path) -> None:
    """Issue 8 (nothing lost): a corrupt config.v2.json costs neither the running container
    nor the record's bytes; the daemon says so in `docker info` and its log."""
    from labkit.engine.daemon import serialize

    async def main() -> None:
        (tmp_path / "run").mkdir()
        tasks = FakeTasks(tmp_path / "run")
        eng = Engine(tasks, ContainerStore(tmp_path / "containers"), images(tmp_path))
        rec = eng.containers.create(parse_create({"Image": "busybox"}, "lk-torn"))
        await eng.containers.start(rec.id)
        eng.close()  # the daemon dies; then its record is damaged (a torn write, a bad disk)
        record = tmp_path / "containers" / rec.id / "config.v2.json"
        record.write_bytes(b'{"id": "' + rec.id.encode() + b'", "sta')
        for _ in range(2):  # and the daemon starts, twice
            eng2 = Engine(tasks, ContainerStore(tmp_path / "containers"), eng.images)
            await eng2.restore()
            [t] = await tasks.list()
            assert (t.id, t.status) == (rec.id, "running")  # left running, not force-deleted
            assert eng2.store.all() == []
            assert not record.exists() and (tmp_path / "containers" / rec.id).is_dir()
            [aside] = record.parent.glob("config.v2.json.unreadable-*")
            assert aside.read_bytes().endswith(b'"sta')        # the bytes are kept
            [warning] = serialize.info(eng2)["Warnings"]
            assert rec.id in warning and aside.name in warning and "left running" in warning
            eng2.close()
        assert not any(c[0] == "delete" for c in tasks.calls)
        await tasks.close()
    asyncio.run(main())


def test_a_record_less_dir_is_removed_only_without_a_task(tmp_path: Path) -> None:
    async def main() -> None:
        (tmp_path / "run").mkdir()
        tasks = FakeTasks(tmp_path / "run")
        eng = Engine(tasks, ContainerStore(tmp_path / "containers"), images(tmp_path))
        rec = eng.containers.create(parse_create({"Image": "busybox"}, "lk-live"))
        await eng.containers.start(rec.id)
        eng.close()
        (tmp_path / "containers" / rec.id / "config.v2.json").unlink()  # lost, task alive
        (tmp_path / "containers" / "deadbeef").mkdir()                  # a create that died
        eng2 = Engine(tasks, ContainerStore(tmp_path / "containers"), eng.images)
        await eng2.restore()
        assert (tmp_path / "containers" / rec.id).is_dir()
        assert not (tmp_path / "containers" / "deadbeef").exists()
        eng2.close()
        await tasks.close()
    asyncio.run(main())
