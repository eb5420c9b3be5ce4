"""The real Docker CLI forms and runs a labkit swarm: init, join-token, join, rotate, update,
autolock, unlock, node ls / inspect / promote / demote / update / rm, system info, leave.

The nodes are labkit daemons in network namespaces a SwarmLab made (up(form=False): the CLI
does the forming); every address is inside those namespaces.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from labkit.engine.swarm import seal
from labkit.measure.swarmlab import SwarmLab

pytestmark = [pytest.mark.privileged, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("etcd") is None or shutil.which("docker") is None,
                                 reason="needs etcd-server and the Docker CLI")]


@pytest.fixture(scope="module")
def lab():
    lab = SwarmLab(2, 1, name=f"d{os.getpid() % 100000}", subnet="10.214.0.0/24")
    lab.up(form=False)
    try:
        yield lab
    finally:
        lab.down()


def docker(lab, node, *args, input=None, ok=True):
    r = lab.exec(node, ["docker", *args], capture_output=True, input=input, timeout=60)
    if ok:
        assert r.returncode == 0, f"docker {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def _until(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    raise AssertionError("condition not reached")


def test_before_init_a_node_is_inactive_and_refuses_swarm_commands(lab):
    r = docker(lab, "m1", "node", "ls", ok=False)
    assert r.returncode == 1 and "not a swarm manager" in r.stderr
    info = json.loads(docker(lab, "m1", "system", "info", "--format", "{{json .Swarm}}").stdout)
    assert info["LocalNodeState"] == "inactive"
    r = docker(lab, "m1", "swarm", "unlock", input="x\n", ok=False)
    assert r.returncode == 1 and "not part of a swarm" in r.stderr


def test_init_join_and_node_ls(lab):
    m1, m2, w1 = lab.node("m1"), lab.node("m2"), lab.node("w1")
    out = docker(lab, "m1", "swarm", "init", "--advertise-addr", m1.addr).stdout
    assert "Swarm initialized: current node" in out
    join = re.search(r"docker swarm join --token (\S+) (\S+)", out)
    assert join and join.group(2) == f"{m1.addr}:2377"
    mtok = docker(lab, "m1", "swarm", "join-token", "-q", "manager").stdout.strip()
    assert mtok.startswith("SWMTKN-1-") and mtok != join.group(1)
    out = docker(lab, "m2", "swarm", "join", "--token", mtok, "--advertise-addr", m2.addr,
                 join.group(2)).stdout
    assert "This node joined a swarm as a manager." in out
    out = docker(lab, "w1", "swarm", "join", "--token", join.group(1), "--advertise-addr",
                 w1.addr, join.group(2)).stdout
    assert "This node joined a swarm as a worker." in out

    def listed():
        out = docker(lab, "m2", "node", "ls", "--format",
                     "{{.Hostname}} {{.Status}} {{.ManagerStatus}} {{.Self}}").stdout
        return sorted(out.split("\n")[:-1]) == ["lk-m1 Ready Leader false",
                                                "lk-m2 Ready Reachable true",
                                                "lk-w1 Ready  false"]
    _until(listed)
    info = docker(lab, "m1", "system", "info").stdout
    assert "Swarm: active" in info and "Is Manager: true" in info and "Managers: 2" in info


def test_rotated_worker_token_refuses_joins_and_leaves_members_alone(lab):
    old = docker(lab, "m1", "swarm", "join-token", "-q", "worker").stdout.strip()
    out = docker(lab, "m1", "swarm", "join-token", "--rotate", "worker").stdout
    assert "Successfully rotated worker join token." in out
    new = docker(lab, "m1", "swarm", "join-token", "-q", "worker").stdout.strip()
    assert new != old
    docker(lab, "w1", "swarm", "leave")
    m1 = lab.node("m1")
    r = docker(lab, "w1", "swarm", "join", "--token", old, f"{m1.addr}:2377", ok=False)
    assert r.returncode == 1 and "invalid join token" in r.stderr
    docker(lab, "w1", "swarm", "join", "--token", new, f"{m1.addr}:2377")
    # the one that left stays listed, down (Docker's behaviour), until node rm
    down = docker(lab, "m1", "node", "ls", "--filter", "role=worker", "--format",
                  "{{.ID}} {{.Status}}").stdout.split("\n")[:-1]
    gone = [line.split()[0] for line in down if line.endswith("Down")]
    assert gone
    docker(lab, "m1", "node", "rm", gone[0])


def test_update_cert_expiry_shows_in_info_and_in_new_certificates(lab):
    docker(lab, "m1", "swarm", "update", "--cert-expiry", "48h")
    info = docker(lab, "m1", "system", "info").stdout
    assert "Expiry Duration: 2 days" in info
    spec = json.loads(docker(lab, "m1", "system", "info",
                             "--format", "{{json .Swarm.Cluster.Spec.CAConfig}}").stdout)
    assert spec["NodeCertExpiry"] == 48 * 3600 * 10**9
    r = docker(lab, "m1", "swarm", "update", "--cert-expiry", "10m", ok=False)
    assert r.returncode != 0 and "minimum certificate expiry time" in r.stderr


def test_promote_demote_and_availability(lab):
    docker(lab, "m1", "node", "update", "--availability", "drain", "lk-w1")
    assert docker(lab, "m1", "node", "inspect", "--format", "{{.Spec.Availability}}",
                  "lk-w1").stdout.strip() == "drain"
    docker(lab, "m1", "node", "update", "--availability", "active", "lk-w1")
    docker(lab, "m1", "node", "promote", "lk-w1")
    _until(lambda: docker(lab, "m1", "node", "inspect", "--format",
                          "{{.ManagerStatus.Reachability}}", "lk-w1", ok=False)
           .stdout.strip() == "reachable", timeout=60)
    docker(lab, "m1", "node", "demote", "lk-w1")
    _until(lambda: docker(lab, "w1", "node", "ls", ok=False).returncode == 1, timeout=60)


def test_autolock_unlock_key_and_unlock(lab):
    out = docker(lab, "m1", "swarm", "update", "--autolock=true").stdout
    key = re.search(r"(SWMKEY-1-\S+)", out).group(1)
    assert docker(lab, "m2", "swarm", "unlock-key", "-q").stdout.strip() == key
    m2 = lab.node("m2")
    keyfile = Path(m2.base, "root/swarm/certificates/swarm-node.key")
    _until(lambda: seal.is_sealed(keyfile))
    lab.kill(m2)
    lab.restart(m2)
    info = json.loads(docker(lab, "m2", "system", "info", "--format",
                             "{{json .Swarm}}").stdout)
    assert info["LocalNodeState"] == "locked"
    r = docker(lab, "m2", "node", "ls", ok=False)
    assert r.returncode == 1 and "docker swarm unlock" in r.stderr
    r = docker(lab, "m2", "swarm", "unlock", input=seal.new_unlock_key() + "\n", ok=False)
    assert r.returncode == 1 and "invalid key" in r.stderr
    docker(lab, "m2", "swarm", "unlock", input=key + "\n")
    _until(lambda: docker(lab, "m2", "node", "ls", ok=False).returncode == 0, timeout=60)
    docker(lab, "m1", "swarm", "update", "--autolock=false")


def test_leave(lab):
    r = docker(lab, "m2", "swarm", "leave", ok=False)
    assert r.returncode == 1 and "--force" in r.stderr
    docker(lab, "w1", "swarm", "leave")
    assert json.loads(docker(lab, "w1", "system", "info", "--format",
                             "{{json .Swarm.LocalNodeState}}").stdout) == "inactive"


def test_ca_rotate_moves_every_node_to_a_new_root(lab):
    """`docker swarm ca --rotate` waits until every node holds a certificate of the new
    root (it polls GET /swarm and GET /nodes), then prints the new root."""
    if json.loads(docker(lab, "w1", "system", "info", "--format",
                         "{{json .Swarm.LocalNodeState}}").stdout) != "active":
        tok = docker(lab, "m1", "swarm", "join-token", "-q", "worker").stdout.strip()
        docker(lab, "w1", "swarm", "join", "--token", tok, f"{lab.node('m1').addr}:2377")
    # the CLI waits for every listed node, down ones too: remove those (w1 left above)
    for line in docker(lab, "m1", "node", "ls", "--format", "{{.ID}} {{.Status}}"
                       ).stdout.split("\n")[:-1]:
        if line.endswith("Down"):
            docker(lab, "m1", "node", "rm", line.split()[0])
    old_root = docker(lab, "m1", "swarm", "ca").stdout
    old_tok = docker(lab, "m1", "swarm", "join-token", "-q", "worker").stdout.strip()
    r = lab.exec("m1", ["docker", "swarm", "ca", "--rotate"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    new_root = docker(lab, "m1", "swarm", "ca").stdout
    assert "BEGIN CERTIFICATE" in new_root and new_root != old_root
    from labkit.engine.swarm import ca
    root = ca.RootCA(new_root.encode())
    for n in lab.nodes:
        cert = Path(n.base, "root/swarm/certificates/swarm-node.crt").read_bytes()
        root.verify(cert)  # every node's certificate now chains to the new root
    new_tok = docker(lab, "m1", "swarm", "join-token", "-q", "worker").stdout.strip()
    assert new_tok != old_tok and new_tok.rsplit("-", 1)[1] == old_tok.rsplit("-", 1)[1]
    assert json.loads(docker(lab, "m1", "system", "info", "--format",
                             "{{json .Swarm.Cluster.RootRotationInProgress}}").stdout) is False
