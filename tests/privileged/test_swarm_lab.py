"""The swarm on real etcd members with mutual TLS: a 3-manager + 2-worker lab
(labkit.measure.swarmlab), each node a labkit daemon in a network namespace the lab made.

Failure tests are bounded: every wait has a deadline, every kill is by pid of a process the
lab started.  The lab is torn down (processes, namespaces, links, dirs) at module end, and
the last test checks that nothing of it is left.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.swarm import ca, seal, tokens
from labkit.measure.bench_swarm import write_label
from labkit.measure.swarmlab import SwarmLab

pytestmark = [pytest.mark.privileged, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd-server")]

NAME = f"t{os.getpid() % 100000}"


@pytest.fixture(scope="module")
def lab():
    lab = SwarmLab(3, 2, name=NAME, subnet="10.212.0.0/24").up()
    try:
        yield lab
    finally:
        lab.down()


def _until(pred, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            got = pred()
            if got:
                return got
        except (errors.LabkitError, OSError, KeyError) as err:
            last = err
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout} s (last error: {last})")


def _nodes(lab, via=None):
    return {n["Description"]["Hostname"]: n for n in (via or lab.any_manager()).api("GET", "/nodes")}


def test_formed_with_one_leader_and_roles(lab):
    nodes = _nodes(lab)
    assert sorted(nodes) == ["lk-m1", "lk-m2", "lk-m3", "lk-w1", "lk-w2"]
    assert all(n["Status"]["State"] == "ready" for n in nodes.values())
    leaders = [h for h, n in nodes.items() if (n.get("ManagerStatus") or {}).get("Leader")]
    assert len(leaders) == 1
    for h, n in nodes.items():
        assert n["Spec"]["Role"] == ("manager" if h.startswith("lk-m") else "worker")
        assert ("ManagerStatus" in n) == h.startswith("lk-m")
    info = lab.node("w1").api("GET", "/info")["Swarm"]
    assert info["LocalNodeState"] == "active" and info["ControlAvailable"] is False
    assert len(info["RemoteManagers"]) == 3


def test_certificates_name_node_and_role_and_stay_private(lab):
    cluster = lab.node("m1").api("GET", "/swarm")
    for n in lab.nodes:
        certs = Path(n.base, "root", "swarm", "certificates")
        who = ca.identity((certs / "swarm-node.crt").read_bytes())
        assert who.role == n.role and who.cluster_id == cluster["ID"]
        assert who.node_id == n.node_id()
        root = ca.RootCA((certs / "swarm-root-ca.crt").read_bytes())
        root.verify((certs / "swarm-node.crt").read_bytes(), role=n.role)
        assert tokens.matches_ca(cluster["JoinTokens"]["Worker"], root.cert_pem)
        for f in certs.parent.rglob("*"):
            mode = stat.S_IMODE(f.lstat().st_mode)
            assert mode & 0o077 == 0 or f.is_dir() and mode & 0o066 == 0, (f, oct(mode))


def test_store_holds_only_ciphertext(lab):
    """etcd's own data file: the keys are there, no value is readable."""
    db = next(Path(lab.node("m2").base, "root", "swarm", "etcd").rglob("db"))
    data = db.read_bytes()
    assert b"/lk/swarm/nodes/" in data  # the right file
    for clear in (b"lk-w1", b"SWMTKN-1", b"BEGIN", b"swarm-ca", b"HeartbeatPeriod"):
        assert clear not in data, clear


def test_join_refused_with_a_rotated_token_or_another_swarms_ca(lab):
    w2, m1 = lab.node("w2"), lab.node("m1")
    old_id = w2.node_id()
    old = m1.api("GET", "/swarm")["JoinTokens"]["Worker"]
    w2.api("POST", "/swarm/leave", force=1)
    m1.api("DELETE", f"/nodes/{old_id}", force=1)
    sw = m1.api("GET", "/swarm")
    m1.api("POST", "/swarm/update", sw["Spec"], version=sw["Version"]["Index"],
           rotateWorkerToken="true")
    new = m1.api("GET", "/swarm")["JoinTokens"]["Worker"]
    assert new != old
    with pytest.raises(errors.LabkitError, match="invalid join token"):
        lab.join(w2, old)
    foreign = tokens.make(ca.RootCA.create().cert_pem, tokens.parse(new).secret)
    with pytest.raises(errors.LabkitError, match="root CA named by the join token"):
        lab.join(w2, foreign)
    assert w2.api("GET", "/info")["Swarm"]["LocalNodeState"] == "inactive"
    assert not Path(w2.base, "root", "swarm").exists()  # nothing half-made is left
    lab.join(w2, new)
    _until(lambda: _nodes(lab)["lk-w2"]["Status"]["State"] == "ready", what="w2 ready")


