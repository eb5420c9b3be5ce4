"""`labkit run/create` networking flags -> the create body, checked against what the real
Docker CLI sends for the same flags (recorded live from a fake daemon on a unix socket)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.daemon import FakeDaemon

from labkit import errors
from labkit.cli import _create, _netopts
from labkit.measure.peers import docker_cli

_HC_KEYS = ("PortBindings", "PublishAllPorts", "NetworkMode", "Links", "Dns", "DnsSearch",
            "DnsOptions", "ExtraHosts")


def _args(argv: list[str]) -> tuple[argparse.Namespace, str, list[str]]:
    p = argparse.ArgumentParser(add_help=False)
    _create.add_create_flags(p)
    cut = _create.split_at_positional(argv, _create.RUN_VALUE_OPTS)
    return p.parse_args(argv[:cut]), argv[cut], argv[cut + 1:]


def ours(argv: list[str]) -> dict[str, Any]:
    args, image, cmd = _args([*argv, "busybox"])
    return _create.create_body(args, image, cmd)


def network_view(body: dict[str, Any]) -> dict[str, Any]:
    """The networking part of a create body, empty values dropped (Go omitempty style)."""
    host = body.get("HostConfig") or {}
    eps = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    view = {"ExposedPorts": body.get("ExposedPorts") or None,
            "MacAddress": body.get("MacAddress") or None,
            "Endpoints": {n: {k: v for k, v in (e or {}).items() if v}
                          for n, e in eps.items()} or None,
            **{k: host.get(k) or None for k in _HC_KEYS}}
    # docker 28 always names the default network's endpoint, empty; 20.10 leaves it out
    if view["Endpoints"]:
        view["Endpoints"] = {n: e for n, e in view["Endpoints"].items() if e} or None
    return {k: v for k, v in view.items() if v is not None}


@pytest.fixture(scope="module")
def docker_body(tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Any]:
    """docker_body(argv) -> the body the real Docker CLI posts for `docker create ARGV busybox`
    (None when the CLI refuses the flags)."""
    try:
        cli = docker_cli()
    except errors.UnsupportedError:
        pytest.skip("no Docker CLI on PATH")
    tmp = tmp_path_factory.mktemp("dockerrec")
    sock = tmp / "d.sock"
    with FakeDaemon(sock) as fake:
        # one request per connection (the fake's way): tell Go's client not to reuse it
        ping = (200, {"Api-Version": "1.41", "Connection": "close"}, b"")
        fake.routes["HEAD /_ping"] = lambda r: ping
        created = (201, {"Content-Type": "application/json", "Connection": "close"},
                   json.dumps({"Id": "a" * 64, "Warnings": []}).encode())
        fake.routes["POST /containers/create"] = lambda r: created
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp),
               "DOCKER_CONFIG": str(tmp / "cfg"), "DOCKER_HOST": f"unix://{sock}"}

        def record(argv: list[str]) -> dict[str, Any] | None:
            before = len(fake.requests)
            r = subprocess.run([cli, "create", *argv, "busybox"], env=env, capture_output=True,
                               text=True, timeout=30, check=False)
            posted = [q for q in fake.requests[before:] if q["path"] == "/containers/create"]
            if r.returncode != 0:
                assert not posted and "daemon" not in r.stderr, r.stderr
                return None
            return dict(json.loads(posted[-1]["body"]))
        yield record


SAME_AS_DOCKER = [
    ["-p", "8080:80"],
    ["-p", "127.0.0.1:8000-8002:80-82/udp", "-p", "9000:90", "-p", "5000"],
    ["-p", "7000-7001:70"],
    ["-p", "[::1]:8080:80", "-p", ":8081:81", "-p", "0.0.0.0::82/sctp"],
    ["-p", "80:80", "-p", "81:80", "-p", "80/UDP"],
    ["-P", "--expose", "3000-3002", "--expose", "4000/udp"],
    ["--network", "lknet", "--ip", "10.0.0.5", "--ip6", "fd00::5", "--network-alias", "a1",
     "--network-alias", "a2", "--link", "web:w", "--link", "db"],
    ["--net", "lknet", "--net-alias", "db"],
    ["--network", "container:lkbase"],
    ["--network", "host"], ["--network", "none"], ["--network", "bridge", "--ip", "172.17.0.9"],
    ["--link", "web:w"],
    ["--dns", "192.0.2.53", "--dns", "2001:db8::53", "--dns-search", "lab.example",
     "--dns-option", "ndots:3", "--dns-opt", "timeout:1"],
    ["--add-host", "h:1.2.3.4", "--add-host", "h2=5.6.7.8", "--add-host", "gw:host-gateway",
     "--add-host", "v6:2001:db8::1"],
]


@pytest.mark.parametrize("argv", SAME_AS_DOCKER, ids=lambda a: " ".join(a))
def test_body_is_what_docker_sends(argv: list[str], docker_body: Any) -> None:
    theirs = docker_body(argv)
    assert theirs is not None, "the Docker CLI refused these flags"
    assert network_view(ours(argv)) == network_view(theirs)


REFUSED = [
    (["-p", "80:90-92"], "--publish"), (["-p", "80-81:90-92"], "--publish"),
    (["-p", "1.2.3:80:80"], "--publish"), (["-p", "70000"], "--publish"),
    (["-p", "80/icmp"], "--publish"), (["-p", "a:b:c:d"], "--publish"),
    (["-p", "8080:"], "--publish"), (["--expose", "80-x"], "--expose"),
    (["--dns", "not-an-ip"], "--dns"), (["--add-host", "nohost"], "--add-host"),
    (["--add-host", "h:999.1.1.1"], "--add-host"), (["--ip", "fd00::1"], "--ip"),
    (["--ip6", "10.0.0.1"], "--ip6"), (["--ip", "10.0.0.300"], "--ip"),
    (["--network-alias", "x"], "--network-alias"),
    (["--network", "a", "--network", "b"], "--network"),
    (["--network", "container:"], "--network"),
    (["--mac-address", "02:42:ac:11:00"], "--mac-address"),
    (["--link", "a:b:c"], "--link"), (["--link", ":x"], "--link"),
]


@pytest.mark.parametrize(("argv", "flag"), REFUSED, ids=lambda a: str(a))
def test_bad_values_name_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(errors.InvalidArgumentError) as info:
        ours(argv)
    assert flag in str(info.value)


# refused here before any request, where the Docker CLI leaves them to the daemon (--ip,
# --ip6: the daemon answers 400) or cannot send them at all to API 1.41 (--mac-address)
_EARLIER = ("--mac-address", "--network", "--link", "--ip", "--ip6")


@pytest.mark.parametrize("argv", [a for a, _ in REFUSED if a[0] not in _EARLIER],
                         ids=lambda a: " ".join(a))
def test_docker_refuses_them_too(argv: list[str], docker_body: Any) -> None:
    assert docker_body(argv) is None


def test_mac_address_at_top_level_as_api_141() -> None:
    # docker 28 will not send --mac-address to an API 1.41 daemon at all; 20.10 sends it at
    # the top level of the body (the reference's recorded shape), which is what the daemon reads
    body = ours(["--mac-address", "02:42:AC:11:00:02", "--network", "lknet"])
    assert body["MacAddress"] == "02:42:AC:11:00:02"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {}}


def test_defaults_match_the_recorded_reference() -> None:
    # /work/shared/reference/docker-api.md, `docker container run --rm -d --name web
    # -p 8080:80 nginx` and `... --network mybridgenw ...`
    body = ours(["-p", "8080:80"])
    assert body["ExposedPorts"] == {"80/tcp": {}}
    assert body["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert body["HostConfig"]["NetworkMode"] == "default"
    assert ours(["--network", "mybridgenw"])["HostConfig"]["NetworkMode"] == "mybridgenw"


def test_parse_publish_pairs_ranges_port_by_port() -> None:
    assert _netopts.parse_publish("127.0.0.1:8000-8001:80-81/udp") == [
        ("80/udp", {"HostIp": "127.0.0.1", "HostPort": "8000"}),
        ("81/udp", {"HostIp": "127.0.0.1", "HostPort": "8001"})]
    assert _netopts.parse_publish("8000-8010:80") == [
        ("80/tcp", {"HostIp": "", "HostPort": "8000-8010"})]
    assert _netopts.parse_publish("80-81") == [("80/tcp", {"HostIp": "", "HostPort": ""}),
                                               ("81/tcp", {"HostIp": "", "HostPort": ""})]
    assert _netopts.parse_expose("53/udp") == ["53/udp"]


def test_value_flags_do_not_eat_the_image() -> None:
    args, image, cmd = _args(["-p", "80", "--network", "n", "--ip", "10.0.0.2", "-P",
                              "--dns", "1.1.1.1", "--add-host", "a:1.1.1.1", "busybox", "true"])
    assert (image, cmd) == ("busybox", ["true"]) and args.publish == ["80"]


def test_dns_search_domain_checked(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="--dns-search"):
        ours(["--dns-search", "bad domain"])
    assert ours(["--dns-search", "."])["HostConfig"]["DnsSearch"] == ["."]
