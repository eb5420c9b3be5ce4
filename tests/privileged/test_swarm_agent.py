"""The dispatcher and the agent on a real one-manager, one-worker lab (labkit.measure.swarmlab): a task
written straight into the cluster store (no orchestrator) runs as a container on the node,
reports running, sees its secret at /run/secrets/NAME, logs, and on shutdown its container
and its secret tmpfs are gone.  A daemon restart adopts the task's container (no second one).

The store is reached the way the manager reaches it: a short Python process inside the
node's network namespace opens etcd with the node's own TLS files and data key.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.swarm import ca
from labkit.measure.swarmlab import SwarmLab

pytestmark = [pytest.mark.privileged, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd-server")]

NAME = f"ag{os.getpid() % 100000}"
SECRET = b"hunter2-" + NAME.encode()

# reads stdin {"op": get|put|cas_desired, "key", "obj"} and prints the result as JSON
STORE_SCRIPT = r"""
import asyncio, json, sys
from labkit.engine.swarm.etcd.client import EtcdClient
from labkit.engine.swarm.seal import DataKey
from labkit.engine.swarm.state import NodeFiles
from labkit.engine.swarm.store import PREFIX, ClusterStore

async def main():
    req = json.load(sys.stdin)
    f = NodeFiles()
    tls = f.tls_dir
    client = EtcdClient(["https://127.0.0.1:2379"], tls / "ca.crt", tls / "node.crt",
                        tls / "node.key")
    store = ClusterStore(client, DataKey(f.read_dek(None)))
    try:
        key = PREFIX + req["key"]
        if req["op"] == "put":
            await store.put(key, req["obj"])
            out = None
        elif req["op"] == "get":
            got = await store.get(key)
            out = got[0] if got else None
        elif req["op"] == "desired":
            obj, version = await store.must_get(key, "task")
            obj["DesiredState"] = req["obj"]
            await store.cas(key, obj, version)
            out = None
        else:
            got = await store.delete(key)
            out = got
        print(json.dumps(out))
    finally:
        await client.close()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def lab():
    lab = SwarmLab(1, 1, name=NAME, subnet="10.214.0.0/24").up()
    try:
        yield lab
    finally:
        try:  # nothing of the tasks may outlive the lab (their processes are not its own)
            for node in lab.nodes:
                for c in node.api("GET", "/containers/json", all="1"):
                    if "com.docker.swarm.task.id" in (c.get("Labels") or {}):
                        node.api("DELETE", f"/containers/{c['Id']}", force="1")
        finally:
            lab.down()


