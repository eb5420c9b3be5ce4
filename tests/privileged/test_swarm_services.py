"""Services end to end on a 1 manager + 2 worker lab (labkit.measure.swarmlab): scheduling,
scaling, constraints, drain, node failure, rolling update and rollback, global mode, overlay
networks (plain and encrypted), DNS and VIPs, the routing mesh, secrets, refusals, stacks.

Every node is a labkit daemon in a network namespace the lab made; requests to published
ports come from the lab's underlay namespace.  Every wait has a deadline; the worker killed
is restarted; each test removes the services, networks and secrets it made, and the lab is
torn down (processes, namespaces, links, dirs) at module end.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from labkit import errors
from labkit.engine.client.run import run as run_container
from labkit.measure.bench_services import HTTPD_HOSTNAME, http_get
from labkit.measure.swarmlab import SwarmLab

pytestmark = [pytest.mark.privileged, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd-server")]

NAME = f"s{os.getpid() % 100000}"
SLEEP = ["sleep", "86400"]
GRACE = 1_000_000_000  # ns
IP4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")


@pytest.fixture(scope="module")
def lab():
    lab = SwarmLab(1, 2, name=NAME, subnet="10.221.0.0/24", heartbeat=0.5,
                   registry=True).up()
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def m1(lab):
    return lab.node("m1")


def _until(pred, timeout=45.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            got = pred()
            if got:
                return got
            last = got
        except (errors.LabkitError, OSError, KeyError, IndexError) as err:
            last = err
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout} s (last: {last!r})")


def _spec(name, replicas=1, cmd=SLEEP, **task):
    mode = {"Global": {}} if replicas is None else {"Replicated": {"Replicas": replicas}}
    return {"Name": name, "Labels": {"lk.test": NAME},
            # a 1 s grace: sleep and httpd run as pid 1, which SIGTERM does not end, so
            # every stop would otherwise wait the 10 s default before SIGKILL
            "TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest", "Command": cmd,
                                               "StopGracePeriod": GRACE},
                             **task},
            "Mode": mode}


@contextlib.contextmanager
def service(lab, m1, spec):
    """A service for the block's length; removed after, with its tasks gone from the nodes."""
    sid = m1.api("POST", "/services/create", spec)["ID"]
    try:
        yield sid
    finally:
        with contextlib.suppress(errors.NotFoundError):
            m1.api("DELETE", f"/services/{sid}")
        _until(lambda: not any(n.client().containers.list(all=True, filters={
            "label": [f"com.docker.swarm.service.id={sid}"]}) for n in lab.nodes
            if lab.running(n)), what=f"service {spec['Name']}'s containers gone")


@contextlib.contextmanager
def network(m1, name, **opts):
    body = {"Name": name, "Driver": "overlay", "Labels": {"lk.test": NAME}, **opts}
    nid = m1.api("POST", "/networks/create", body)["Id"]
    try:
        yield nid
    finally:
        _until(lambda: _rm_network(m1, nid), what=f"network {name} removed")


def _rm_network(m1, nid):
    return _delete(m1, f"/networks/{nid}")


def _delete(m1, path):
    """DELETE that counts a missing object as done (other refusals raise: _until retries)."""
    with contextlib.suppress(errors.NotFoundError):
        m1.api("DELETE", path)
    return True


def _networks(m1, **params):
    """GET /networks, asked again (bounded) should a listing fail while the node drops a
    swarm network (a race fixed in 33d4c73; a retry costs nothing when all is well)."""
    return _retry(lambda: m1.api("GET", "/networks", **params))


