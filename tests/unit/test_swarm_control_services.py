"""The control API's services and tasks over MemoryStore: spec checks (refused by name),
name and published-port reservations, updates with a version (CAS) and rollback, removal,
filters, ServiceStatus, insertDefaults."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fakes.swarm_store import MemoryStore

from labkit import errors
from labkit.engine.swarm.control import Control, create_network
from labkit.engine.swarm.control.svcspec import check_constraint, check_service_spec
from labkit.engine.swarm.store import NAMES, SERVICES, TASKS

# what `docker service create -d --name pinger --replicas 2 alpine sleep 1d` sends (20.10)
PINGER: dict[str, Any] = {
    "Name": "pinger", "Labels": {},
    "TaskTemplate": {"ContainerSpec": {"Image": "alpine:latest@sha256:" + "a" * 64,
                                       "Args": ["sleep", "1d"], "Init": False, "DNSConfig": {}},
                     "Resources": {"Limits": {}, "Reservations": {}},
                     "Placement": {"Platforms": [{"Architecture": "amd64", "OS": "linux"}]},
                     "ForceUpdate": 0},
    "Mode": {"Replicated": {"Replicas": 2}}, "EndpointSpec": {"Mode": "vip"}}


def run(test: Callable[[Control, MemoryStore], Awaitable[None]]) -> None:
    store = MemoryStore()
    asyncio.run(test(Control(store), store))


def spec(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(PINGER)
    out.update(changes)
    return out


def with_path(path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(PINGER)
    *head, last = path.split(".")
    d = out
    for k in head:
        d = d.setdefault(k, {})
    d[last] = value
    return out


@pytest.mark.parametrize(("path", "value"), [
    ("TaskTemplate.ContainerSpec.Privileges", {"NoNewPrivileges": True}),
    ("TaskTemplate.ContainerSpec.CapabilityAdd", ["NET_ADMIN"]),
    ("TaskTemplate.ContainerSpec.Ulimits", [{"Name": "nofile", "Soft": 1, "Hard": 2}]),
    ("TaskTemplate.ContainerSpec.Groups", ["wheel"]),
    ("TaskTemplate.PluginSpec", {"Name": "x"}),
    ("TaskTemplate.Resources.Reservations", {"MemoryBytes": 10}),
    ("Mode.ReplicatedJob", {"MaxConcurrent": 1}),
    ("Mode.GlobalJob", {}),
    ("TaskTemplate.ContainerSpec.Bogus", 1),
    ("Bogus", 1),
])
def test_refused_fields_are_named(path: str, value: Any) -> None:
    with pytest.raises(errors.InvalidArgumentError) as exc:
        check_service_spec(with_path(path, value))
    assert path.split(".")[-1] in exc.value.what
    assert path.rsplit(".", 1)[0].split(".")[0] in str(exc.value)


def test_docker_py_shapes_lowercase_keys_and_nulls() -> None:
    # docker-py: ServiceMode("replicated", 2) -> {"replicated": {"Replicas": 2}}; Go's
    # encoding/json matches keys case-insensitively; nulls are dropped
    s = check_service_spec(spec(Mode={"replicated": {"Replicas": 2}}, TaskTemplate={
        "ContainerSpec": {"Image": "alpine", "Command": None, "Args": None}}))
    assert s["Mode"] == {"Replicated": {"Replicas": 2}}
    assert s["TaskTemplate"]["ContainerSpec"] == {"Image": "alpine"}
    with pytest.raises(errors.InvalidArgumentError, match="same field"):
        check_service_spec(spec(Mode={"replicated": {}, "Replicated": {}}))


def test_zero_values_of_refused_fields_pass_and_defaults_fill() -> None:
    s = check_service_spec(with_path("TaskTemplate.ContainerSpec.Privileges", None))
    assert s["Mode"] == {"Replicated": {"Replicas": 2}}
    assert check_service_spec(spec(Mode={"Replicated": {}}))["Mode"]["Replicated"][
        "Replicas"] == 1
    assert check_service_spec(spec(Mode={"Global": {}}))["Mode"] == {"Global": {}}


@pytest.mark.parametrize(("body", "text"), [
    (spec(Name="bad name"), "DNS name"),
    (spec(Name=""), "service name must be given"),
    (with_path("TaskTemplate.ContainerSpec.Image", ""), "Image"),
    (spec(EndpointSpec={"Mode": "dnsrr", "Ports": [{"TargetPort": 80, "PublishedPort": 8080}]}),
     "port published with ingress mode can't be used with dnsrr mode"),
    (spec(EndpointSpec={"Ports": [{"TargetPort": 80, "Protocol": "sctp"}]}), "sctp"),
    (spec(EndpointSpec={"Ports": [{"TargetPort": 80, "PublishedPort": 80},
                                  {"TargetPort": 81, "PublishedPort": 80}]}),
     "duplicate published ports"),
    (with_path("TaskTemplate.RestartPolicy", {"Condition": "always"}), "RestartCondition"),
    (spec(UpdateConfig={"FailureAction": "explode"}), "FailureAction"),
    (spec(RollbackConfig={"FailureAction": "rollback"}), "FailureAction"),
    (spec(UpdateConfig={"Order": "sideways"}), "Order"),
    (spec(UpdateConfig={"MaxFailureRatio": 2}), "MaxFailureRatio"),
    (with_path("TaskTemplate.ContainerSpec.Secrets",
               [{"SecretName": "s", "File": {"Name": "../../etc/passwd"}}]), "no '/'"),
    (with_path("TaskTemplate.ContainerSpec.Configs",
               [{"ConfigName": "c", "File": {"Name": "/etc/../../x"}}]), "must not leave"),
    (with_path("TaskTemplate.ContainerSpec.Secrets",
               [{"SecretName": "s", "File": {"Name": "x", "UID": "root"}}]), "numeric"),
    (with_path("TaskTemplate.ContainerSpec.Mounts", [{"Type": "bind", "Source": "rel",
                                                      "Target": "/x"}]), "absolute"),
    (with_path("TaskTemplate.Placement", {"Preferences": [{"Spread": {
        "SpreadDescriptor": "node.id"}}]}), "placement preference"),
])
def test_bad_specs(body: dict[str, Any], text: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=text):
        check_service_spec(body)


@pytest.mark.parametrize("expr", ["node.role==manager", "node.labels.zone != a",
                                  "engine.labels.ssd==true", "node.hostname==lk-n1",
                                  "node.platform.os==linux"])
def test_constraints_accepted(expr: str) -> None:
    check_constraint(expr)


@pytest.mark.parametrize("expr", ["node.role=manager", "node.role==boss", "node.colour==red",
                                  "==x", "node.id=="])
def test_constraints_refused(expr: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="invalid constraint"):
        check_constraint(expr)


def test_create_inspect_list_and_duplicate_name() -> None:
    async def t(ctl: Control, store: MemoryStore) -> None:
        out = await ctl.create_service(PINGER)
        sid = out["ID"]
        assert len(sid) == 25 and out["Warnings"] is None
        svc = await ctl.service("pinger")
        assert svc["ID"] == sid and svc["Spec"]["Name"] == "pinger"
        assert svc["Version"]["Index"] > 0 and svc["Endpoint"]["Spec"] == {"Mode": "vip"}
        assert not any(k.startswith("_") for k in svc)
        assert (await ctl.service(sid[:6]))["ID"] == sid
        with pytest.raises(errors.ConflictError, match="service pinger already exists"):
            await ctl.create_service(PINGER)
        with pytest.raises(errors.ConflictError):  # names are case-insensitive (swarmkit)
            await ctl.create_service(spec(Name="PINGER"))
        assert [s["ID"] for s in await ctl.services({"name": ["pin"]})] == [sid]
        assert await ctl.services({"mode": ["global"]}) == []
        with pytest.raises(errors.InvalidArgumentError, match="invalid filter 'colour'"):
            await ctl.services({"colour": ["x"]})
        full = await ctl.service("pinger", insert_defaults=True)
        assert full["Spec"]["TaskTemplate"]["RestartPolicy"]["Condition"] == "any"
        assert full["Spec"]["UpdateConfig"]["Order"] == "stop-first"
        assert "RestartPolicy" not in svc["Spec"]["TaskTemplate"]
    run(t)


def test_scale_round_trip_version_and_rollback() -> None:
    async def t(ctl: Control, store: MemoryStore) -> None:
        sid = (await ctl.create_service(PINGER))["ID"]
        got = await ctl.service(sid)
        body = copy.deepcopy(got["Spec"])
        body["Mode"]["Replicated"]["Replicas"] = 3  # `service scale pinger=3`
        await ctl.update_service(sid, got["Version"]["Index"], body)
        with pytest.raises(errors.ConflictError, match="update out of sequence"):
            await ctl.update_service(sid, got["Version"]["Index"], body)
        now = await ctl.service(sid)
        assert now["Spec"]["Mode"]["Replicated"]["Replicas"] == 3
        assert now["PreviousSpec"]["Mode"]["Replicated"]["Replicas"] == 2
        stored, _ = await store.must_get(SERVICES + sid, "service")
        assert stored["_SpecVersion"] == 2
        await ctl.update_service(sid, now["Version"]["Index"], None, rollback=True)
        back = await ctl.service(sid)
        assert back["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
        assert back["UpdateStatus"]["State"] == "rollback_started"
        same = (await ctl.service(sid, insert_defaults=True))["Spec"]  # `service update`
        await ctl.update_service(sid, back["Version"]["Index"], same)
        stored, _ = await store.must_get(SERVICES + sid, "service")
        assert stored["_SpecVersion"] == 3  # 1 create, 2 scale, 3 rollback; not 4
        back = await ctl.service(sid)
        with pytest.raises(errors.InvalidArgumentError, match="renaming"):
            await ctl.update_service(sid, back["Version"]["Index"], spec(Name="other"))
        with pytest.raises(errors.InvalidArgumentError, match="mode change"):
            await ctl.update_service(sid, back["Version"]["Index"], spec(Mode={"Global": {}}))
    run(t)


def test_published_ports_reserved_dynamic_and_freed() -> None:
    async def t(ctl: Control, store: MemoryStore) -> None:
        web = spec(Name="web", EndpointSpec={"Ports": [{"TargetPort": 80,
                                                        "PublishedPort": 8080}]})
        wid = (await ctl.create_service(web))["ID"]
        with pytest.raises(errors.InvalidArgumentError) as exc:
            await ctl.create_service(spec(Name="web2", EndpointSpec=web["EndpointSpec"]))
        assert str(exc.value.problem).endswith(
            f"port '8080' is already in use by service 'web' ({wid}) as an ingress port")
        assert NAMES + "services/web2" not in store.data  # nothing half-made
        dyn = (await ctl.create_service(spec(Name="dyn", EndpointSpec={
            "Ports": [{"TargetPort": 80}]})))["ID"]
        ports = (await ctl.service(dyn))["Endpoint"]["Ports"]
        assert ports == [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 30000,
                          "PublishMode": "ingress"}]
        # an update that still asks 0 keeps the port it was given
        got = await ctl.service(dyn)
        body = copy.deepcopy(got["Spec"])
        body["Mode"]["Replicated"]["Replicas"] = 1
        await ctl.update_service(dyn, got["Version"]["Index"], body)
        assert (await ctl.service(dyn))["Endpoint"]["Ports"][0]["PublishedPort"] == 30000
        await ctl.remove_service("web")
        assert NAMES + "ports/tcp/8080" not in store.data
        assert NAMES + "services/web" not in store.data
        stored, _ = await store.must_get(SERVICES + wid, "service")
        assert stored["_Deleted"] is True  # the orchestrator deletes it after the tasks
        with pytest.raises(errors.NotFoundError):
            await ctl.service("web")
        await ctl.create_service(spec(Name="web", EndpointSpec=web["EndpointSpec"]))
    run(t)


def test_networks_resolved_by_name_and_ingress_refused() -> None:
    async def t(ctl: Control, store: MemoryStore) -> None:
        net = await ctl.create_network({"Name": "backend", "Driver": "overlay"})
        ingress = await create_network(store, {"Name": "ingress"}, ingress=True)
        s = spec(Name="a")
        s["TaskTemplate"]["Networks"] = [{"Target": "backend", "Aliases": ["db"]}]
        sid = (await ctl.create_service(s))["ID"]
        got = await ctl.service(sid)
        assert got["Spec"]["TaskTemplate"]["Networks"] == [{"Target": net["Id"],
                                                            "Aliases": ["db"]}]
        s["Name"], s["TaskTemplate"]["Networks"] = "b", [{"Target": "nope"}]
        with pytest.raises(errors.NotFoundError) as exc:
            await ctl.create_service(s)
        assert exc.value.message == "network nope not found"  # type: ignore[attr-defined]
        s["TaskTemplate"]["Networks"] = [{"Target": ingress["Id"]}]
        with pytest.raises(errors.InvalidArgumentError, match="ingress"):
            await ctl.create_service(s)
        with pytest.raises(errors.ConflictError, match=f"is in use by service {sid}"):
            await ctl.remove_network("backend")
    run(t)


def test_tasks_filters_and_service_status() -> None:
    async def t(ctl: Control, store: MemoryStore) -> None:
        sid = (await ctl.create_service(spec(Labels={"com.docker.stack.namespace": "v"})))[
            "ID"]
        store.alive_nodes = {"n1"}
        for i, (state, desired, ver) in enumerate([("running", "running", 1),
                                                   ("running", "running", 0),
                                                   ("shutdown", "shutdown", 1)], 1):
            await store.create(TASKS + f"t{i}", {
                "ID": f"t{i}", "ServiceID": sid, "Slot": i, "NodeID": "n1", "Labels": {},
                "DesiredState": desired, "Status": {"State": state}, "_SpecVersion": ver,
                "_ServiceName": "pinger", "Spec": {}})
        ids = [t["ID"] for t in await ctl.tasks({"service": ["pinger"]})]
        assert ids == ["t1", "t2", "t3"]
        assert [t["ID"] for t in await ctl.tasks({"service": [sid],
                                                  "_up-to-date": ["true"]})] == ["t1", "t3"]
        assert [t["ID"] for t in await ctl.tasks({"desired-state": ["running"]})] == ["t1",
                                                                                      "t2"]
        assert [t["ID"] for t in await ctl.tasks({"name": ["pinger.2"]})] == ["t2"]
        assert len(await ctl.tasks({"label": ["com.docker.stack.namespace=v"]})) == 3
        assert await ctl.tasks({"node": ["n2"]}) == []
        with pytest.raises(errors.InvalidArgumentError, match="invalid filter 'x'"):
            await ctl.tasks({"x": ["1"]})
        task = await ctl.task("t1")
        assert "_SpecVersion" not in task and task["Version"]["Index"] > 0
        [svc] = await ctl.services({}, status=True)
        assert svc["ServiceStatus"] == {"RunningTasks": 2, "DesiredTasks": 2,
                                        "CompletedTasks": 0}
    run(t)
