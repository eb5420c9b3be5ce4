"""labkit.engine.swarm.spec: Docker's swarm/node bodies parsed, defaulted, merged, refused
(each refusal names its field), node filters."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from labkit import errors
from labkit.engine.swarm import spec as sp
from labkit.engine.swarm.spec import (
    ClusterSpec,
    HostPort,
    InitRequest,
    JoinRequest,
    NodeSpec,
    UnlockRequest,
    UpdateFlags,
    match_node,
    parse_addr,
    parse_version,
)

# What the Docker CLI (20.10 and 28.2.2) posts for `docker swarm init --autolock`
# (shared/reference/docker-api.md).
INIT = {"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "", "DataPathAddr": "",
        "DataPathPort": 0, "ForceNewCluster": False,
        "Spec": {"Labels": None, "Orchestration": {}, "Raft": {"ElectionTick": 0,
                                                               "HeartbeatTick": 0},
                 "Dispatcher": {}, "CAConfig": {}, "TaskDefaults": {},
                 "EncryptionConfig": {"AutoLockManagers": True}},
        "AutoLockManagers": True, "Availability": "", "DefaultAddrPool": None,
        "SubnetSize": 24}
# ... and for `docker swarm update --cert-expiry 48h` (the whole Spec sent back).
UPDATE = {"Name": "default", "Labels": None,
          "Orchestration": {"TaskHistoryRetentionLimit": 5},
          "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0,
                   "LogEntriesForSlowFollowers": 500, "ElectionTick": 0, "HeartbeatTick": 0},
          "Dispatcher": {"HeartbeatPeriod": 5000000000},
          "CAConfig": {"NodeCertExpiry": 172800000000000}, "TaskDefaults": {},
          "EncryptionConfig": {"AutoLockManagers": False}}
JOIN = {"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "", "DataPathAddr": "",
        "RemoteAddrs": ["127.0.0.1:2377"], "JoinToken": "SWMTKN-1-secret", "Availability": ""}
DOCKER_DEFAULT_SPEC = {
    "Name": "default", "Labels": {}, "Orchestration": {"TaskHistoryRetentionLimit": 5},
    "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0,
             "LogEntriesForSlowFollowers": 500, "ElectionTick": 10, "HeartbeatTick": 1},
    "Dispatcher": {"HeartbeatPeriod": 5000000000},
    "CAConfig": {"NodeCertExpiry": 7776000000000000}, "TaskDefaults": {},
    "EncryptionConfig": {"AutoLockManagers": False}}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``body`` with the dotted ``path`` set to ``value``."""
    out = copy.deepcopy(body)
    node = out
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return out


def test_docker_cli_init_body_gets_swarmkit_defaults() -> None:
    req = InitRequest.from_docker(INIT)
    assert req.listen_addr == HostPort("0.0.0.0", 2377) and req.advertise_addr is None
    assert req.availability == "active" and req.autolock_managers
    assert req.spec.to_docker() == _with(DOCKER_DEFAULT_SPEC,
                                         "EncryptionConfig.AutoLockManagers", True)
    assert ClusterSpec.from_docker(None).to_docker() == DOCKER_DEFAULT_SPEC
    assert ClusterSpec.from_docker(DOCKER_DEFAULT_SPEC) == ClusterSpec()


def test_autolock_is_on_when_either_flag_is() -> None:
    # docker-py sets only the spec's flag, a bare API client only the top-level one
    assert InitRequest.from_docker({"AutoLockManagers": True}).spec.autolock_managers
    req = InitRequest.from_docker({"Spec": {"EncryptionConfig": {"AutoLockManagers": True}}})
    assert req.autolock_managers and req.spec.autolock_managers
    assert not InitRequest.from_docker({}).autolock_managers


def test_init_addresses_and_availability() -> None:
    req = InitRequest.from_docker({"ListenAddr": "10.1.2.3", "AdvertiseAddr": "10.1.2.3",
                                   "Availability": "DRAIN"})
    assert str(req.listen_addr) == "10.1.2.3:2377" and str(req.advertise_addr) == "10.1.2.3:2377"
    assert req.availability == "drain"
    req = InitRequest.from_docker({"ListenAddr": ":4000", "AdvertiseAddr": "[fd00::1]"})
    assert str(req.listen_addr) == "0.0.0.0:4000"
    assert str(req.advertise_addr) == "[fd00::1]:4000"  # the listen port, as dockerd does


@pytest.mark.parametrize(("text", "want"), [
    ("10.0.0.1", "10.0.0.1:2377"), ("10.0.0.1:7946", "10.0.0.1:7946"), (":99", "0.0.0.0:99"),
    ("tcp://10.0.0.1:5", "10.0.0.1:5"), ("::1", "[::1]:2377"), ("[::1]:9", "[::1]:9"),
    ("[fe80::1]", "[fe80::1]:2377")])