def _retry(call, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except errors.LabkitError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _update(m1, ref, change, **params):
    """GET the service, change its spec (a function of the spec), POST it back."""
    svc = m1.api("GET", f"/services/{ref}")
    spec = change(svc["Spec"]) or svc["Spec"]
    return m1.api("POST", f"/services/{svc['ID']}/update", spec,
                  version=svc["Version"]["Index"], **params)


def _node_update(m1, node, change):
    nid = node.node_id()
    n = m1.api("GET", f"/nodes/{nid}")
    spec = change(n["Spec"]) or n["Spec"]
    m1.api("POST", f"/nodes/{nid}/update", spec, version=n["Version"]["Index"])


def _addr(task, net_id):
    for att in task.get("NetworksAttachments") or []:
        if att["Network"]["ID"] == net_id:
            return att["Addresses"][0].split("/")[0]
    raise KeyError(f"task {task['ID']} has no address on {net_id}")


def _ok(lab, task, argv):
    """``argv`` in the task's container until it exits 0 (a node programs its overlay,
    VIPs and DNS from its next assignment snapshot: moments after the task runs); the
    output of the first success, or AssertionError with the last output after 30 s."""
    last = []

    def once():
        code, out = lab.task_exec(task, argv, timeout=15)
        last[:] = [code, out]
        return out if code == 0 else None

    try:
        return _until(once, timeout=30, what=" ".join(argv))
    except AssertionError as err:
        raise AssertionError(f"{' '.join(argv)}: {last}") from err


def _on(lab, m1, tasks):
    return sorted(lab.node_by_id(t["NodeID"], m1).name for t in tasks)


def _containers(node, service):
    return node.client().containers.list(
        all=True, filters={"label": [f"com.docker.swarm.service.name={service}"]})


# ------------------------------------------------------------------ services and tasks
def test_replicas_spread_over_the_nodes_with_dockers_shapes(lab, m1):
    with service(lab, m1, _spec("web", 3)) as sid:
        tasks = lab.wait_running("web", 3, via=m1)
        assert _on(lab, m1, tasks) == ["m1", "w1", "w2"]  # spread: one per node
        assert sorted(t["Slot"] for t in tasks) == [1, 2, 3]
        svc = m1.api("GET", f"/services/{sid}")
        assert svc["ID"] == sid and svc["Spec"]["Name"] == "web"
        assert svc["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}
        assert svc["Version"]["Index"] > 0 and svc["CreatedAt"] and svc["UpdatedAt"]
        assert not [k for k in svc if k.startswith("_")]  # labkit's own keys stay inside
        listed = m1.api("GET", "/services", status=True, filters={"name": {"web": True}})
        assert [s["ID"] for s in listed] == [sid]
        assert listed[0]["ServiceStatus"]["RunningTasks"] == 3
        assert listed[0]["ServiceStatus"]["DesiredTasks"] == 3
        t = m1.api("GET", f"/tasks/{tasks[0]['ID']}")
        assert t["ServiceID"] == sid and t["DesiredState"] == "running"
        assert t["Spec"]["ContainerSpec"]["Image"] == "busybox:latest"
        assert not [k for k in t if k.startswith("_")]
        node, cid = lab.task_container(t)
        c = node.client().containers.inspect(cid)
        assert c["Name"].lstrip("/") == f"web.{t['Slot']}.{t['ID']}"
        labels = c["Config"]["Labels"]
        assert labels["com.docker.swarm.service.name"] == "web"
        assert labels["com.docker.swarm.task.id"] == t["ID"]
        assert labels["com.docker.swarm.node.id"] == t["NodeID"]
        assert c["HostConfig"]["RestartPolicy"]["Name"] in ("", "no")  # the swarm restarts
        # a task is visible through any manager and, as a container, only on its node
        other = next(n for n in lab.nodes if n is not node)
        assert cid not in {x["Id"] for x in _containers(other, "web")}


def test_scale_up_and_down(lab, m1):
    with service(lab, m1, _spec("scaled", 2)):
        lab.wait_running("scaled", 2, via=m1)
        _update(m1, "scaled", lambda s: s["Mode"]["Replicated"].update(Replicas=5))
        assert len(lab.wait_running("scaled", 5, via=m1)) == 5
        _update(m1, "scaled", lambda s: s["Mode"]["Replicated"].update(Replicas=1))
        lab.wait_running("scaled", 1, via=m1)
        # the removed tasks' containers go from their nodes
        _until(lambda: sum(len([c for c in _containers(n, "scaled") if c["State"] == "running"])
                           for n in lab.nodes) == 1, what="one container left running")


def test_duplicate_service_name_is_refused(lab, m1):
    with service(lab, m1, _spec("dup", 1)):
        with pytest.raises(errors.LabkitError, match="already exists|name conflicts") as err:
            m1.api("POST", "/services/create", _spec("dup", 1))
        assert "409" in repr(err.value) or isinstance(err.value, errors.ConflictError)
        assert len(m1.api("GET", "/services", filters={"name": {"dup": True}})) == 1


def test_constraint_no_node_meets_stays_pending_with_the_reason_then_runs(lab, m1):
    w2 = lab.node("w2")
    spec = _spec("picky", 1, Placement={"Constraints": ["node.labels.lkzone==east"]})
    try:
        with service(lab, m1, spec):
            task = _until(lambda: next(
                (t for t in lab.tasks("picky", m1) if t["Status"]["State"] == "pending"
                 and t["Status"].get("Err")), None), what="a pending task with a reason")
            why = task["Status"]["Err"]
            assert "no suitable node" in why and "constraint" in why, why
            assert task["NodeID"] in ("", None)
            _node_update(m1, w2, lambda s: s.setdefault("Labels", {}).update(lkzone="east"))
            run = lab.wait_running("picky", 1, via=m1)
            assert lab.node_by_id(run[0]["NodeID"], m1) is w2
    finally:
        _node_update(m1, w2, lambda s: (s.get("Labels") or {}).pop("lkzone", None) and None)


def test_drain_moves_the_tasks_off_the_node(lab, m1):
    w1 = lab.node("w1")
    with service(lab, m1, _spec("drained", 4)):
        lab.wait_running("drained", 4, via=m1)
        try:
            _node_update(m1, w1, lambda s: s.update(Availability="drain"))
            _until(lambda: "w1" not in _on(lab, m1, lab.wait_running("drained", 4, via=m1)),
                   what="no task on the drained node")
            _until(lambda: not [c for c in _containers(w1, "drained")
                                if c["State"] == "running"], what="w1's containers stopped")
        finally:
            _node_update(m1, w1, lambda s: s.update(Availability="active"))


def test_rolling_update_with_parallelism_then_rollback(lab, m1):
    spec = _spec("rolled", 4)
    spec["TaskTemplate"]["ContainerSpec"]["Env"] = ["LKV=1"]
    # Monitor 1 s: each batch is watched that long for failures (swarmkit's default is 5 s)
    spec["UpdateConfig"] = {"Parallelism": 2, "Delay": 0, "FailureAction": "pause",
                            "Order": "stop-first", "Monitor": GRACE}
    spec["RollbackConfig"] = {"Parallelism": 2, "Delay": 0, "Monitor": GRACE}

    running: list[int] = []  # running tasks seen at each poll during the updates

    def envs():
        run = lab.running_tasks("rolled", m1)
        running.append(len(run))
        return sorted(t["Spec"]["ContainerSpec"].get("Env", [""])[0] for t in run)

    with service(lab, m1, spec) as sid:
        lab.wait_running("rolled", 4, via=m1)
        _update(m1, sid, lambda s: s["TaskTemplate"]["ContainerSpec"].update(Env=["LKV=2"]))
        running.clear()
        _until(lambda: envs() == ["LKV=2"] * 4, what="every task on the new spec")
        # parallelism 2 of 4 (stop-first): never more than 2 slots down at once
        assert min(running) >= 2, running
        def completed():
            s = m1.api("GET", f"/services/{sid}")
            return s if s.get("UpdateStatus", {}).get("State") == "completed" else None

        svc = _until(completed, what="update completed")
        assert svc["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Env"] == ["LKV=1"]
        old = [t for t in lab.tasks("rolled", m1) if t["DesiredState"] != "running"]
        assert len(old) >= 4  # the replaced tasks are kept (history), shut down
        # rollback=previous: the CLI's `service rollback` (sends the current spec)
        _update(m1, sid, lambda s: None, rollback="previous")
        _until(lambda: envs() == ["LKV=1"] * 4, what="every task back on the old spec")
        _until(lambda: m1.api("GET", f"/services/{sid}").get("UpdateStatus", {})
               .get("State") == "rollback_completed", what="rollback completed")


def test_global_mode_runs_one_task_per_node(lab, m1):
    with service(lab, m1, _spec("everywhere", None)):
        tasks = lab.wait_running("everywhere", 3, via=m1)
        assert _on(lab, m1, tasks) == ["m1", "w1", "w2"]
        assert {t.get("Slot", 0) for t in tasks} == {0}


def test_an_image_from_the_lab_registry_is_pulled_by_every_node(lab, m1, tmp_path):
    marker = tmp_path / "marker"
    marker.write_text(f"lk-{os.getpid()}\n")
    ref = lab.add_image("lk-app:1", {"/etc/lk-app": str(marker)})  # pushed from m1 only
    assert ref == f"{lab.registry}/lk-app:1"
    for n in lab.nodes[1:]:
        with pytest.raises(errors.NotFoundError):
            n.client().images.inspect(ref)
    spec = _spec("pulled", None, cmd=["sh", "-c", "cat /etc/lk-app; exec sleep 86400"])
    spec["TaskTemplate"]["ContainerSpec"]["Image"] = ref
    with service(lab, m1, spec):
        tasks = lab.wait_running("pulled", 3, via=m1, timeout=90)
        assert _on(lab, m1, tasks) == ["m1", "w1", "w2"]
        for t in tasks:
            node, _ = lab.task_container(t)
            assert node.client().images.inspect(ref)["Id"]
            assert _ok(lab, t, ["cat", "/etc/lk-app"]) == marker.read_text()


# ------------------------------------------------------------------ overlay networks
def _worker_pair(lab, m1, name, nid, cmd=SLEEP):
    """A global service on the two workers only: one task on each, on network ``nid``."""
    return service(lab, m1, _spec(name, None, cmd=cmd, Networks=[{"Target": nid}],
                                  Placement={"Constraints": ["node.role==worker"]}))


def _esp_packets(lab, node):
    """Sum of the packet counters of the node's XFRM states (`ip -s xfrm state`)."""
    out = lab.node_run(node, ["ip", "-s", "xfrm", "state"]).stdout
    return sum(int(m) for m in re.findall(r"(\d+)\(packets\)", out)), out


def test_overlay_connects_tasks_on_two_nodes(lab, m1):
    with network(m1, "lkt-ov", Attachable=True) as nid, _worker_pair(lab, m1, "ov", nid):
        a, b = lab.wait_running("ov", 2, via=m1)
        assert _on(lab, m1, [a, b]) == ["w1", "w2"]
        net = m1.api("GET", f"/networks/{nid}")
        assert net["Scope"] == "swarm" and net["Driver"] == "overlay"
        subnet = ipaddress.ip_network(net["IPAM"]["Config"][0]["Subnet"])
        assert ipaddress.ip_address(_addr(b, nid)) in subnet
        _ok(lab, a, ["ping", "-c", "2", "-W", "3", _addr(b, nid)])
        # the network exists on the nodes with its tasks, as Docker shows it, not on m1
        node_net = lab.node("w1").api("GET", f"/networks/{nid}")
        assert node_net["Scope"] == "swarm"
        assert "lkt-ov" not in [n["Name"] for n in m1.client().networks.list()
                                if n.get("Scope") == "local"]


def test_encrypted_overlay_pings_through_esp(lab, m1):
    from labkit.engine.net import xfrm

    if not lab.in_underlay(xfrm.esp_supported):  # probed in the lab's own netns
        pytest.skip("this kernel has no IPsec ESP with AES-GCM (make test-vm has)")
    w1 = lab.node("w1")
    with network(m1, "lkt-enc", Options={"encrypted": ""}) as nid, \
            _worker_pair(lab, m1, "enc", nid):
        a, b = lab.wait_running("enc", 2, via=m1)
        _until(lambda: _esp_packets(lab, w1)[1].count("proto esp") >= 2,
               what="ESP states on w1")
        _ok(lab, a, ["ping", "-c", "1", "-W", "3", _addr(b, nid)])
        before, _ = _esp_packets(lab, w1)
        _ok(lab, a, ["ping", "-c", "3", "-W", "3", _addr(b, nid)])
        after, states = _esp_packets(lab, w1)
        assert after >= before + 3, states
        assert "rfc4106(gcm(aes))" in states


def test_a_network_made_after_one_removed_runs_its_tasks_first_time(lab, m1):
    """The new network must not meet the old one's VXLAN device on a node whose old task
    is still stopping (VNIs go up from the last one given)."""
    with network(m1, "lkt-old") as old, _worker_pair(lab, m1, "old", old):
        lab.wait_running("old", 2, via=m1)
        m1.api("DELETE", "/services/old")
        _until(lambda: _rm_network(m1, old), what="the old network removed")
        with network(m1, "lkt-new") as new, _worker_pair(lab, m1, "new", new):
            lab.wait_running("new", 2, via=m1)
            states = [t["Status"]["State"] for t in lab.tasks("new", m1)]
            assert states == ["running", "running"], [
                (t["Status"]["State"], t["Status"].get("Err")) for t in lab.tasks("new", m1)]


def test_overlapping_overlay_subnet_is_refused_and_nothing_made(lab, m1):
    cfg = {"Driver": "default", "Config": [{"Subnet": "10.0.77.0/24"}]}
    with network(m1, "lkt-sub", IPAM=cfg):
        with pytest.raises(errors.LabkitError, match="overlap"):
            m1.api("POST", "/networks/create", {
                "Name": "lkt-sub2", "Driver": "overlay",
                "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.0.77.128/25"}]}})
        names = [n["Name"] for n in _networks(m1)]
        assert "lkt-sub" in names and "lkt-sub2" not in names


