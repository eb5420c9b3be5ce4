"""The dispatcher and the agent on a real one-manager, one-worker lab (labkit.measure.swarmlab): a
service made through the Engine API (pinned to one node, restart policy none, so each test owns
exactly one task) runs as a container on that node, reports running, sees its secret at
/run/secrets/NAME, logs, and when the service goes its container and its secret tmpfs are gone.
A daemon restart adopts the task's container (no second one); Docker's errors for a failing
task, a missing image and an unhealthy container reach the task's status.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import pytest

from labkit import errors
from labkit.measure.swarmlab import SwarmLab

pytestmark = [pytest.mark.privileged, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd-server")]

NAME = f"ag{os.getpid() % 100000}"
SECRET = b"hunter2-" + NAME.encode()


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


def _service(lab, name: str, template: dict, on: str = "m1") -> tuple[str, str]:
    """A one-replica service pinned to node ``on`` that is never restarted: (service id,
    its task's id)."""
    node = lab.node("m1")
    body = {"Name": name, "Mode": {"Replicated": {"Replicas": 1}},
            "TaskTemplate": {**template, "RestartPolicy": {"Condition": "none"},
                             "Placement": {"Constraints": [
                                 f"node.hostname=={lab.node(on).hostname}"]}}}
    sid = node.api("POST", "/services/create", body)["ID"]
    tid = _until(lambda: [t["ID"] for t in _tasks(lab, sid)][:1], what=f"{name}'s task")[0]
    return sid, tid


def _tasks(lab, sid: str) -> list:
    import json
    return lab.node("m1").api("GET", "/tasks", filters=json.dumps({"service": [sid]}))


def _task(lab, tid: str) -> dict:
    return lab.node("m1").api("GET", f"/tasks/{tid}")


def _state(lab, tid: str, want: str):
    return lambda: (t := _task(lab, tid))["Status"]["State"] == want and t


def _remove(lab, sid: str) -> None:
    lab.node("m1").api("DELETE", f"/services/{sid}")


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
    sec = node.api("POST", "/secrets/create", {"Name": "db_pass", "Labels": {},
                                              "Data": base64.b64encode(SECRET).decode()})["ID"]
    spec = {"ContainerSpec": {
        "Image": "busybox", "Command": ["sh", "-c"],
        "Args": ["echo hello-from-task; cat /run/secrets/db_pass; echo; "
                 + "stat -c %a /run/secrets/db_pass; exec sleep 300"],
        "StopGracePeriod": 1_000_000_000,
        "Secrets": [{"SecretID": sec, "SecretName": "db_pass",
                     "File": {"Name": "db_pass", "UID": "0", "GID": "0", "Mode": 0o400}}]}}
    svc, tid = _service(lab, "agt", spec)
    task = _until(_state(lab, tid, "running"), what="task running")
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

    # the service goes: container and secret tmpfs go, then the task and the secret
    _remove(lab, svc)
    _until(lambda: not _task_containers(node, tid), 20, "container removed")
    assert not secret_dir.exists()
    _until(lambda: not _tasks(lab, svc), 20, "task deleted")
    node.api("DELETE", f"/secrets/{sec}")


def test_a_restarted_daemon_adopts_its_task_container(lab):
    node = lab.node("m1")
    svc, tid = _service(lab, "adopt", {"ContainerSpec": {"Image": "busybox",
                                                         "Command": ["sleep", "300"]}})
    task = _until(_state(lab, tid, "running"), what="task running")
    cid = task["Status"]["ContainerStatus"]["ContainerID"]
    # a crash: the daemon and everything it started die (the container's process too)
    lab.kill(node)
    lab.restart(node)
    lab.wait_ready()
    # the container is adopted, not doubled; its death in the crash is reported
    task = _until(lambda: (t := _task(lab, tid))["Status"]["State"]
                  in ("failed", "complete") and t, 60, what="the crash reported")
    [again] = _task_containers(node, tid)
    assert again["Id"] == cid
    assert task["Status"]["ContainerStatus"]["ContainerID"] == cid
    _remove(lab, svc)
    _until(lambda: not _task_containers(node, tid), 20, "container removed")


def test_a_failing_task_reports_dockers_error(lab):
    node = lab.node("m1")
    svc, tid = _service(lab, "bad", {"ContainerSpec": {"Image": "busybox",
                                                       "Command": ["sh", "-c", "exit 3"]}})
    task = _until(_state(lab, tid, "failed"), what="task failed")
    assert task["Status"]["Err"] == "task: non-zero exit (3)"
    assert task["Status"]["ContainerStatus"]["ExitCode"] == 3
    assert len(_tasks(lab, svc)) == 1   # restart policy none: no replacement
    _remove(lab, svc)
    _until(lambda: not _task_containers(node, tid), 20, "container removed")


def test_a_missing_image_is_rejected(lab):
    node = lab.node("m1")
    svc, tid = _service(lab, "nope", {"ContainerSpec": {"Image": "127.0.0.1:9/lk-nosuch:1"}})
    task = _until(_state(lab, tid, "rejected"), what="task rejected")
    assert task["Status"]["Err"]
    assert not _task_containers(node, tid)
    _remove(lab, svc)


def test_health_decides_running_and_unhealthy_fails(lab):
    node = lab.node("m1")
    probe = {"Interval": 200_000_000, "Timeout": 1_000_000_000, "Retries": 1}
    gsvc, good = _service(lab, "good", {"ContainerSpec": {
        "Image": "busybox", "Command": ["sleep", "300"], "StopGracePeriod": 0,
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], **probe}}})
    bsvc, bad = _service(lab, "bad2", {"ContainerSpec": {
        "Image": "busybox", "Command": ["sleep", "300"], "StopGracePeriod": 0,
        "Healthcheck": {"Test": ["CMD-SHELL", "exit 1"], **probe}}})
    _until(_state(lab, good, "running"), what="healthy task running")
    task = _until(_state(lab, bad, "failed"), what="unhealthy task failed")
    assert task["Status"]["Err"] == "task: unhealthy container"
    for svc in (gsvc, bsvc):
        _remove(lab, svc)
    _until(lambda: not _task_containers(node, good) and not _task_containers(node, bad),
           20, "containers removed")


def test_a_worker_runs_its_task_through_the_managers_dispatcher(lab):
    worker = lab.node("w1")
    svc, tid = _service(lab, "onw", {"ContainerSpec": {
        "Image": "busybox", "Command": ["sleep", "300"], "StopGracePeriod": 0}}, on="w1")
    task = _until(_state(lab, tid, "running"), what="task running on the worker")
    [c] = _task_containers(worker, tid)
    assert c["Id"] == task["Status"]["ContainerStatus"]["ContainerID"]
    assert task["NodeID"] == worker.node_id()
    assert not _task_containers(lab.node("m1"), tid)
    _remove(lab, svc)
    _until(lambda: not _task_containers(worker, tid), 20, "container removed")
    _until(lambda: not _tasks(lab, svc), 20, "task deleted")
