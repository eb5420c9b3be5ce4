"""POST /swarm/update on the cluster object: what each change of the Spec does.

Pure functions over the store's cluster object (a dict; store.py keeps it sealed), so every
rule here is tested without a swarm: the Raft settings etcd fixes at member start, join
token rotation (a new secret, the same pinned root), autolock on, off and key rotation, and a
root CA rotation (a new root, cross-signed by the old, both trusted until the leader ends it:
manager._finish_rotation).
"""

from __future__ import annotations

import copy
from typing import Any

from labkit import errors
from labkit.engine.swarm import ca, objects, seal, tokens
from labkit.engine.swarm.spec import ClusterSpec, UpdateFlags

__all__ = ["apply_update", "ca_identity", "check_raft", "rotate_root"]

Obj = dict[str, Any]
# etcd takes these when a member starts (--heartbeat-interval, --election-timeout,
# --snapshot-count, --max-snapshots): changing them later would need every member restarted
FIXED_AT_START = ("ElectionTick", "HeartbeatTick", "SnapshotInterval", "KeepOldSnapshots")


def apply_update(cluster: Obj, spec: ClusterSpec, flags: UpdateFlags) -> Obj:
    """The cluster object after ``spec`` and ``flags`` (a copy; the input is untouched)."""
    cluster = copy.deepcopy(cluster)
    new = spec.to_docker()
    old = cluster["Spec"]
    check_raft(new)
    for key in FIXED_AT_START:
        was, want = old.get("Raft", {}).get(key), new.get("Raft", {}).get(key)
        if want != was:
            raise errors.InvalidArgumentError(
                f"Raft.{key}", f"cannot change from {was} to {want} after swarm init: "
                "etcd takes its Raft timing and snapshot policy when a member starts")
    if ca_identity(new) != ca_identity(old) or spec.signing_ca_cert:
        rotate_root(cluster, spec)
    root = cluster["_RootCA"]["Cert"].encode()
    if flags.rotate_worker_token:
        cluster["JoinTokens"]["Worker"] = tokens.make(root)
    if flags.rotate_manager_token:
        cluster["JoinTokens"]["Manager"] = tokens.make(root)
    if not new.get("EncryptionConfig", {}).get("AutoLockManagers"):
        cluster["_UnlockKey"] = None
    elif not cluster.get("_UnlockKey") or flags.rotate_unlock_key:
        cluster["_UnlockKey"] = seal.new_unlock_key()
    cluster["Spec"] = new
    cluster["UpdatedAt"] = objects.now()
    return cluster


def rotate_root(cluster: Obj, spec: ClusterSpec) -> None:
    """`docker swarm ca --rotate [--ca-cert --ca-key]`: a new root (made here, or the
    one given); nodes renew onto it while both are trusted, and the old root's
    signature over the new root's key (cross-signed) lets nodes that have not yet
    heard of it accept the new certificates.  The leader ends the rotation when every
    live node holds a new certificate (manager._finish_rotation)."""
    if spec.external_cas and not spec.signing_ca_cert:
        raise errors.UnsupportedError(
            "root CA rotation", "this swarm's certificates come from an external CA",
            hint="give the new root with --ca-cert (and have the external CA sign under it)")
    old = ca.RootCA(cluster["_RootCA"]["Cert"].encode(),
                    (cluster["_RootCA"].get("Key") or "").encode() or None)
    if spec.signing_ca_cert:
        new = ca.RootCA(spec.signing_ca_cert.encode(),
                        spec.signing_ca_key.encode() if spec.signing_ca_key else None)
        if new.digest() == old.digest():
            raise errors.InvalidArgumentError("SigningCACert", "is the current root already")
    else:
        new = ca.RootCA.create()
    cross = old.cross_sign(new) if old.can_sign else b""
    olds = [cluster["_RootCA"]["Cert"]]
    cluster["_RootCA"] = {"Cert": new.cert_pem.decode(),
                          "Key": new.key_pem.decode() if new.key_pem else None,
                          "Cross": cross.decode()}
    cluster["_OldRoots"] = olds
    cluster["RootRotationInProgress"] = True
    for kind in ("Worker", "Manager"):  # the secrets stay; the pinned digest changes
        secret = tokens.parse(cluster["JoinTokens"][kind]).secret
        cluster["JoinTokens"][kind] = tokens.make(new.cert_pem, secret)


def check_raft(spec: Obj) -> None:
    """Spec.Raft.LogEntriesForSlowFollowers has no etcd 3.4 setting (etcd keeps a fixed
    catch-up window for a slow follower before it sends a snapshot): only swarmkit's
    default, which the CLI always sends back, is taken, and it means etcd's window."""
    n = spec.get("Raft", {}).get("LogEntriesForSlowFollowers")
    if n not in (None, 0, 500):
        raise errors.InvalidArgumentError(
            "Raft.LogEntriesForSlowFollowers", f"{n}: etcd 3.4 has no such setting; "
            "labkit takes only the default (500)")


def ca_identity(spec: Obj) -> tuple[Any, ...]:
    """What, changed, means a new root: ForceRotate, a given root, other external CAs."""
    c = spec.get("CAConfig", {})
    return (c.get("ForceRotate") or 0, c.get("SigningCACert") or "",
            tuple((e.get("CACert") or "") for e in c.get("ExternalCAs") or []))
