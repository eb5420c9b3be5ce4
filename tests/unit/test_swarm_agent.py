"""swarm.agent: the task -> container-create body, names and labels, secret targets, and
the executor's reports (against a fake engine: no containers are made here)."""

from __future__ import annotations

import asyncio
import base64
from types import SimpleNamespace
from typing import Any

import pytest

from labkit import errors
from labkit.engine.containers import parse_create
from labkit.engine.swarm.agent import executor as ex
from labkit.engine.swarm.agent import secrets
from labkit.engine.swarm.agent.agent import Agent
from labkit.engine.swarm.rpc import swarm_pb2 as pb
from labkit.engine.swarm.state import LocalState

Obj = dict[str, Any]
NODE = "n" * 25


def _task(**cs: Any) -> Obj:
    return {"ID": "t" * 25, "ServiceID": "s" * 25, "Slot": 2, "NodeID": NODE,
            "_ServiceName": "web", "DesiredState": "running",
            "Status": {"State": "assigned"},
            "Spec": {"ContainerSpec": {"Image": "busybox", **cs},
                     "Resources": {"Limits": {"NanoCPUs": 500_000_000,
                                              "MemoryBytes": 64 << 20, "Pids": 50}},
                     "LogDriver": {"Name": "json-file", "Options": {"max-size": "1m"}}},
            "Endpoint": {"Spec": {"Ports": [
                {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080,
                 "PublishMode": "host"},
                {"Protocol": "tcp", "TargetPort": 81, "PublishedPort": 30001,
                 "PublishMode": "ingress"}]}}}


def test_name_and_labels_are_dockers() -> None:
    t = _task(Labels={"tier": "front"})
    body = ex.container_body(t, NODE, {}, [])
    assert ex.container_name(t) == f"web.2.{'t' * 25}"
    assert body["Labels"] == {
        "tier": "front", "com.docker.swarm.service.id": "s" * 25,
        "com.docker.swarm.service.name": "web", "com.docker.swarm.task.id": "t" * 25,
        "com.docker.swarm.task.name": f"web.2.{'t' * 25}", "com.docker.swarm.node.id": NODE}
    glob = {**t, "Slot": 0}
    assert ex.container_name(glob) == f"web.{NODE}.{'t' * 25}"


def test_body_maps_the_container_spec_and_passes_the_engines_create_checks() -> None:
    t = _task(Command=["/bin/sh", "-c"], Args=["echo hi"], Env=["A=1"], Dir="/tmp",
              User="1000", Hostname="h1", TTY=True, Init=True, ReadOnly=True,
              StopSignal="SIGUSR1", StopGracePeriod=3_000_000_000,
              Hosts=["10.1.2.3 db database"], DNSConfig={"Nameservers": ["10.0.0.2"]},
              CapabilityAdd=["CAP_NET_ADMIN"], Groups=["audio"],
              Ulimits=[{"Name": "nofile", "Soft": 1024, "Hard": 2048}])
    mounts = [{"Type": "bind", "Source": "/tmp", "Target": "/run/secrets/x", "ReadOnly": True}]
    body = ex.container_body(t, NODE, {}, mounts)
    assert body["Entrypoint"] == ["/bin/sh", "-c"] and body["Cmd"] == ["echo hi"]
    assert body["StopTimeout"] == 3 and body["StopSignal"] == "SIGUSR1"
    h = body["HostConfig"]
    assert h["RestartPolicy"] == {"Name": "no"}  # the orchestrator restarts, not the engine
    assert h["NanoCpus"] == 500_000_000 and h["Memory"] == 64 << 20 and h["PidsLimit"] == 50
    assert h["ExtraHosts"] == ["db:10.1.2.3", "database:10.1.2.3"]
    assert h["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert "81/tcp" not in body["ExposedPorts"]  # ingress ports belong to the mesh
    assert h["Mounts"] == mounts and h["LogConfig"]["Config"] == {"max-size": "1m"}
    assert h["CapAdd"] == ["CAP_NET_ADMIN"] and h["GroupAdd"] == ["audio"]
    spec = parse_create(body, ex.container_name(t))
    assert spec.config["WorkingDir"] == "/tmp" and spec.config["Tty"] is True


def test_body_with_networks_names_the_addresses_and_aliases() -> None:
    eps = {"net1": {"Aliases": ["web", "www"], "IPAMConfig": {"IPv4Address": "10.0.1.3"}}}
    body = ex.container_body(_task(), NODE, eps, [])
    assert body["HostConfig"]["NetworkMode"] == "net1"
    assert body["NetworkingConfig"] == {"EndpointsConfig": eps}


def test_a_task_without_an_image_is_refused() -> None:
    t = _task()
    del t["Spec"]["ContainerSpec"]["Image"]
    with pytest.raises(errors.InvalidArgumentError):
        ex.container_body(t, NODE, {}, [])


def test_bad_hosts_entry_is_refused() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="Hosts"):
        ex.container_body(_task(Hosts=["justone"]), NODE, {}, [])


