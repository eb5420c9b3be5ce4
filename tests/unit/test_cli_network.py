"""`labkit network ...` against a fake daemon: the requests match the real Docker CLI's,
the output matches `docker network ...`'s, bad input is refused before any request."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.daemon import FakeDaemon, js

from labkit import errors
from labkit.cli import network
from labkit.cli.main import main
from labkit.measure.peers import docker_cli

NET = {"Name": "lknet", "Id": "f" * 64, "Created": "2026-12-03T19:40:00.123456789Z",
       "Scope": "local", "Driver": "bridge", "EnableIPv6": False, "Internal": True,
       "Labels": {"b": "2", "a": "1"}, "IPAM": {"Config": [{"Subnet": "10.9.0.0/24"}]}}
BRIDGE = dict(NET, Name="bridge", Id="b" * 64, Internal=False, Labels={})


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    sock = tmp_path / "d.sock"
    monkeypatch.setenv("LABKIT_SOCKET", str(sock))
    monkeypatch.setenv("LABKIT_RUN", str(tmp_path / "run"))
    with FakeDaemon(sock) as f:
        close = {"Connection": "close"}
        f.routes["GET /_ping"] = lambda r: (200, {"Api-Version": "1.41"}, b"OK")
        f.routes["HEAD /_ping"] = lambda r: (200, {"Api-Version": "1.41", **close}, b"")
        f.routes["POST /networks/create"] = lambda r: (
            201, {"Content-Type": "application/json", **close},
            json.dumps({"Id": "c" * 64, "Warning": ""}).encode())
        f.routes["GET /networks"] = lambda r: js(200, [NET, BRIDGE])
        f.routes["GET /networks/lknet"] = lambda r: js(200, NET)
        f.routes["DELETE /networks/lknet"] = lambda r: (204, {}, b"")
        f.routes["POST /networks/lknet/connect"] = lambda r: (200, {}, b"")
        f.routes["POST /networks/lknet/disconnect"] = lambda r: (200, {}, b"")
        f.routes["POST /networks/prune"] = lambda r: js(200, {"NetworksDeleted": ["lknet"]})
        yield f


def _posted(fake: FakeDaemon, path: str) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in fake.requests if r["path"] == path]


CREATE_ARGS = [
    ["lknet"],
    ["-d", "bridge", "--subnet", "10.9.0.0/24", "--gateway", "10.9.0.254", "--ip-range",
     "10.9.0.128/25", "--internal", "--attachable", "-o", "com.docker.network.bridge.name=lk9",
     "-o", "encrypted", "--label", "a=1", "--label", "b", "lknet"],
    # gateways and ranges join the subnet that holds them, not the one given at their rank
    ["--subnet", "10.9.0.0/24", "--subnet", "fd00:9::/64", "--ipv6", "--gateway", "fd00:9::1",
     "--gateway", "10.9.0.1", "--aux-address", "r=10.9.0.2", "lknet"],
]


def _norm(body: dict[str, Any]) -> dict[str, Any]:
    """Go's map order puts pools in any order; 28.2.2 leaves a false EnableIPv6 out."""
    body = dict(body, IPAM=dict(body["IPAM"], Config=sorted(
        ({k: v for k, v in c.items() if v} for c in body["IPAM"]["Config"]),
        key=lambda c: c["Subnet"])))
    body.setdefault("EnableIPv6", False)
    return {k: v for k, v in body.items() if k not in ("Scope", "Ingress", "ConfigOnly",
                                                        "ConfigFrom")}


