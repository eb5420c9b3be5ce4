"""Docker's stop and kill semantics through the daemon API, against a fake supervisor whose
processes take a moment to die and may ignore SIGTERM (as `trap '' TERM` would).

- kill with SIGKILL answers once the container has stopped; other signals once delivered;
- stop -t -1 waits for ever for the stop signal to work; StopTimeout 0 means no wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from fakes.tasks import FakeTasks

from labkit import errors
from labkit.engine.containers.engine import Engine
from labkit.engine.containers.store import ContainerStore
from labkit.engine.daemon.app import make_app
from labkit.engine.images.store import ImageStore

V = "/v1.41"


class SlowDeathTasks(FakeTasks):
    """Records every signal; SIGKILL ends the process a little later (as a real one takes
    its time to die); SIGTERM and other signals are ignored (delivered, nothing happens)."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.signals: list[int] = []
        self.dying: list[asyncio.Task[None]] = []

    async def kill(self, id: str, signal: int, exec_id: str = "", all: bool = False) -> None:
        self.signals.append(signal)
        if signal == 9:
            self.dying.append(asyncio.create_task(self._die(id, exec_id, all)))

    async def _die(self, id: str, exec_id: str, all: bool) -> None:
        await asyncio.sleep(0.1)
        with contextlib.suppress(errors.NotFoundError):  # deleted meanwhile
            await super().kill(id, 9, exec_id, all)

    async def delete(self, id: str, exec_id: str = "", force: bool = False) -> Any:
        if force:  # a forced delete kills at once, as the supervisor's does
            await super().kill(id, 9, exec_id)
        return await super().delete(id, exec_id, force)


def run(tmp: Path, test: Callable[[TestClient, Engine, SlowDeathTasks], Awaitable[None]]) -> None:
    layer = tmp / "images" / "layers" / "ab"
    (layer / "bin").mkdir(parents=True)
    (layer / "bin" / "sleep").write_text("")
    images = ImageStore(tmp / "images")
    images.add("busybox", {"config": {"Cmd": ["sleep", "9"], "Env": ["PATH=/bin"]},
                           "rootfs": {"type": "layers", "diff_ids": ["sha256:ab"]}})
    (tmp / "run").mkdir()
    tasks = SlowDeathTasks(tmp / "run")

    async def main() -> None:
        eng = Engine(tasks, ContainerStore(tmp / "containers"), images)
        async with TestClient(TestServer(make_app(eng))) as client:
            await test(client, eng, tasks)
        eng.close()
        await tasks.close()
    asyncio.run(main())


async def started(client: TestClient, body: dict[str, Any] | None = None) -> str:
    r = await client.post(f"{V}/containers/create", json={"Image": "busybox", **(body or {})})
    assert r.status == 201, await r.text()
    cid = str((await r.json())["Id"])
    assert (await client.post(f"{V}/containers/{cid}/start")).status == 204
    return cid


async def state(client: TestClient, cid: str) -> dict[str, Any]:
    return dict((await (await client.get(f"{V}/containers/{cid}/json")).json())["State"])


async def until(cond: Callable[[], bool]) -> None:
    """Yield to the loop until ``cond`` holds (a hang here fails via pytest's timeout)."""
    while not cond():
        await asyncio.sleep(0.01)


def record_waits(eng: Engine) -> list[tuple[int, float | None]]:
    """The (signal, timeout) of each kill-and-wait that stop does."""
    calls: list[tuple[int, float | None]] = []
    inner = eng.control._kill_and_wait

    async def spy(rec: Any, sig: int, timeout: float | None) -> bool:
        calls.append((sig, timeout))
        return await inner(rec, sig, timeout)
    eng.control._kill_and_wait = spy  # type: ignore[method-assign]
    return calls


def test_kill_sigkill_answers_after_the_container_stopped(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine, tasks: SlowDeathTasks) -> None:
        cid = await started(client)
        assert (await client.post(f"{V}/containers/{cid}/kill")).status == 204
        st = await state(client, cid)  # right after the answer: not running any more
        assert not st["Running"] and st["Status"] == "exited" and st["ExitCode"] == 137
        assert tasks.signals == [signal.SIGKILL]
    run(tmp_path, t)


def test_kill_of_a_paused_container_waits_for_its_exit(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine, tasks: SlowDeathTasks) -> None:
        cid = await started(client)
        assert (await client.post(f"{V}/containers/{cid}/pause")).status == 204
        assert (await client.post(f"{V}/containers/{cid}/kill?signal=KILL")).status == 204
        st = await state(client, cid)
        assert not st["Running"] and not st["Paused"] and st["ExitCode"] == 137
        assert ("resume", cid, "") in tasks.calls  # thawed so that it can die
    run(tmp_path, t)


def test_kill_other_signals_answer_once_delivered(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine, tasks: SlowDeathTasks) -> None:
        cid = await started(client)
        for sig in ("USR1", "TERM", "HUP"):  # the process ignores them all
            assert (await client.post(f"{V}/containers/{cid}/kill?signal={sig}")).status == 204
        assert tasks.signals == [signal.SIGUSR1, signal.SIGTERM, signal.SIGHUP]
        assert (await state(client, cid))["Running"]
    run(tmp_path, t)


def test_stop_t_minus_1_waits_for_ever_for_the_stop_signal(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine, tasks: SlowDeathTasks) -> None:
        cid = await started(client)
        waits = record_waits(eng)
        stop = asyncio.create_task(client.post(f"{V}/containers/{cid}/stop?t=-1"))
        await until(lambda: bool(tasks.signals))
        assert tasks.signals == [signal.SIGTERM] and waits == [(signal.SIGTERM, None)]
        assert not stop.done() and (await state(client, cid))["Running"]
        # only the container's own end (here a kill from elsewhere) ends the stop
        assert (await client.post(f"{V}/containers/{cid}/kill")).status == 204
        assert (await stop).status == 204
        assert tasks.signals == [signal.SIGTERM, signal.SIGKILL]
        assert (await state(client, cid))["ExitCode"] == 137
    run(tmp_path, t)


def test_stop_timeout_0_kills_at_once(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine, tasks: SlowDeathTasks) -> None:
        cid = await started(client, {"StopTimeout": 0})
        waits = record_waits(eng)
        assert (await client.post(f"{V}/containers/{cid}/stop")).status == 204
        assert waits == [(signal.SIGTERM, 0), (signal.SIGKILL, None)]
        assert tasks.signals == [signal.SIGTERM, signal.SIGKILL]
        st = await state(client, cid)
        assert not st["Running"] and st["ExitCode"] == 137
        # an explicit ?t= wins over StopTimeout (moby ContainerStop)
        cid = await started(client, {"StopTimeout": 0})
        waits.clear()
        stop = asyncio.create_task(client.post(f"{V}/containers/{cid}/stop?t=30"))
        await until(lambda: bool(waits))
        assert waits == [(signal.SIGTERM, 30)]
        assert (await client.post(f"{V}/containers/{cid}/kill")).status == 204
        assert (await stop).status == 204
    run(tmp_path, t)


def test_stop_default_timeout_is_10_s(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine, tasks: SlowDeathTasks) -> None:
        cid = await started(client)
        waits = record_waits(eng)
        stop = asyncio.create_task(client.post(f"{V}/containers/{cid}/stop"))
        await until(lambda: bool(waits))
        assert waits == [(signal.SIGTERM, 10)]
        assert (await client.post(f"{V}/containers/{cid}/kill")).status == 204
        assert (await stop).status == 204
    run(tmp_path, t)
