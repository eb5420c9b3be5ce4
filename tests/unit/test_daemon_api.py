"""The daemon's HTTP surface against a fake task service (aiohttp test server, no root)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from fakes.tasks import FakeTasks

from labkit.engine.containers.createbody import parse_create
from labkit.engine.containers.engine import Engine
from labkit.engine.containers.lifecycle import State
from labkit.engine.containers.store import ContainerStore
from labkit.engine.daemon.app import make_app
from labkit.engine.images.store import ImageStore
from labkit.engine.shim.stdcopy import decode_all

V = "/v1.41"


def make_engine(tmp: Path) -> Engine:
    layer = tmp / "images" / "layers" / "ab"
    for d in ("bin", "etc"):
        (layer / d).mkdir(parents=True)
    for exe in ("sh", "echo", "cat", "sleep", "true"):
        (layer / "bin" / exe).write_text("")
    (layer / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    images = ImageStore(tmp / "images")
    images.add("busybox", {"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
                           "rootfs": {"type": "layers", "diff_ids": ["sha256:ab"]}})
    (tmp / "run").mkdir()
    return Engine(FakeTasks(tmp / "run"), ContainerStore(tmp / "containers"), images)


def run(tmp: Path, test: Callable[[TestClient, Engine], Awaitable[None]]) -> None:
    async def main() -> None:
        eng = make_engine(tmp)
        async with TestClient(TestServer(make_app(eng))) as client:
            await test(client, eng)
        await eng.tasks.close()
    asyncio.run(main())


async def create(client: TestClient, body: dict[str, Any], name: str = "") -> str:
    r = await client.post(f"{V}/containers/create" + (f"?name={name}" if name else ""),
                          json={"Image": "busybox", **body})
    assert r.status == 201, await r.text()
    return str((await r.json())["Id"])


def test_ping_headers_and_version_prefixes(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        for method in ("HEAD", "GET"):
            r = await client.request(method, "/_ping")
            assert r.status == 200
            assert r.headers["Api-Version"] == "1.41" and r.headers["Ostype"] == "linux"
            assert r.headers["Docker-Experimental"] == "false"
            assert r.headers["Builder-Version"] == "1"
            assert "no-cache" in r.headers["Cache-Control"] and r.headers["Pragma"] == "no-cache"
        assert await (await client.get("/_ping")).text() == "OK"
        for prefix in ("", "/v1.41", "/v1.24"):
            assert (await client.get(f"{prefix}/version")).status == 200
        r = await client.get("/v1.50/version")
        assert r.status == 400 and "too new" in (await r.json())["message"]
        r = await client.get(f"{V}/nosuch/endpoint")
        assert r.status == 404 and r.headers["Content-Type"] == "application/json"
    run(tmp_path, t)


def test_info_counts(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        await create(client, {"Cmd": ["sleep", "9"]})
        info = await (await client.get(f"{V}/info")).json()
        assert info["Containers"] == 1 and info["ContainersStopped"] == 1
        assert info["Images"] == 1 and info["Driver"] == "overlay2"
        assert info["NCPU"] >= 1 and info["MemTotal"] > 0
        assert info["Swarm"]["LocalNodeState"] == "inactive"
        assert info["CgroupVersion"] in ("1", "2")
    run(tmp_path, t)


def test_errors_map_to_docker_statuses(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        r = await client.get(f"{V}/containers/nosuch/json")
        assert r.status == 404 and (await r.json())["message"] == "No such container: nosuch"
        assert (await r.json())["type"] == "NotFoundError"
        r = await client.post(f"{V}/containers/create", data=b"{bad",
                              headers={"Content-Type": "application/json"})
        assert r.status == 400 and "invalid JSON" in (await r.json())["message"]
        r = await client.post(f"{V}/containers/create", json={"Image": "busybox", "Cmd": 5})
        assert r.status == 400 and "ContainerConfigWrapper.Cmd" in (await r.json())["message"]
        r = await client.post(f"{V}/containers/create", json={"Image": "nosuch"})
        assert r.status == 404 and (await r.json())["message"] == "No such image: nosuch:latest"
        cid = await create(client, {"Cmd": ["true"]}, "dup")
        r = await client.post(f"{V}/containers/create?name=dup", json={"Image": "busybox"})
        assert r.status == 409
        assert (await r.json())["message"].startswith(
            f'Conflict. The container name "/dup" is already in use by container "{cid}".')
        r = await client.post(f"{V}/containers/create", json={
            "Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}})
        assert r.status == 400 and "sometimes" in (await r.json())["message"]
        r = await client.post(f"{V}/containers/create", json={
            "Image": "busybox", "HostConfig": {"AutoRemove": True,
                                               "RestartPolicy": {"Name": "always"}}})
        assert r.status == 409
        r = await client.post(f"{V}/containers/create", json={
            "Image": "busybox", "HostConfig": {"VolumesFrom": ["other"]}})
        assert r.status == 501
        r = await client.post(f"{V}/containers/create", json={
            "Image": "busybox", "HostConfig": {"Binds": ["/:/"]}})
        assert r.status == 400 and "destination can't be '/'" in (await r.json())["message"]
        r = await client.post(f"{V}/containers/{cid}/exec", json={"Cmd": ["true"]})
        assert r.status == 409 and "is not running" in (await r.json())["message"]
        # a pull now goes to the registry: a closed loopback port is named in the error
        r = await client.post(f"{V}/images/create?fromImage=127.0.0.1:9/nosuch&tag=latest")
        msg = (await r.json())["message"]
        assert r.status == 500 and "http://127.0.0.1:9/v2/" in msg, msg
    run(tmp_path, t)


def test_failed_create_leaves_nothing(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        r = await client.post(f"{V}/containers/create?name=u1",
                              json={"Image": "busybox", "User": "nosuchuser"})
        assert r.status == 400 and "nosuchuser" in (await r.json())["message"]
        assert list((tmp_path / "containers").iterdir()) == []
        assert "u1" not in eng.store.names and eng.tasks.calls == []  # type: ignore[attr-defined]
    run(tmp_path, t)


def test_run_flow_wait_and_exit_codes(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        cid = await create(client, {"Cmd": ["sh", "-c", "exit 3"],
                                    "HostConfig": {"AutoRemove": True}})
        wait = asyncio.create_task(client.post(f"{V}/containers/{cid}/wait?condition=removed"))
        await asyncio.sleep(0.05)
        r = await client.post(f"{V}/containers/{cid}/start")
        assert r.status == 204
        resp = await wait
        assert resp.status == 200
        assert await resp.json() == {"StatusCode": 3, "Error": None}
        assert (await client.get(f"{V}/containers/{cid}/json")).status == 404
    run(tmp_path, t)


def test_wait_headers_arrive_before_the_exit(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        cid = await create(client, {"Cmd": ["sleep", "9"]})
        r = await client.post(f"{V}/containers/{cid}/wait?condition=next-exit")
        assert r.status == 200  # headers are here although the container never started
        body = asyncio.create_task(r.read())
        await asyncio.sleep(0.05)
        assert not body.done()
        assert (await client.post(f"{V}/containers/{cid}/start")).status == 204
        assert (await client.post(f"{V}/containers/{cid}/start")).status == 304
        r2 = await client.delete(f"{V}/containers/{cid}")
        assert r2.status == 409 and "cannot remove a running container" in (await r2.json())[
            "message"]
        assert (await client.post(f"{V}/containers/{cid}/kill?signal=KILL")).status == 204
        assert json.loads(await body) == {"StatusCode": 137, "Error": None}
        assert (await client.post(f"{V}/containers/{cid}/kill")).status == 409
        assert (await client.post(f"{V}/containers/{cid}/stop")).status == 304
        assert (await client.delete(f"{V}/containers/{cid}")).status == 204
    run(tmp_path, t)


def test_restart_policy_on_failure_counts(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        cid = await create(client, {"Cmd": ["sh", "-c", "exit 2"], "HostConfig": {
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}})
        await client.post(f"{V}/containers/{cid}/start")
        for _ in range(100):
            info = await (await client.get(f"{V}/containers/{cid}/json")).json()
            if info["RestartCount"] == 2 and info["State"]["Status"] == "exited":
                break
            await asyncio.sleep(0.05)
        assert info["RestartCount"] == 2 and info["State"]["ExitCode"] == 2
        starts = [c for c in eng.tasks.calls if c[0] == "start"]  # type: ignore[attr-defined]
        assert len(starts) == 3
    run(tmp_path, t)


def test_list_inspect_rename_pause_update_top_stats(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        cid = await create(client, {"Cmd": ["sleep", "9"], "Labels": {"a": "b"}}, "one")
        await client.post(f"{V}/containers/{cid}/start")
        rows = await (await client.get(f"{V}/containers/json")).json()
        assert [r["Names"] for r in rows] == [["/one"]] and rows[0]["State"] == "running"
        q = json.dumps({"label": {"a=c": True}})
        assert await (await client.get(f"{V}/containers/json", params={"filters": q})).json() == []
        assert (await client.post(f"{V}/containers/one/rename?name=two")).status == 204
        assert (await (await client.get(f"{V}/containers/two/json")).json())["Name"] == "/two"
        assert (await client.post(f"{V}/containers/two/pause")).status == 204
        st = (await (await client.get(f"{V}/containers/two/json")).json())["State"]
        assert st["Paused"] and st["Status"] == "paused"
        assert (await client.post(f"{V}/containers/two/pause")).status == 409
        assert (await client.post(f"{V}/containers/two/unpause")).status == 204
        r = await client.post(f"{V}/containers/two/update", json={"Memory": 64 << 20})
        assert r.status == 200
        top = await (await client.get(f"{V}/containers/two/top")).json()
        assert "PID" in top["Titles"] and len(top["Processes"]) == 1
        s = await (await client.get(f"{V}/containers/two/stats?stream=0&one-shot=1")).json()
        assert s["memory_stats"]["usage"] == 1 << 20 and "precpu_stats" in s
    run(tmp_path, t)


def test_logs_are_framed(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        cid = await create(client, {"Cmd": ["echo", "hello"]})
        wait = await client.post(f"{V}/containers/{cid}/wait?condition=next-exit")
        await client.post(f"{V}/containers/{cid}/start")
        await wait.read()
        r = await client.get(f"{V}/containers/{cid}/logs?stdout=1&stderr=1")
        assert decode_all(await r.read()) == [(1, b"hello\n")]
        r = await client.get(f"{V}/containers/{cid}/logs?stdout=1&timestamps=1&tail=1")
        (_stream, data), = decode_all(await r.read())
        assert data.endswith(b" hello\n") and data[:4].isdigit()
        r = await client.get(f"{V}/containers/{cid}/logs")
        assert r.status == 400
    run(tmp_path, t)


def _raw(port: int, request: bytes) -> tuple[socket.socket, bytes]:
    """Send a hijack request and return once the 101 head is in (as the Docker CLI does)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    return s, head


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def test_attach_hijack_half_close_and_exec(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        port = client.server.port
        assert port is not None
        cid = await create(client, {"Cmd": ["cat"], "OpenStdin": True, "StdinOnce": True,
                                    "AttachStdin": True})
        loop = asyncio.get_running_loop()
        s, head = await loop.run_in_executor(None, _raw, port, (
            f"POST {V}/containers/{cid}/attach?stdin=1&stdout=1&stderr=1&stream=1 HTTP/1.1\r\n"
            "Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        ).encode())
        await asyncio.sleep(0.1)
        assert (await client.post(f"{V}/containers/{cid}/start")).status == 204
        s.sendall(b"one\ntwo\n")
        s.shutdown(socket.SHUT_WR)  # stdin EOF; output must still come back
        body = await loop.run_in_executor(None, _read_all, s)
        s.close()
        assert head.startswith(b"HTTP/1.1 101 UPGRADED")
        assert b"application/vnd.docker.raw-stream" in head and b"Upgrade: tcp" in head
        assert b"".join(p for _, p in decode_all(body)) == b"one\ntwo\n"
        # exec in a running container: framed output, ExitCode visible after the close
        run_id = await create(client, {"Cmd": ["sleep", "9"]})
        await client.post(f"{V}/containers/{run_id}/start")
        r = await client.post(f"{V}/containers/{run_id}/exec",
                              json={"Cmd": ["echo", "hi"], "AttachStdout": True})
        eid = (await r.json())["Id"]
        s, _ = await loop.run_in_executor(None, _raw, port, (
            f"POST {V}/exec/{eid}/start HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
            "Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n"
            '{"Detach":false,"Tty":false}\n').encode())
        s.shutdown(socket.SHUT_WR)
        data = await loop.run_in_executor(None, _read_all, s)
        s.close()
        assert decode_all(data) == [(1, b"hi\n")]
        info = await (await client.get(f"{V}/exec/{eid}/json")).json()
        assert info["ExitCode"] == 0 and info["Running"] is False
        r = await client.post(f"{V}/containers/{run_id}/exec", json={"Cmd": ["nosuch"]})
        eid = (await r.json())["Id"]
        r = await client.post(f"{V}/exec/{eid}/start", json={"Detach": True})
        assert r.status >= 400
        assert (await (await client.get(f"{V}/exec/{eid}/json")).json())["ExitCode"] == 127
    run(tmp_path, t)


def test_events_stream_and_filters(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        cid = await create(client, {"Cmd": ["true"]}, "ev1")
        await create(client, {"Cmd": ["true"]}, "ev2")
        q = json.dumps({"container": {"ev1": True}})
        r = await client.get(f"{V}/events", params={"since": "0", "until": "1", "filters": q})
        # until=1 (1970) ends the stream at once: only replayed events older than that
        assert await r.read() == b""
        import time
        r = await client.get(f"{V}/events", params={"since": "0", "until": str(time.time() + 0.2),
                                                    "filters": q})
        evs = [json.loads(line) for line in (await r.read()).splitlines()]
        assert [e["Action"] for e in evs] == ["create"] and evs[0]["id"] == cid
        assert evs[0]["Actor"]["Attributes"]["name"] == "ev1" and evs[0]["Type"] == "container"
    run(tmp_path, t)


def test_missing_command_is_found_by_the_runtime_and_is_127(tmp_path: Path) -> None:
    # the daemon no longer searches PATH in the image layers: the runtime does, once, and
    # its typed error (exit_code 127) becomes Docker's answer and the recorded exit code
    async def t(client: TestClient, eng: Engine) -> None:
        cid = await create(client, {"Cmd": ["nosuch"]})
        r = await client.post(f"{V}/containers/{cid}/start")
        body = await r.json()
        assert r.status == 400 and "executable file not found in $PATH" in body["message"]
        assert 'exec: "nosuch"' in body["message"]
        state = (await (await client.get(f"{V}/containers/{cid}/json")).json())["State"]
        assert state["ExitCode"] == 127 and "executable file not found" in state["Error"]
        assert [c for c in eng.tasks.calls if c[0] == "create"] == [("create", cid, "")]  # type: ignore[attr-defined]
    run(tmp_path, t)


def test_hostname_is_one_value_everywhere(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        cid = await create(client, {"Cmd": ["true"]})
        spec = eng.bundles.oci_config(eng.store.get(cid))
        rec = eng.store.get(cid)
        assert spec["hostname"] == cid[:12]
        assert f"HOSTNAME={cid[:12]}" in spec["process"]["env"]
        assert (Path(rec.dir) / "hostname").read_text() == f"{cid[:12]}\n"
        named = await create(client, {"Cmd": ["true"], "Hostname": "lk-h"})
        spec = eng.bundles.oci_config(eng.store.get(named))
        assert spec["hostname"] == "lk-h" and "HOSTNAME=lk-h" in spec["process"]["env"]
    run(tmp_path, t)


def test_restore_adopts_running_tasks(tmp_path: Path) -> None:
    async def main() -> None:
        eng = make_engine(tmp_path)
        async with TestClient(TestServer(make_app(eng))) as client:
            cid = await create(client, {"Cmd": ["sleep", "9"]}, "keep")
            await client.post(f"{V}/containers/{cid}/start")
        eng.close()  # the daemon "dies"; the fake supervisor lives on
        eng2 = Engine(eng.tasks, ContainerStore(tmp_path / "containers"), eng.images)
        await eng2.restore()
        rec = eng2.store.get("keep")
        assert rec.status == "running" and cid in eng2.link.monitors
        await eng2.control.kill("keep", "KILL")
        await eng2.containers.wait("keep", "not-running")
        assert eng2.store.get("keep").exit_code == 137
        await eng.tasks.close()
    asyncio.run(main())


def test_restore_restarts_always_but_not_stopped_unless_stopped(tmp_path: Path) -> None:
    async def main() -> None:
        eng = make_engine(tmp_path)
        ids = {}
        for name, policy in (("al", "always"), ("us", "unless-stopped"), ("no", "no")):
            spec = parse_create({"Image": "busybox", "Cmd": ["sleep", "9"], "HostConfig": {
                "RestartPolicy": {"Name": policy}}}, name)
            rec = eng.containers.create(spec)
            rec.has_been_started, rec.manually_stopped = True, True
            rec.transition(State.EXITED)
            ids[name] = rec.id
        eng2 = Engine(eng.tasks, ContainerStore(tmp_path / "containers"), eng.images)
        await eng2.restore()
        assert eng2.store.get("al").status == "running"  # Docker: always comes back with the daemon
        assert eng2.store.get("us").status == "exited"
        assert eng2.store.get("no").status == "exited"
        await eng2.control.remove("al", force=True)
        await eng.tasks.close()
    asyncio.run(main())


@pytest.mark.parametrize("frames", [[(1, b"a")], [(2, b"err\n"), (1, b"x" * 70000)]])
def test_frames_roundtrip(frames: list[tuple[int, bytes]]) -> None:
    from labkit.engine.shim.stdcopy import encode
    assert decode_all(b"".join(encode(s, p) for s, p in frames)) == frames
    assert encode(1, b"hi\n") == bytes([1, 0, 0, 0, 0, 0, 0, 3]) + b"hi\n"
    assert struct.calcsize(">BxxxL") == 8


def test_attach_logs_without_stream(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        port = client.server.port
        assert port is not None
        cid = await create(client, {"Cmd": ["echo", "before"]})
        wait = await client.post(f"{V}/containers/{cid}/wait?condition=next-exit")
        await client.post(f"{V}/containers/{cid}/start")
        await wait.read()
        loop = asyncio.get_running_loop()
        s, head = await loop.run_in_executor(None, _raw, port, (
            f"POST {V}/containers/{cid}/attach?logs=1&stream=0&stdout=1 HTTP/1.1\r\n"
            "Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n").encode())
        s.shutdown(socket.SHUT_WR)
        body = await loop.run_in_executor(None, _read_all, s)
        s.close()
        assert head.startswith(b"HTTP/1.1 101") and decode_all(body) == [(1, b"before\n")]
    run(tmp_path, t)


# --- hostile numbers and nesting in bodies (issue 8 §2): 400 naming the field, never 500 ---
INT64_MAX = (1 << 63) - 1
BAD_HOST_NUMBERS = [
    ("Memory", 1 << 63), ("Memory", 10**30), ("Memory", -(1 << 64)), ("Memory", -1),
    ("MemorySwap", -2), ("MemorySwap", 1 << 70), ("NanoCpus", 1 << 64), ("NanoCpus", -1),
    ("CpuShares", -5), ("CpuShares", INT64_MAX + 1), ("PidsLimit", -2), ("PidsLimit", 1 << 63),
    ("CpuQuota", -2), ("CpuPeriod", -1000), ("ShmSize", -1), ("ShmSize", 1 << 63),
    ("MemoryReservation", -1), ("MemorySwappiness", 101), ("MemorySwappiness", -2),
    ("OomScoreAdj", 1001), ("BlkioWeight", 1 << 16), ("BlkioWeight", 5),
    ("CpuRealtimeRuntime", -1), ("KernelMemory", -1),
]


def _deep(depth: int) -> Any:
    v: Any = "x"
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


def test_out_of_range_and_negative_limits_are_400_naming_the_field(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        for key, value in BAD_HOST_NUMBERS:
            r = await client.post(f"{V}/containers/create", json={
                "Image": "busybox", "HostConfig": {"Memory": 64 << 20, key: value}})
            msg = (await r.json())["message"]
            assert r.status == 400 and f"HostConfig.{key}" in msg, (key, value, r.status, msg)
        # what Docker accepts stays accepted: -1 swap, -1/0 pids, the int64 edge itself
        for host in ({"Memory": 64 << 20, "MemorySwap": -1}, {"PidsLimit": -1}, {"PidsLimit": 0},
                     {"CpuQuota": -1}, {"MemorySwappiness": -1}, {"ShmSize": INT64_MAX},
                     {"Memory": INT64_MAX}):
            await create(client, {"Cmd": ["true"], "HostConfig": host})
        r = await client.post(f"{V}/containers/create", json={"Image": "busybox",
                                                               "StopTimeout": 1 << 63})
        assert r.status == 400 and "StopTimeout" in (await r.json())["message"]
        # update: the same limits, the same answers
        cid = await create(client, {"Cmd": ["sleep", "9"]})
        for key, value in BAD_HOST_NUMBERS:
            r = await client.post(f"{V}/containers/{cid}/update", json={key: value})
            msg = (await r.json())["message"]
            assert r.status == 400 and key in msg, (key, value, r.status, msg)
        info = await (await client.get(f"{V}/containers/{cid}/json")).json()
        assert info["HostConfig"]["Memory"] == 0 and info["HostConfig"]["CpuShares"] == 0
    run(tmp_path, t)


@pytest.mark.parametrize("depth", [65, 2000, 200_000])
def test_deeply_nested_json_is_400_not_500(tmp_path: Path, depth: int) -> None:
    raw = json.dumps({"Image": "busybox", "Labels": _deep(depth)}) if depth < 500 else \
        '{"Image": "busybox", "Labels": ' + "[" * depth + "]" * depth + "}"

    async def t(client: TestClient, eng: Engine) -> None:
        cid = await create(client, {"Cmd": ["sleep", "9"]})
        await client.post(f"{V}/containers/{cid}/start")
        for path in ("/containers/create", f"/containers/{cid}/update",
                     f"/containers/{cid}/exec"):
            r = await client.post(f"{V}{path}", data=raw.encode(),
                                  headers={"Content-Type": "application/json"})
            msg = (await r.json())["message"]
            assert r.status == 400 and "nested deeper than" in msg, (path, r.status, msg)
        # a body of ordinary depth still works
        ok = {"Image": "busybox", "Cmd": ["true"], "Labels": {"a": "b"}}
        assert (await client.post(f"{V}/containers/create", json=ok)).status == 201
    run(tmp_path, t)


def test_deeply_nested_filters_query_is_400(tmp_path: Path) -> None:
    async def t(client: TestClient, eng: Engine) -> None:
        deep = '{"label": ' + "[" * 1200 + "]" * 1200 + "}"  # fits the 8 KiB request line
        r = await client.get(f"{V}/containers/json", params={"filters": deep})
        assert r.status == 400 and "filters" in (await r.json())["message"]
    run(tmp_path, t)
