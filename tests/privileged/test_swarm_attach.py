"""Standalone containers on an attachable overlay network, on a worker, with the real Docker
CLI against a one-manager, one-worker lab (labkit.measure.swarmlab): the container gets an
address from the swarm, reaches the service task on the other node over VXLAN, resolves the
service through the embedded DNS, and its address is given back on rm.  A network that is
not attachable is refused with Docker's words; an unknown one is still "not found".
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from labkit import errors
from labkit.measure.swarmlab import SwarmLab

pytestmark = [pytest.mark.privileged, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd-server"),
              pytest.mark.skipif(not os.path.exists("/usr/local/bin/docker"),
                                 reason="needs the Docker CLI")]

NAME = f"at{os.getpid() % 1000}"
DOCKER = "/usr/local/bin/docker"


@pytest.fixture(scope="module")
def lab():
    lab = SwarmLab(1, 1, name=NAME, subnet="10.219.0.0/24").up()
    try:
        yield lab
    finally:
        lab.down()


def docker(lab, node, *args, ok=True):
    out = lab.exec(node, [DOCKER, *args], capture_output=True, timeout=60)
    if ok:
        assert out.returncode == 0, f"docker {' '.join(args)}: {out.stderr}"
    return out


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
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached in {timeout} s (last: {last})")


def _tasks(lab):
    return lab.node("m1").api("GET", "/tasks")


def test_a_standalone_container_on_a_worker_joins_the_swarm_network(lab):
    m1, w1 = lab.node("m1"), lab.node("w1")
    docker(lab, "m1", "network", "create", "-d", "overlay", "--attachable",
           "--subnet", "10.31.7.0/24", "atnet")
    docker(lab, "m1", "network", "create", "-d", "overlay", "closed")
    docker(lab, "m1", "service", "create", "-d", "--name", "web", "--network", "atnet",
           "--constraint", "node.role==manager", "--no-resolve-image",
           "busybox", "sleep", "600")
    try:
        def web_task():
            for t in _tasks(lab):
                if t.get("ServiceID") and t["Status"]["State"] == "running":
                    return t
            return None
        task = _until(web_task, 40, "the service's task running")
        assert task["NodeID"] == m1.node_id()
        [task_ip] = [a["Addresses"][0].split("/")[0] for a in task["NetworksAttachments"]
                     if (a["Network"].get("Spec") or {}).get("Name") == "atnet"]

        before = {t["ID"] for t in _tasks(lab)}
        cid = docker(lab, "w1", "run", "-d", "--network", "atnet", "--name", "c1",
                     "busybox", "sleep", "300").stdout.strip()
        # the attachment task: this node's, no service
        new = [t for t in _tasks(lab) if t["ID"] not in before]
        assert [t["NodeID"] for t in new] == [w1.node_id()]
        assert not new[0].get("ServiceID")
        [addr] = new[0]["NetworksAttachments"][0]["Addresses"]
        ip = docker(lab, "w1", "inspect", "-f",
                    "{{(index .NetworkSettings.Networks \"atnet\").IPAddress}}", cid
                    ).stdout.strip()
        assert ip == addr.split("/")[0] and ip.startswith("10.31.7.")
        # across nodes over VXLAN, and the service's name through the embedded DNS
        _until(lambda: docker(lab, "w1", "exec", "c1", "ping", "-c1", "-W1", task_ip,
                              ok=False).returncode == 0, 20, "ping of the task over VXLAN")
        out = _until(lambda: (o := docker(lab, "w1", "exec", "c1", "nslookup", "tasks.web",
                                          ok=False)).returncode == 0 and task_ip in o.stdout
                     and o, 20, "tasks.web resolved")
        assert task_ip in out.stdout
        # the service's name is its VIP, programmed in the container's own netns too
        vip = [v["Addr"].split("/")[0] for v in lab.node("m1").api(
            "GET", f"/services/{task['ServiceID']}")["Endpoint"]["VirtualIPs"]]
        assert vip and vip[0] in docker(lab, "w1", "exec", "c1", "nslookup", "web").stdout
        _until(lambda: docker(lab, "w1", "exec", "c1", "ping", "-c1", "-W1", "web",
                              ok=False).returncode == 0, 20, "ping of the service's VIP")

        # on the manager (where the network is already there for the task): attached
        # containers on two nodes reach each other
        docker(lab, "m1", "run", "-d", "--network", "atnet", "--name", "c3", "busybox",
               "sleep", "300")
        _until(lambda: docker(lab, "m1", "exec", "c3", "ping", "-c1", "-W1", ip,
                              ok=False).returncode == 0, 20, "ping between attached containers")
        docker(lab, "m1", "rm", "-f", "c3")

        # rm gives the address back: the attachment task goes
        docker(lab, "w1", "rm", "-f", cid)
        _until(lambda: new[0]["ID"] not in {t["ID"] for t in _tasks(lab)}, 20,
               "the attachment task gone")

        # network connect of a running container, then disconnect: the same
        docker(lab, "w1", "run", "-d", "--name", "c2", "busybox", "sleep", "300")
        docker(lab, "w1", "network", "connect", "atnet", "c2")
        mine = [t for t in _tasks(lab) if t["NodeID"] == w1.node_id()]
        assert len(mine) == 1
        _until(lambda: docker(lab, "w1", "exec", "c2", "ping", "-c1", "-W1", task_ip,
                              ok=False).returncode == 0, 20, "ping after network connect")
        docker(lab, "w1", "network", "disconnect", "atnet", "c2")
        _until(lambda: not [t for t in _tasks(lab) if t["NodeID"] == w1.node_id()], 20,
               "the disconnected attachment gone")
        docker(lab, "w1", "rm", "-f", "c2")
        # run --rm: the engine's auto-remove gives the address back as rm does (the
        # removed hook), not after the agent's 30 s grace for an unheld attachment
        out = docker(lab, "w1", "run", "--rm", "--network", "atnet", "busybox", "ip", "-4",
                     "-o", "addr", "show", "eth0").stdout
        assert "10.31.7." in out
        _until(lambda: not [t for t in _tasks(lab) if t["NodeID"] == w1.node_id()], 10,
               "the --rm container's attachment gone")
        # nothing uses the network on the worker any more: it goes from there
        _until(lambda: "atnet" not in docker(lab, "w1", "network", "ls").stdout, 20,
               "the network gone from the worker")

        # not attachable: Docker's words; unknown: still "not found"
        bad = docker(lab, "w1", "run", "--rm", "--network", "closed", "busybox", "true",
                     ok=False)
        assert bad.returncode != 0
        assert ("Could not attach to network closed: rpc error: code = PermissionDenied "
                "desc = network closed not manually attachable") in bad.stderr
        # (through the API: the CLI answers a create's 404 by pulling the image)
        with pytest.raises(errors.NotFoundError, match="network nosuch not found"):
            w1.api("POST", "/containers/create", {"Image": "busybox", "HostConfig": {
                "NetworkMode": "nosuch"}})
        assert not [t for t in _tasks(lab) if t["NodeID"] == w1.node_id()]
        assert docker(lab, "w1", "ps", "-aq").stdout.strip() == ""
    finally:
        docker(lab, "w1", "rm", "-f", "c1", "c2", ok=False)
        docker(lab, "m1", "rm", "-f", "c3", ok=False)
        docker(lab, "m1", "service", "rm", "web", ok=False)
        _until(lambda: not _tasks(lab), 30, "the tasks gone")
        docker(lab, "m1", "network", "rm", "atnet", "closed", ok=False)
