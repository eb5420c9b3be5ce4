"""Detach keys on attach and exec, and exec output framing chosen by the start request's Tty:
the real Docker CLI (the first `docker` on PATH, driven through a pty) and docker-py."""

from __future__ import annotations

import os
import pty
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from labkit.lab.engine import LabEngine

pytestmark = pytest.mark.privileged

Docker = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def exe() -> str:
    found = shutil.which("docker")
    if found is None:
        pytest.fail("no docker CLI on PATH (make setup installs Debian's docker.io)")
    return found


@pytest.fixture
def cli(engine: LabEngine, exe: str) -> Docker:
    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([exe, *args], env=engine.docker_env, capture_output=True,
                              timeout=60, check=False)
    return run


def _pty_detach(argv: list[str], env: dict[str, str], keys: bytes = b"\x10\x11"
                ) -> tuple[bytes, int | None]:
    """Run ``argv`` on a pty, wait for the shell prompt, type ``keys`` one by one (as a
    terminal does); return (output, exit status or None if it did not exit)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execve(argv[0], argv, env)
    out = b""
    deadline = time.monotonic() + 30
    while b"/ # " not in out and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    os.write(fd, b"echo typed-$((40+2))\r")
    deadline = time.monotonic() + 30
    while b"typed-42\r\n" not in out and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    for k in keys:
        time.sleep(0.2)
        os.write(fd, bytes([k]))
    status = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(st)
            break
        if select.select([fd], [], [], 0.1)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:
                pass
    if status is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    os.close(fd)
    return out, status


def _running(cli: Docker, name: str) -> bool:
    return cli("inspect", "-f", "{{.State.Running}}", name).stdout == b"true\n"


def test_run_it_then_attach_detach_with_ctrl_p_ctrl_q(engine: LabEngine, exe: str,
                                                      cli: Docker, name: str) -> None:
    try:
        out, status = _pty_detach([exe, "run", "-it", "--name", name, "busybox", "sh"],
                                  engine.docker_env)
        assert status == 0, out
        assert b"typed-42" in out
        assert _running(cli, name)
        out, status = _pty_detach([exe, "attach", name], engine.docker_env)
        assert status is not None, out  # the CLI came back
        assert _running(cli, name)
        r = cli("exec", name, "echo", "still-here")
        assert r.stdout == b"still-here\n", r.stderr
    finally:
        cli("rm", "-f", name)


def _docker_py(engine: LabEngine) -> Any:
    docker = pytest.importorskip("docker")
    return docker.DockerClient(base_url=f"unix://{engine.socket}", version="1.41")


@pytest.fixture
def ctr(engine: LabEngine, cli: Docker, name: str) -> Iterator[Any]:
    assert cli("run", "-d", "--name", name, "busybox", "sleep", "600").returncode == 0
    yield _docker_py(engine).containers.get(name)
    cli("rm", "-f", name)


def _recv_until_closed(sock: socket.socket, timeout: float = 15) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while chunk := sock.recv(4096):
        out += chunk
    return out


@pytest.mark.parametrize(("keys", "typed"), [("", b"\x10\x11"), ("ctrl-x,a", b"\x18a")])
def test_docker_py_exec_socket_detaches_and_the_exec_runs_on(
        engine: LabEngine, ctr: Any, keys: str, typed: bytes) -> None:
    api = ctr.client.api
    ex = api.exec_create(ctr.id, ["sh", "-c", "cat > /tmp/got; echo done > /tmp/end"],
                         stdin=True, tty=True, detach_keys=keys or None)
    sock = api.exec_start(ex["Id"], tty=True, socket=True)._sock
    try:
        sock.sendall(b"kept\r")
        time.sleep(0.3)
        sock.sendall(typed)
        _recv_until_closed(sock)  # the daemon ends the stream: no hang
    finally:
        sock.close()
    info = api.exec_inspect(ex["Id"])
    assert info["Running"] is True and info["DetachKeys"] == keys
    assert ctr.exec_run(["cat", "/tmp/got"]).output.replace(b"\r", b"") == b"kept\n"
    events = api.events(since=int(time.time()) - 60, until=int(time.time()) + 1,
                        decode=True, filters={"container": ctr.id})
    assert "exec_detach" in [e["Action"] for e in events]


def test_exec_framing_follows_the_start_request(ctr: Any) -> None:
    api = ctr.client.api
    # created with a tty, started without: multiplexed frames (stdout, stream 1)
    ex = api.exec_create(ctr.id, ["echo", "framed"], tty=True)
    raw = api.exec_start(ex["Id"], tty=False, socket=True)._sock
    got = _recv_until_closed(raw)
    raw.close()
    assert got[:4] == b"\x01\x00\x00\x00" and b"framed" in got
    # created without a tty, started with one: raw bytes, stdout and stderr as they come
    ex = api.exec_create(ctr.id, ["sh", "-c", "echo out; echo err >&2"], tty=False)
    raw = api.exec_start(ex["Id"], tty=True, socket=True)._sock
    got = _recv_until_closed(raw)
    raw.close()
    assert sorted(got.split()) == [b"err", b"out"]


def test_invalid_detach_keys_are_docker_400s(engine: LabEngine, cli: Docker,
                                            name: str) -> None:
    docker = pytest.importorskip("docker")
    api = _docker_py(engine).api
    assert cli("run", "-dit", "--name", name, "busybox", "sh").returncode == 0
    try:
        with pytest.raises(docker.errors.APIError) as exc:
            api.exec_create(name, ["true"], detach_keys="ctrl-foo")
        assert exc.value.status_code == 400
        assert "Invalid escape keys (ctrl-foo) provided" in str(exc.value)
        resp = api._post(api._url("/containers/{0}/attach", name),
                         params={"stream": 1, "stdin": 1, "detachKeys": "nope"})
        assert resp.status_code == 400
        assert "Invalid detach keys (nope) provided" in resp.json()["message"]
    finally:
        cli("rm", "-f", name)


def _detached(sock: socket.socket, keys: list[bytes]) -> bool:
    """docker-py's check: after the keys, a write to the unix socket fails (EPIPE)."""
    for k in keys:
        sock.sendall(k)
        time.sleep(0.3)
    try:
        for _ in range(20):  # the close may take a moment to reach us
            sock.sendall(b"make sure the socket is closed\n")
            time.sleep(0.1)
    except OSError:
        return True
    return False


