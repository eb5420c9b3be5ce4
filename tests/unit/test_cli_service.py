"""`labkit service/secret/config/stack ...` against a small in-memory swarm API on a unix
socket (services, tasks, networks, secrets, configs, nodes, distribution): the bodies the
verbs send, their output, errors from the daemon as its message with exit status 1, and a
stack deploy that fails validation leaving nothing behind."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fakes.swarm import serve

from labkit.cli import service as cli_service
from labkit.cli.main import main
from labkit.engine.shim.stdcopy import encode
from labkit.engine.swarm.spec import MSG_NOT_MANAGER

NS = "com.docker.stack.namespace"
BODY = web.RequestKey("body", object)
T0 = "2026-12-04T10:00:00.000000001Z"


def _match(labels: dict[str, str], want: dict[str, bool]) -> bool:
    for item in want:
        k, eq, v = item.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


@dataclass
class FakeAPI:
    """Just enough of H1's control API, in memory; tasks run the moment they exist."""

    manager: bool = True
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    fail_create: set[str] = field(default_factory=set)   # service names refused (500)
    digests: dict[str, str] = field(default_factory=lambda: {"nginx:latest": "sha256:aa"})
    seq: Any = field(default_factory=lambda: itertools.count(1))

    def new_id(self) -> str:
        return f"id{next(self.seq):023d}"

    # --- helpers
    @staticmethod
    def err(status: int, message: str) -> web.Response:
        return web.json_response({"message": message}, status=status)

    def find(self, table: dict[str, dict[str, Any]], ref: str, name: Any) -> dict[str, Any] | None:
        if ref in table:
            return table[ref]
        return next((o for o in table.values() if name(o) == ref), None)

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _, _ in self.requests if m != "GET"]

    def make_tasks(self, svc: dict[str, Any]) -> None:
        for t in self.tasks.values():
            if t["ServiceID"] == svc["ID"]:
                t["DesiredState"] = "shutdown"
                t["Status"]["State"] = "shutdown"
        mode = svc["Spec"].get("Mode") or {"Replicated": {"Replicas": 1}}
        n = 1 if "Global" in mode else (mode.get("Replicated") or {}).get("Replicas", 1)
        for slot in range(1, n + 1):
            tid = self.new_id()
            self.tasks[tid] = {"ID": tid, "ServiceID": svc["ID"], "NodeID": "node1",
                               "Slot": 0 if "Global" in mode else slot,
                               "DesiredState": "running", "CreatedAt": T0,
                               "Spec": svc["Spec"]["TaskTemplate"],
                               "Status": {"State": "running", "Timestamp": T0},
                               "_SpecVersion": svc["Version"]["Index"]}

    # --- app
    def app(self) -> web.Application:
        api = web.Application()
        r = api.router
        r.add_get("/info", self.info)
        r.add_get("/nodes", self.nodes)
        r.add_get("/nodes/{id}", self.node)
        r.add_get("/distribution/{name:.+}/json", self.distribution)
        r.add_post("/networks/create", self.net_create)
        r.add_get("/networks", self.net_list)
        r.add_get("/networks/{id}", self.net_get)
        r.add_delete("/networks/{id}", self.net_rm)
        r.add_post("/services/create", self.svc_create)
        r.add_get("/services", self.svc_list)
        r.add_get("/services/{id}", self.svc_get)
        r.add_post("/services/{id}/update", self.svc_update)
        r.add_delete("/services/{id}", self.svc_rm)
        r.add_get("/services/{id}/logs", self.svc_logs)
        r.add_get("/tasks", self.task_list)
        r.add_get("/tasks/{id}", self.task_get)
        for kind in ("secrets", "configs"):
            r.add_post(f"/{kind}/create", self.obj_create)
            r.add_get(f"/{kind}", self.obj_list)
            r.add_get(f"/{kind}/{{id}}", self.obj_get)
            r.add_delete(f"/{kind}/{{id}}", self.obj_rm)
            r.add_post(f"/{kind}/{{id}}/update", self.obj_update)

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            body = await request.json() if request.can_read_body else None
            self.requests.append((request.method, request.path.split("/", 2)[2],
                                  dict(request.query), body))
            request[BODY] = body
            if not self.manager and "/info" not in request.path:
                return self.err(503, MSG_NOT_MANAGER)
            return await handler(request)

        api.middlewares.append(record)
        root = web.Application()

        async def ping(request: web.Request) -> web.Response:
            # what the Docker CLI negotiates its API version from (docker-api.md 2)
            return web.Response(text="OK", headers={"Api-Version": "1.41"})

        root.router.add_route("*", "/_ping", ping)
        root.add_subapp("/v1.41", api)
        return root

    @staticmethod
    def flt(request: web.Request) -> dict[str, dict[str, bool]]:
        return dict(json.loads(request.query.get("filters") or "{}"))

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response({"Swarm": {"NodeID": "node1", "LocalNodeState": "active",
                                            "ControlAvailable": self.manager}})

    async def nodes(self, request: web.Request) -> web.Response:
        return web.json_response([{"ID": "node1", "Description": {"Hostname": "lk-node1"}}])

    async def node(self, request: web.Request) -> web.Response:
        return web.json_response({"ID": "node1", "Description": {"Hostname": "lk-node1"}})

    async def distribution(self, request: web.Request) -> web.Response:
        d = self.digests.get(request.match_info["name"])
        if not d:
            return self.err(404, "no such image")
        return web.json_response({"Descriptor": {"digest": d}})

    async def net_create(self, request: web.Request) -> web.Response:
        body = request[BODY]
        if any(n["Name"] == body["Name"] for n in self.networks.values()):
            return self.err(409, f"network with name {body['Name']} already exists")
        nid = self.new_id()
        self.networks[nid] = {**body, "Id": nid, "Scope": "swarm", "Labels": body["Labels"]}
        return web.json_response({"Id": nid}, status=201)

    async def net_list(self, request: web.Request) -> web.Response:
        f = self.flt(request)
        return web.json_response([n for n in self.networks.values()
                                  if _match(n.get("Labels") or {}, f.get("label", {}))])

    async def net_get(self, request: web.Request) -> web.Response:
        n = self.find(self.networks, request.match_info["id"], lambda o: o["Name"])
        return web.json_response(n) if n else self.err(404, "network not found")

    async def net_rm(self, request: web.Request) -> web.Response:
        n = self.find(self.networks, request.match_info["id"], lambda o: o["Name"])
        if not n:
            return self.err(404, "network not found")
        del self.networks[n["Id"]]
        return web.Response(status=204)

    async def svc_create(self, request: web.Request) -> web.Response:
        spec = request[BODY]
        if spec["Name"] in self.fail_create:
            return self.err(500, f"cannot create {spec['Name']}: injected failure")
        if any(s["Spec"]["Name"] == spec["Name"] for s in self.services.values()):
            return self.err(409, "rpc error: code = AlreadyExists desc = name conflicts with "
                                 "an existing object")
        sid = self.new_id()
        svc = {"ID": sid, "Version": {"Index": 1}, "CreatedAt": T0, "Spec": spec,
               "Endpoint": {"Ports": (spec.get("EndpointSpec") or {}).get("Ports") or []}}
        self.services[sid] = svc
        self.make_tasks(svc)
        return web.json_response({"ID": sid, "Warnings": None}, status=201)

    async def svc_list(self, request: web.Request) -> web.Response:
        f = self.flt(request)
        out = []
        for s in self.services.values():
            if not _match(s["Spec"].get("Labels") or {}, f.get("label", {})):
                continue
            if "name" in f and s["Spec"]["Name"] not in f["name"]:
                continue
            s = dict(s)
            if request.query.get("status") in ("1", "true"):
                running = sum(1 for t in self.tasks.values() if t["ServiceID"] == s["ID"]
                              and t["Status"]["State"] == "running")
                mode = s["Spec"].get("Mode") or {}
                want = running if "Global" in mode else mode["Replicated"]["Replicas"]
                s["ServiceStatus"] = {"RunningTasks": running, "DesiredTasks": want}
            out.append(s)
        return web.json_response(out)

    def svc(self, ref: str) -> dict[str, Any] | None:
        return self.find(self.services, ref, lambda o: o["Spec"]["Name"])

    async def svc_get(self, request: web.Request) -> web.Response:
        s = self.svc(request.match_info["id"])
        return web.json_response(s) if s else self.err(
            404, f"service {request.match_info['id']} not found")

    async def svc_update(self, request: web.Request) -> web.Response:
        s = self.svc(request.match_info["id"])
        if not s:
            return self.err(404, "service not found")
        if int(request.query["version"]) != s["Version"]["Index"]:
            return self.err(409, "update out of sequence")
        if request.query.get("rollback") == "previous":
            if "PreviousSpec" not in s:
                return self.err(400, "service does not have a previous spec")
            s["Spec"], s["PreviousSpec"] = s["PreviousSpec"], s["Spec"]
        else:
            s["PreviousSpec"], s["Spec"] = s["Spec"], request[BODY]
        s["Version"]["Index"] += 1
        self.make_tasks(s)
        return web.json_response({"Warnings": None})

    async def svc_rm(self, request: web.Request) -> web.Response:
        s = self.svc(request.match_info["id"])
        if not s:
            return self.err(404, f"service {request.match_info['id']} not found")
        del self.services[s["ID"]]
        self.tasks = {k: t for k, t in self.tasks.items() if t["ServiceID"] != s["ID"]}
        return web.Response(status=200)

    async def svc_logs(self, request: web.Request) -> web.Response:
        s = self.svc(request.match_info["id"])
        assert s is not None
        body = b""
        for t in self.tasks.values():
            if t["ServiceID"] == s["ID"] and t["DesiredState"] == "running":
                attrs = (f"com.docker.swarm.node.id=node1,com.docker.swarm.service.id={s['ID']},"
                         f"com.docker.swarm.task.id={t['ID']}")
                stamp = "2026-12-04T10:00:00.000000001Z " if request.query.get(
                    "timestamps") == "1" else ""
                body += encode(1, f"{stamp}{attrs} hello from {t['Slot']}\n".encode())
                body += encode(2, f"{stamp}{attrs} oops\n".encode())
        return web.Response(body=body)

    async def task_list(self, request: web.Request) -> web.Response:
        f = self.flt(request)
        out = []
        for t in self.tasks.values():
            if "service" in f:
                ids = {self.svc(x)["ID"] for x in f["service"] if self.svc(x)}  # type: ignore[index]
                if t["ServiceID"] not in ids:
                    continue
            if "_up-to-date" in f:
                svc = self.services.get(t["ServiceID"])
                if not svc or t["_SpecVersion"] != svc["Version"]["Index"]:
                    continue
            out.append(t)
        return web.json_response(out)

    async def task_get(self, request: web.Request) -> web.Response:
        t = self.tasks.get(request.match_info["id"])
        return web.json_response(t) if t else self.err(404, "task not found")

    def table(self, request: web.Request) -> tuple[str, dict[str, dict[str, Any]]]:
        kind = request.path.split("/")[2]
        return kind, self.secrets if kind == "secrets" else self.configs

    async def obj_create(self, request: web.Request) -> web.Response:
        kind, table = self.table(request)
        body = request[BODY]
        data = base64.b64decode(body["Data"])
        if not 0 < len(data) < 500 * 1024:
            return self.err(400, "secret data must be larger than 0 and less than 500KB")
        if any(o["Spec"]["Name"] == body["Name"] for o in table.values()):
            return self.err(409, "rpc error: code = AlreadyExists desc = secret "
                                 f"{body['Name']} already exists")
        oid = self.new_id()
        spec = {"Name": body["Name"], "Labels": body.get("Labels") or {}}
        if kind == "configs":
            spec["Data"] = body["Data"]
        table[oid] = {"ID": oid, "Version": {"Index": 1}, "CreatedAt": T0, "UpdatedAt": T0,
                      "Spec": spec, "_Data": body["Data"]}
        return web.json_response({"ID": oid}, status=201)

    @staticmethod
    def public(o: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in o.items() if not k.startswith("_")}

    async def obj_list(self, request: web.Request) -> web.Response:
        _, table = self.table(request)
        f = self.flt(request)
        return web.json_response([self.public(o) for o in table.values()
                                  if _match(o["Spec"]["Labels"], f.get("label", {}))])

    async def obj_get(self, request: web.Request) -> web.Response:
        kind, table = self.table(request)
        o = self.find(table, request.match_info["id"], lambda o: o["Spec"]["Name"])
        return web.json_response(self.public(o)) if o else self.err(
            404, f"{kind[:-1]} {request.match_info['id']} not found")

    async def obj_rm(self, request: web.Request) -> web.Response:
        kind, table = self.table(request)
        o = self.find(table, request.match_info["id"], lambda o: o["Spec"]["Name"])
        if not o:
            return self.err(404, f"{kind[:-1]} {request.match_info['id']} not found")
        users = [s["Spec"]["Name"] for s in self.services.values()
                 if any(ref.get(f"{kind[:-1].capitalize()}ID") == o["ID"] for ref in
                        s["Spec"]["TaskTemplate"]["ContainerSpec"].get(kind.capitalize()) or [])]
        if users:
            return self.err(400, f"rpc error: code = InvalidArgument desc = {kind[:-1]} "
                                 f"'{o['Spec']['Name']}' is in use by the following service: "
                                 f"{', '.join(users)}")
        del table[o["ID"]]
        return web.Response(status=204)

    async def obj_update(self, request: web.Request) -> web.Response:
        _, table = self.table(request)
        o = self.find(table, request.match_info["id"], lambda o: o["Spec"]["Name"])
        assert o is not None
        o["Spec"]["Labels"] = request[BODY].get("Labels") or {}
        o["Version"]["Index"] += 1
        return web.Response(status=200)


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    fake = FakeAPI()
    sock = tmp_path / "d.sock"
    monkeypatch.setenv("LABKIT_SOCKET", str(sock))
    monkeypatch.setattr(cli_service, "STABLE_S", 0.0)
    monkeypatch.setattr(cli_service, "POLL_S", 0.01)
    with serve(fake.app(), sock):
        yield fake


