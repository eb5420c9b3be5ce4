"""`labkit swarm ...` and `labkit node ...` against the daemon app with FakeSwarm on a unix
socket: Docker's output, the GET-change-POST round trips, errors before any request; and the
real Docker CLI against the same daemon (skipped without one)."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.swarm import FakeSwarm, serve
from fakes.tasks import FakeTasks

from labkit import errors
from labkit.cli import swarm as cli_swarm
from labkit.cli.main import main
from labkit.cli.node import pretty
from labkit.engine.containers.engine import Engine
from labkit.engine.containers.store import ContainerStore
from labkit.engine.daemon.app import make_app
from labkit.engine.images.store import ImageStore
from labkit.engine.swarm import spec as sp
from labkit.measure.peers import docker_cli


@dataclass
class Daemon:
    sock: Path
    swarm: FakeSwarm


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    (tmp_path / "run").mkdir()
    eng = Engine(FakeTasks(tmp_path / "run"), ContainerStore(tmp_path / "containers"),
                 ImageStore(tmp_path / "images"))
    eng.swarm = FakeSwarm()  # type: ignore[attr-defined]
    sock = tmp_path / "d.sock"
    monkeypatch.setenv("LABKIT_SOCKET", str(sock))
    with serve(make_app(eng), sock):
        yield Daemon(sock, eng.swarm)  # type: ignore[attr-defined]
    asyncio.run(eng.tasks.close())


def lk(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    got = capsys.readouterr()
    return rc, got.out, got.err


def test_init_prints_docker_text_and_the_join_command(daemon: Daemon,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = lk(capsys, "swarm", "init", "--advertise-addr", "10.99.0.5",
                    "--cert-expiry", "48h", "--task-history-limit", "7",
                    "--dispatcher-heartbeat", "10s", "--external-ca",
                    "protocol=cfssl,url=https://127.0.0.1:8888,profile=node")
    fake = daemon.swarm
    assert rc == 0, out
    token = fake.tokens["Worker"]
    assert out == (f"Swarm initialized: current node ({fake.node_id}) is now a manager.\n\n"
                   "To add a worker to this swarm, run the following command:\n\n"
                   f"    docker swarm join --token {token} 10.99.0.5:2377\n\n"
                   "To add a manager to this swarm, run 'docker swarm join-token manager' and "
                   "follow the instructions.\n")
    spec = fake.spec
    assert spec.node_cert_expiry == 48 * 3600 * 10**9 and spec.task_history_retention_limit == 7
    assert spec.dispatcher_heartbeat_period == 10 * 10**9
    assert spec.external_cas == (sp.ExternalCA("https://127.0.0.1:8888", "cfssl",
                                               {"profile": "node"}),)
    assert not spec.autolock_managers and spec.election_tick == 10


def test_init_autolock_prints_the_unlock_key(daemon: Daemon,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = lk(capsys, "swarm", "init", "--autolock")
    assert rc == 0 and daemon.swarm.key and daemon.swarm.spec.autolock_managers
    assert out.endswith("To unlock a swarm manager after it restarts, run the `docker swarm "
                        "unlock`\ncommand and provide the following key:\n\n"
                        f"    {daemon.swarm.key}\n\nRemember to store this key in a password "
                        "manager, since without it you\nwill not be able to restart the "
                        "manager.\n")


@pytest.mark.parametrize(("argv", "text"), [
    (["--cert-expiry", "2x"], "invalid duration"),
    (["--availability", "off"], "invalid availability"),
    (["--external-ca", "protocol=acme,url=https://x"], "unrecognized external CA protocol"),
    (["--external-ca", "url=https://x"], "needs a protocol= parameter"),
    (["--external-ca", "protocol=cfssl"], "needs a url= parameter")])
def test_bad_flags_send_nothing(daemon: Daemon, capsys: pytest.CaptureFixture[str],
                                argv: list[str], text: str) -> None:
    try:
        rc, _, err = lk(capsys, "swarm", "init", *argv)
    except SystemExit as exc:  # argparse's own refusal
        rc, err = int(exc.code or 0), capsys.readouterr().err
    assert rc != 0 and text in err
    assert daemon.swarm.calls == []


def test_daemon_refusals_reach_the_user(daemon: Daemon,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = lk(capsys, "swarm", "init", "--cert-expiry", "30m")
    assert rc == 1 and "minimum certificate expiry time is: 1h0m0s" in err
    rc, _, err = lk(capsys, "swarm", "init", "--listen-addr", "eth0")
    assert rc == 1 and "ListenAddr" in err
    rc, _, err = lk(capsys, "node", "ls")
    assert rc == 1 and sp.MSG_NOT_MANAGER in err


def test_join_token_rotate_and_quiet(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    lk(capsys, "swarm", "init")
    fake = daemon.swarm
    old, version = fake.tokens["Manager"], fake.version
    rc, out, _ = lk(capsys, "swarm", "join-token", "--rotate", "manager")
    assert rc == 0 and fake.tokens["Manager"] != old and fake.version > version
    assert out.startswith("Successfully rotated manager join token.\n\nTo add a manager to this "
                          "swarm, run the following command:\n\n    docker swarm join --token "
                          f"{fake.tokens['Manager']} 10.99.0.1:2377\n")
    flags = fake.calls[-1][1][2]
    assert flags == sp.UpdateFlags(rotate_manager_token=True)
    rc, out, _ = lk(capsys, "swarm", "join-token", "-q", "worker")
    assert (rc, out) == (0, fake.tokens["Worker"] + "\n")
    with pytest.raises(SystemExit):
        main(["swarm", "join-token"])
    rc, _, err = lk(capsys, "swarm", "join-token", "boss")
    assert rc == 1 and "unknown role boss" in err


def test_update_round_trip(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    lk(capsys, "swarm", "init")
    fake = daemon.swarm
    version = fake.version
    rc, out, _ = lk(capsys, "swarm", "update", "--cert-expiry", "48h")
    assert (rc, out) == (0, "Swarm updated.\n")
    sent_version, spec, _ = fake.calls[-1][1]
    assert sent_version == version and spec.node_cert_expiry == 48 * 3600 * 10**9
    rc, out, _ = lk(capsys, "swarm", "update", "--autolock=true")
    assert rc == 0 and fake.spec.autolock_managers and fake.key in out
    rc, out, _ = lk(capsys, "swarm", "update", "--autolock", "false")
    assert (rc, out) == (0, "Swarm updated.\n") and not fake.spec.autolock_managers
    rc, _, err = lk(capsys, "swarm", "update")
    assert rc == 1 and "nothing to update" in err


def test_unlock_key_and_unlock(daemon: Daemon, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    rc, _, err = lk(capsys, "swarm", "unlock")
    assert (rc, err) == (1, "Error: This node is not part of a swarm\n")
    lk(capsys, "swarm", "init")
    rc, _, err = lk(capsys, "swarm", "unlock-key", "--rotate")
    assert rc == 1 and "cannot rotate because autolock is not turned on" in err
    lk(capsys, "swarm", "update", "--autolock=true")
    fake = daemon.swarm
    old = fake.key
    rc, out, _ = lk(capsys, "swarm", "unlock-key", "-q", "--rotate")
    assert rc == 0 and fake.key != old and out == fake.key + "\n"
    rc, _, err = lk(capsys, "swarm", "unlock")
    assert (rc, err) == (1, "Error: swarm is not locked\n")
    fake.lock()
    monkeypatch.setattr("sys.stdin", io.StringIO("SWMKEY-1-wrong\n"))
    rc, _, err = lk(capsys, "swarm", "unlock")
    assert rc == 1 and sp.MSG_INVALID_UNLOCK_KEY in err and fake.state == "locked"
    monkeypatch.setattr("sys.stdin", io.StringIO(fake.key + "\n"))
    rc, out, _ = lk(capsys, "swarm", "unlock")
    assert (rc, out) == (0, "") and fake.state == "active"


def test_join_leave_ca(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    fake = daemon.swarm
    fake.accept_tokens["SWMTKN-1-t"] = "manager"
    rc, out, _ = lk(capsys, "swarm", "join", "--token", "SWMTKN-1-t", "10.99.0.1:2377")
    assert (rc, out) == (0, "This node joined a swarm as a manager.\n")
    req = fake.calls[-1][1]
    assert [str(a) for a in req.remote_addrs] == ["10.99.0.1:2377"]
    rc, out, _ = lk(capsys, "swarm", "leave", "--force")
    assert (rc, out) == (0, "Node left the swarm.\n")
    lk(capsys, "swarm", "init")
    rc, out, _ = lk(capsys, "swarm", "ca")
    assert rc == 0 and out.startswith("-----BEGIN CERTIFICATE-----")
    rc, _, err = lk(capsys, "swarm", "ca", "--cert-expiry", "48h")
    assert rc == 1 and "requires the `--rotate` flag" in err
    rc, _, _ = lk(capsys, "swarm", "ca", "--rotate", "-q")
    assert rc == 0 and fake.spec.force_rotate == 1
    version = fake.version
    rc, _, err = lk(capsys, "swarm", "ca", "--rotate", "--external-ca",
                    "protocol=cfssl,url=https://127.0.0.1:8888")
    assert rc == 1 and "requires the `--ca-cert` flag" in err and fake.version == version


def test_node_ls_inspect_promote_update_rm(daemon: Daemon,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    lk(capsys, "swarm", "init")
    fake = daemon.swarm
    w10 = fake.add_node("lk-node10", state="down")
    w2 = fake.add_node("lk-node2", labels={"zone": "a"})
    rc, out, _ = lk(capsys, "node", "ls")
    lines = [line.rstrip() for line in out.splitlines()]
    assert rc == 0 and lines[0].split() == ["ID", "HOSTNAME", "STATUS", "AVAILABILITY",
                                            "MANAGER", "STATUS", "ENGINE", "VERSION"]
    # natural order of hostnames, a * on this node, Docker's capitalised states, ids whole
    assert [line.split() for line in lines[1:]] == [
        [fake.node_id, "*", "lk-node1", "Ready", "Active", "Leader", "0.1.0-labkit"],
        [w2, "lk-node2", "Ready", "Active", "0.1.0-labkit"],
        [w10, "lk-node10", "Down", "Active", "0.1.0-labkit"]]
    rc, out, _ = lk(capsys, "node", "ls", "-q", "-f", "node.label=zone=a")
    assert (rc, out) == (0, w2 + "\n")
    rc, _, err = lk(capsys, "node", "ls", "-f", "colour=red")
    assert rc == 1 and "invalid filter 'colour'" in err

    rc, out, _ = lk(capsys, "node", "promote", "lk-node2", fake.node_id)
    assert out == (f"Node lk-node2 promoted to a manager in the swarm.\n"
                   f"Node {fake.node_id} is already a manager.\n")
    assert fake.members[w2]["Spec"]["Role"] == "manager"
    rc, out, _ = lk(capsys, "node", "demote", "lk-node2")
    assert (rc, out) == (0, "Manager lk-node2 demoted in the swarm.\n")
    rc, out, _ = lk(capsys, "node", "update", "--availability", "drain", "--label-add", "ssd",
                    "--label-rm", "zone", "lk-node2")
    assert (rc, out) == (0, "lk-node2\n")
    assert fake.members[w2]["Spec"] == {"Labels": {"ssd": ""}, "Role": "worker",
                                        "Availability": "drain"}
    rc, _, err = lk(capsys, "node", "update", "--label-rm", "gpu", "lk-node2")
    assert rc == 1 and "key gpu doesn't exist in node's labels" in err
    rc, out, _ = lk(capsys, "node", "inspect", "self", "--pretty")
    assert rc == 0 and out.startswith(f"ID:                  {fake.node_id}\n")
    assert " Leader:             Yes\n" in out and " Memory:             2GiB\n" in out
    rc, out, err = lk(capsys, "node", "rm", "lk-node2", "lk-node10", "nosuch")
    assert rc == 1 and out == "lk-node10\n"
    assert "is not down" in err and "nosuch" in err
    rc, out, _ = lk(capsys, "node", "rm", "-f", "lk-node2")
    assert (rc, out) == (0, "lk-node2\n") and w2 not in fake.members


def test_pretty_sections() -> None:
    node = {"ID": "x", "Spec": {"Name": "n", "Labels": {"b": "", "a": "1"},
                                "Availability": "pause"},
            "Description": {"Hostname": "h", "Engine": {
                "EngineVersion": "1", "Plugins": [{"Type": "Network", "Name": "overlay"},
                                                  {"Type": "Network", "Name": "bridge"}]}},
            "Status": {"State": "down", "Message": "heartbeat failure"}}
    text = pretty(node)
    assert "Name:" in text and "Labels:\n - a=1\n - b\n" in text
    assert " Message:" in text and "Heartbeat failure" in text
    assert "Manager Status" not in text and "TLS Info" not in text
    assert " Network:" in text and "overlay, bridge" in text


def test_parse_external_ca(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    ca = cli_swarm.parse_external_ca(f'protocol=CFSSL,"url=https://h:1/a,b",cacert={pem}')
    assert ca == {"Protocol": "cfssl", "URL": "https://h:1/a,b", "CACert": pem.read_text()}
    (tmp_path / "bad.pem").write_text("nope")
    with pytest.raises(errors.InvalidArgumentError, match="PEM"):
        cli_swarm.parse_external_ca(f"protocol=cfssl,url=https://h,cacert={tmp_path}/bad.pem")
    with pytest.raises(errors.InvalidArgumentError, match="key=value"):
        cli_swarm.parse_external_ca("protocol=cfssl,url=https://h,junk")


@pytest.fixture
def docker(daemon: Daemon, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    try:
        cli = docker_cli()
    except errors.UnsupportedError:
        pytest.skip("no Docker CLI on PATH")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "DOCKER_CONFIG": str(tmp_path / "cfg"), "DOCKER_HOST": f"unix://{daemon.sock}"}
    yield cli, env


def test_docker_cli_against_labkit(daemon: Daemon, docker: tuple[str, dict[str, str]],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The scenarios of issue 12 item 6 with the real Docker CLI; labkit prints the same."""
    cli, env = docker

    def d(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, *argv], env=env, capture_output=True, text=True,
                              input=stdin, timeout=30, check=False)

    fake = daemon.swarm
    r = d("swarm", "init", "--autolock")
    assert r.returncode == 0, r.stderr
    assert f"current node ({fake.node_id}) is now a manager" in r.stdout
    assert f"docker swarm join --token {fake.tokens['Worker']} 10.99.0.1:2377" in r.stdout
    assert fake.key in r.stdout
    r = d("swarm", "join-token", "manager")
    assert r.returncode == 0 and fake.tokens["Manager"] in r.stdout
    old = fake.tokens["Worker"]
    r = d("swarm", "join-token", "--rotate", "worker")
    assert r.returncode == 0 and fake.tokens["Worker"] != old, r.stderr
    r = d("swarm", "update", "--cert-expiry", "48h")
    assert r.returncode == 0 and fake.spec.node_cert_expiry == 48 * 3600 * 10**9, r.stderr
    r = d("swarm", "update", "--cert-expiry", "30m")
    assert r.returncode == 1 and "minimum certificate expiry time is: 1h0m0s" in r.stderr
    for argv in (["swarm", "join-token", "worker"], ["swarm", "join-token", "-q", "manager"],
                 ["swarm", "unlock-key"], ["swarm", "unlock-key", "-q"], ["swarm", "ca"],
                 ["swarm", "update", "--task-history-limit", "4"]):
        r = d(*argv)
        assert r.returncode == 0, r.stderr
        assert lk(capsys, *argv) == (0, r.stdout, ""), argv
    fake.add_node("lk-node2")
    r = d("node", "ls")
    assert r.returncode == 0 and f"{fake.node_id} *" in r.stdout and "Leader" in r.stdout
    r = d("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")
    assert r.stdout.strip() == "active true"
    fake.lock()
    r = d("swarm", "unlock", stdin=fake.key + "\n")
    assert r.returncode == 0 and fake.state == "active", r.stderr
    r = d("swarm", "init")
    assert r.returncode == 1 and "This node is already part of a swarm" in r.stderr
    r = d("swarm", "init", "--data-path-port", "2377")  # issue 13: ports are taken, in range
    assert r.returncode == 1 and "within range 1024 to 49151" in r.stderr
    r = d("swarm", "leave", "--force")
    assert r.returncode == 0 and fake.state == "inactive"
    r = d("node", "ls")
    assert r.returncode == 1 and sp.MSG_NOT_MANAGER in r.stderr
