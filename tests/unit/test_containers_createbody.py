"""Docker create bodies checked like dockerd: Go's type errors, moby's semantic checks."""

from __future__ import annotations

import pytest

from labkit import errors
from labkit.engine.containers.createbody import parse_create, parse_json, validate_name


def test_minimal_body_gets_docker_defaults() -> None:
    spec = parse_create({"Image": "busybox", "Cmd": ["true"]}, "web")
    assert spec.name == "web" and spec.image == "busybox"
    assert spec.config["Cmd"] == ["true"] and spec.config["Entrypoint"] is None
    assert spec.host_config["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert spec.host_config["NetworkMode"] == "default"
    assert spec.warnings == []


def test_unknown_fields_are_ignored_and_strslice_accepts_a_string() -> None:
    spec = parse_create({"Image": "busybox", "Cmd": "echo hi", "NoSuchField": {"x": 1}})
    assert spec.config["Cmd"] == ["echo hi"]


@pytest.mark.parametrize("body,field,gotype", [
    ({"Cmd": 5}, "Cmd", "strslice.StrSlice"),
    ({"Tty": "yes"}, "Tty", "bool"),
    ({"Env": "A=1"}, "Env", "[]string"),
    ({"Labels": {"a": 1}}, "Labels", "string"),
    ({"HostConfig": {"Memory": "16m"}}, "HostConfig.Memory", "int64"),
    ({"HostConfig": {"RestartPolicy": {"MaximumRetryCount": "3"}}},
     "HostConfig.RestartPolicy.MaximumRetryCount", "int"),
])
def test_wrong_types_name_the_field_in_gos_words(body: dict, field: str, gotype: str) -> None:
    with pytest.raises(errors.InvalidArgumentError) as ei:
        parse_create({"Image": "busybox", **body})
    msg = ei.value.problem
    assert msg.startswith("json: cannot unmarshal ")
    assert f"Go struct field ContainerConfigWrapper.{field} of type {gotype}" in msg


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b'"x"'])
def test_malformed_json_is_invalid_argument(raw: bytes) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        parse_json(raw)


@pytest.mark.parametrize("policy,text", [
    ({"Name": "sometimes"}, "invalid restart policy 'sometimes'"),
    ({"Name": "on-failure", "MaximumRetryCount": -1}, "maximum retry count cannot be negative"),
    ({"Name": "always", "MaximumRetryCount": 2}, "cannot be used with restart policy 'always'"),
])
def test_invalid_restart_policies(policy: dict, text: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=text):
        parse_create({"Image": "busybox", "HostConfig": {"RestartPolicy": policy}})


def test_autoremove_with_always_conflicts() -> None:
    with pytest.raises(errors.ConflictError, match="conflicting options"):
        parse_create({"Image": "busybox", "HostConfig": {
            "AutoRemove": True, "RestartPolicy": {"Name": "always"}}})


def test_on_failure_with_count_is_kept() -> None:
    spec = parse_create({"Image": "busybox", "HostConfig": {
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}})
    assert spec.host_config["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


@pytest.mark.parametrize("host,cls", [
    ({"KernelMemory": 1 << 30}, errors.InvalidArgumentError),
    ({"VolumesFrom": ["other"]}, errors.UnsupportedError),
    ({"Binds": ["a/b:/b"]}, errors.InvalidArgumentError),
    ({"NetworkMode": "container:"}, errors.InvalidArgumentError),
    ({"PortBindings": {"80/sctp": [{"HostPort": "80"}]}}, errors.InvalidArgumentError),
    ({"PortBindings": {"80/tcp": [{"HostPort": "8080-8090"}]}}, errors.InvalidArgumentError),
    ({"PortBindings": {"80/tcp": [{"HostPort": "70000"}]}}, errors.InvalidArgumentError),
    ({"PortBindings": {"80/tcp": [{"HostIp": "nope", "HostPort": "80"}]}},
     errors.InvalidArgumentError),
    ({"Memory": 1024}, errors.InvalidArgumentError),
    ({"Memory": 64 << 20, "MemorySwap": 32 << 20}, errors.InvalidArgumentError),
    ({"NanoCpus": 10**9, "CpuQuota": 50000}, errors.InvalidArgumentError),
    ({"NanoCpus": 10**15}, errors.InvalidArgumentError),
    ({"CapAdd": ["NO_SUCH_CAP"]}, errors.InvalidArgumentError),
])
def test_semantic_refusals(host: dict, cls: type) -> None:
    with pytest.raises(cls):
        parse_create({"Image": "busybox", "HostConfig": host})


def test_networking_config_is_checked_and_kept() -> None:
    spec = parse_create({"Image": "b", "HostConfig": {"NetworkMode": "mynet"},
                         "NetworkingConfig": {"EndpointsConfig": {"mynet": {
                             "IPAMConfig": {"IPv4Address": "10.1.0.5"}, "Aliases": ["db"]}}}})
    assert not spec.warnings and spec.host_config["NetworkMode"] == "mynet"
    assert spec.endpoints["mynet"]["IPAMConfig"] == {"IPv4Address": "10.1.0.5"}
    assert spec.endpoints["mynet"]["Aliases"] == ["db"]
    with pytest.raises(errors.InvalidArgumentError, match="DriverOpts"):
        parse_create({"Image": "b", "NetworkingConfig": {"EndpointsConfig": {
            "n": {"DriverOpts": {"x": "y"}}}}})
    with pytest.raises(errors.InvalidArgumentError, match="NetworkDisabled"):
        parse_create({"Image": "b", "NetworkDisabled": True})


def test_caps_are_normalized() -> None:
    spec = parse_create({"Image": "b", "HostConfig": {"CapAdd": ["net_admin"], "CapDrop": "ALL"}})
    assert spec.host_config["CapAdd"] == ["CAP_NET_ADMIN"]
    assert spec.host_config["CapDrop"] == ["ALL"]


@pytest.mark.parametrize("name,ok", [("web", True), ("/web", True), ("a.b-c_d", True),
                                     ("x", False), ("-x", False), ("a b", False)])
def test_container_names(name: str, ok: bool) -> None:
    if ok:
        assert validate_name(name) == name.lstrip("/")
    else:
        with pytest.raises(errors.InvalidArgumentError, match="Invalid container name"):
            validate_name(name)


def test_missing_image() -> None:
    with pytest.raises(errors.InvalidArgumentError):
        parse_create({"Cmd": ["true"]})


def test_log_config() -> None:
    spec = parse_create({"Image": "b", "HostConfig": {"LogConfig": {
        "Type": "json-file", "Config": {"max-size": "1k"}}}})
    assert spec.host_config["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1k"}}
    assert parse_create({"Image": "b"}).host_config["LogConfig"]["Type"] == "json-file"
    with pytest.raises(errors.UnsupportedError):
        parse_create({"Image": "b", "HostConfig": {"LogConfig": {"Type": "journald"}}})