# ------------------------------------------------------------------ discovery and the mesh
def test_dns_names_the_vip_and_tasks_name_the_task_addresses(lab, m1):
    with network(m1, "lkt-dns") as nid, \
            service(lab, m1, _spec("named", 2, Networks=[{"Target": nid}])) as sid, \
            service(lab, m1, _spec("asker", 1, Networks=[{"Target": nid}])):
        named = lab.wait_running("named", 2, via=m1)
        asker = lab.wait_running("asker", 1, via=m1)[0]
        vips = m1.api("GET", f"/services/{sid}")["Endpoint"]["VirtualIPs"]
        vip = next(v["Addr"].split("/")[0] for v in vips if v["NetworkID"] == nid)

        def answers(name):
            out = _ok(lab, asker, ["nslookup", name])
            return sorted(set(IP4.findall(out.split("Name:", 1)[1])))

        assert answers("named") == [vip]
        # the asker's node learns each task from its next snapshot: bounded wait for both
        want = sorted(_addr(t, nid) for t in named)
        _until(lambda: answers("tasks.named") == want, timeout=30,
               what=f"tasks.named -> {want}")


def test_vip_spreads_connections_over_the_tasks(lab, m1):
    with network(m1, "lkt-vip") as nid, \
            service(lab, m1, _spec("hn", 3, cmd=["sh", "-c", HTTPD_HOSTNAME],
                                   Networks=[{"Target": nid}])), \
            service(lab, m1, _spec("client", 1, Networks=[{"Target": nid}])):
        hosts = lab.wait_running("hn", 3, via=m1)
        client = lab.wait_running("client", 1, via=m1)[0]
        vips = m1.api("GET", "/services/hn")["Endpoint"]["VirtualIPs"]
        vip = next(v["Addr"].split("/")[0] for v in vips if v["NetworkID"] == nid)
        # nc, by address: busybox-static's wget crashes (SIGSEGV) looking "http" up through
        # glibc's NSS, which a static binary cannot load; nslookup is the DNS test
        # the body (the last line) is the answering task's hostname; grep fails on none
        get = ["sh", "-c",
               f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {vip} 80 | tail -n1 | grep ."]
        want = {_ok(lab, t, ["hostname"]).strip() for t in hosts}
        _ok(lab, client, get)  # the VIP is programmed

        def spread():
            # the client's node learns each backend from its next snapshot: until then
            # the VIP balances over fewer; 6 connections in a row must reach all 3
            seen = set()
            for _ in range(6):
                code, out = lab.task_exec(client, get)
                if code != 0:
                    return None
                seen.add(out.strip())
            return seen == want or None

        _until(spread, timeout=30, what=f"6 connections through the VIP reach {want}")


def test_routing_mesh_answers_on_every_node(lab, m1):
    spec = _spec("meshed", 1, cmd=["sh", "-c", HTTPD_HOSTNAME],
                 Placement={"Constraints": ["node.hostname==lk-w1"]})
    spec["EndpointSpec"] = {"Ports": [{"Protocol": "tcp", "TargetPort": 80,
                                       "PublishedPort": 8081, "PublishMode": "ingress"}]}
    with service(lab, m1, spec) as sid:
        task = lab.wait_running("meshed", 1, via=m1)[0]
        assert lab.node_by_id(task["NodeID"], m1).name == "w1"
        _, host = lab.task_exec(task, ["hostname"])
        ports = m1.api("GET", f"/services/{sid}")["Endpoint"]["Ports"]
        assert ports[0]["PublishedPort"] == 8081 and ports[0]["PublishMode"] == "ingress"
        for node in lab.nodes:  # m1 and w2 run no task of it
            got = lab.in_underlay(lambda n=node: _until(
                lambda: http_get(n.addr, 8081), what=f"an answer from {n.name}"))
            assert got == host.strip(), node.name


# ------------------------------------------------------------------ secrets
def _secret(m1, name, data, **labels):
    return m1.api("POST", "/secrets/create", {
        "Name": name, "Labels": {"lk.test": NAME, **labels},
        "Data": base64.b64encode(data).decode()})["ID"]


def _task_dirs(node):
    d = Path(node.base, "run", "swarm", "tasks")
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def _holds(node, value):
    """Whether any file under the node's swarm run dir holds ``value`` (or is a secret's)."""
    d = Path(node.base, "run", "swarm")
    return any(f.is_file() and (f.name == "lkt-sec" or value in f.read_bytes())
               for f in d.rglob("*")) if d.is_dir() else False


def test_secret_is_delivered_only_where_its_task_runs_and_leaves_with_it(lab, m1):
    w1, w2 = lab.node("w1"), lab.node("w2")
    value = b"lk-" + os.urandom(8).hex().encode() + b"\n"
    sec = _secret(m1, "lkt-sec", value)
    try:
        meta = m1.api("GET", f"/secrets/{sec}")
        assert meta["Spec"]["Name"] == "lkt-sec" and "Data" not in meta["Spec"]
        spec = _spec("secretive", 1, Placement={"Constraints": ["node.hostname==lk-w1"]})
        spec["TaskTemplate"]["ContainerSpec"]["Secrets"] = [{
            "SecretID": sec, "SecretName": "lkt-sec",
            "File": {"Name": "lkt-sec", "UID": "0", "GID": "0", "Mode": 0o400}}]
        with service(lab, m1, spec):
            task = lab.wait_running("secretive", 1, via=m1)[0]
            code, out = lab.task_exec(task, ["cat", "/run/secrets/lkt-sec"])
            assert code == 0 and out.encode() == value
            code, out = lab.task_exec(task, ["stat", "-c", "%a %u", "/run/secrets/lkt-sec"])
            assert out.split() == ["400", "0"]
            code, out = lab.task_exec(task, ["sh", "-c", "grep ' /run/secrets/' /proc/mounts"])
            assert "tmpfs" in out and " ro" in out, out  # in memory, read-only
            assert task["ID"] in _task_dirs(w1)
            assert not _holds(w2, value)  # the node without the task got nothing
            # in use: refused, naming the service
            with pytest.raises(errors.LabkitError, match="secretive"):
                m1.api("DELETE", f"/secrets/{sec}")
            # a standalone container on the same node sees no secret
            r = run_container(w1.client(), "busybox:latest",
                              ["sh", "-c", "ls /run/secrets 2>&1; true"],
                              HostConfig={"NetworkMode": "none"})
            assert value not in r.stdout and b"lkt-sec" not in r.stdout
        _until(lambda: task["ID"] not in _task_dirs(w1), what="the secret's tmpfs gone")
        with open("/proc/self/mounts") as f:
            assert f"/swarm/tasks/{task['ID']}" not in f.read()
    finally:
        _until(lambda: _delete(m1, f"/secrets/{sec}"), what="secret removed")
    assert "lkt-sec" not in [s["Spec"]["Name"] for s in m1.api("GET", "/secrets")]


def test_secret_over_500kb_is_refused(lab, m1):
    with pytest.raises(errors.LabkitError, match="less than 500KB"):
        _secret(m1, "lkt-big", b"x" * (500 * 1024 + 1))
    assert "lkt-big" not in [s["Spec"]["Name"] for s in m1.api("GET", "/secrets")]


# ------------------------------------------------------------------ node failure
def test_killed_worker_replicas_come_back_on_the_others(lab, m1):
    w2 = lab.node("w2")
    with service(lab, m1, _spec("survivor", 3)):
        tasks = lab.wait_running("survivor", 3, via=m1)
        assert "w2" in _on(lab, m1, tasks)
        lab.kill(w2)
        try:
            _until(lambda: next(n for n in m1.api("GET", "/nodes")
                                if n["Description"]["Hostname"] == w2.hostname)
                   ["Status"]["State"] == "down", what="w2 down")
            def back():
                run = lab.running_tasks("survivor", m1)
                return len(run) == 3 and "w2" not in _on(lab, m1, run)

            _until(back, what="3 replicas on m1 and w1")
        finally:
            lab.restart(w2)
            lab.wait_ready(60)


# ------------------------------------------------------------------ stacks (labkit's CLI)
def _labkit(lab, node, *args, input=None):
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args],
                          env=lab.node(node).env, capture_output=True, text=True,
                          input=input, timeout=120, check=False)


