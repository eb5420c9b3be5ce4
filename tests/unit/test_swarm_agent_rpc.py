"""The agent and the dispatcher over the real mutual-TLS Cluster service on loopback: the
stream delivers the node's set, status goes back through UpdateTaskStatus (the node named
by its certificate, never by the request), and `task_logs` lines travel the node's stream
out and PublishLogs back.  The engine is a stand-in: no containers here."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import grpc
import grpc.aio
from fakes.swarm_store import MemoryStore

from labkit.engine.swarm import ca
from labkit.engine.swarm.agent import agent as agent_mod
from labkit.engine.swarm.dispatcher import Dispatcher
from labkit.engine.swarm.manager import Identity
from labkit.engine.swarm.rpc import swarm_pb2 as pb
from labkit.engine.swarm.rpc import swarm_pb2_grpc as pbg
from labkit.engine.swarm.rpc.server import ClusterService
from labkit.engine.swarm.state import LocalState
from labkit.engine.swarm.store import NODES, TASKS

CLUSTER = "c" * 25
MGR, W1, W2 = "m" * 25, "w" * 24 + "1", "w" * 24 + "2"


def _ident(root: ca.RootCA, node: str, role: str) -> Identity:
    key, csr = ca.new_key_and_csr(node)
    cert = root.issue(csr, node_id=node, role=role, cluster_id=CLUSTER,  # type: ignore[arg-type]
                      ips=["127.0.0.1"])
    return Identity(cert, key, root.cert_pem)


async def _members() -> MemoryStore:
    store = MemoryStore()
    for n in (W1, W2):
        await store.create(NODES + n, {"ID": n, "Spec": {"Role": "worker"},
                                       "Status": {"Addr": "127.0.0.1"}})
    return store


def _task(tid: str, node: str) -> dict[str, Any]:
    return {"ID": tid, "NodeID": node, "ServiceID": "s", "DesiredState": "running",
            "Status": {"State": "assigned"}, "Spec": {"ContainerSpec": {"Image": "busybox"}}}


async def _serve(root: ca.RootCA, dispatcher: Dispatcher) -> tuple[grpc.aio.Server, str]:
    mgr = _ident(root, MGR, "manager")
    fake = SimpleNamespace(state=SimpleNamespace(cluster_id=CLUSTER), dispatcher=dispatcher)
    server = grpc.aio.server()
    pbg.add_ClusterServicer_to_server(ClusterService(fake), server)  # type: ignore[arg-type]
    creds = grpc.ssl_server_credentials([(mgr.key, mgr.cert + root.cert_pem)],
                                        root_certificates=root.cert_pem,
                                        require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    return server, f"127.0.0.1:{port - 1}"  # the join port; the cluster port is the next


def _agent(addr: str, ident: Identity, node: str) -> agent_mod.Agent:
    st = LocalState(node_id=node, cluster_id=CLUSTER, role="worker", addr="127.0.0.1",
                    hostname="h", managers=[addr])
    engine = SimpleNamespace(store=SimpleNamespace(all=list), networks=object())
    return agent_mod.Agent(st, lambda: ident, engine)


async def _until(pred: Any, timeout: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        got = await pred()
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def test_stream_status_and_logs_over_mutual_tls(monkeypatch: Any) -> None:
    async def fake_lines(engine: Any, tid: str, **kw: Any):
        yield 1, 7, f"line of {tid}\n".encode()
        yield 2, 8, b"err\n"
    monkeypatch.setattr(agent_mod, "task_lines", fake_lines)

    async def go() -> None:
        root = ca.RootCA.create()
        store = await _members()
        await store.create(TASKS + "t1", _task("t1", W1))
        await store.create(TASKS + "t2", _task("t2", W2))
        d = Dispatcher(store)
        server, addr = await _serve(root, d)
        ident = _ident(root, W1, "worker")
        a = _agent(addr, ident, W1)
        seen: list[dict[str, Any]] = []

        async def apply(snap: dict[str, Any]) -> None:
            seen.append(snap)
            for t in snap["tasks"]:
                a.executor.report(t["ID"], "accepted")
                a.executor.report(t["ID"], "running", container_id="c" * 64, pid=42)
        monkeypatch.setattr(a.executor, "apply", apply)
        a.start()
        try:
            await _until(lambda: _ready(seen))
            assert [t["ID"] for t in seen[0]["tasks"]] == ["t1"]  # never W2's task

            async def running() -> bool:
                t, _ = await store.must_get(TASKS + "t1", "task")
                return bool(t["Status"]["State"] == "running")
            await _until(running)
            t1, _ = await store.must_get(TASKS + "t1", "task")
            assert t1["Status"]["ContainerStatus"] == {"ContainerID": "c" * 64, "PID": 42,
                                                       "ExitCode": 0}
            lines = [x async for x in d.task_logs(["t1"], follow=False, tail=-1, since_ns=0,
                                                  until_ns=0, stdout=True, stderr=True)]
            assert sorted(lines) == [("t1", 1, 7, b"line of t1\n"), ("t1", 2, 8, b"err\n")]

            # a node's certificate decides whose tasks it may update: W1 cannot touch t2
            async with grpc.aio.secure_channel(
                    f"127.0.0.1:{int(addr.rsplit(':', 1)[1]) + 1}",
                    grpc.ssl_channel_credentials(root.cert_pem, ident.key, ident.cert),
                    options=[("grpc.ssl_target_name_override", "swarm-manager")]) as ch:
                stub = pbg.ClusterStub(ch)  # type: ignore[no-untyped-call]
                try:
                    await stub.UpdateTaskStatus(pb.TaskStatusRequest(updates=[
                        pb.TaskStatus(task_id="t2", state="failed")]), timeout=5)
                    raise AssertionError("another node's task was updated")
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
            t2, _ = await store.must_get(TASKS + "t2", "task")
            assert t2["Status"]["State"] == "assigned"
        finally:
            await a.stop()
            await d.stop()
            await server.stop(0)
    asyncio.run(go())


async def _ready(seen: list[Any]) -> bool:
    return bool(seen)


def test_a_new_task_reaches_a_connected_agent() -> None:
    async def go() -> None:
        root = ca.RootCA.create()
        store = await _members()
        d = Dispatcher(store)
        server, addr = await _serve(root, d)
        a = _agent(addr, _ident(root, W1, "worker"), W1)
        seen: list[dict[str, Any]] = []

        async def apply(snap: dict[str, Any]) -> None:
            seen.append(snap)
        a.executor.apply = apply  # type: ignore[method-assign]
        a.start()
        try:
            await _until(lambda: _ready(seen))
            assert seen[0]["tasks"] == []
            await store.create(TASKS + "t9", _task("t9", W1))

            async def got_it() -> bool:
                return any(t["ID"] == "t9" for s in seen for t in s["tasks"])
            await _until(got_it)
            assert json.dumps(seen[-1]).count("t9") >= 1
        finally:
            await a.stop()
            await d.stop()
            await server.stop(0)
    asyncio.run(go())


def test_every_manager_reaches_the_node_and_the_next_one_takes_over(monkeypatch: Any) -> None:
    async def fake_lines(engine: Any, tid: str, **kw: Any):
        yield 1, 1, b"from the node\n"
    monkeypatch.setattr(agent_mod, "task_lines", fake_lines)

    async def go() -> None:
        root = ca.RootCA.create()
        store = await _members()
        await store.create(TASKS + "t1", _task("t1", W1))
        d1, d2 = Dispatcher(store), Dispatcher(store)
        s1, a1 = await _serve(root, d1)
        s2, a2 = await _serve(root, d2)
        a = _agent(a1, _ident(root, W1, "worker"), W1)
        a.state.managers = [a1, a2]
        seen: list[dict[str, Any]] = []

        async def apply(snap: dict[str, Any]) -> None:
            seen.append(snap)
        a.executor.apply = apply  # type: ignore[method-assign]
        a.start()
        try:
            async def both() -> bool:
                return len(a._channels) == 2
            await _until(both)
            assert a.connected == a1
            # the second manager's task_logs reaches the node through its own stream
            lines = [x async for x in d2.task_logs(["t1"], follow=False, tail=-1, since_ns=0,
                                                   until_ns=0, stdout=True, stderr=True)]
            assert lines == [("t1", 1, 1, b"from the node\n")]
            await s1.stop(0)
            await d1.stop()

            async def moved() -> bool:
                return a.connected == a2
            await _until(moved)
            await store.create(TASKS + "t2", _task("t2", W1))

            async def got_it() -> bool:
                return any(t["ID"] == "t2" for t in seen[-1]["tasks"]) if seen else False
            await _until(got_it)
        finally:
            await a.stop()
            await d2.stop()
            await s2.stop(0)
    asyncio.run(go())