def test_attach_socket_stdin_only_detaches(engine: LabEngine, cli: Docker, name: str) -> None:
    api = _docker_py(engine).api
    assert cli("run", "-dit", "--name", name, "busybox", "cat").returncode == 0
    try:
        for params, keys in (({"stdin": 1, "stream": 1}, [b"\x10", b"\x11"]),
                             ({"stdin": 1, "stream": 1, "detachKeys": "ctrl-x"}, [b"\x18"])):
            sock = api.attach_socket(name, params)._sock
            try:
                assert _detached(sock, keys)
            finally:
                sock.close()
        assert _running(cli, name)
        events = api.events(since=int(time.time()) - 60, until=int(time.time()) + 1,
                            decode=True, filters={"container": name})
        assert [e["Action"] for e in events].count("detach") == 2
    finally:
        cli("rm", "-f", name)


def test_without_tty_the_keys_are_data(engine: LabEngine, ctr: Any) -> None:
    api = ctr.client.api
    ex = api.exec_create(ctr.id, ["sh", "-c", "cat > /tmp/raw"], stdin=True)
    sock = api.exec_start(ex["Id"], socket=True)._sock
    sock.sendall(b"a\x10\x11b")
    sock.shutdown(socket.SHUT_WR)  # stdin EOF: cat ends, the stream closes
    _recv_until_closed(sock)
    sock.close()
    assert ctr.exec_run(["od", "-An", "-c", "/tmp/raw"]).output.split() == \
        [b"a", b"020", b"021", b"b"]