GOOD = """\
version: "3.8"
services:
  front:
    image: busybox:latest
    stop_grace_period: 1s
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports:
      - "8082:80"
    deploy:
      replicas: 2
  back:
    image: busybox:latest
    stop_grace_period: 1s
    command: sleep 86400
    environment:
      ROLE: back
"""


def test_stack_with_a_bad_line_names_it_and_deploys_nothing(lab, m1, tmp_path):
    bad = GOOD.replace("    deploy:\n", "    deploy:\n      replicaz: 2\n", 1)
    f = tmp_path / "bad.yml"
    f.write_text(bad)
    line = bad.splitlines().index("      replicaz: 2") + 1
    r = _labkit(lab, "m1", "stack", "deploy", "-c", str(f), "lkbad")
    assert r.returncode != 0
    assert "replicaz" in r.stderr and f":{line}:" in r.stderr, r.stderr
    label = {"label": {"com.docker.stack.namespace=lkbad": True}}
    assert m1.api("GET", "/services", filters=label) == []
    assert _networks(m1, filters=label) == []


def test_stack_deploy_runs_the_services_and_rm_removes_all(lab, m1, tmp_path):
    f = tmp_path / "good.yml"
    f.write_text(GOOD)
    label = {"label": {"com.docker.stack.namespace=lkgood": True}}
    r = _labkit(lab, "m1", "stack", "deploy", "-c", str(f), "lkgood")
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        names = sorted(s["Spec"]["Name"] for s in m1.api("GET", "/services", filters=label))
        assert names == ["lkgood_back", "lkgood_front"]
        lab.wait_running("lkgood_front", 2, via=m1)
        back = lab.wait_running("lkgood_back", 1, via=m1)[0]
        assert "ROLE=back" in back["Spec"]["ContainerSpec"]["Env"]
        nets = _networks(m1, filters=label)
        assert [n["Name"] for n in nets] == ["lkgood_default"]
        got = lab.in_underlay(lambda: _until(lambda: http_get(lab.node("w2").addr, 8082),
                                             what="the stack's published port"))
        assert got
        # the short name resolves inside the stack's network (alias = compose service name)
        _ok(lab, back, ["nslookup", "front"])
    finally:
        r = _labkit(lab, "m1", "stack", "rm", "lkgood")
    assert r.returncode == 0, r.stderr
    _until(lambda: m1.api("GET", "/services", filters=label) == [], what="services gone")
    _until(lambda: m1.api("GET", "/networks", filters=label) == [], what="network gone")


def test_nothing_is_left_after_down():
    """The lab of this module is torn down by its fixture; a lab made and removed here
    shows what down removes: namespaces, processes, dirs and the record."""
    lab = SwarmLab(1, 0, name=f"z{os.getpid() % 100000}", subnet="10.223.0.0/24",
                   registry=True).up()
    reg_pid, reg_dir = lab.registry_proc["pid"], lab.registry_proc["base"]
    pids = lab.nodes[0].processes()
    lab.down()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=False).stdout
    assert lab.bridge_ns not in netns and lab.nodes[0].netns not in netns
    assert not Path(lab.nodes[0].base).exists()
    assert not Path(reg_dir).exists()
    for pid in [*pids, reg_pid]:
        with contextlib.suppress(psutil.NoSuchProcess):
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not SwarmLab.record_path(lab.name).exists()
