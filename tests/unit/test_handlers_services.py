"""/services, /tasks, /secrets, /configs, /distribution and swarm networks in /networks
through the daemon app, with a FakeSwarm whose control() is the real control API over a
MemoryStore; then the real Docker CLI against the same app on a unix socket."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from fakes.swarm import FakeSwarm, serve
from fakes.swarm_store import MemoryStore
from fakes.tasks import FakeTasks

from labkit.engine.containers.engine import Engine
from labkit.engine.containers.store import ContainerStore
from labkit.engine.daemon.app import make_app
from labkit.engine.images.store import ImageStore
from labkit.engine.swarm import spec as sp
from labkit.engine.swarm.control import Control
from labkit.engine.swarm.store import TASKS

V = "/v1.41"
INIT = sp.InitRequest.from_docker({})
PINGER = {"Name": "pinger", "TaskTemplate": {"ContainerSpec": {
    "Image": "alpine:latest", "Args": ["sleep", "1d"]}}, "Mode": {"Replicated": {
        "Replicas": 2}}, "EndpointSpec": {"Mode": "vip"}}


class ControlSwarm(FakeSwarm):
    """FakeSwarm plus the issue-13 surface: control() and task_logs()."""

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore()
        self.logs: list[tuple[str, int, int, bytes]] = []
        self.log_calls: list[dict[str, Any]] = []

    def control(self) -> Control:
        self._manager()
        return Control(self.store)

    async def task_logs(self, task_ids: list[str], **kw: Any
                        ) -> AsyncIterator[tuple[str, int, int, bytes]]:
        self.log_calls.append({"tasks": task_ids, **kw})
        for line in self.logs:
            if line[0] in task_ids:
                yield line


Test = Callable[[TestClient, ControlSwarm], Awaitable[None]]  # type: ignore[type-arg]


def make_engine(tmp: Path) -> Engine:
    (tmp / "run").mkdir(exist_ok=True)
    return Engine(FakeTasks(tmp / "run"), ContainerStore(tmp / "containers"),
                  ImageStore(tmp / "images"))


def run(tmp: Path, test: Test, init: bool = True) -> None:
    async def main() -> None:
        eng = make_engine(tmp)
        fake = ControlSwarm()
        if init:
            await fake.init(INIT)
        eng.swarm = fake  # type: ignore[attr-defined]
        async with TestClient(TestServer(make_app(eng))) as client:
            await test(client, fake)
        await eng.tasks.close()
    asyncio.run(main())


async def ok(r: Any, status: int = 200) -> Any:
    assert r.status == status, await r.text()
    return await r.json() if r.content_type == "application/json" else await r.read()


def test_not_a_manager_is_503_with_dockers_text(tmp_path: Path) -> None:
    async def t(client: TestClient, fake: ControlSwarm) -> None:  # type: ignore[type-arg]
        for method, path in (("GET", "/services"), ("POST", "/services/create"),
                             ("GET", "/tasks"), ("GET", "/secrets"), ("DELETE", "/configs/x"),
                             ("GET", "/services/x/logs?stdout=1")):
            r = await client.request(method, V + path, json={})
            assert r.status == 503 and (await r.json())["message"] == sp.MSG_NOT_MANAGER
        # a local overlay create off a manager keeps the local 403
        r = await client.post(f"{V}/networks/create", json={"Name": "o", "Driver": "overlay"})
        assert r.status == 403
    run(tmp_path, t, init=False)


def test_service_create_scale_ls_ps_rm(tmp_path: Path) -> None:
    async def t(client: TestClient, fake: ControlSwarm) -> None:  # type: ignore[type-arg]
        out = await ok(await client.post(f"{V}/services/create", json=PINGER), 201)
        sid = out["ID"]
        r = await client.post(f"{V}/services/create", json=PINGER)
        assert r.status == 409 and "service pinger already exists" in (await r.json())[
            "message"]
        got = await ok(await client.get(f"{V}/services/pinger?insertDefaults=false"))
        got["Spec"]["Mode"]["Replicated"]["Replicas"] = 3
        r = await client.post(f"{V}/services/{sid}/update?version={got['Version']['Index']}",
                              json=got["Spec"])
        assert await ok(r) == {"Warnings": None}
        r = await client.post(f"{V}/services/{sid}/update?version={got['Version']['Index']}",
                              json=got["Spec"])
        assert r.status == 409 and "update out of sequence" in (await r.json())["message"]
        r = await client.post(f"{V}/services/{sid}/update?version=x", json=got["Spec"])
        assert r.status == 400
        [item] = await ok(await client.get(f"{V}/services?status=true"))
        assert item["ServiceStatus"] == {"RunningTasks": 0, "DesiredTasks": 3,
                                         "CompletedTasks": 0}
        assert set(item) >= {"ID", "Version", "CreatedAt", "UpdatedAt", "Spec", "Endpoint",
                             "PreviousSpec"}
        r = await client.get(f"{V}/services?filters=" + json.dumps({"bogus": {"x": True}}))
        assert r.status == 400 and (await r.json())["message"] == "invalid filter 'bogus'"
        await fake.store.create(TASKS + "t1", {"ID": "t1", "ServiceID": sid, "Slot": 1,
                                               "NodeID": fake.node_id, "DesiredState": "running",
                                               "Status": {"State": "running"}, "Spec": {},
                                               "_SpecVersion": 2, "_ServiceName": "pinger"})
        flt = json.dumps({"_up-to-date": {"true": True}, "service": {"pinger": True}})
        tasks = await ok(await client.get(f"{V}/tasks?filters={flt}"))
        assert [x["ID"] for x in tasks] == ["t1"] and "_SpecVersion" not in tasks[0]
        assert (await ok(await client.get(f"{V}/tasks/t1")))["ServiceID"] == sid
        r = await client.post(f"{V}/services/create", json={**PINGER, "Name": "p2",
                                                             "TaskTemplate": {"ContainerSpec": {
                                                                 "Image": "a", "Privileges": {
                                                                     "NoNewPrivileges": True}}}})
        assert r.status == 400 and "TaskTemplate.ContainerSpec.Privileges" in (
            await r.json())["message"]
        r = await client.delete(f"{V}/services/pinger")
        assert r.status == 200 and await r.read() == b""
        assert await ok(await client.get(f"{V}/services")) == []
        assert (await client.get(f"{V}/services/pinger")).status == 404
    run(tmp_path, t)


def test_secrets_and_configs(tmp_path: Path) -> None:
    async def t(client: TestClient, fake: ControlSwarm) -> None:  # type: ignore[type-arg]
        data = base64.b64encode(b"s3cr3t\n").decode()
        out = await ok(await client.post(f"{V}/secrets/create", json={
            "Name": "sec1", "Labels": {}, "Data": data}), 201)
        got = await ok(await client.get(f"{V}/secrets/sec1"))
        assert got["ID"] == out["ID"] and "Data" not in json.dumps(got)
        assert [s["Spec"]["Name"] for s in await ok(await client.get(f"{V}/secrets"))] == [
            "sec1"]
        big = base64.b64encode(b"x" * (500 * 1024 + 1)).decode()
        r = await client.post(f"{V}/secrets/create", json={"Name": "big", "Data": big})
        assert r.status == 400
        assert "secret data must be larger than 0 and less than 500KB" in (await r.json())[
            "message"]
        svc = {"Name": "svc", "TaskTemplate": {"ContainerSpec": {"Image": "a", "Secrets": [
            {"SecretName": "sec1", "File": {"Name": "sec1", "UID": "0", "GID": "0",
                                            "Mode": 292}}]}}}
        await ok(await client.post(f"{V}/services/create", json=svc), 201)
        r = await client.delete(f"{V}/secrets/sec1")
        assert r.status == 400 and (await r.json())["message"] == (
            "rpc error: code = InvalidArgument desc = secret 'sec1' is in use by the following "
            "service: svc")
        await ok(await client.delete(f"{V}/services/svc"))
        assert (await client.delete(f"{V}/secrets/sec1")).status == 204
        cfg = await ok(await client.post(f"{V}/configs/create", json={
            "Name": "c1", "Data": data}), 201)
        got = await ok(await client.get(f"{V}/configs/{cfg['ID']}"))
        assert got["Spec"]["Data"] == data
        r = await client.post(f"{V}/configs/{cfg['ID']}/update?version="
                              f"{got['Version']['Index']}", json={"Name": "c1",
                                                                  "Labels": {"k": "v"}})
        assert r.status == 200
        assert (await ok(await client.get(f"{V}/configs")))[0]["Spec"]["Labels"] == {"k": "v"}
    run(tmp_path, t)


def test_overlay_networks_on_a_manager(tmp_path: Path) -> None:
    async def t(client: TestClient, fake: ControlSwarm) -> None:  # type: ignore[type-arg]
        body = {"CheckDuplicate": True, "Driver": "overlay", "Scope": "", "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": {}, "Config": []}, "Internal": False,
                "Attachable": False, "Ingress": False, "ConfigOnly": False, "ConfigFrom": None,
                "Options": {}, "Labels": {}, "Name": "myoverlaynw"}
        out = await ok(await client.post(f"{V}/networks/create", json=body), 201)
        nid = out["Id"]
        r = await client.post(f"{V}/networks/create", json={**body, "Name": "host"})
        assert r.status == 409 and (await r.json())["message"] == (
            "network with name host already exists")  # a local network's name
        got = await ok(await client.get(f"{V}/networks/myoverlaynw?scope=swarm"))
        assert got["Id"] == nid and got["Scope"] == "swarm" and "_VNI" not in got
        assert (await ok(await client.get(f"{V}/networks/{nid}")))["Driver"] == "overlay"
        listed = await ok(await client.get(f"{V}/networks"))
        assert [n["Id"] for n in listed].count(nid) == 1
        svc = {**PINGER, "TaskTemplate": {"ContainerSpec": {"Image": "a"},
                                          "Networks": [{"Target": nid}]}}
        await ok(await client.post(f"{V}/services/create", json=svc), 201)
        r = await client.delete(f"{V}/networks/myoverlaynw")
        assert r.status == 409 and "is in use by service" in (await r.json())["message"]
        await ok(await client.delete(f"{V}/services/pinger"))
        assert (await client.delete(f"{V}/networks/myoverlaynw")).status == 204
        assert (await client.get(f"{V}/networks/{nid}?scope=swarm")).status == 404
    run(tmp_path, t)


def _frames(raw: bytes) -> list[tuple[int, bytes]]:
    out = []
    while raw:
        stream, size = struct.unpack(">BxxxL", raw[:8])
        out.append((stream, raw[8:8 + size]))
        raw = raw[8 + size:]
    return out


def test_service_logs_details_and_framing(tmp_path: Path) -> None:
    async def t(client: TestClient, fake: ControlSwarm) -> None:  # type: ignore[type-arg]
        sid = (await ok(await client.post(f"{V}/services/create", json=PINGER), 201))["ID"]
        await fake.store.create(TASKS + "t1", {"ID": "t1", "ServiceID": sid, "Slot": 1,
                                               "NodeID": "n9", "DesiredState": "running",
                                               "Status": {"State": "running"}, "Spec": {}})
        fake.logs = [("t1", 1, 1_700_000_000_123_456_789, b"hello\n"),
                     ("t1", 2, 1_700_000_001_000_000_000, b"oops\n"),
                     ("other", 1, 1, b"not mine\n")]
        r = await client.get(f"{V}/services/pinger/logs?details=1&stderr=1&stdout=1&tail=all")
        frames = _frames(await ok(r))
        attrs = f"com.docker.swarm.node.id=n9,com.docker.swarm.service.id={sid}," \
                "com.docker.swarm.task.id=t1 "
        assert frames == [(1, attrs.encode() + b"hello\n"), (2, attrs.encode() + b"oops\n")]
        assert fake.log_calls[-1] == {"tasks": ["t1"], "follow": False, "tail": -1,
                                      "since_ns": 0, "until_ns": 0, "stdout": True,
                                      "stderr": True}
        r = await client.get(f"{V}/tasks/t1/logs?stdout=1&timestamps=1&tail=5")
        frames = _frames(await ok(r))
        assert frames[0] == (1, b"2023-11-14T22:13:20.123456789Z hello\n")
        assert fake.log_calls[-1]["tail"] == 5
        r = await client.get(f"{V}/services/pinger/logs")
        assert r.status == 400 and "choose at least one stream" in (await r.json())["message"]
    run(tmp_path, t)


def test_follow_ends_the_node_streams_when_the_client_leaves(tmp_path: Path) -> None:
    async def t(client: TestClient, fake: ControlSwarm) -> None:  # type: ignore[type-arg]
        sid = (await ok(await client.post(f"{V}/services/create", json=PINGER), 201))["ID"]
        await fake.store.create(TASKS + "t1", {"ID": "t1", "ServiceID": sid, "Slot": 1,
                                               "NodeID": "n9", "DesiredState": "running",
                                               "Status": {"State": "running"}, "Spec": {}})
        closed = asyncio.Event()

        async def endless(task_ids: list[str], **kw: Any
                          ) -> AsyncIterator[tuple[str, int, int, bytes]]:
            try:
                while True:
                    yield ("t1", 1, 1, b"tick\n")
                    await asyncio.sleep(0.01)
            finally:
                closed.set()
        fake.task_logs = endless  # type: ignore[assignment, method-assign]
        r = await client.get(f"{V}/services/pinger/logs?stdout=1&follow=1")
        assert await r.content.readexactly(13) == b"\x01\0\0\0\0\0\0\x05tick\n"
        r.close()
        await asyncio.wait_for(closed.wait(), 10)
    run(tmp_path, t)


def test_distribution_without_a_registry_digest_is_404(tmp_path: Path) -> None:
    async def t(client: TestClient, fake: ControlSwarm) -> None:  # type: ignore[type-arg]
        assert (await client.get(f"{V}/distribution/alpine:latest/json")).status == 404
    run(tmp_path, t)


def test_distribution_answers_the_pulled_digest(tmp_path: Path) -> None:
    eng = make_engine(tmp_path)
    img = eng.images.add("alpine:latest", {"architecture": "amd64", "os": "linux",
                                           "rootfs": {"type": "layers", "diff_ids": []}})
    digest = "sha256:" + "b" * 64
    eng.images.add_repo_digest("alpine", digest, img.id)

    async def main() -> None:
        async with TestClient(TestServer(make_app(eng))) as client:
            got = await ok(await client.get(f"{V}/distribution/alpine:latest/json"))
            assert got == {"Descriptor": {"digest": digest},
                           "Platforms": [{"architecture": "amd64", "os": "linux"}]}
        await eng.tasks.close()
    asyncio.run(main())


DOCKER = "/usr/local/bin/docker"


@pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="needs the Docker CLI")
def test_docker_cli_services_secrets_networks(tmp_path: Path) -> None:
    """`docker service create -d / ls / ps / inspect --pretty / scale -d / rm`, `secret
    create / ls / inspect / rm`, `network create -d overlay` against the app."""
    loop = asyncio.new_event_loop()
    eng = make_engine(tmp_path)
    fake = ControlSwarm()
    loop.run_until_complete(fake.init(INIT))
    loop.close()
    eng.swarm = fake  # type: ignore[attr-defined]
    sock = tmp_path / "d.sock"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(tmp_path / "cfg")}

    def docker(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOCKER, *args], capture_output=True, text=True, env=env,
                              input=stdin, timeout=30, check=False)

    def must(*args: str, stdin: str | None = None) -> str:
        r = docker(*args, stdin=stdin)
        assert r.returncode == 0, f"docker {' '.join(args)}: {r.stdout}{r.stderr}"
        return r.stdout

    with serve(make_app(eng), sock):
        must("network", "create", "-d", "overlay", "myoverlaynw")
        assert "myoverlaynw" in must("network", "ls")
        out = must("service", "create", "-d", "--name", "pinger", "--replicas", "2",
                   "--network", "myoverlaynw", "-p", "8080:80", "alpine", "sleep", "1d")
        sid = out.strip().splitlines()[-1]
        ls = must("service", "ls")
        assert "pinger" in ls and "0/2" in ls and "*:8080->80/tcp" in ls
        r = docker("service", "create", "-d", "--name", "pinger", "alpine")
        assert r.returncode != 0 and "already exists" in r.stderr
        pretty = must("service", "inspect", "--pretty", "pinger")
        assert "Replicated" in pretty and "myoverlaynw" in pretty
        must("service", "scale", "-d", "pinger=3")
        assert json.loads(must("service", "inspect", "pinger"))[0]["Spec"]["Mode"][
            "Replicated"]["Replicas"] == 3
        loop2 = asyncio.new_event_loop()
        loop2.run_until_complete(fake.store.create(TASKS + "t" * 25, {
            "ID": "t" * 25, "ServiceID": sid, "Slot": 1, "NodeID": fake.node_id,
            "DesiredState": "running", "Status": {"State": "running",
                                                  "Timestamp": "2026-12-04T10:00:00Z"},
            "Spec": {"ContainerSpec": {"Image": "alpine"}}, "_SpecVersion": 2}))
        loop2.close()
        ps = must("service", "ps", "--no-trunc", "pinger")
        assert "pinger.1" in ps and "lk-node1" in ps and "Running" in ps
        fake.logs = [("t" * 25, 1, 1_700_000_000_000_000_000, b"hello from the task\n")]
        logs = docker("service", "logs", "pinger")
        assert logs.returncode == 0, logs.stderr
        assert logs.stdout == f"pinger.1.{'t' * 12}@lk-node1    | hello from the task\n"
        (tmp_path / "file").write_text("s3cr3t-value\n")
        must("secret", "create", "sec1", str(tmp_path / "file"))
        assert "sec1" in must("secret", "ls")
        assert json.loads(must("secret", "inspect", "sec1"))[0]["Spec"]["Name"] == "sec1"
        must("service", "update", "-d", "--secret-add", "sec1", "pinger")
        r = docker("secret", "rm", "sec1")
        assert r.returncode != 0 and "is in use by the following service: pinger" in r.stderr
        must("service", "rm", "pinger")
        must("secret", "rm", "sec1")
        must("network", "rm", "myoverlaynw")
        assert sid


def test_docker_py_services_secrets_configs_networks(tmp_path: Path) -> None:
    """docker-py's shapes: ServiceMode's lowercase keys, SecretReference, networks by name."""
    docker = pytest.importorskip("docker")
    loop = asyncio.new_event_loop()
    eng = make_engine(tmp_path)
    fake = ControlSwarm()
    loop.run_until_complete(fake.init(INIT))
    loop.close()
    eng.swarm = fake  # type: ignore[attr-defined]
    sock = tmp_path / "d.sock"
    with serve(make_app(eng), sock):
        c = docker.DockerClient(base_url=f"unix://{sock}", version="1.41")
        try:
            net = c.networks.create("pynet", driver="overlay", attachable=True)
            sec = c.secrets.create(name="pys", data=b"hello", labels={"x": "y"})
            cfg = c.configs.create(name="pyc", data=b"cfgdata")
            s = c.services.create(
                "alpine", ["sleep", "1d"], name="py1",
                mode=docker.types.ServiceMode("replicated", 2),
                endpoint_spec=docker.types.EndpointSpec(ports={8088: 80}),
                networks=["pynet"], env=["X=1"], constraints=["node.role==worker"],
                restart_policy=docker.types.RestartPolicy(condition="on-failure"),
                secrets=[docker.types.SecretReference(sec.id, "pys")])
            s.scale(4)
            s.reload()
            assert s.attrs["Spec"]["Mode"] == {"Replicated": {"Replicas": 4}}
            assert s.attrs["Spec"]["TaskTemplate"]["Networks"] == [{"Target": net.id}]
            assert c.secrets.get("pys").attrs["Spec"] == {"Name": "pys", "Labels": {"x": "y"}}
            assert c.configs.get(cfg.id).attrs["Spec"]["Data"] == base64.b64encode(
                b"cfgdata").decode()
            with pytest.raises(docker.errors.APIError, match="in use"):
                sec.remove()
            s.remove()
            for item in (sec, cfg, net):
                item.remove()
            assert c.services.list() == [] and c.secrets.list() == []
        finally:
            c.close()