@pytest.mark.parametrize("name", ["../etc/passwd", "a/../../b", "", "x\0y"])
def test_secret_targets_cannot_escape(name: str) -> None:
    t = _task(Secrets=[{"SecretID": "s1", "SecretName": "s", "File": {"Name": name}}])
    if not name:
        t["Spec"]["ContainerSpec"]["Secrets"][0]["SecretName"] = ""
    snap = {"secrets": {"s1": {"Name": "" if not name else "s", "Data": ""}}}
    with pytest.raises(errors.InvalidArgumentError):
        secrets._files(t, snap)


def test_secret_and_config_targets() -> None:
    t = _task(Secrets=[{"SecretID": "s1", "SecretName": "pw", "File": {"Name": "pw"}}],
              Configs=[{"ConfigID": "c1", "ConfigName": "conf",
                        "File": {"Name": "/etc/app.conf"}}])
    snap = {"secrets": {"s1": {"Name": "pw", "Data": base64.b64encode(b"x").decode()}},
            "configs": {"c1": {"Name": "conf", "Data": base64.b64encode(b"y").decode()}}}
    got = [(target, data) for target, data, _ in secrets._files(t, snap)]
    assert got == [("/run/secrets/pw", b"x"), ("/etc/app.conf", b"y")]


def test_a_secret_missing_from_the_snapshot_is_an_error() -> None:
    t = _task(Secrets=[{"SecretID": "s9", "SecretName": "pw", "File": {"Name": "pw"}}])
    with pytest.raises(errors.NotFoundError):
        secrets._files(t, {"secrets": {}})