def lk(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    got = capsys.readouterr()
    return rc, got.out, got.err


# --- services ------------------------------------------------------------------------------

def test_create_sends_dockers_spec_and_converges(api: FakeAPI,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    api.networks["net1"] = {"Id": "net1", "Name": "front", "Scope": "swarm", "Labels": {}}
    rc, out, err = lk(capsys, "service", "create", "--name", "web", "--replicas", "2",
                      "--network", "front", "-p", "8080:80", "-p",
                      "published=53,target=53,protocol=udp,mode=host",
                      "--constraint", "node.role==worker", "--placement-pref",
                      "spread=node.labels.zone", "-e", "A=1", "--label", "tier=web",
                      "--restart-condition", "on-failure", "--restart-delay", "5s",
                      "--update-parallelism", "2", "--update-delay", "10s",
                      "--update-order", "start-first", "--limit-cpu", "0.5",
                      "--limit-memory", "256M", "--mount", "type=tmpfs,target=/cache",
                      "nginx", "nginx", "-g", "daemon off;")
    assert rc == 0, err
    [sid] = api.services
    assert out.splitlines()[0] == sid
    assert "overall progress: 2 out of 2 tasks" in out and "verify: Service converged" in out
    [body] = [b for m, p, _, b in api.requests if p == "services/create"]
    assert body == {
        "Name": "web", "Labels": {"tier": "web"},
        "TaskTemplate": {
            "ContainerSpec": {"Image": "nginx:latest@sha256:aa",
                              "Args": ["nginx", "-g", "daemon off;"], "Env": ["A=1"],
                              "Mounts": [{"Type": "tmpfs", "Target": "/cache"}]},
            "Placement": {"Constraints": ["node.role==worker"],
                          "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]},
            "Networks": [{"Target": "net1"}],
            "RestartPolicy": {"Condition": "on-failure", "Delay": 5 * 10**9},
            "Resources": {"Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 256 << 20}}},
        "Mode": {"Replicated": {"Replicas": 2}},
        "UpdateConfig": {"Parallelism": 2, "Delay": 10 * 10**9, "Order": "start-first",
                         "FailureAction": "pause", "Monitor": 5 * 10**9, "MaxFailureRatio": 0},
        "EndpointSpec": {"Mode": "vip", "Ports": [
            {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080,
             "PublishMode": "ingress"},
            {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 53, "PublishMode": "host"}]}}
    # the convergence polls only the up-to-date tasks of this service
    polls = [q for m, p, q, _ in api.requests if p == "tasks"]
    assert json.loads(polls[0]["filters"]) == {"service": {sid: True},
                                               "_up-to-date": {"true": True}}


def test_create_detached_with_an_image_the_daemon_cannot_pin(
        api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _out, err = lk(capsys, "service", "create", "-d", "--name", "p", "--mode", "global",
                      "alpine", "sleep", "1d")
    assert rc == 0 and "could not be accessed on a registry to record its digest" in err
    [svc] = api.services.values()
    assert svc["Spec"]["Mode"] == {"Global": {}}
    assert svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "alpine:latest"
    assert not any(p == "tasks" for _, p, _, _ in api.requests)   # -d: no convergence


@pytest.mark.parametrize(("argv", "text"), [
    (["-p", "1.2.3.4:80:80"], "invalid port"),
    (["-p", "mode=bridge,target=80"], "invalid publish mode"),
    (["--placement-pref", "pack=x"], "invalid placement preference"),
    (["--mode", "global", "--replicas", "2"], "replicas can only be used with replicated"),
    (["--limit-memory", "lots"], "invalid size"),
    (["--restart-delay", "soon"], "invalid duration"),
    (["--secret", "nope"], "secret nope not found"),
])
def test_bad_create_flags_create_nothing(api: FakeAPI, capsys: pytest.CaptureFixture[str],
                                         argv: list[str], text: str) -> None:
    rc, _, err = lk(capsys, "service", "create", "-d", *argv, "alpine")
    assert rc == 1 and text in err, err
    assert not api.services


def test_duplicate_name_is_the_daemons_message(api: FakeAPI,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    lk(capsys, "service", "create", "-d", "--name", "web", "alpine")
    rc, _, err = lk(capsys, "service", "create", "-d", "--name", "web", "alpine")
    assert rc == 1 and ("labkit: error: rpc error: code = AlreadyExists desc = name conflicts "
                        "with an existing object\n") in err


def test_ls_ps_inspect_scale_update_rm(api: FakeAPI,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    lk(capsys, "service", "create", "-d", "--name", "web", "--replicas", "2", "-p", "8080:80",
       "nginx")
    [sid] = api.services
    rc, out, _ = lk(capsys, "service", "ls")
    assert rc == 0
    head, row = out.splitlines()
    assert head.split() == ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
    assert row.split() == [sid[:12], "web", "replicated", "2/2", "nginx:latest",
                           "*:8080->80/tcp"]
    rc, out, _ = lk(capsys, "service", "ps", "web")
    rows = out.splitlines()[1:]
    assert rc == 0 and [r.split()[1] for r in rows] == ["web.1", "web.2"]
    assert all("lk-node1" in r and "Running" in r for r in rows)
    rc, out, _ = lk(capsys, "service", "inspect", "--pretty", "web")
    assert rc == 0 and "Name:" in out and "Replicas:" in out and "PublishedPort = 8080" in out
    rc, out, _ = lk(capsys, "service", "inspect", "web")
    assert json.loads(out)[0]["ID"] == sid
    rc, out, _ = lk(capsys, "service", "scale", "web=3")
    assert rc == 0 and out.startswith("web scaled to 3\n") and "3 out of 3 tasks" in out
    assert api.services[sid]["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}
    [(q, _)] = [(q, b) for m, p, q, b in api.requests if p.endswith("/update")]
    assert q["version"] == "1"
    before = json.loads(json.dumps(api.services[sid]["Spec"]))
    rc, out, _ = lk(capsys, "service", "update", "-d", "--env-add", "X=1", "--publish-rm",
                    "80", "--force", "web")
    spec = api.services[sid]["Spec"]
    assert rc == 0 and spec["TaskTemplate"]["ContainerSpec"]["Env"] == ["X=1"]
    assert spec["EndpointSpec"]["Ports"] == [] and spec["TaskTemplate"]["ForceUpdate"] == 1
    rc, _, _ = lk(capsys, "service", "update", "-d", "--rollback", "web")
    assert rc == 0 and api.services[sid]["Spec"] == before
    rc, out, _ = lk(capsys, "service", "update", "-d", "--replicas", "1", "web")
    spec = api.services[sid]["Spec"]
    # only what a flag names changes
    assert spec["TaskTemplate"] == before["TaskTemplate"]
    rc, _, err = lk(capsys, "service", "scale", "web")
    assert rc == 1 and "invalid scale specifier" in err
    rc, out, err = lk(capsys, "service", "rm", "web", "ghost")
    assert rc == 1 and out == "web\n" and "service ghost not found" in err
    assert not api.services


def test_logs_are_prefixed_with_the_task(api: FakeAPI,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    lk(capsys, "service", "create", "-d", "--name", "web", "--replicas", "2", "alpine")
    rc, out, err = lk(capsys, "service", "logs", "web")
    assert rc == 0
    lines = sorted(out.splitlines())
    assert len(lines) == 2 and lines[0].startswith("web.1.")
    assert lines[0].endswith("@lk-node1    | hello from 1")
    assert err.count("| oops") == 2
    rc, out, _ = lk(capsys, "service", "logs", "--raw", "web")
    assert sorted(out.splitlines()) == ["hello from 1", "hello from 2"]
    rc, out, _ = lk(capsys, "service", "logs", "-t", "web")
    assert min(out.splitlines()).endswith(
        "@lk-node1    | 2026-12-04T10:00:00.000000001Z hello from 1")


def test_worker_refusal(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    api.manager = False
    rc, _, err = lk(capsys, "service", "ls")
    assert rc == 1 and MSG_NOT_MANAGER in err


# --- secrets and configs ---------------------------------------------------------------------

def test_secret_create_ls_inspect_rm(api: FakeAPI, capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "pw"
    f.write_bytes(b"s3cr3t\n")
    rc, out, _ = lk(capsys, "secret", "create", "--label", "a=b", "pw", str(f))
    [sid] = api.secrets
    assert (rc, out) == (0, sid + "\n")
    body = next(b for m, p, _, b in api.requests if p == "secrets/create")
    assert body == {"Name": "pw", "Labels": {"a": "b"}, "Data": "czNjcjN0Cg=="}

    class Stdin:
        buffer = __import__("io").BytesIO(b"from stdin")
    monkeypatch.setattr("sys.stdin", Stdin)
    rc, _, _ = lk(capsys, "secret", "create", "pw2", "-")
    assert rc == 0 and any(base64.b64decode(s["_Data"]) == b"from stdin"
                           for s in api.secrets.values())
    rc, out, _ = lk(capsys, "secret", "ls")
    assert rc == 0 and out.splitlines()[0].split() == ["ID", "NAME", "DRIVER", "CREATED",
                                                       "UPDATED"]
    assert "s3cr3t" not in out and len(out.splitlines()) == 3
    rc, out, _ = lk(capsys, "secret", "inspect", "pw")
    assert rc == 0 and json.loads(out)[0]["Spec"]["Name"] == "pw" and "s3cr3t" not in out
    big = tmp_path / "big"
    big.write_bytes(b"x" * (600 * 1024))
    rc, _, err = lk(capsys, "secret", "create", "big", str(big))
    assert rc == 1 and "secret data must be larger than 0 and less than 500KB" in err
    lk(capsys, "service", "create", "-d", "--name", "app", "--secret",
       "source=pw,target=db.txt,mode=0400", "alpine")
    ref = next(iter(api.services.values()))["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
    assert ref == [{"File": {"Name": "db.txt", "UID": "0", "GID": "0", "Mode": 0o400},
                    "SecretID": sid, "SecretName": "pw"}]
    rc, _, err = lk(capsys, "secret", "rm", "pw")
    assert rc == 1 and "is in use by the following service: app" in err
    rc, _, err = lk(capsys, "secret", "create", "x", str(tmp_path / "missing"))
    assert rc == 1 and "no such secret file" in err


def test_config_shows_its_data(api: FakeAPI, capsys: pytest.CaptureFixture[str],
                               tmp_path: Path) -> None:
    f = tmp_path / "site.conf"
    f.write_text("listen 80;\n")
    rc, out, _ = lk(capsys, "config", "create", "site", str(f))
    assert rc == 0
    rc, out, _ = lk(capsys, "config", "inspect", "--pretty", "site")
    assert rc == 0 and "Data:\nlisten 80;" in out
    rc, out, _ = lk(capsys, "config", "ls", "-q")
    assert out.strip() in api.configs
    rc, out, _ = lk(capsys, "config", "rm", "site")
    assert (rc, out) == (0, "site\n") and not api.configs


# --- stacks ---------------------------------------------------------------------------------

STACK = """\
version: "3.8"
services:
  vote:
    image: nginx:latest
    ports: ["8080:80"]
    networks: [front]
    secrets: [pw]
    deploy: {replicas: 2}
  redis:
    image: alpine:latest
    command: sleep 1d
    build: .
networks:
  front: {attachable: true}
secrets:
  pw: {file: ./pw.txt}
"""


def _stack(tmp_path: Path, text: str = STACK) -> Path:
    (tmp_path / "pw.txt").write_text("hunter2\n")
    f = tmp_path / "stack.yml"
    f.write_text(text)
    return f


def test_stack_deploy_ls_services_ps_rm(api: FakeAPI, capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    f = _stack(tmp_path)
    rc, out, err = lk(capsys, "stack", "deploy", "-c", str(f), "voter")
    assert rc == 0, err
    assert out.splitlines() == ["Creating network voter_default", "Creating network voter_front",
                                "Creating secret voter_pw", "Creating service voter_vote",
                                "Creating service voter_redis"]
    assert "stack.yml:12: services.redis.build: not supported by stack deploy, ignored" in err
    nets = {n["Name"]: n for n in api.networks.values()}
    assert nets["voter_front"]["Attachable"] and nets["voter_default"]["Labels"] == {NS: "voter"}
    [secret] = api.secrets.values()
    assert secret["Spec"] == {"Name": "voter_pw", "Labels": {NS: "voter"}}
    vote = next(s for s in api.services.values() if s["Spec"]["Name"] == "voter_vote")
    cs = vote["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert cs["Image"] == "nginx:latest@sha256:aa"
    assert cs["Secrets"][0]["SecretID"] == secret["ID"]
    assert vote["Spec"]["TaskTemplate"]["Networks"] == [{"Target": "voter_front",
                                                        "Aliases": ["vote"]}]
    rc, out, _ = lk(capsys, "stack", "ls")
    assert out.splitlines()[1].split() == ["voter", "2"]
    rc, out, _ = lk(capsys, "stack", "services", "voter")
    assert sorted(r.split()[1] for r in out.splitlines()[1:]) == ["voter_redis", "voter_vote"]
    rc, out, _ = lk(capsys, "stack", "ps", "voter")
    assert sorted(r.split()[1] for r in out.splitlines()[1:]) == [
        "voter_redis.1", "voter_vote.1", "voter_vote.2"]
    # a re-deploy updates the services in place, with the version they were read at
    f.write_text(STACK.replace("replicas: 2", "replicas: 3"))
    rc, out, err = lk(capsys, "stack", "deploy", "-c", str(f), "voter")
    assert rc == 0, err
    assert "Updating service voter_vote (id: " in out and "Creating" not in out
    assert vote["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}
    rc, out, _ = lk(capsys, "stack", "rm", "voter")
    assert rc == 0 and out.splitlines() == [
        "Removing service voter_redis", "Removing service voter_vote",
        "Removing network voter_default", "Removing network voter_front",
        "Removing secret voter_pw"]
    assert not (api.services or api.networks or api.secrets)
    rc, out, _ = lk(capsys, "stack", "rm", "voter")
    assert out == "Nothing found in stack: voter\n"


@pytest.mark.parametrize(("change", "text"), [
    (lambda t: t.replace("command: sleep 1d", "command: sleep 1d\n    ulimits: {}"),
     "stack.yml:12: services.redis.ulimits: not supported by stack deploy"),
    (lambda t: t.replace("./pw.txt", "./missing.txt"), ("missing.txt (stack.yml:16: "
                                                        "secrets.pw.file)")),
    (lambda t: t.replace("front: {attachable: true}", "front: {external: true}"),
     "network 'front' is declared as external, but could not be found"),
    (lambda t: t.replace("deploy: {replicas: 2}", "deploy: {replicas: [2]}"),
     "stack.yml:8: services.vote.deploy.replicas: must be an integer"),
])
def test_a_bad_stack_creates_nothing(api: FakeAPI, capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path, change: Any, text: str) -> None:
    f = _stack(tmp_path, change(STACK))
    rc, _, err = lk(capsys, "stack", "deploy", "-c", str(f), "voter")
    assert rc == 1 and text in err, err
    assert api.writes() == []


def test_external_objects_are_referred_to_by_their_ids(
        api: FakeAPI, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "k").write_text("key")
    lk(capsys, "secret", "create", "shared_key", str(tmp_path / "k"))
    [sid] = api.secrets
    api.networks["n1"] = {"Id": "n1", "Name": "shared", "Scope": "swarm", "Labels": {}}
    text = ("services:\n  a:\n    image: alpine\n    networks: [ext]\n"
            "    secrets: [key]\nnetworks:\n  ext: {external: true, name: shared}\n"
            "secrets:\n  key: {external: true, name: shared_key}\n")
    rc, out, err = lk(capsys, "stack", "deploy", "-c", str(_stack(tmp_path, text)), "st")
    assert rc == 0, err
    assert out.splitlines() == ["Creating service st_a"]
    [svc] = api.services.values()
    task = svc["Spec"]["TaskTemplate"]
    assert task["Networks"] == [{"Target": "shared", "Aliases": ["a"]}]
    assert task["ContainerSpec"]["Secrets"][0]["SecretID"] == sid
    rc, out, _ = lk(capsys, "stack", "rm", "st")   # external objects stay
    assert out == "Removing service st_a\n" and api.secrets and api.networks


def test_prune_and_bad_stack_names(api: FakeAPI, capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path) -> None:
    f = _stack(tmp_path)
    lk(capsys, "stack", "deploy", "-c", str(f), "voter")
    f.write_text(STACK.split("  redis:")[0] + STACK.split("command: sleep 1d\n    build: .\n")[1])
    rc, out, err = lk(capsys, "stack", "deploy", "--prune", "-c", str(f), "voter")
    assert rc == 0, err
    assert out.splitlines()[-1] == "Removing service voter_redis"
    assert [s["Spec"]["Name"] for s in api.services.values()] == ["voter_vote"]
    before = len(api.writes())
    for bad in ("a.b", "x_", "x" * 41):
        rc, _, err = lk(capsys, "stack", "deploy", "-c", str(f), bad)
        assert rc == 1 and "invalid stack name" in err
    assert len(api.writes()) == before


def test_a_refusal_halfway_undoes_the_deploy(api: FakeAPI, capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    api.fail_create.add("voter_redis")
    rc, _, err = lk(capsys, "stack", "deploy", "-c", str(_stack(tmp_path)), "voter")
    assert rc == 1 and "injected failure" in err and "were removed again" in err
    assert not (api.services or api.networks or api.secrets)


def test_stack_deploy_needs_a_manager(api: FakeAPI, capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    api.manager = False
    rc, _, err = lk(capsys, "stack", "deploy", "-c", str(_stack(tmp_path)), "voter")
    assert rc == 1 and MSG_NOT_MANAGER in err and api.writes() == []


def test_a_paused_update_ends_the_wait_with_its_message(
        api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    lk(capsys, "service", "create", "-d", "--name", "web", "alpine")
    [svc] = api.services.values()
    svc["UpdateStatus"] = {"State": "paused", "Message": "update paused due to failure or "
                                                         "early termination of task x"}
    rc, out, err = lk(capsys, "service", "update", "--image", "alpine:3", "web")
    assert rc == 1 and out == "web\n"
    assert "update paused: update paused due to failure or early termination of task x" in err


def test_pending_tasks_show_why(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    lk(capsys, "service", "create", "-d", "--name", "web", "--constraint", "node.labels.x==y",
       "alpine")
    [task] = api.tasks.values()
    task["Status"] = {"State": "pending", "Timestamp": "2026-12-04T10:00:00Z",
                      "Message": "no suitable node (scheduling constraints not satisfied on "
                                 "1 node) [bold]x[/bold]"}
    rc, out, _ = lk(capsys, "service", "ps", "--no-trunc", "web")
    assert rc == 0 and "Pending" in out and "scheduling constraints not satisfied" in out
    assert " ago" in out and "[bold]x[/bold]" in out   # the daemon's text, not rich markup


def test_refs_that_would_reach_another_endpoint_are_refused(api: FakeAPI) -> None:
    from labkit import errors
    from labkit.engine.client import Client

    c = Client()
    for bad in ("../containers/x/kill", "..", ""):
        with pytest.raises(errors.InvalidArgumentError):
            c.services.inspect(bad)
        with pytest.raises(errors.InvalidArgumentError):
            c.secrets.remove(bad)
    with pytest.raises(errors.InvalidArgumentError):
        c.services.distribution("../../containers/x/kill")
    assert api.requests == []
    assert c.services.distribution("nginx:latest") == {"Descriptor": {"digest": "sha256:aa"}}


def test_a_requested_rollback_converges(api: FakeAPI,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    lk(capsys, "service", "create", "-d", "--name", "web", "alpine")
    lk(capsys, "service", "update", "-d", "--image", "alpine:3", "web")
    [svc] = api.services.values()
    svc["UpdateStatus"] = {"State": "rollback_completed", "Message": "rollback completed"}
    rc, out, err = lk(capsys, "service", "update", "--rollback", "web")
    assert rc == 0, err
    assert svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "alpine:latest"
    assert "verify: Service converged" in out
    # the same state after a plain update means the update failed and was undone
    rc, _, err = lk(capsys, "service", "update", "--env-add", "A=1", "web")
    assert rc == 1 and "update rollback completed: rollback completed" in err


# --- the same bodies as the Docker CLI -----------------------------------------------------------

CREATE_FLAGS = [
    "--name", "web", "--replicas", "2", "-p", "8080:80", "-p",
    "published=53,target=53,protocol=udp,mode=host", "--constraint", "node.role==worker",
    "--placement-pref", "spread=node.labels.zone", "-e", "A=1", "--label", "tier=web",
    "--container-label", "c=d", "--restart-condition", "on-failure", "--restart-delay", "5s",
    "--restart-max-attempts", "3", "--update-parallelism", "2", "--update-delay", "10s",
    "--update-order", "start-first", "--update-failure-action", "rollback",
    "--rollback-parallelism", "1", "--limit-cpu", "0.5", "--limit-memory", "256M",
    "--mount", "type=tmpfs,target=/cache", "--mount", "type=volume,source=v,target=/v",
    "--hostname", "h", "-u", "101", "-w", "/srv", "--network", "front", "--secret",
    "source=pw,target=p.txt,mode=0400", "nginx", "nginx", "-g", "daemon off;"]


def _meaningful(x: Any) -> Any:
    """A body without the zero values the Docker CLI sends for fields left unset (Go's
    struct zero values: {}, false, 0, null), which the daemon reads as absent."""
    if isinstance(x, dict):
        kept = {k: _meaningful(v) for k, v in x.items()}
        return {k: v for k, v in kept.items()
                if k in ("MaxFailureRatio", "Global") or v not in ({}, None, False, 0, [])}
    if isinstance(x, list):
        return [_meaningful(v) for v in x]
    return x


def test_service_create_sends_what_docker_sends(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from labkit import errors
    from labkit.measure.peers import docker_cli

    try:
        cli = docker_cli()
    except errors.UnsupportedError:
        pytest.skip("no Docker CLI on PATH")
    bodies = {}
    for who in ("docker", "labkit"):
        fake = FakeAPI(digests={})
        fake.networks["net1"] = {"Id": "net1", "Name": "front", "Scope": "swarm", "Labels": {}}
        fake.secrets["sec1"] = {"ID": "sec1", "Version": {"Index": 1},
                                "Spec": {"Name": "pw", "Labels": {}}}
        sock = tmp_path / f"{who}.sock"
        with serve(fake.app(), sock):
            if who == "docker":
                env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                       "DOCKER_CONFIG": str(tmp_path / "cfg"), "DOCKER_HOST": f"unix://{sock}"}
                r = subprocess.run([cli, "service", "create", "-d", *CREATE_FLAGS], env=env,
                                   capture_output=True, text=True, timeout=30, check=False)
                assert r.returncode == 0, r.stderr
            else:
                monkeypatch.setenv("LABKIT_SOCKET", str(sock))
                rc, _, err = lk(capsys, "service", "create", "-d", *CREATE_FLAGS)
                assert rc == 0, err
        bodies[who] = next(b for _, p, _, b in fake.requests if p == "services/create")
    assert _meaningful(bodies["labkit"]) == _meaningful(bodies["docker"])


def test_stack_deploy_sends_what_docker_sends(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from unit.test_stack_convert import RICH

    from labkit import errors
    from labkit.measure.peers import docker_cli

    try:
        cli = docker_cli()
    except errors.UnsupportedError:
        pytest.skip("no Docker CLI on PATH")
    (tmp_path / "pw").write_text("s3\n")
    (tmp_path / "conf").write_text("c\n")
    f = tmp_path / "stack.yml"
    f.write_text(RICH)
    sent = {}
    for who in ("docker", "labkit"):
        fake = FakeAPI()   # nginx is the only image with a digest: none here is pinned
        sock = tmp_path / f"{who}.sock"
        with serve(fake.app(), sock):
            if who == "docker":
                env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                       "DOCKER_CONFIG": str(tmp_path / "cfg"), "DOCKER_HOST": f"unix://{sock}"}
                r = subprocess.run([cli, "stack", "deploy", "-c", str(f), "st"], env=env,
                                   capture_output=True, text=True, timeout=30, check=False)
                assert r.returncode == 0, r.stderr
            else:
                monkeypatch.setenv("LABKIT_SOCKET", str(sock))
                rc, _, err = lk(capsys, "stack", "deploy", "-c", str(f), "st")
                assert rc == 0, err
        by_path: dict[str, list[Any]] = {}
        for _, p, _, b in fake.requests:
            if p.endswith("/create"):
                if p == "networks/create":   # 28.2.2 sends CheckDuplicate true, 20.10 false
                    b = {k: v for k, v in b.items() if k not in ("CheckDuplicate",
                                                                 "EnableIPv6")}
                by_path.setdefault(p, []).append(_meaningful(b))
        sent[who] = {p: sorted(v, key=lambda b: b["Name"]) for p, v in by_path.items()}
    # secret and config IDs differ between the two runs only by creation order
    for who in sent:
        for svc in sent[who]["services/create"]:
            for ref in svc["TaskTemplate"]["ContainerSpec"].get("Secrets", []) + \
                    svc["TaskTemplate"]["ContainerSpec"].get("Configs", []):
                ref.pop("SecretID", None)
                ref.pop("ConfigID", None)
    assert sent["labkit"] == sent["docker"]