@pytest.mark.parametrize("argv", CREATE_ARGS, ids=lambda a: " ".join(a))
def test_create_sends_what_docker_sends(argv: list[str], fake: FakeDaemon,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    try:
        cli = docker_cli()
    except errors.UnsupportedError:
        pytest.skip("no Docker CLI on PATH")
    assert main(["network", "create", *argv]) == 0
    assert capsys.readouterr().out == "c" * 64 + "\n"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(fake.path.parent),
           "DOCKER_CONFIG": str(fake.path.parent / "cfg"), "DOCKER_HOST": f"unix://{fake.path}"}
    r = subprocess.run([cli, "network", "create", *argv], env=env, capture_output=True,
                       text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    ours, theirs = _posted(fake, "/networks/create")
    assert _norm(ours) == _norm(theirs)


@pytest.mark.parametrize(("argv", "flag"), [
    (["--gateway", "10.9.0.1", "x"], "--subnet"),
    (["--subnet", "10.9.0.0/24", "--gateway", "10.8.0.1", "x"], "--gateway"),
    (["--subnet", "10.9.0.0/24", "--subnet", "10.9.0.0/25", "x"], "--subnet"),
    (["--subnet", "10.9.0.0/24", "--ip-range", "10.9.0.0/25", "--ip-range", "10.9.0.128/25",
      "--subnet", "10.8.0.0/24", "x"], "--ip-range"),
    (["--subnet", "10.9.0.300/24", "x"], "--subnet"),
    (["--subnet", "10.9.0.0/24", "--aux-address", "10.9.0.2", "x"], "--aux-address"),
    (["--label", "=v", "x"], "--label"),
])
def test_create_refuses_before_any_request(argv: list[str], flag: str, fake: FakeDaemon,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["network", "create", *argv]) == 1
    assert flag in capsys.readouterr().err
    assert not _posted(fake, "/networks/create")


def test_ls_table_quiet_json_and_template(fake: FakeDaemon,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["network", "ls", "-f", "driver=bridge"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert lines[1].split() == ["b" * 12, "bridge", "bridge", "local"]  # sorted by name
    assert lines[2].split() == ["f" * 12, "lknet", "bridge", "local"]
    assert 'filters={"driver":["bridge"]}' in \
        fake.requests[-1]["query"].replace("%7B", "{").replace("%7D", "}") \
        .replace("%22", '"').replace("%3A", ":").replace("%5B", "[").replace("%5D", "]")
    assert main(["network", "ls", "-q", "--no-trunc"]) == 0
    assert capsys.readouterr().out == f"{'b' * 64}\n{'f' * 64}\n"
    assert main(["network", "ls", "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[1])
    assert row == {"CreatedAt": "2026-12-03 19:40:00.123456789 +0000 UTC", "Driver": "bridge",
                   "ID": "f" * 12, "IPv6": "false", "Internal": "true", "Labels": "a=1,b=2",
                   "Name": "lknet", "Scope": "local"}
    assert main(["network", "ls", "--format", "{{.Name}}:{{.Internal}}"]) == 0
    assert capsys.readouterr().out == "bridge:false\nlknet:true\n"
    assert main(["network", "ls", "--format", "table {{.Name}}\t{{.Driver}}"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["NAME", "DRIVER"]


def test_inspect_rm_prune_connect_disconnect(fake: FakeDaemon,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["network", "inspect", "lknet", "nosuch"]) == 1
    got = capsys.readouterr()
    assert json.loads(got.out) == [NET] and "No such network: nosuch" in got.err
    assert main(["network", "inspect", "-f", "{{.Name}} {{json .IPAM.Config}}", "lknet"]) == 0
    assert capsys.readouterr().out == 'lknet [{"Subnet":"10.9.0.0/24"}]\n'
    assert main(["network", "rm", "lknet", "nosuch"]) == 1
    got = capsys.readouterr()
    assert got.out == "lknet\n" and "Error response from daemon" in got.err
    assert main(["network", "prune", "-f", "--filter", "label=a"]) == 0
    assert capsys.readouterr().out == "Deleted Networks:\nlknet\n"
    assert main(["network", "connect", "--ip", "10.9.0.7", "--ip6", "fd00::7", "--alias", "db",
                 "--alias", "cache", "lknet", "web"]) == 0
    assert _posted(fake, "/networks/lknet/connect") == [{"Container": "web", "EndpointConfig": {
        "IPAMConfig": {"IPv4Address": "10.9.0.7", "IPv6Address": "fd00::7"},
        "Aliases": ["db", "cache"]}}]
    assert main(["network", "disconnect", "-f", "lknet", "web"]) == 0
    assert _posted(fake, "/networks/lknet/disconnect") == [{"Container": "web", "Force": True}]


def test_daemon_errors_come_back_typed(fake: FakeDaemon) -> None:
    from labkit.engine.client import Client

    fake.routes["DELETE /networks/busy"] = lambda r: js(
        409, {"message": "error while removing network: network busy has active endpoints"})
    c = Client(fake.path)
    with pytest.raises(errors.NotFoundError):
        c.networks.inspect("nosuch")
    with pytest.raises(errors.ConflictError, match="active endpoints"):
        c.networks.remove("busy")


def test_ipam_pools_docker_rules() -> None:
    assert network.ipam_pools(["10.1.0.0/16", "10.2.0.0/16"], ["10.2.1.0/24"],
                              ["10.2.0.1", "10.1.0.1"]) == [
        {"Subnet": "10.1.0.0/16", "Gateway": "10.1.0.1"},
        {"Subnet": "10.2.0.0/16", "IPRange": "10.2.1.0/24", "Gateway": "10.2.0.1"}]
    with pytest.raises(errors.InvalidArgumentError, match="no matching subnet"):
        network.ipam_pools(["10.1.0.0/16"], ["10.3.0.0/24"], [])


@pytest.mark.parametrize("ref", ["../containers/web/kill", "a/b", "..", ".", ""])
def test_refs_that_would_leave_the_networks_path_are_refused(ref: str,
                                                              fake: FakeDaemon) -> None:
    from labkit.engine.client import Client

    c = Client(fake.path)
    for call in (lambda: c.networks.inspect(ref), lambda: c.networks.remove(ref),
                 lambda: c.networks.connect(ref, "web"),
                 lambda: c.networks.disconnect(ref, "web")):
        with pytest.raises(errors.InvalidArgumentError, match="network"):
            call()
    assert [r for r in fake.requests if "/networks" in r["path"]] == []
