"""swarm.cluster.apply_update: what each change of POST /swarm/update does to the cluster
object, without a swarm."""

from __future__ import annotations

import pytest

from labkit import errors
from labkit.engine.swarm import ca, cluster, seal, tokens
from labkit.engine.swarm.spec import ClusterSpec, UpdateFlags


def _cluster(autolock: bool = False) -> dict:
    root = ca.RootCA.create()
    spec = ClusterSpec.from_docker({"EncryptionConfig": {"AutoLockManagers": autolock}})
    return {"ID": ca.new_id(), "Spec": spec.to_docker(),
            "JoinTokens": {"Worker": tokens.make(root.cert_pem),
                           "Manager": tokens.make(root.cert_pem)},
            "_RootCA": {"Cert": root.cert_pem.decode(), "Key": (root.key_pem or b"").decode()},
            "_UnlockKey": seal.new_unlock_key() if autolock else None,
            "RootRotationInProgress": False}


def _spec(c: dict, **changes) -> ClusterSpec:
    """What the Docker CLI sends: the whole Spec from GET /swarm, changed."""
    return ClusterSpec.merge_update(ClusterSpec.from_docker(c["Spec"]),
                                    {**c["Spec"], **changes})


def test_token_rotation_changes_the_secret_and_keeps_the_pinned_root() -> None:
    c = _cluster()
    out = cluster.apply_update(c, _spec(c), UpdateFlags(rotate_worker_token=True))
    old, new = tokens.parse(c["JoinTokens"]["Worker"]), tokens.parse(out["JoinTokens"]["Worker"])
    assert new.secret != old.secret and new.digest == old.digest
    assert out["JoinTokens"]["Manager"] == c["JoinTokens"]["Manager"]
    assert c["JoinTokens"]["Worker"] == old.render()  # the input is left as it was


def test_autolock_on_makes_a_key_rotation_changes_it_off_drops_it() -> None:
    c = _cluster()
    on = cluster.apply_update(c, _spec(c, EncryptionConfig={"AutoLockManagers": True}),
                              UpdateFlags())
    key = on["_UnlockKey"]
    assert key and key.startswith("SWMKEY-1-")
    again = cluster.apply_update(on, _spec(on), UpdateFlags())
    assert again["_UnlockKey"] == key
    rotated = cluster.apply_update(on, _spec(on), UpdateFlags(rotate_unlock_key=True))
    assert rotated["_UnlockKey"] not in (None, key)
    off = cluster.apply_update(on, _spec(on, EncryptionConfig={"AutoLockManagers": False}),
                               UpdateFlags())
    assert off["_UnlockKey"] is None


@pytest.mark.parametrize("key,value", [("ElectionTick", 20), ("HeartbeatTick", 2),
                                       ("SnapshotInterval", 500), ("KeepOldSnapshots", 3)])
def test_raft_settings_fixed_at_member_start_are_refused(key: str, value: int) -> None:
    c = _cluster()
    raft = {**c["Spec"]["Raft"], key: value}
    with pytest.raises(errors.InvalidArgumentError, match=f"Raft.{key}"):
        cluster.apply_update(c, _spec(c, Raft=raft), UpdateFlags())


def test_log_entries_for_slow_followers_only_the_default() -> None:
    c = _cluster()
    raft = {**c["Spec"]["Raft"], "LogEntriesForSlowFollowers": 900}
    with pytest.raises(errors.InvalidArgumentError, match="LogEntriesForSlowFollowers"):
        cluster.apply_update(c, _spec(c, Raft=raft), UpdateFlags())


def test_force_rotate_makes_a_new_root_cross_signed_by_the_old() -> None:
    c = _cluster()
    ca_cfg = {**c["Spec"]["CAConfig"], "ForceRotate": 1}
    out = cluster.apply_update(c, _spec(c, CAConfig=ca_cfg), UpdateFlags())
    old, new = ca.RootCA(c["_RootCA"]["Cert"].encode()), ca.RootCA(
        out["_RootCA"]["Cert"].encode(), out["_RootCA"]["Key"].encode())
    assert new.digest() != old.digest() and out["RootRotationInProgress"] is True
    assert out["_OldRoots"] == [c["_RootCA"]["Cert"]]
    # a node certificate of the new root, with the cross-signed intermediate, verifies
    # against the old root alone: nodes that have not renewed yet accept it
    nid = ca.new_id()
    _, csr = ca.new_key_and_csr(nid)
    cert = new.issue(csr, node_id=nid, role="worker", cluster_id=ca.new_id())
    old.verify(cert + out["_RootCA"]["Cross"].encode())
    for kind in ("Worker", "Manager"):
        t_old, t_new = (tokens.parse(x["JoinTokens"][kind]) for x in (c, out))
        assert t_new.secret == t_old.secret and tokens.matches_ca(
            out["JoinTokens"][kind], new.cert_pem)


def test_rotation_to_the_current_root_or_of_an_external_ca_is_refused() -> None:
    c = _cluster()
    same = {**c["Spec"]["CAConfig"], "SigningCACert": c["_RootCA"]["Cert"],
            "SigningCAKey": c["_RootCA"]["Key"]}
    with pytest.raises(errors.InvalidArgumentError, match="current root"):
        cluster.apply_update(c, _spec(c, CAConfig=same), UpdateFlags())
    ext = {**c["Spec"]["CAConfig"], "ExternalCAs": [
        {"Protocol": "cfssl", "URL": "https://127.0.0.1:8888"}]}
    with pytest.raises(errors.UnsupportedError, match="external CA"):
        cluster.apply_update(c, _spec(c, CAConfig=ext), UpdateFlags())