@pytest.mark.parametrize("bad", ["../x", "ABC", "a/b", ""])
def test_task_dir_refuses_odd_ids(bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        secrets.task_dir(bad)


class _FakeNetworks:
    pass


def _engine() -> Any:
    return SimpleNamespace(store=SimpleNamespace(all=list), networks=_FakeNetworks(),
                           images=SimpleNamespace(get=_no_image),
                           config=SimpleNamespace(log_driver="json-file", log_opts={}))


def _no_image(ref: str) -> Any:
    raise errors.NotFoundError("image", ref)


def test_overlay_tasks_are_rejected_when_overlay_networking_is_missing() -> None:
    sent: list[pb.TaskStatus] = []

    async def go() -> None:
        e = ex.Executor(_engine(), NODE, "192.168.77.1", sent.append)
        e._image = _fake_image  # type: ignore[method-assign]
        t = _task()
        net = {"Id": "net1", "Name": "app"}
        t["NetworksAttachments"] = [{"Network": net, "Addresses": ["10.0.1.3/24"]}]
        await e.apply({"tasks": [t], "networks": {"net1": {"ID": "net1", "Name": "app"}}})
        for _ in range(100):
            if sent and sent[-1].state == "rejected":
                break
            await asyncio.sleep(0.01)
        await e.close(remove=True)
    asyncio.run(go())
    assert [s.state for s in sent] == ["accepted", "preparing", "rejected"]
    assert sent[-1].err == "overlay networking is not available"


async def _fake_image(ref: str) -> str:
    return ref


def test_a_running_task_whose_container_is_gone_is_reported_failed() -> None:
    sent: list[pb.TaskStatus] = []

    async def go() -> None:
        e = ex.Executor(_engine(), NODE, "192.168.77.1", sent.append)
        t = {**_task(), "Status": {"State": "running"}}
        await e.apply({"tasks": [t]})
        await e.close(remove=False)
    asyncio.run(go())
    assert [(s.state, s.err) for s in sent] == [("failed", "task: the task's container is gone")]


def test_a_shutdown_before_start_reports_shutdown_once() -> None:
    sent: list[pb.TaskStatus] = []

    async def go() -> None:
        e = ex.Executor(_engine(), NODE, "192.168.77.1", sent.append)
        t = {**_task(), "DesiredState": "shutdown"}
        await e.apply({"tasks": [t]})
        await e.apply({"tasks": [t]})
    asyncio.run(go())
    assert [s.state for s in sent] == ["shutdown"]


def test_agent_tries_its_own_manager_first() -> None:
    st = LocalState(node_id=NODE, cluster_id="c" * 25, role="manager", addr="192.168.77.1",
                    hostname="h", listen_ip="0.0.0.0", join_port=2377,
                    managers=["192.168.77.2:2377", "192.168.77.1:2377"])
    a = Agent(st, lambda: None, _engine())  # type: ignore[arg-type, return-value]
    assert a.managers() == ["192.168.77.1:2377", "192.168.77.2:2377"]
    st.role = "worker"
    assert a.managers() == ["192.168.77.2:2377", "192.168.77.1:2377"]


def _sweeper(records: list[Any]) -> tuple[Agent, list[str]]:
    """An agent whose engine holds ``records`` and whose DetachNetwork calls are recorded."""
    st = LocalState(node_id=NODE, cluster_id="c" * 25, role="worker", addr="192.168.77.1",
                    hostname="h", managers=["192.168.77.2:2377"])
    eng = _engine()
    eng.store = SimpleNamespace(all=lambda: list(records))
    a = Agent(st, lambda: None, eng)  # type: ignore[arg-type, return-value]
    given: list[str] = []

    async def call(fn: str, req: Any, timeout: float | None = None) -> Any:
        assert fn == "DetachNetwork"
        given.append(req.attachment_id)
    a._call = call  # type: ignore[method-assign]
    a._applied = {"tasks": [{"ID": "att1", "_Attachment": {}},
                            {"ID": "att2", "_Attachment": {}}]}
    return a, given


def _holder(att: str) -> Any:
    return SimpleNamespace(networks={"atnet": {"_SwarmAttachment": att}})


def test_an_attachment_whose_container_went_is_given_back_at_the_next_sweep() -> None:
    """A record held it, then vanished without giving it back (the removed hook's call
    failed): no 30 s grace for that one."""
    records = [_holder("att1"), _holder("att2")]
    a, given = _sweeper(records)

    async def go() -> None:
        await a._collect_attachments()
        assert given == []
        records.pop(0)  # att1's container removed, its give-back lost
        await a._collect_attachments()
        assert given == ["att1"]
        await a._collect_attachments()
        assert given == ["att1"]  # once
    asyncio.run(go())


def test_an_attachment_never_held_waits_out_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """One a create has not recorded yet (or a daemon died before recording) is given back
    only after ORPHAN_GRACE_S of being unheld."""
    from labkit.engine.swarm.agent import agent as agent_mod

    records = [_holder("att2")]
    a, given = _sweeper(records)
    clock = [1000.0]

    async def go() -> None:
        loop = asyncio.get_running_loop()
        monkeypatch.setattr(loop, "time", lambda: clock[0])
        await a._collect_attachments()
        clock[0] += agent_mod.ORPHAN_GRACE_S - 1
        await a._collect_attachments()
        assert given == []
        clock[0] += 2
        await a._collect_attachments()
        assert given == ["att1"]
    asyncio.run(go())


def test_a_failed_give_back_is_tried_again_at_the_next_sweep() -> None:
    import grpc

    records = [_holder("att1")]
    a, given = _sweeper(records)
    fails = [1]

    async def call(fn: str, req: Any, timeout: float | None = None) -> Any:
        if fails[0]:
            fails[0] -= 1
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(), "manager gone")
        given.append(req.attachment_id)
    a._call = call  # type: ignore[method-assign]

    async def go() -> None:
        await a._collect_attachments()
        records.clear()
        with pytest.raises(grpc.aio.AioRpcError):
            await a._collect_attachments()
        await a._collect_attachments()
        assert given == ["att1"]
    asyncio.run(go())