def _store(lab, op: str, key: str, obj=None):
    node = lab.node("m1")
    out = subprocess.run(["ip", "netns", "exec", node.netns, sys.executable, "-c",
                          STORE_SCRIPT], env=node.env, input=json.dumps(
                              {"op": op, "key": key, "obj": obj}),
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def _until(pred, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            got = pred()
            if got:
                return got
        except (errors.LabkitError, OSError, KeyError, AssertionError) as err:
            last = err
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout} s (last: {last})")


def _task_containers(node, tid):
    return [c for c in node.api("GET", "/containers/json", all="1")
            if (c.get("Labels") or {}).get("com.docker.swarm.task.id") == tid]


def test_a_task_runs_with_its_secret_logs_and_goes_away(lab):
    node = lab.node("m1")
    nid = node.node_id()
    sid, svc, tid = ca.new_id(), ca.new_id(), ca.new_id()
    _store(lab, "put", f"secrets/{sid}", {"ID": sid, "Spec": {"Name": "db_pass", "Labels": {}},
                                         "_Data": base64.b64encode(SECRET).decode()})
    spec = {"ContainerSpec": {
        "Image": "busybox", "Command": ["sh", "-c"],
        "Args": ["echo hello-from-task; cat /run/secrets/db_pass; echo; "
                 + "stat -c %a /run/secrets/db_pass; exec sleep 300"],
        "StopGracePeriod": 1_000_000_000,
        "Secrets": [{"SecretID": sid, "SecretName": "db_pass",
                     "File": {"Name": "db_pass", "UID": "0", "GID": "0", "Mode": 0o400}}]}}
    _store(lab, "put", f"services/{svc}", {"ID": svc, "Spec": {"Name": "agt", "TaskTemplate":
                                                              spec}, "_SpecVersion": 1})
    _store(lab, "put", f"tasks/{tid}", {
        "ID": tid, "ServiceID": svc, "Slot": 1, "NodeID": nid, "Labels": {}, "Spec": spec,
        "DesiredState": "running", "Status": {"State": "assigned", "Message": "assigned"},
        "NetworksAttachments": [], "_SpecVersion": 1, "_ServiceName": "agt"})

    task = _until(lambda: (t := _store(lab, "get", f"tasks/{tid}"))["Status"]["State"]
                  == "running" and t, what="task running")
    cid = task["Status"]["ContainerStatus"]["ContainerID"]
    assert task["Status"]["ContainerStatus"]["PID"] > 0
    [c] = _task_containers(node, tid)
    assert c["Id"] == cid and c["Names"] == [f"/agt.1.{tid}"]
    assert c["Labels"]["com.docker.swarm.node.id"] == nid
    info = node.api("GET", f"/containers/{cid}/json")
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "no"
    secret_mount = [m for m in info["Mounts"] if m["Destination"] == "/run/secrets/db_pass"]
    assert secret_mount and secret_mount[0]["RW"] is False
    secret_dir = Path(node.base) / "run" / "swarm" / "tasks" / tid
    assert secret_dir.is_dir() and oct(secret_dir.stat().st_mode & 0o777) == "0o700"

    # the container read its secret (what task_logs reads too: the task container's log)
    def logs():
        out = node.client().containers.logs(cid).read()
        return SECRET in out and b"hello-from-task" in out and b"400\n" in out
    _until(logs, 15, "the secret in the task's log")

    # shut it down: container and secret tmpfs go, the task reports shutdown
    _store(lab, "desired", f"tasks/{tid}", "shutdown")
    _until(lambda: _store(lab, "get", f"tasks/{tid}")["Status"]["State"] == "shutdown",
           20, "task shutdown")
    _until(lambda: not _task_containers(node, tid), 20, "container removed")
    assert not secret_dir.exists()
    for key in (f"tasks/{tid}", f"services/{svc}", f"secrets/{sid}"):
        _store(lab, "delete", key)


def _put_task(lab, node, tid, spec, name):
    _store(lab, "put", f"tasks/{tid}", {
        "ID": tid, "ServiceID": "", "Slot": 1, "NodeID": node.node_id(), "Labels": {},
        "Spec": spec, "DesiredState": "running",
        "Status": {"State": "assigned", "Message": "assigned"},
        "_SpecVersion": 1, "_ServiceName": name})


def test_a_restarted_daemon_adopts_its_task_container(lab):
    node = lab.node("m1")
    tid = ca.new_id()
    _put_task(lab, node, tid, {"ContainerSpec": {"Image": "busybox",
                                                 "Command": ["sleep", "300"]}}, "adopt")
    task = _until(lambda: (t := _store(lab, "get", f"tasks/{tid}"))["Status"]["State"]
                  == "running" and t, what="task running")
    cid = task["Status"]["ContainerStatus"]["ContainerID"]
    # a crash: the daemon and everything it started die (the container's process too)
    lab.kill(node)
    lab.restart(node)
    lab.wait_ready()
    # the container is adopted, not doubled; its death in the crash is reported
    task = _until(lambda: (t := _store(lab, "get", f"tasks/{tid}"))["Status"]["State"]
                  in ("failed", "complete") and t, what="the crash reported")
    [again] = _task_containers(node, tid)
    assert again["Id"] == cid
    assert task["Status"]["ContainerStatus"]["ContainerID"] == cid
    _store(lab, "delete", f"tasks/{tid}")
    _until(lambda: not _task_containers(node, tid), 20, "container removed")


def test_a_failing_task_reports_dockers_error(lab):
    node = lab.node("m1")
    nid = node.node_id()
    tid = ca.new_id()
    spec = {"ContainerSpec": {"Image": "busybox", "Command": ["sh", "-c", "exit 3"]}}
    _store(lab, "put", f"tasks/{tid}", {
        "ID": tid, "ServiceID": "", "Slot": 1, "NodeID": nid, "Labels": {}, "Spec": spec,
        "DesiredState": "running", "Status": {"State": "assigned", "Message": "assigned"},
        "_SpecVersion": 1, "_ServiceName": "bad"})
    task = _until(lambda: (t := _store(lab, "get", f"tasks/{tid}"))["Status"]["State"]
                  == "failed" and t, what="task failed")
    assert task["Status"]["Err"] == "task: non-zero exit (3)"
    assert task["Status"]["ContainerStatus"]["ExitCode"] == 3
    # gone from the store: the agent removes its container
    _store(lab, "delete", f"tasks/{tid}")
    _until(lambda: not _task_containers(node, tid), 20, "container removed")


def test_a_missing_image_is_rejected(lab):
    node = lab.node("m1")
    tid = ca.new_id()
    spec = {"ContainerSpec": {"Image": "127.0.0.1:9/lk-nosuch:1"}}
    _store(lab, "put", f"tasks/{tid}", {
        "ID": tid, "ServiceID": "", "Slot": 1, "NodeID": node.node_id(), "Labels": {},
        "Spec": spec, "DesiredState": "running", "Status": {"State": "assigned"},
        "_SpecVersion": 1, "_ServiceName": "nope"})
    task = _until(lambda: (t := _store(lab, "get", f"tasks/{tid}"))["Status"]["State"]
                  == "rejected" and t, what="task rejected")
    assert task["Status"]["Err"]
    _store(lab, "delete", f"tasks/{tid}")
    assert not _task_containers(node, tid)


def test_health_decides_running_and_unhealthy_fails(lab):
    node = lab.node("m1")
    good, bad = ca.new_id(), ca.new_id()
    probe = {"Interval": 200_000_000, "Timeout": 1_000_000_000, "Retries": 1}
    _put_task(lab, node, good, {"ContainerSpec": {
        "Image": "busybox", "Command": ["sleep", "300"], "StopGracePeriod": 0,
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], **probe}}}, "good")
    _put_task(lab, node, bad, {"ContainerSpec": {
        "Image": "busybox", "Command": ["sleep", "300"], "StopGracePeriod": 0,
        "Healthcheck": {"Test": ["CMD-SHELL", "exit 1"], **probe}}}, "bad")
    _until(lambda: _store(lab, "get", f"tasks/{good}")["Status"]["State"] == "running",
           what="healthy task running")
    task = _until(lambda: (t := _store(lab, "get", f"tasks/{bad}"))["Status"]["State"]
                  == "failed" and t, what="unhealthy task failed")
    assert task["Status"]["Err"] == "task: unhealthy container"
    for tid in (good, bad):
        _store(lab, "delete", f"tasks/{tid}")
    _until(lambda: not _task_containers(node, good) and not _task_containers(node, bad),
           20, "containers removed")


def test_a_worker_runs_its_task_through_the_managers_dispatcher(lab):
    worker = lab.node("w1")
    tid = ca.new_id()
    _put_task(lab, worker, tid, {"ContainerSpec": {"Image": "busybox",
                                                   "Command": ["sleep", "300"],
                                                   "StopGracePeriod": 0}}, "onw")
    task = _until(lambda: (t := _store(lab, "get", f"tasks/{tid}"))["Status"]["State"]
                  == "running" and t, what="task running on the worker")
    [c] = _task_containers(worker, tid)
    assert c["Id"] == task["Status"]["ContainerStatus"]["ContainerID"]
    assert not _task_containers(lab.node("m1"), tid)
    _store(lab, "desired", f"tasks/{tid}", "shutdown")
    _until(lambda: _store(lab, "get", f"tasks/{tid}")["Status"]["State"] == "shutdown",
           20, "task shutdown")
    _until(lambda: not _task_containers(worker, tid), 20, "container removed")
    _store(lab, "delete", f"tasks/{tid}")