def test_a_certificate_from_another_ca_is_refused_on_the_cluster_port(lab):
    import asyncio

    import grpc

    from labkit.engine.swarm.rpc import client as rpc
    from labkit.engine.swarm.rpc import swarm_pb2 as pb
    from labkit.engine.swarm.rpc import swarm_pb2_grpc as pbg
    from labkit.ns.netns import netns

    m1 = lab.node("m1")
    roots = Path(m1.base, "root", "swarm", "certificates", "swarm-root-ca.crt").read_bytes()
    evil = ca.RootCA.create()
    nid = ca.new_id()
    key, csr = ca.new_key_and_csr(nid)
    cert = evil.issue(csr, node_id=nid, role="manager", cluster_id=ca.new_id())

    async def call():
        async with rpc.cluster_channel(f"{m1.addr}:2377", roots, cert, key) as ch:
            await pbg.ClusterStub(ch).Heartbeat(pb.HeartbeatRequest(), timeout=3)

    result: list[BaseException] = []

    def in_ns():  # the node's address is reachable only from inside the lab's namespaces
        with netns(f"/run/netns/{lab.node('w1').netns}"):
            try:
                asyncio.run(call())
            except BaseException as err:  # noqa: BLE001 - inspected below
                result.append(err)

    t = threading.Thread(target=in_ns)
    t.start()
    t.join(20)
    assert result and isinstance(result[0], grpc.aio.AioRpcError)
    assert result[0].code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake failed


def test_leader_killed_while_writing_loses_no_acknowledged_write(lab):
    target = lab.node("w1").node_id()
    acked: list[int] = []
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set() and i < 400:
            for m in lab.managers():
                if not lab.running(m):
                    continue
                try:
                    write_label(m, target, f"h{i}", str(i))
                    acked.append(i)
                    break
                except (errors.LabkitError, OSError):
                    continue
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        _until(lambda: len(acked) >= 5, what="writes before the kill")
        leader = lab.leader()
        assert leader is not None
        lab.kill(leader)
        n0 = len(acked)
        _until(lambda: len(acked) >= n0 + 5, timeout=30, what="writes after the kill")
        new = _until(lambda: lab.leader(), what="a new leader")
        assert new is not leader
    finally:
        stop.set()
        t.join(60)
    labels = lab.any_manager().api("GET", f"/nodes/{target}")["Spec"]["Labels"]
    lost = [i for i in acked if labels.get(f"h{i}") != str(i)]
    assert not lost, f"acknowledged writes lost: {lost}"
    lab.restart(leader)
    _until(lambda: _nodes(lab)[leader.hostname]["ManagerStatus"]["Reachability"]
           == "reachable", what="the old leader back")


def test_losing_quorum_stops_writes_with_a_clear_error_and_comes_back(lab):
    survivor, *others = lab.managers()
    target = lab.node("w1").node_id()
    for m in others:
        lab.kill(m)
    try:
        with pytest.raises(errors.LabkitError, match="quorum|no leader|unavailable") as err:
            for _ in range(3):
                write_label(survivor, target, "q", "1", timeout=15)
        assert "503" in repr(err.value) or "quorum" in str(err.value)
    finally:
        for m in others:
            lab.restart(m)
    _until(lambda: write_label(survivor, target, "q", "2") is None, timeout=60,
           what="writes again")


def test_promote_and_demote_a_node(lab):
    m1, w1 = lab.node("m1"), lab.node("w1")
    wid = w1.node_id()

    def set_role(role):
        n = m1.api("GET", f"/nodes/{wid}")
        m1.api("POST", f"/nodes/{wid}/update", {**n["Spec"], "Role": role},
               version=n["Version"]["Index"])

    set_role("manager")
    _until(lambda: (_nodes(lab).get("lk-w1", {}).get("ManagerStatus") or {})
           .get("Reachability") == "reachable", timeout=60, what="w1 a reachable manager")
    _until(lambda: w1.api("GET", "/info")["Swarm"]["ControlAvailable"], what="w1 manages")
    assert ca.identity(Path(w1.base, "root/swarm/certificates/swarm-node.crt").read_bytes()
                       ).role == "manager"
    set_role("worker")
    _until(lambda: not w1.api("GET", "/info")["Swarm"]["ControlAvailable"], timeout=60,
           what="w1 a worker again")
    _until(lambda: "ManagerStatus" not in _nodes(lab)["lk-w1"], what="w1 out of the raft")
    assert not Path(w1.base, "root/swarm/etcd").exists()
    assert not Path(w1.base, "root/swarm/dek").exists()