def test_parse_addr(text: str, want: str) -> None:
    assert str(parse_addr(text, "ListenAddr")) == want


@pytest.mark.parametrize("text", ["eth0", "eth0:2377", "10.0.0.1:", "10.0.0.1:0",
                                  "10.0.0.1:65536", "10.0.0.1:x", "[::1", "[::1]x", "1.2.3",
                                  "10.0.0.1:-1", "10.0.0.1:\u0663"])  # an Arabic-Indic 3
def test_parse_addr_refuses(text: str) -> None:
    with pytest.raises(errors.InvalidArgumentError) as exc:
        parse_addr(text, "ListenAddr")
    assert exc.value.what == "ListenAddr" and "ListenAddr" in str(exc.value)


# (dotted path in the init body, value, the field the error must name)
REFUSED_INIT = [
    ("DataPathAddr", "10.0.0.1", "DataPathAddr"),
    ("DataPathPort", 2377, "DataPathPort"),           # issue 13: accepted, but not 2377
    ("DefaultAddrPool", ["10.20.0.0/16", "10.20.1.0/24"], "DefaultAddrPool"),  # overlap
    ("SubnetSize", 30, "SubnetSize"),
    ("ForceNewCluster", True, "ForceNewCluster"),
    ("Bogus", 1, "Bogus"),
    ("ListenAddr", "eth0", "ListenAddr"),
    ("AdvertiseAddr", "0.0.0.0", "AdvertiseAddr"),
    ("Availability", "sometimes", "Availability"),
    ("Spec.Name", "mine", "Spec.Name"),
    ("Spec.Extra", {}, "Spec.Extra"),
    ("Spec.Raft.Frequency", 3, "Spec.Raft.Frequency"),
    ("Spec.Raft.ElectionTick", 1, "Spec.Raft.ElectionTick"),       # not > HeartbeatTick 1
    ("Spec.Raft.SnapshotInterval", -1, "Spec.Raft.SnapshotInterval"),
    ("Spec.Raft.KeepOldSnapshots", "2", "Spec.Raft.KeepOldSnapshots"),
    ("Spec.Orchestration.TaskHistoryRetentionLimit", -1,
     "Spec.Orchestration.TaskHistoryRetentionLimit"),
    ("Spec.Dispatcher.HeartbeatPeriod", -5, "Spec.Dispatcher.HeartbeatPeriod"),
    ("Spec.CAConfig.NodeCertExpiry", 3599 * 10**9, "Spec.CAConfig.NodeCertExpiry"),
    ("Spec.CAConfig.ExternalCAs", [{"Protocol": "acme", "URL": "https://ca"}],
     "Spec.CAConfig.ExternalCAs[0].Protocol"),
    ("Spec.CAConfig.ExternalCAs", [{"Protocol": "cfssl", "URL": "ftp://ca"}],
     "Spec.CAConfig.ExternalCAs[0].URL"),
    ("Spec.CAConfig.ExternalCAs", [{"Protocol": "cfssl", "URL": "https://ca", "CACert": "x"}],
     "Spec.CAConfig.ExternalCAs[0].CACert"),
    ("Spec.CAConfig.SigningCAKey", "-----BEGIN EC PRIVATE KEY-----\n",
     "Spec.CAConfig.SigningCAKey"),                                 # a key without its cert
    ("Spec.TaskDefaults.LogDriver", {"Name": "splunk"}, "Spec.TaskDefaults.LogDriver.Name"),
    ("Spec.EncryptionConfig.AutoLockManagers", "yes", "Spec.EncryptionConfig.AutoLockManagers"),
    ("Spec.Labels", {"a": 1}, "Spec.Labels"),
]


@pytest.mark.parametrize(("path", "value", "field"), REFUSED_INIT,
                         ids=[f"{p}={v!r}" for p, v, _ in REFUSED_INIT])
def test_init_refuses_what_the_node_does_not_apply(path: str, value: Any, field: str) -> None:
    with pytest.raises(errors.InvalidArgumentError) as exc:
        InitRequest.from_docker(_with(INIT, path, value))
    assert exc.value.what == field


def test_refusal_texts() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="within range 1024 to 49151"):
        InitRequest.from_docker(_with(INIT, "DataPathPort", 80))
    with pytest.raises(errors.InvalidArgumentError,
                       match="minimum certificate expiry time is: 1h0m0s"):
        ClusterSpec.from_docker({"CAConfig": {"NodeCertExpiry": 60 * 10**9}})
    ClusterSpec.from_docker({"CAConfig": {"NodeCertExpiry": 3600 * 10**9}})  # exactly 1h is fine
    with pytest.raises(errors.InvalidArgumentError, match='must be named "default"'):
        ClusterSpec.from_docker({"Name": "x"})


