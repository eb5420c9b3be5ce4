"""Image and volume events: moby's shape (legacy fields per type), moby's filter semantics
(daemon/events/filter.go), publishing from worker threads, and the daemon emitting them
where the change happens (tag, rmi, prune, volume create/rm/prune, mount at start)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from fakes.tasks import FakeTasks

from labkit import errors
from labkit.engine.containers.engine import Engine
from labkit.engine.containers.events import EventBus, check_filters, matches
from labkit.engine.containers.store import ContainerStore
from labkit.engine.daemon.app import make_app
from labkit.engine.images.store import ImageStore
from labkit.engine.volumes import VolumeStore

V = "/v1.41"


def run(tmp: Path, test: Callable[[TestClient, Engine], Awaitable[None]]) -> None:
    """The daemon's app on a fake task service, one busybox-like image (test_daemon_api)."""
    layer = tmp / "images" / "layers" / "ab"
    (layer / "bin").mkdir(parents=True)
    for exe in ("sh", "sleep", "true"):
        (layer / "bin" / exe).write_text("")
    images = ImageStore(tmp / "images")
    images.add("busybox", {"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
                           "rootfs": {"type": "layers", "diff_ids": ["sha256:ab"]}})
    (tmp / "run").mkdir()

    async def main() -> None:
        eng = Engine(FakeTasks(tmp / "run"), ContainerStore(tmp / "containers"), images)
        eng.containers.volumes.root = tmp / "volumes"
        async with TestClient(TestServer(make_app(eng))) as client:
            await test(client, eng)
        await eng.tasks.close()
    asyncio.run(main())


async def create(client: TestClient, body: dict[str, Any]) -> str:
    r = await client.post(f"{V}/containers/create", json={"Image": "busybox", **body})
    assert r.status == 201, await r.text()
    return str((await r.json())["Id"])

IID = "sha256:" + "ab" * 32


def test_image_event_shape_is_mobys() -> None:
    ev = EventBus(journal=None).emit_image("tag", IID, "web:1", {"team": "a"})
    assert ev["Type"] == "image" and ev["Action"] == "tag" and ev["scope"] == "local"
    assert ev["Actor"] == {"ID": IID, "Attributes": {"team": "a", "name": "web:1"}}
    # moby events.Log fills status and id for images, never from
    assert ev["status"] == "tag" and ev["id"] == IID and "from" not in ev
    assert ev["time"] == ev["timeNano"] // 10**9


def test_volume_and_prune_event_shapes() -> None:
    bus = EventBus(journal=None)
    ev = bus.emit_volume("create", "data", {"driver": "local"})
    assert ev["Type"] == "volume" and ev["Actor"] == {"ID": "data",
                                                      "Attributes": {"driver": "local"}}
    assert not {"status", "id", "from"} & set(ev)  # moby: legacy fields only for c/i
    pr = bus.emit_prune("image", 123)
    assert pr["Action"] == "prune" and pr["Actor"] == {"ID": "", "Attributes":
                                                       {"reclaimed": "123"}}
    assert pr["status"] == "prune" and "id" not in pr  # omitempty: ID is empty
    assert "status" not in bus.emit_prune("volume", 0)


def _img(action: str, ident: str, name: str, **labels: str) -> dict[str, Any]:
    return EventBus(journal=None).emit_image(action, ident, name, labels)


def test_filters_follow_moby() -> None:
    pull = _img("pull", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x", app="web")
    tag = _img("tag", IID, "lk/web:1")
    vol = EventBus(journal=None).emit_volume("mount", "data", {"container": "c" * 64,
                                                                "driver": "local"})
    cont = EventBus(journal=None).emit("start", "c" * 64, "lk/web:1", "box", {"app": "web"})
    evs = [pull, tag, vol, cont]

    def hits(flt: dict[str, list[str]]) -> list[str]:
        return [f"{e['Type']}/{e['Action']}" for e in evs if matches(e, flt)]

    assert hits({"type": ["image"]}) == ["image/pull", "image/tag"]
    assert hits({"type": ["volume", "image"]}) == ["image/pull", "image/tag", "volume/mount"]
    # image=: Actor.ID, the "name" attribute (image events) or "image" (containers), and
    # each without its tag (moby stripTag)
    assert hits({"image": ["127.0.0.1:5000/x"]}) == ["image/pull"]
    assert hits({"image": ["127.0.0.1:5000/x:latest"]}) == ["image/pull"]
    assert hits({"image": ["lk/web"]}) == ["image/tag", "container/start"]
    assert hits({"image": [IID]}) == ["image/tag"]
    assert hits({"event": ["mount", "tag"]}) == ["image/tag", "volume/mount"]
    # volume=: a prefix of Actor.ID or of the name attribute (fuzzyMatchName)
    assert hits({"volume": ["da"], "type": ["volume"]}) == ["volume/mount"]
    assert hits({"volume": ["nosuch"], "type": ["volume"]}) == []
    # label=: every one must hold (MatchKVList), KEY or KEY=VALUE
    assert hits({"label": ["app=web"]}) == ["image/pull", "container/start"]
    assert hits({"label": ["app"]}) == ["image/pull", "container/start"]
    assert hits({"label": ["app=web", "nosuch"]}) == []
    assert hits({"scope": ["local"], "type": ["volume"]}) == ["volume/mount"]
    assert hits({"scope": ["swarm"]}) == []


def test_fuzzy_event_names_match_by_prefix_only_for_moby_three() -> None:
    bus = EventBus(journal=None)
    ex = bus.emit("exec_create: sh -c true", "c" * 64, "busybox", "box")
    assert matches(ex, {"event": ["exec_create"]})
    st = bus.emit("start", "c" * 64, "busybox", "box")
    assert not matches(st, {"event": ["sta"]})  # others: exact


def test_unknown_filter_keys_are_refused() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="invalid filter 'colour'"):
        check_filters({"colour": ["red"]})
    check_filters({"type": ["image"], "volume": ["x"], "label": ["a=b"], "scope": ["local"]})

    async def main() -> None:
        async for _ in EventBus(journal=None).stream(None, time.time(), {"colour": ["x"]}):
            pass
    with pytest.raises(errors.InvalidArgumentError):
        asyncio.run(main())


