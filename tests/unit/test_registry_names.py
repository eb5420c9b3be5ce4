"""Registry names and endpoints as dockerd resolves them; /info's RegistryConfig; challenges."""

from __future__ import annotations

import base64
import json

import pytest

from labkit import errors
from labkit.engine.daemonconfig import parse
from labkit.engine.registry import manifest as M
from labkit.engine.registry.auth import AuthConfig, TokenCache, parse_challenge
from labkit.engine.registry.endpoints import Endpoint, endpoints, is_insecure, registry_config
from labkit.engine.registry.reference import Reference
from labkit.engine.registry.reference import parse as parse_ref

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("name, tag, want, familiar", [
    ("busybox", "", Reference("docker.io", "library/busybox", "latest"), "busybox:latest"),
    ("docker.io/library/busybox:1", "", Reference("docker.io", "library/busybox", "1"),
     "busybox:1"),
    ("index.docker.io/lk/x", "", Reference("docker.io", "lk/x", "latest"), "lk/x:latest"),
    ("busybox", "2", Reference("docker.io", "library/busybox", "2"), "busybox:2"),
    ("127.0.0.1:5000/a/b:3", "", Reference("127.0.0.1:5000", "a/b", "3"),
     "127.0.0.1:5000/a/b:3"),
    ("localhost/x", "", Reference("localhost", "x", "latest"), "localhost/x:latest"),
    ("busybox", D, Reference("docker.io", "library/busybox", None, D), f"busybox@{D}"),
    (f"reg.lan/x@{D}", "", Reference("reg.lan", "x", None, D), f"reg.lan/x@{D}"),
])
def test_references_normalised_as_docker(name: str, tag: str, want: Reference,
                                         familiar: str) -> None:
    got = parse_ref(name, tag)
    assert got == want and got.familiar == familiar


@pytest.mark.parametrize("bad", ["Busybox", "x@sha256:12", "a//b", "x:!"])
def test_bad_references_refused(bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="invalid reference format"):
        parse_ref(bad)


def test_docker_io_goes_to_mirrors_first_then_hub() -> None:
    cfg = parse({"registry-mirrors": ["http://127.0.0.1:5000", "https://m.example"]})
    assert endpoints("docker.io", cfg) == [
        Endpoint("http://127.0.0.1:5000", False, True), Endpoint("https://m.example", True, True),
        Endpoint("https://registry-1.docker.io")]


def test_http_only_for_insecure_and_loopback() -> None:
    cfg = parse({"insecure-registries": ["reg.lan:5000", "10.9.0.0/16"]})
    assert endpoints("reg.lan:5000", cfg) == [Endpoint("https://reg.lan:5000", False),
                                              Endpoint("http://reg.lan:5000", False)]
    assert endpoints("other.lan:5000", cfg) == [Endpoint("https://other.lan:5000")]
    assert is_insecure("10.9.3.4:443", cfg) and not is_insecure("10.8.3.4", cfg)
    assert is_insecure("127.0.0.1:5000", cfg) and is_insecure("[::1]:5000", cfg)
    assert is_insecure("localhost:5000", cfg)  # resolves to loopback, as moby's lookup
    assert not is_insecure("192.0.2.1:5000", cfg)


def test_info_registry_config() -> None:
    cfg = parse({"registry-mirrors": ["http://127.0.0.1:5000"],
                 "insecure-registries": ["reg.lan:5000", "10.9.0.0/16"]})
    rc = registry_config(cfg)
    assert rc["Mirrors"] == ["http://127.0.0.1:5000/"]
    assert rc["InsecureRegistryCIDRs"] == ["127.0.0.0/8", "::1/128", "10.9.0.0/16"]
    assert rc["IndexConfigs"]["docker.io"] == {"Name": "docker.io",
                                               "Mirrors": ["http://127.0.0.1:5000/"],
                                               "Secure": True, "Official": True}
    assert rc["IndexConfigs"]["reg.lan:5000"]["Secure"] is False


def test_registry_auth_header_and_challenges() -> None:
    doc = {"username": "alice", "password": "pw", "serveraddress": "127.0.0.1:5000"}
    hdr = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    a = AuthConfig.from_header(hdr)
    assert (a.username, a.password, a.serveraddress) == ("alice", "pw", "127.0.0.1:5000")
    assert "pw" not in repr(a)
    assert AuthConfig.from_header("e30=").empty
    with pytest.raises(errors.InvalidArgumentError, match="X-Registry-Auth") as ei:
        AuthConfig.from_header("not base64!!")
    assert "base64!!" not in str(ei.value)
    ch = parse_challenge('Bearer realm="https://auth.lan/token",service="reg",'
                         'scope="repository:a/b:pull,push"')
    assert ch.scheme == "bearer" and ch.params == {
        "realm": "https://auth.lan/token", "service": "reg", "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x y"').params == {"realm": "x y"}
    cache = TokenCache()
    cache.put(("r", "s", "x"), "t", 0)
    assert cache.get(("r", "s", "x")) == "t"  # at least a second
    cache.put(("r", "s", "y"), "t", -100)
    cache._tokens[("r", "s", "y")] = ("t", 0.0)
    assert cache.get(("r", "s", "y")) is None


def test_platform_matching() -> None:
    entries = [M.Descriptor(M.DOCKER_MANIFEST, D, 1, M.Platform("linux", "arm", "v6")),
               M.Descriptor(M.DOCKER_MANIFEST, "sha256:" + "cd" * 32, 1,
                            M.Platform("linux", "arm", "v7")),
               M.Descriptor(M.DOCKER_MANIFEST, "sha256:" + "ef" * 32, 1,
                            M.Platform("linux", "arm64", "v8"))]
    assert M.select(entries, M.parse_platform("linux/arm/v7")).digest.startswith("sha256:cd")
    assert M.select(entries, M.parse_platform("linux/arm/v8")).digest.startswith("sha256:cd")
    assert M.select(entries, M.parse_platform("linux/arm64")).digest.startswith("sha256:ef")
    with pytest.raises(errors.NotFoundError, match="no matching manifest for linux/amd64"):
        M.select(entries, M.parse_platform("linux/amd64"))
