"""/swarm and /nodes through the daemon app (aiohttp test client) against FakeSwarm: statuses
and reply shapes as dockerd's, the ping header, GET /info's Swarm section, and an engine
without a swarm node."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from fakes.swarm import FakeSwarm
from fakes.tasks import FakeTasks

from labkit.engine.containers.engine import Engine
from labkit.engine.containers.store import ContainerStore
from labkit.engine.daemon.app import make_app
from labkit.engine.daemon.handlers.swarm import ping_status
from labkit.engine.images.store import ImageStore
from labkit.engine.swarm import spec as sp

V = "/v1.41"
INIT = {"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "", "DataPathAddr": "",
        "DataPathPort": 0, "ForceNewCluster": False,
        "Spec": {"Labels": None, "Orchestration": {}, "Raft": {"ElectionTick": 0,
                                                               "HeartbeatTick": 0},
                 "Dispatcher": {}, "CAConfig": {}, "TaskDefaults": {},
                 "EncryptionConfig": {"AutoLockManagers": False}},
        "AutoLockManagers": False, "Availability": "", "DefaultAddrPool": None,
        "SubnetSize": 24}

Test = Callable[[TestClient, Engine, FakeSwarm], Awaitable[None]]


def run(tmp: Path, test: Test, swarm: bool = True) -> None:
    async def main() -> None:
        (tmp / "run").mkdir()
        eng = Engine(FakeTasks(tmp / "run"), ContainerStore(tmp / "containers"),
                     ImageStore(tmp / "images"))
        fake = FakeSwarm()
        if swarm:
            eng.swarm = fake  # type: ignore[attr-defined]
        async with TestClient(TestServer(make_app(eng))) as client:
            await test(client, eng, fake)
        await eng.tasks.close()
    asyncio.run(main())


async def msg(r: Any) -> str:
    return str((await r.json())["message"])


async def init(client: TestClient, **changes: Any) -> str:
    r = await client.post(f"{V}/swarm/init", json={**INIT, **changes})
    assert r.status == 200, await r.text()
    return str(await r.json())


async def empty_200(r: Any) -> None:
    assert r.status == 200, await r.text()
    assert await r.read() == b""


def test_engine_without_swarm_is_a_node_in_no_swarm(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine, fake: FakeSwarm) -> None:
        r = await client.head("/_ping")
        assert r.status == 200 and r.headers["Swarm"] == "inactive"
        assert (await (await client.get(f"{V}/info")).json())["Swarm"] == sp.inactive_info()
        for method, path in (("GET", "/swarm"), ("POST", "/swarm/leave"),
                             ("POST", "/swarm/update?version=1"), ("GET", "/swarm/unlockkey"),
                             ("POST", "/swarm/unlock"), ("GET", "/nodes"),
                             ("GET", "/nodes/x"), ("POST", "/nodes/x/update?version=1"),
                             ("DELETE", "/nodes/x")):
            r = await client.request(method, V + path, json={})
            assert r.status == 503, (method, path)
            assert await msg(r) == sp.MSG_NOT_MANAGER
            assert (await r.json())["type"] == "UnavailableError"
        for path in ("/swarm/init", "/swarm/join"):
            r = await client.post(V + path, json={})
            assert r.status == 503 and await msg(r) == sp.MSG_NO_SWARM_SUPPORT
    run(tmp_path, t, swarm=False)


def test_inactive_node(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine, fake: FakeSwarm) -> None:
        assert (await client.get("/_ping")).headers["Swarm"] == "inactive"
        assert (await (await client.get(f"{V}/info")).json())["Swarm"] == sp.inactive_info()
        r = await client.get(f"{V}/swarm")
        assert r.status == 503 and await msg(r) == sp.MSG_NOT_MANAGER
        r = await client.post(f"{V}/swarm/leave")
        assert r.status == 503 and await msg(r) == sp.MSG_NO_SWARM
    run(tmp_path, t)


def test_init_answers_a_json_string_and_the_node_is_a_manager(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine, fake: FakeSwarm) -> None:
        r = await client.post(f"{V}/swarm/init", json=INIT)
        assert r.status == 200 and r.headers["Content-Type"] == "application/json"
        node_id = json.loads(await r.read())
        assert isinstance(node_id, str) and node_id == fake.node_id
        req = fake.calls[0][1]
        assert isinstance(req, sp.InitRequest) and req.spec == sp.ClusterSpec()
        assert (await client.head("/_ping")).headers["Swarm"] == "active/manager"
        info = (await (await client.get(f"{V}/info")).json())["Swarm"]
        assert info["NodeID"] == node_id and info["ControlAvailable"] is True
        assert info["LocalNodeState"] == "active" and info["Cluster"]["Spec"]["Name"] == "default"
        assert "JoinTokens" not in info["Cluster"]
        sw = await (await client.get(f"{V}/swarm")).json()
        assert set(sw) >= {"ID", "Version", "Spec", "JoinTokens", "TLSInfo"}
        node = await (await client.get(f"{V}/nodes/{node_id}")).json()
        assert node["ManagerStatus"]["Addr"] and node["ManagerStatus"]["Leader"] is True
        r = await client.post(f"{V}/swarm/init", json=INIT)
        assert r.status == 503 and await msg(r) == sp.MSG_SWARM_EXISTS
    run(tmp_path, t)


@pytest.mark.parametrize(("change", "field"), [
    ({"DataPathPort": 80}, "DataPathPort"), ({"ForceNewCluster": True}, "ForceNewCluster"),
    ({"ListenAddr": "eth0"}, "ListenAddr"), ({"Nope": 1}, "Nope"),
    ({"Spec": {"CAConfig": {"NodeCertExpiry": 10**9}}}, "Spec.CAConfig.NodeCertExpiry")])
def test_init_refusals_are_400_naming_the_field(tmp_path: Path, change: dict[str, Any],
                                                 field: str) -> None:
    async def t(client: TestClient, eng: Engine, fake: FakeSwarm) -> None:
        r = await client.post(f"{V}/swarm/init", json={**INIT, **change})
        assert r.status == 400 and field in await msg(r)
        assert fake.calls == [] and fake.local_state() == "inactive"  # nothing half-done
    run(tmp_path, t)


def test_update_checks_and_bumps_the_version(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine, fake: FakeSwarm) -> None:
        await init(client)
        sw = await (await client.get(f"{V}/swarm")).json()
        version, worker = sw["Version"]["Index"], sw["JoinTokens"]["Worker"]
        spec = dict(sw["Spec"], CAConfig={"NodeCertExpiry": 48 * 3600 * 10**9})
        q = "rotateManagerToken=false&rotateManagerUnlockKey=false&rotateWorkerToken=true"
        await empty_200(await client.post(f"{V}/swarm/update?{q}&version={version}",
                                          json=spec))
        after = await (await client.get(f"{V}/swarm")).json()
        assert after["Version"]["Index"] > version
        assert after["JoinTokens"]["Worker"] != worker
        assert after["Spec"]["CAConfig"]["NodeCertExpiry"] == 48 * 3600 * 10**9
        # the same request again is based on a stale version
        r = await client.post(f"{V}/swarm/update?{q}&version={version}", json=spec)
        assert r.status == 409 and await msg(r) == sp.MSG_OUT_OF_SEQUENCE
        r = await client.post(f"{V}/swarm/update", json=spec)
        assert r.status == 400 and "version" in await msg(r)
        r = await client.post(f"{V}/swarm/update?version={after['Version']['Index']}",
                              json=dict(spec, Raft={"ElectionTick": 1, "HeartbeatTick": 1}))
        assert r.status == 400 and "Spec.Raft.ElectionTick" in await msg(r)
        r = await client.post(f"{V}/swarm/update?version=1&rotateWorkerToken=maybe", json=spec)
        assert r.status == 400 and "rotateWorkerToken" in await msg(r)
        assert (await (await client.get(f"{V}/swarm")).json())["Version"] == after["Version"]
    run(tmp_path, t)


def test_autolock_unlock_key_and_unlock(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine, fake: FakeSwarm) -> None:
        await init(client, AutoLockManagers=True)
        key = (await (await client.get(f"{V}/swarm/unlockkey")).json())["UnlockKey"]
        assert key.startswith("SWMKEY-1-")
        r = await client.post(f"{V}/swarm/unlock", json={"UnlockKey": key})
        assert r.status == 409 and await msg(r) == sp.MSG_NOT_LOCKED
        fake.lock()
        assert (await client.get("/_ping")).headers["Swarm"] == "locked"
        assert (await (await client.get(f"{V}/info")).json())["Swarm"]["LocalNodeState"] == \
            "locked"
        r = await client.get(f"{V}/swarm")
        assert r.status == 503 and await msg(r) == sp.MSG_LOCKED
        r = await client.post(f"{V}/swarm/unlock", json={"UnlockKey": "SWMKEY-1-wrong"})
        assert r.status == 403 and await msg(r) == sp.MSG_INVALID_UNLOCK_KEY
        r = await client.post(f"{V}/swarm/unlock", json={"Key": key})
        assert r.status == 400 and key not in await r.text()
        await empty_200(await client.post(f"{V}/swarm/unlock", json={"UnlockKey": key}))
        assert (await client.get("/_ping")).headers["Swarm"] == "active/manager"
    run(tmp_path, t)


def test_join_and_leave(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine, fake: FakeSwarm) -> None:
        body = {"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "", "DataPathAddr": "",
                "RemoteAddrs": ["127.0.0.1:2377"], "JoinToken": "SWMTKN-1-x-y",
                "Availability": ""}
        r = await client.post(f"{V}/swarm/join", json=body)
        assert r.status == 400 and "SWMTKN-1-x-y" not in await r.text()
        fake.accept_tokens["SWMTKN-1-x-y"] = "worker"
        await empty_200(await client.post(f"{V}/swarm/join", json=body))
        assert (await client.head("/_ping")).headers["Swarm"] == "active/worker"
        info = (await (await client.get(f"{V}/info")).json())["Swarm"]
        assert info["ControlAvailable"] is False and "Cluster" not in info
        for path in ("/swarm", "/nodes", "/swarm/unlockkey"):
            r = await client.get(V + path)
            assert r.status == 503 and await msg(r) == sp.MSG_WORKER
        await empty_200(await client.post(f"{V}/swarm/leave"))
        assert fake.calls[-1] == ("leave", False)
        await init(client)
        r = await client.post(f"{V}/swarm/leave")
        assert r.status == 503 and "--force" in await msg(r)
        await empty_200(await client.post(f"{V}/swarm/leave?force=1"))
        assert fake.calls[-1] == ("leave", True)
    run(tmp_path, t)


def test_nodes(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine, fake: FakeSwarm) -> None:
        me = await init(client)
        other = fake.add_node("lk-node2", labels={"zone": "b"})
        nodes = await (await client.get(f"{V}/nodes")).json()
        assert sorted(n["ID"] for n in nodes) == sorted([me, other])
        flt = json.dumps({"role": {"worker": True}})
        assert [n["ID"] for n in await (await client.get(f"{V}/nodes",
                                                         params={"filters": flt})).json()] \
            == [other]
        flt = json.dumps({"node.label": ["zone=b"]})  # the older list form
        assert len(await (await client.get(f"{V}/nodes", params={"filters": flt})).json()) == 1
        r = await client.get(f"{V}/nodes", params={"filters": json.dumps({"colour": ["x"]})})
        assert r.status == 400 and "colour" in await msg(r)
        assert (await (await client.get(f"{V}/nodes/lk-node2")).json())["ID"] == other
        r = await client.get(f"{V}/nodes/nosuch")
        assert r.status == 404
        node = await (await client.get(f"{V}/nodes/{other}")).json()
        spec = dict(node["Spec"], Availability="drain", Labels={"zone": "c"})
        await empty_200(await client.post(
            f"{V}/nodes/{other}/update?version={node['Version']['Index']}", json=spec))
        ref, version, nspec = fake.calls[-1][1]
        assert (ref, version) == (other, node["Version"]["Index"])
        assert nspec == sp.NodeSpec("worker", "drain", "", {"zone": "c"})
        r = await client.post(f"{V}/nodes/{other}/update?version={node['Version']['Index']}",
                              json=spec)
        assert r.status == 409 and await msg(r) == sp.MSG_OUT_OF_SEQUENCE
        r = await client.post(f"{V}/nodes/{other}/update?version=99", json=dict(spec, Role="x"))
        assert r.status == 400 and "Role" in await msg(r)
        r = await client.delete(f"{V}/nodes/{other}")
        assert r.status == 409 and "not down" in await msg(r)
        await empty_200(await client.delete(f"{V}/nodes/{other}?force=1"))
        assert fake.calls[-1] == ("remove_node", (other, True))
        assert (await client.get(f"{V}/nodes/{other}")).status == 404
    run(tmp_path, t)


class _Node:
    def __init__(self, state: str, role: str | None) -> None:
        self.state, self._role = state, role

    def local_state(self) -> str:
        return self.state

    def role(self) -> str | None:
        return self._role


@pytest.mark.parametrize(("state", "role", "header"), [
    ("inactive", None, "inactive"), ("pending", None, "pending"), ("error", None, "error"),
    ("locked", "manager", "locked"), ("active", "manager", "active/manager"),
    ("active", "worker", "active/worker")])
def test_ping_status_values(state: str, role: str | None, header: str) -> None:
    class Eng:
        swarm = _Node(state, role)
    assert ping_status(Eng()) == header
    assert ping_status(object()) == "inactive"