def test_log_driver_kept_only_when_labkit_has_it() -> None:
    spec = ClusterSpec.from_docker({"TaskDefaults": {"LogDriver": {
        "Name": "json-file", "Options": {"max-size": "10m"}}}})
    assert (spec.log_driver, spec.log_options) == ("json-file", {"max-size": "10m"})
    assert spec.to_docker()["TaskDefaults"] == {"LogDriver": {"Name": "json-file",
                                                              "Options": {"max-size": "10m"}}}
    with pytest.raises(errors.InvalidArgumentError):  # an option json-file does not take
        ClusterSpec.from_docker({"TaskDefaults": {"LogDriver": {
            "Name": "json-file", "Options": {"no-such-opt": "1"}}}})


def test_external_ca_round_trip() -> None:
    ca = {"Protocol": "CFSSL", "URL": "https://127.0.0.1:8888/api/v1/cfssl/sign",
          "Options": {"profile": "node"}, "CACert": PEM}
    spec = ClusterSpec.from_docker({"CAConfig": {"ExternalCAs": [ca]}})
    assert spec.to_docker()["CAConfig"]["ExternalCAs"] == [dict(ca, Protocol="cfssl")]
    assert ClusterSpec.from_docker(spec.to_docker()) == spec


def test_update_merges_like_moby() -> None:
    current = ClusterSpec.from_docker({
        "Labels": {"a": "1"}, "Raft": {"ElectionTick": 20, "HeartbeatTick": 2,
                                       "KeepOldSnapshots": 3},
        "Orchestration": {"TaskHistoryRetentionLimit": 9},
        "CAConfig": {"ForceRotate": 2, "ExternalCAs": [{"Protocol": "cfssl",
                                                        "URL": "https://ca"}]},
        "EncryptionConfig": {"AutoLockManagers": True}})
    new = ClusterSpec.merge_update(current, UPDATE)
    # 0 means unset: the current value stays
    assert (new.election_tick, new.heartbeat_tick) == (20, 2)
    # what the body sends is taken, even 0 for a pointer field
    assert new.node_cert_expiry == 48 * 3600 * 10**9 and new.keep_old_snapshots == 0
    assert new.task_history_retention_limit == 5
    # the whole spec is sent back: labels, external CAs and autolock are the body's
    assert new.labels == {} and new.external_cas == () and not new.autolock_managers
    assert new.force_rotate == 2  # absent: kept (a change asks for a new root CA)
    assert ClusterSpec.merge_update(current, {}).task_history_retention_limit == 9
    # a round trip of GET /swarm's Spec changes nothing
    assert ClusterSpec.merge_update(current, current.to_docker()) == current


def test_signing_root_is_redacted_and_kept() -> None:
    key = "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"
    spec = ClusterSpec.from_docker({"CAConfig": {"SigningCACert": PEM, "SigningCAKey": key}})
    assert "SigningCAKey" not in str(spec.to_docker())
    assert spec.to_docker(secrets=True)["CAConfig"]["SigningCAKey"] == key
    # GET /swarm leaves them out; sending that back keeps them
    assert ClusterSpec.merge_update(spec, spec.to_docker()).signing_ca_key == key
    # a new cert alone (an external CA will sign) does not inherit the current key
    new = ClusterSpec.merge_update(spec, {"CAConfig": {"SigningCACert": PEM + "\n"}})
    assert (new.signing_ca_cert, new.signing_ca_key) == (PEM + "\n", "")


def test_replace_checks_again() -> None:
    assert ClusterSpec().replace(election_tick=30).election_tick == 30
    with pytest.raises(errors.InvalidArgumentError):
        ClusterSpec().replace(node_cert_expiry=1)


def test_join_request_and_its_secret() -> None:
    req = JoinRequest.from_docker(JOIN)
    assert req.remote_addrs == (HostPort("127.0.0.1", 2377),) and req.join_token.endswith("t")
    assert "secret" not in repr(req)
    req = JoinRequest.from_docker(dict(JOIN, RemoteAddrs=["manager-1.lab", "[fd00::2]:2400"]))
    assert [str(a) for a in req.remote_addrs] == ["manager-1.lab:2377", "[fd00::2]:2400"]
    for bad in ({"JoinToken": ""}, {"JoinToken": None}, {"JoinToken": "secret\n\x00"},
                {"RemoteAddrs": []}, {"RemoteAddrs": "1.2.3.4"}, {"RemoteAddrs": ["0.0.0.0"]},
                {"RemoteAddrs": ["bad_host!"]}, {"DataPathAddr": "10.0.0.1"}, {"Extra": 1},
                {"AdvertiseAddr": "::"}, {"ListenAddr": "node1"}):
        with pytest.raises(errors.InvalidArgumentError) as exc:
            JoinRequest.from_docker(dict(JOIN, **bad))
        assert exc.value.what == next(iter(bad)), bad
        assert "secret" not in str(exc.value)