def test_worker_thread_events_reach_a_live_subscriber_on_its_loop() -> None:
    bus = EventBus(journal=None)

    async def main() -> list[str]:
        got: list[str] = []
        started = asyncio.Event()

        async def reader() -> None:
            agen = bus.stream(None, None, {"type": ["image"]})
            started.set()
            async for ev in agen:
                got.append(ev["Action"])
                if len(got) == 3:
                    return

        task = asyncio.ensure_future(reader())
        await started.wait()
        while not bus.subscribers:
            await asyncio.sleep(0)
        threads = [threading.Thread(target=bus.emit_image, args=(a, IID, IID))
                   for a in ("untag", "delete")]
        for t in threads:
            t.start()
        for t in threads:
            await asyncio.to_thread(t.join)
        bus.emit_image("tag", IID, "x:1")  # and one from the loop itself
        await asyncio.wait_for(task, 30)
        return got

    assert sorted(asyncio.run(main())) == ["delete", "tag", "untag"]


def test_volume_store_reports_create_once_and_destroy(tmp_path: Path) -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []
    vs = VolumeStore(tmp_path / "vols")
    vs.on_event = lambda a, n, at: seen.append((a, n, at))
    vs.create("data")
    vs.create("data")  # exists: returned unchanged, no second event (moby: created only)
    vs.remove("data")
    vs.remove("data", force=True)  # missing: nothing removed, no event
    assert seen == [("create", "data", {"driver": "local"}),
                    ("destroy", "data", {"driver": "local"})]


async def _events(client: TestClient, t0: float, flt: dict[str, list[str]]) -> list[Any]:
    r = await client.get(f"{V}/events", params={"since": f"{t0:.9f}",
                                                "until": f"{time.time():.9f}",
                                                "filters": json.dumps(flt)})
    assert r.status == 200, await r.text()
    return [json.loads(line) for line in (await r.read()).splitlines()]


def test_daemon_emits_image_events_for_tag_rmi_prune(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        t0 = time.time()
        iid = eng.images.resolve("busybox")
        r = await client.post(f"{V}/images/busybox/tag", params={"repo": "lk/ev"})
        assert r.status == 201
        r = await client.delete(f"{V}/images/lk/ev")
        assert r.status == 200, await r.text()
        r = await client.delete(f"{V}/images/busybox")
        assert r.status == 200, await r.text()
        evs = await _events(client, t0, {"type": ["image"]})
        assert [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"].get("name"))
                for e in evs] == [("tag", iid, "lk/ev:latest"), ("untag", iid, iid),
                                  ("untag", iid, iid), ("delete", iid, iid)]
        assert all(e["id"] == iid and e["status"] == e["Action"] for e in evs)
        only = await _events(client, t0, {"image": ["lk/ev"]})
        assert [e["Action"] for e in only] == ["tag"]
        r = await client.post(f"{V}/images/prune")
        assert r.status == 200
        evs = await _events(client, t0, {"event": ["prune"]})
        assert [(e["Type"], e["Actor"]["Attributes"]) for e in evs] == \
            [("image", {"reclaimed": "0"})]
        r = await client.get(f"{V}/events", params={"filters": '{"colour": {"x": true}}'})
        assert r.status == 400 and "colour" in (await r.json())["message"]
    run(tmp_path, t)


def test_daemon_emits_volume_events(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        t0 = time.time()
        r = await client.post(f"{V}/volumes/create", json={"Name": "lkev"})
        assert r.status == 201
        cid = await create(client, {"Cmd": ["sleep", "9"],
                                    "HostConfig": {"Binds": ["lkev:/data:ro"]}})
        r = await client.post(f"{V}/containers/{cid}/start")
        assert r.status == 204, await r.text()
        r = await client.delete(f"{V}/containers/{cid}", params={"force": "1"})
        assert r.status == 204, await r.text()
        r = await client.delete(f"{V}/volumes/lkev")
        assert r.status == 204, await r.text()
        evs = await _events(client, t0, {"volume": ["lkev"]})
        assert [e["Action"] for e in evs] == ["create", "mount", "unmount", "destroy"]
        assert all(e["Type"] == "volume" and e["Actor"]["ID"] == "lkev" for e in evs)
        assert evs[1]["Actor"]["Attributes"] == {
            "driver": "local", "container": cid, "destination": "/data",
            "read/write": "false", "propagation": ""}
        assert evs[2]["Actor"]["Attributes"] == {"driver": "local", "container": cid}
        # moby's order: mount before the container's start, unmount after its die
        allev = await _events(client, t0, {})
        order = [f"{e['Type']}/{e['Action']}" for e in allev]
        assert order.index("volume/mount") < order.index("container/start")
        assert order.index("container/die") < order.index("volume/unmount")
    run(tmp_path, t)
