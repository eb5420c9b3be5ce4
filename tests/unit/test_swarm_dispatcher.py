"""swarm.dispatcher: the per-node snapshot (what a node may see), task status rules, the
stream's change detection, attachments and the log fan-out, over the in-memory store."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from fakes.swarm_store import MemoryStore

from labkit import errors
from labkit.engine.swarm import dispatcher as D
from labkit.engine.swarm.rpc import swarm_pb2 as pb
from labkit.engine.swarm.store import ATTACH, CLUSTER, NETWORKS, NODES, SECRETS, SERVICES, TASKS

Obj = dict[str, Any]
N1, N2, N3 = "node1" + "a" * 20, "node2" + "b" * 20, "node3" + "c" * 20


def _net(nid: str, name: str, subnet: str, vni: int, **kw: Any) -> Obj:
    return {"Name": name, "Id": nid, "Scope": "swarm", "Driver": "overlay",
            "IPAM": {"Driver": "default", "Config": [{"Subnet": subnet,
                                                        "Gateway": subnet[:-4] + "1"}]},
            "Attachable": kw.get("attachable", False), "Ingress": kw.get("ingress", False),
            "Internal": False, "Labels": {},
            "Options": {"com.docker.network.driver.overlay.vxlanid_list": str(vni),
                        **kw.get("options", {})}, "_VNI": vni}


def _task(tid: str, node: str, *, state: str = "assigned", desired: str = "running",
          service: str = "svc1", secrets: list[str] = (), nets: list[tuple[Obj, str]] = ()
          ) -> Obj:
    return {"ID": tid, "ServiceID": service, "Slot": 1, "NodeID": node,
            "DesiredState": desired, "Status": {"State": state, "Message": state},
            "Spec": {"ContainerSpec": {"Image": "busybox", "Secrets": [
                {"SecretID": s, "SecretName": s, "File": {"Name": s}} for s in secrets]}},
            "NetworksAttachments": [{"Network": n, "Addresses": [a]} for n, a in nets],
            "_SpecVersion": 1, "_ServiceName": "web", "_Private": "x"}


def _node(nid: str, addr: str) -> Obj:
    return {"ID": nid, "Spec": {"Role": "worker"}, "Status": {"Addr": addr}}


async def _store(objs: dict[str, Obj]) -> MemoryStore:
    s = MemoryStore()
    for k, v in objs.items():
        await s.create(k, v)
    return s


def _snap(store: MemoryStore, node: str) -> Obj:
    return asyncio.run(_view(store)).snapshot(node)


async def _view(store: MemoryStore) -> D.View:
    return await D.View.load(store)


def _world() -> dict[str, Obj]:
    app = _net("net" + "1" * 22, "app", "10.0.1.0/24", 4097, options={"encrypted": ""})
    ing = _net("net" + "0" * 22, "ingress", "10.0.0.0/24", 4096, ingress=True)
    return {
        NODES + N1: _node(N1, "192.168.77.1"), NODES + N2: _node(N2, "192.168.77.2"),
        NODES + N3: _node(N3, "192.168.77.3"),
        NETWORKS + app["Id"]: app, NETWORKS + ing["Id"]: ing,
        SECRETS + "sec1": {"ID": "sec1", "Spec": {"Name": "db_pass"},
                           "_Data": base64.b64encode(b"hunter2").decode()},
        SECRETS + "sec2": {"ID": "sec2", "Spec": {"Name": "other"},
                           "_Data": base64.b64encode(b"nope").decode()},
        SERVICES + "svc1": {"ID": "svc1", "Spec": {"Name": "web", "TaskTemplate": {
            "Networks": [{"Target": app["Id"], "Aliases": ["www"]}]}},
            "Endpoint": {"Spec": {}, "Ports": [{"Protocol": "tcp", "TargetPort": 80,
                                                "PublishedPort": 8080,
                                                "PublishMode": "ingress"}],
                         "VirtualIPs": [{"NetworkID": app["Id"], "Addr": "10.0.1.2/24"}]}},
        TASKS + "t1": _task("t1", N1, state="running", secrets=["sec1"],
                            nets=[(app, "10.0.1.3/24")]),
        TASKS + "t2": _task("t2", N2, state="running", secrets=["sec2"],
                            nets=[(app, "10.0.1.4/24")]),
        TASKS + "t3": _task("t3", N1, state="failed", desired="shutdown"),
        TASKS + "t4": _task("t4", N1, state="failed", desired="running"),
        ATTACH + f"{N1}/{ing['Id']}": {"Addr": "10.0.0.5/24"},
        ATTACH + f"{N3}/{ing['Id']}": {"Addr": "10.0.0.6/24"},
        CLUSTER: {"ID": "c", "DataPathPort": 4789,
                  "_NetworkKeys": [{"Key": "a2V5MQ==", "Tag": 1}, {"Key": "a2V5Mg==", "Tag": 2}]},
    }


def test_snapshot_holds_only_this_nodes_tasks_and_drops_terminal_ones() -> None:
    store = asyncio.run(_store(_world()))
    snap = _snap(store, N1)
    ids = [t["ID"] for t in snap["tasks"]]
    # t3 failed and told to shut down: gone; t4 failed but still desired running: kept
    assert ids == ["t1", "t4"]
    t1 = snap["tasks"][0]
    assert "_Private" not in t1 and t1["_ServiceName"] == "web" and t1["_SpecVersion"] == 1
    assert t1["Version"]["Index"] > 0


def test_snapshot_carries_only_the_secrets_its_running_tasks_name() -> None:
    store = asyncio.run(_store(_world()))
    assert _snap(store, N1)["secrets"] == {
        "sec1": {"Name": "db_pass", "Data": base64.b64encode(b"hunter2").decode()}}
    assert set(_snap(store, N2)["secrets"]) == {"sec2"}
    assert _snap(store, N3)["secrets"] == {}


def test_snapshot_peers_exclude_self_and_name_every_other_endpoint() -> None:
    world = _world()
    store = asyncio.run(_store(world))
    snap = _snap(store, N1)
    app, ing = "net" + "1" * 22, "net" + "0" * 22
    assert set(snap["networks"]) == {app, ing}
    assert snap["networks"][app]["VNI"] == 4097 and snap["networks"][app]["Encrypted"]
    assert snap["attachments"] == {ing: "10.0.0.5/24"}
    assert snap["peers"][app] == [{"node": N2, "addr": "192.168.77.2", "ips": ["10.0.1.4"]}]
    assert snap["peers"][ing] == [{"node": N3, "addr": "192.168.77.3", "ips": ["10.0.0.6"]}]
    assert all(p["node"] != N1 for ps in snap["peers"].values() for p in ps)
    # an encrypted network: the keys, primary (highest tag) first
    assert [k["Tag"] for k in snap["keys"]] == [2, 1]


def test_snapshot_services_vips_and_ingress() -> None:
    store = asyncio.run(_store(_world()))
    snap = _snap(store, N1)
    app = "net" + "1" * 22
    [svc] = snap["services"]
    assert svc["Name"] == "web" and svc["Mode"] == "vip"
    assert svc["VIPs"] == {app: "10.0.1.2"} and svc["Aliases"] == {app: ["www"]}
    assert svc["Tasks"] == {app: ["10.0.1.3", "10.0.1.4"]}
    assert snap["ingress"][0]["PublishedPort"] == 8080 and snap["data_port"] == 4789


def test_snapshot_leaves_out_a_network_gone_from_the_store() -> None:
    world = _world()
    app_key = next(k for k in world if k.startswith(NETWORKS) and "1" * 22 in k)
    del world[app_key]   # removed while t1 (still attached to it) stops
    snap = _snap(asyncio.run(_store(world)), N1)
    assert [t["ID"] for t in snap["tasks"]] == ["t1", "t4"]
    assert all(info["VNI"] and info["Name"] for info in snap["networks"].values())
    assert [i["Name"] for i in snap["networks"].values()] == ["ingress"]


def test_snapshot_without_tasks_has_no_keys_and_no_networks() -> None:
    store = asyncio.run(_store(_world()))
    snap = _snap(store, N2 + "x")
    assert snap["tasks"] == [] and snap["networks"] == {} and "keys" not in snap


@pytest.mark.parametrize(("cur", "new", "ok"), [
    ("assigned", "accepted", True), ("accepted", "running", True),
    ("running", "preparing", False), ("running", "running", False),
    ("running", "failed", True), ("complete", "failed", False), ("failed", "running", False),
])
def test_transitions_only_move_forward(cur: str, new: str, ok: bool) -> None:
    assert D.check_transition(cur, new) is ok


def test_unknown_state_is_refused() -> None:
    with pytest.raises(errors.InvalidArgumentError):
        D.check_transition("running", "exploded")


def _status(tid: str, state: str, **kw: Any) -> pb.TaskStatus:
    return pb.TaskStatus(task_id=tid, state=state, **kw)


def test_update_status_records_forward_moves_and_ignores_backward_ones() -> None:
    async def go() -> None:
        store = await _store(_world())
        d = D.Dispatcher(store)
        await d.update_status(N1, [_status("t1", "failed", err="task: non-zero exit (1)",
                                           container_id="c" * 64, exit_code=1)])
        t, _ = await store.must_get(TASKS + "t1", "task")
        assert t["Status"]["State"] == "failed" and t["Status"]["Err"].endswith("(1)")
        assert t["Status"]["ContainerStatus"]["ExitCode"] == 1
        await d.update_status(N1, [_status("t1", "running")])  # backwards: ignored
        t, _ = await store.must_get(TASKS + "t1", "task")
        assert t["Status"]["State"] == "failed"
        await d.update_status(N1, [_status("gone", "running")])  # removed meanwhile: fine
    asyncio.run(go())


def test_update_status_refuses_another_nodes_task() -> None:
    async def go() -> None:
        store = await _store(_world())
        d = D.Dispatcher(store)
        with pytest.raises(errors.ForbiddenError):
            await d.update_status(N1, [_status("t2", "failed")])
        t, _ = await store.must_get(TASKS + "t2", "task")
        assert t["Status"]["State"] == "running"
    asyncio.run(go())


def test_stream_sends_a_set_only_when_the_nodes_snapshot_changes() -> None:
    async def go() -> None:
        store = await _store(_world())
        d = D.Dispatcher(store)
        stream = d.assignments(N1)
        first = await asyncio.wait_for(stream.__anext__(), 5)
        assert [t["ID"] for t in json.loads(first.snapshot)["tasks"]] == ["t1", "t4"]
        # another node's task changes: nothing for N1
        t2, v = await store.must_get(TASKS + "t2", "task")
        t2["Labels"] = {"x": "y"}
        await store.cas(TASKS + "t2", t2, v)
        nxt = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.6)
        assert not nxt.done()
        await store.create(TASKS + "t5", _task("t5", N1))
        got = await asyncio.wait_for(nxt, 5)
        assert "t5" in [t["ID"] for t in json.loads(got.snapshot)["tasks"]]
        await stream.aclose()
        await d.stop()
    asyncio.run(go())


def test_logs_go_out_on_the_nodes_stream_and_come_back() -> None:
    async def go() -> None:
        store = await _store(_world())
        d = D.Dispatcher(store)
        stream = d.assignments(N1)
        await asyncio.wait_for(stream.__anext__(), 5)
        lines = d.task_logs(["t1"], follow=False, tail=-1, since_ns=0, until_ns=0,
                            stdout=True, stderr=True)
        first_line = asyncio.ensure_future(lines.__anext__())
        msg = await asyncio.wait_for(stream.__anext__(), 5)
        [req] = msg.logs
        assert list(req.task_ids) == ["t1"] and req.stdout

        async def chunks():  # what the node's PublishLogs sends
            # a line for a task that is not this node's (nor asked for) is dropped
            yield pb.LogChunk(request_id=req.id, task_id="t-other", stream=1,
                              time_unix_nano=4, data=b"spoofed\n")
            yield pb.LogChunk(request_id=req.id, task_id="t1", stream=1, time_unix_nano=5,
                              data=b"hello\n")
            yield pb.LogChunk(request_id=req.id, eof=True)
        # another node cannot answer for N1
        await d.publish_logs(N2, chunks())
        assert not first_line.done()
        await d.publish_logs(N1, chunks())
        assert await asyncio.wait_for(first_line, 5) == ("t1", 1, 5, b"hello\n")
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(lines.__anext__(), 5)
        await stream.aclose()
        await d.stop()
    asyncio.run(go())


def test_attach_network_makes_an_attachment_task_and_returns_its_address() -> None:
    async def go() -> None:
        world = _world()
        world[NETWORKS + "att"] = _net("att" + "9" * 22, "att", "10.0.9.0/24", 4099,
                                       attachable=True)
        store = await _store(world)
        d = D.Dispatcher(store)

        async def leader() -> None:  # H2's allocator, as far as this test needs it
            while True:
                for t, v in await store.list(TASKS):
                    if "_Attachment" in t and not t["NetworksAttachments"][0]["Addresses"]:
                        t["NetworksAttachments"][0]["Addresses"] = ["10.0.9.7/24"]
                        await store.cas(TASKS + t["ID"], t, v)
                await asyncio.sleep(0.05)
        alloc = asyncio.create_task(leader())
        resp = await d.attach_network(N1, pb.AttachRequest(network="att", container_id="c1",
                                                           aliases=["db"]))
        alloc.cancel()
        assert resp.address == "10.0.9.7/24"
        assert json.loads(resp.network)["VNI"] == 4099
        t, _ = await store.must_get(TASKS + resp.attachment_id, "task")
        assert t["NodeID"] == N1 and t["_Attachment"] == {"ContainerID": "c1", "Aliases": ["db"]}
        with pytest.raises(errors.ForbiddenError):
            await d.detach_network(N2, resp.attachment_id)
        await d.detach_network(N1, resp.attachment_id)
        assert await store.get(TASKS + resp.attachment_id) is None
        with pytest.raises(errors.ForbiddenError, match="not manually attachable"):
            await d.attach_network(N1, pb.AttachRequest(network="app"))
        with pytest.raises(errors.NotFoundError):
            await d.attach_network(N1, pb.AttachRequest(network="nosuch"))
    asyncio.run(go())


def test_a_quiet_stream_gets_empty_keepalive_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "KEEPALIVE_S", 0.1)

    async def go() -> None:
        store = await _store(_world())
        d = D.Dispatcher(store)
        stream = d.assignments(N1)
        first = await asyncio.wait_for(stream.__anext__(), 5)
        assert first.snapshot
        beat = await asyncio.wait_for(stream.__anext__(), 5)
        assert not beat.snapshot and not beat.logs
        await stream.aclose()
        await d.stop()
    asyncio.run(go())


def test_a_removed_node_gets_no_stream() -> None:
    async def go() -> None:
        d = D.Dispatcher(await _store(_world()))
        with pytest.raises(errors.ForbiddenError, match="not a member"):
            await d.assignments("gone" + "x" * 21).__anext__()
    asyncio.run(go())