def test_unlock_request() -> None:
    req = UnlockRequest.from_docker({"UnlockKey": "SWMKEY-1-abc\n"})
    assert req.key == "SWMKEY-1-abc" and "abc" not in repr(req)
    for bad in ({}, {"UnlockKey": ""}, {"UnlockKey": 5}, {"UnlockKey": "k", "Other": 1}):
        with pytest.raises(errors.InvalidArgumentError):
            UnlockRequest.from_docker(bad)


def test_update_flags_and_version() -> None:
    q = {"rotateManagerToken": "false", "rotateManagerUnlockKey": "0",
         "rotateWorkerToken": "true", "version": "10"}
    assert UpdateFlags.from_query(q) == UpdateFlags(rotate_worker_token=True)
    assert UpdateFlags.from_query({"rotateManagerUnlockKey": "1"}).rotate_unlock_key
    assert parse_version(q) == 10
    with pytest.raises(errors.InvalidArgumentError) as exc:
        UpdateFlags.from_query({"rotateWorkerToken": "yes"})
    assert exc.value.what == "rotateWorkerToken"
    for bad in ({}, {"version": ""}, {"version": "-1"}, {"version": "1.5"},
                {"version": "١"}):  # an Arabic-Indic digit: isdigit() but not ASCII
        with pytest.raises(errors.InvalidArgumentError) as exc:
            parse_version(bad)
        assert exc.value.what == "version"


def test_node_spec() -> None:
    body = {"Name": "", "Labels": {"zone": "a"}, "Role": "Manager", "Availability": "drain"}
    spec = NodeSpec.from_docker(body)
    assert spec == NodeSpec("manager", "drain", "", {"zone": "a"})
    assert spec.to_docker() == {"Labels": {"zone": "a"}, "Role": "manager",
                                "Availability": "drain"}
    for key, value in (("Role", "boss"), ("Role", None), ("Availability", "off"),
                       ("Labels", ["a"]), ("Membership", "accepted")):
        with pytest.raises(errors.InvalidArgumentError) as exc:
            NodeSpec.from_docker(dict(body, **{key: value}))
        assert exc.value.what == key


NODE = {"ID": "abc123def456ghi789jkl0mno", "Spec": {"Role": "manager", "Availability": "active",
                                                    "Labels": {"zone": "a", "ssd": ""}},
        "Description": {"Hostname": "lk-node1", "Engine": {"Labels": {"os": "debian"}}},
        "Status": {"State": "ready"}}


@pytest.mark.parametrize(("flt", "hit"), [
    ({}, True), ({"id": ["abc"]}, True), ({"id": ["xyz", "abc1"]}, True), ({"id": ["bc"]}, False),
    ({"name": ["lk-no"]}, True), ({"name": ["node1"]}, False),
    ({"role": ["manager"]}, True), ({"role": ["WORKER"]}, False),
    ({"role": ["worker", "manager"]}, True),
    ({"membership": ["accepted"]}, True), ({"membership": ["pending"]}, False),
    ({"node.label": ["zone"]}, True), ({"node.label": ["zone=a", "ssd"]}, True),
    ({"node.label": ["zone=b"]}, False), ({"node.label": ["zone", "gpu"]}, False),
    ({"label": ["os=debian"]}, True), ({"label": ["zone"]}, False),
    ({"role": ["manager"], "name": ["other"]}, False),
])
def test_match_node(flt: dict[str, list[str]], hit: bool) -> None:
    assert match_node(NODE, flt) is hit


@pytest.mark.parametrize(("flt", "text"), [
    ({"bogus": ["1"]}, "invalid filter 'bogus'"), ({"role": ["boss"]}, "Invalid role filter"),
    ({"membership": ["maybe"]}, "Invalid membership filter")])
def test_node_filters_refused(flt: dict[str, list[str]], text: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=text):
        match_node(NODE, flt)
    with pytest.raises(errors.InvalidArgumentError, match=text):
        sp.check_node_filters(flt)


def test_inactive_info_is_dockerds() -> None:
    assert sp.inactive_info() == {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                                  "ControlAvailable": False, "Error": "",
                                  "RemoteManagers": None}
    assert sp.inactive_info() is not sp.inactive_info()

