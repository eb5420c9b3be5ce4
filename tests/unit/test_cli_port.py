"""`labkit port` prints what `docker port` prints for the same inspect answer (both run here
against one fake daemon), errors included."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.daemon import FakeDaemon

from labkit import errors
from labkit.measure.peers import docker_cli

LABKIT = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", ".venv", "bin",
                      "labkit")
PORTS = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"},
                    {"HostIp": "::", "HostPort": "8080"}],
         "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}], "9000/tcp": None,
         "100/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}]}


@pytest.fixture(scope="module")
def sock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("port") / "d.sock"
    with FakeDaemon(path) as f:
        close = {"Connection": "close"}
        f.routes["HEAD /_ping"] = lambda r: (200, {"Api-Version": "1.41", **close}, b"")
        f.routes["GET /_ping"] = lambda r: (200, {"Api-Version": "1.41", **close}, b"OK")
        f.routes["GET /containers/web/json"] = lambda r: (
            200, {"Content-Type": "application/json", **close},
            json.dumps({"Id": "a" * 64, "Name": "/web",
                        "NetworkSettings": {"Ports": PORTS}}).encode())
        yield path


@pytest.mark.parametrize("args", [["web"], ["web", "80"], ["web", "80/tcp"], ["web", "53/udp"],
                                  ["web", "53"], ["web", "9000"], ["web", "7/tcp"]],
                         ids=" ".join)
def test_port_prints_what_docker_prints(args: list[str], sock: Path) -> None:
    try:
        cli = docker_cli()
    except errors.UnsupportedError:
        pytest.skip("no Docker CLI on PATH")
    d = subprocess.run([cli, "port", *args], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, DOCKER_HOST=f"unix://{sock}",
                                DOCKER_CONFIG=str(sock.parent / "cfg")), check=False)
    lk = subprocess.run([LABKIT, "port", *args], capture_output=True, text=True, timeout=30,
                        env=dict(os.environ, LABKIT_SOCKET=str(sock)), check=False)
    assert (lk.returncode, lk.stdout, lk.stderr) == (d.returncode, d.stdout, d.stderr)


def test_port_expected_text(sock: Path) -> None:
    lk = subprocess.run([LABKIT, "port", "web"], capture_output=True, text=True, timeout=30,
                        env=dict(os.environ, LABKIT_SOCKET=str(sock)), check=False)
    assert lk.stdout == ("53/udp -> 127.0.0.1:5353\n80/tcp -> 0.0.0.0:8080\n"
                         "80/tcp -> [::]:8080\n100/tcp -> 0.0.0.0:32768\n")