def test_autolock_keeps_a_restarted_manager_locked_until_unlocked(lab):
    m1, m3 = lab.node("m1"), lab.node("m3")
    sw = m1.api("GET", "/swarm")
    spec = {**sw["Spec"], "EncryptionConfig": {"AutoLockManagers": True}}
    m1.api("POST", "/swarm/update", spec, version=sw["Version"]["Index"])
    key = m1.api("GET", "/swarm/unlockkey")["UnlockKey"]
    assert key.startswith("SWMKEY-1-")
    keyfile = Path(m3.base, "root/swarm/certificates/swarm-node.key")
    _until(lambda: seal.is_sealed(keyfile), what="m3's key sealed")
    try:
        lab.kill(m3)
        lab.restart(m3)
        info = m3.api("GET", "/info")["Swarm"]
        assert info["LocalNodeState"] == "locked"
        with pytest.raises(errors.LabkitError, match="unlock"):
            m3.api("GET", "/nodes")
        names = [Path(f"/proc/{p}/comm").read_text().strip() for p in m3.processes()]
        assert "etcd" not in names  # no member, no port: nothing served while locked
        assert not Path(m3.base, "run/swarm/tls").exists()
        with pytest.raises(errors.LabkitError, match="invalid key"):
            m3.api("POST", "/swarm/unlock", {"UnlockKey": "SWMKEY-1-" + "A" * 43})
        m3.api("POST", "/swarm/unlock", {"UnlockKey": key})
        assert m3.api("GET", "/info")["Swarm"]["LocalNodeState"] == "active"
        _until(lambda: _nodes(lab)["lk-m3"]["ManagerStatus"]["Reachability"] == "reachable",
               what="m3 back")
    finally:
        sw = m1.api("GET", "/swarm")
        spec = {**sw["Spec"], "EncryptionConfig": {"AutoLockManagers": False}}
        m1.api("POST", "/swarm/update", spec, version=sw["Version"]["Index"])
    _until(lambda: not seal.is_sealed(keyfile), what="m3's key in clear again")


def test_restart_of_every_node_brings_the_swarm_back(lab):
    target = lab.node("w1").node_id()
    write_label(lab.node("m1"), target, "before", "restart")
    for n in lab.nodes:
        lab.kill(n)
    for n in lab.nodes:
        lab.restart(n)
    lab.wait_ready(60)
    assert _until(lambda: lab.leader(), what="a leader")
    labels = lab.any_manager().api("GET", f"/nodes/{target}")["Spec"]["Labels"]
    assert labels.get("before") == "restart"


def test_removing_a_manager_or_a_live_node_is_refused(lab):
    m1 = lab.node("m1")
    with pytest.raises(errors.LabkitError, match="must be demoted"):
        m1.api("DELETE", f"/nodes/{lab.node('m2').node_id()}")
    with pytest.raises(errors.LabkitError, match="not down"):
        m1.api("DELETE", f"/nodes/{lab.node('w2').node_id()}")
    with pytest.raises(errors.LabkitError, match="manager"):
        m1.api("POST", "/swarm/leave")  # a manager leaves only with force


def test_a_workers_certificate_opens_no_etcd_port(lab):
    """etcd trusts only the store CA, whose certificates only managers hold."""
    import asyncio

    from labkit.engine.swarm.etcd.client import EtcdClient
    from labkit.ns.netns import netns

    w1, m1 = lab.node("w1"), lab.node("m1")
    certs = Path(w1.base, "root", "swarm", "certificates")
    key = Path(w1.base, "run", "w1.key")
    key.write_bytes(seal.read_material(certs / "swarm-node.key", None))
    key.chmod(0o600)
    store_roots = Path(m1.base, "root", "swarm", "certificates", "store-ca.crt")
    result: list[BaseException | object] = []

    async def read():
        async with EtcdClient([f"https://{m1.addr}:2379"], store_roots,
                              certs / "swarm-node.crt", key, timeout=3) as c:
            return await c.get("/lk/swarm/cluster")

    def in_ns():
        with netns(f"/run/netns/{w1.netns}"):
            try:
                result.append(asyncio.run(read()))
            except BaseException as err:  # noqa: BLE001 - inspected below
                result.append(err)

    t = threading.Thread(target=in_ns)
    t.start()
    t.join(30)
    key.unlink()
    assert result and isinstance(result[0], errors.LabkitError), result
