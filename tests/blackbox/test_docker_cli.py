"""The real Docker CLI (`docker` on PATH) drives labkit's daemon over DOCKER_HOST.

Each test checks what a Docker daemon would make the CLI print and exit with.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from labkit.measure.peers import docker_cli

pytestmark = pytest.mark.privileged

Docker = Callable[..., subprocess.CompletedProcess[bytes]]
HEX64 = re.compile(rb"^[0-9a-f]{64}\n$")


def _detached(docker: Docker, name: str, *cmd: str) -> str:
    r = docker("run", "-d", "--name", name, "busybox", *cmd)
    assert r.returncode == 0, r.stderr
    assert HEX64.match(r.stdout), r.stdout
    return r.stdout.decode().strip()


def _until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if got := check():
            return got
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_run_rm_prints_exactly_the_output(docker: Docker) -> None:
    r = docker("run", "--rm", "busybox", "echo", "hi")
    assert (r.returncode, r.stdout) == (0, b"hi\n"), r.stderr


def test_run_rm_network_none(docker: Docker) -> None:
    r = docker("run", "--rm", "--network", "none", "busybox", "true")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")


def test_run_exit_code_passes_through(docker: Docker) -> None:
    r = docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout) == (3, b"out\n")
    assert b"err\n" in r.stderr


def test_run_missing_command_exits_127(docker: Docker) -> None:
    r = docker("run", "--rm", "busybox", "no-such-command", timeout=20)
    assert r.returncode == 127, (r.stdout, r.stderr)


def test_run_stdin_piped(docker: Docker) -> None:
    r = docker("run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z", input=b"hello\n")
    assert (r.returncode, r.stdout) == (0, b"HELLO\n"), r.stderr


def test_rm_leaves_nothing_listed(docker: Docker, name: str) -> None:
    assert docker("run", "--rm", "--name", name, "busybox", "true").returncode == 0
    r = docker("ps", "-a", "--filter", f"name={name}", "-q")
    assert (r.returncode, r.stdout) == (0, b"")


def test_run_detached_then_ps(docker: Docker, name: str) -> None:
    cid = _detached(docker, name, "sleep", "600")
    try:
        r = docker("ps", "--format", "{{.ID}} {{.Names}} {{.Image}} {{.State}}")
        assert f"{cid[:12]} {name} busybox running\n".encode() in r.stdout
        table = docker("ps").stdout.decode().splitlines()
        assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED",
                                    "STATUS", "PORTS", "NAMES"]
        row = next(line for line in table if line.endswith(name))
        assert row.startswith(cid[:12]) and '"sleep 600"' in row
        assert re.search(r"Up (Less than a second|\d+ seconds?)", row), row
    finally:
        docker("rm", "-f", name)


def test_ps_a_shows_exited_status(docker: Docker, name: str) -> None:
    assert docker("run", "--name", name, "busybox", "sh", "-c", "exit 2").returncode == 2
    try:
        r = docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}")
        assert re.fullmatch(rb"Exited \(2\) (Less than a second|\d+ seconds?) ago\n", r.stdout), \
            r.stdout
        assert docker("ps", "--filter", f"name={name}", "-q").stdout == b""
    finally:
        docker("rm", "-f", name)


def test_logs_and_logs_follow(docker: Docker, name: str) -> None:
    _detached(docker, name, "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done; "
              "echo bad >&2")
    try:
        f = docker("logs", "-f", name, timeout=30)
        assert f.returncode == 0 and f.stdout == b"line1\nline2\nline3\n"
        assert f.stderr == b"bad\n"
        r = docker("logs", "--tail", "1", name)
        assert r.stdout + r.stderr == b"bad\n"
    finally:
        docker("rm", "-f", name)


def test_logs_compress_rotates_into_gzip_and_reads_back(docker: Docker, name: str) -> None:
    """--log-opt compress=true: rotated files are gzip; `docker logs` reads across them."""
    import os

    r = docker("run", "--name", name, "--log-opt", "max-size=2k", "--log-opt", "max-file=3",
               "--log-opt", "compress=true", "busybox", "sh", "-c",
               "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done")
    try:
        assert r.returncode == 0, r.stderr
        path = docker("inspect", "-f", "{{.LogPath}}", name).stdout.decode().strip()
        names = sorted(os.listdir(os.path.dirname(path)))
        base = os.path.basename(path)
        assert f"{base}.1.gz" in names and f"{base}.2.gz" in names, names
        got = docker("logs", name).stdout.decode().split()
        n = [int(x.split("-")[1]) for x in got]
        assert n == list(range(n[0], 300)) and n[0] > 0          # newest kept, no gap
        assert docker("logs", "--tail", "2", name).stdout == b"line-298\nline-299\n"
    finally:
        docker("rm", "-f", name)


def test_logs_compress_with_one_file_is_refused(docker: Docker, name: str) -> None:
    r = docker("run", "--rm", "--name", name, "--log-opt", "compress=true", "busybox", "true")
    assert r.returncode != 0
    assert b"compress cannot be true when max-file is less than 2" in r.stderr, r.stderr


def test_exec_output_and_exit_code(docker: Docker, name: str) -> None:
    _detached(docker, name, "sleep", "600")
    try:
        r = docker("exec", name, "sh", "-c", "echo in-$HOSTNAME; exit 4")
        assert r.returncode == 4 and r.stdout.startswith(b"in-")
        assert docker("exec", name, "no-such-command").returncode in (126, 127)
        r = docker("exec", "-i", name, "cat", input=b"piped\n")
        assert (r.returncode, r.stdout) == (0, b"piped\n")
    finally:
        docker("rm", "-f", name)


def test_exec_it_under_a_pty(engine: Any, docker: Docker, name: str) -> None:
    _detached(docker, name, "sleep", "600")
    try:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the Docker CLI on a terminal, as a user would run it
            os.execve(docker_cli(), ["docker", "exec", "-it", name, "sh"],
                      engine.docker_env)
        out = b""
        os.write(fd, b"tty; echo mark-$((6*7))\r")
        deadline = time.monotonic() + 20
        while b"mark-42" not in out and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
        os.write(fd, b"exit 6\r")
        while time.monotonic() < deadline:
            try:
                if not os.read(fd, 4096):
                    break
            except OSError:
                break
        _, status = os.waitpid(pid, 0)
        assert b"mark-42" in out and b"/dev/pts/" in out, out
        assert os.waitstatus_to_exitcode(status) == 6
    finally:
        docker("rm", "-f", name)


def test_stop_kill_restart_wait(docker: Docker, name: str) -> None:
    _detached(docker, name, "sleep", "600")
    try:
        r = docker("stop", "-t", "1", name)
        assert (r.returncode, r.stdout) == (0, f"{name}\n".encode())
        state = docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
        assert state.stdout.split()[0] == b"exited"
        assert docker("restart", "-t", "1", name).stdout == f"{name}\n".encode()
        assert docker("inspect", "-f", "{{.State.Running}}", name).stdout == b"true\n"
        assert docker("kill", name).stdout == f"{name}\n".encode()
        assert docker("wait", name).stdout == b"137\n"
    finally:
        docker("rm", "-f", name)


def test_wait_returns_exit_status(docker: Docker, name: str) -> None:
    _detached(docker, name, "sh", "-c", "sleep 0.3; exit 5")
    try:
        r = docker("wait", name)
        assert (r.returncode, r.stdout) == (0, b"5\n")
    finally:
        docker("rm", "-f", name)


def test_rm_f_removes_running(docker: Docker, name: str) -> None:
    _detached(docker, name, "sleep", "600")
    r = docker("rm", "-f", name)
    assert (r.returncode, r.stdout) == (0, f"{name}\n".encode())
    assert docker("inspect", name).returncode == 1


def test_inspect_shape(docker: Docker, name: str) -> None:
    import json

    cid = _detached(docker, name, "sleep", "600")
    try:
        r = docker("inspect", name)
        assert r.returncode == 0
        (obj,) = json.loads(r.stdout)
        assert obj["Id"] == cid and obj["Name"] == f"/{name}"
        assert obj["State"]["Running"] is True and obj["State"]["Pid"] > 0
        assert obj["Config"]["Cmd"] == ["sleep", "600"] and obj["Config"]["Image"] == "busybox"
    finally:
        docker("rm", "-f", name)


def test_top_lists_the_process(docker: Docker, name: str) -> None:
    _detached(docker, name, "sleep", "600")
    try:
        r = docker("top", name)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.decode().splitlines()
        assert "PID" in lines[0].split() and any("sleep 600" in line for line in lines[1:])
    finally:
        docker("rm", "-f", name)


def test_stats_no_stream(docker: Docker, name: str) -> None:
    _detached(docker, name, "sleep", "600")
    try:
        r = docker("stats", "--no-stream", name)
        assert r.returncode == 0, r.stderr
        head, row = r.stdout.decode().splitlines()
        assert head.split()[:3] == ["CONTAINER", "ID", "NAME"] and name in row
        assert re.search(r"\d+(\.\d+)?[KMG]?i?B / \d+(\.\d+)?[KMGT]?i?B", row), row
    finally:
        docker("rm", "-f", name)


# ----------------------------------------------------------------- bad input
def test_unknown_container(docker: Docker) -> None:
    for verb in ("stop", "rm", "logs", "inspect", "kill"):
        r = docker(verb, "lk-no-such-container")
        assert r.returncode == 1, verb
        assert b"No such container: lk-no-such-container" in r.stderr \
            or b"No such object: lk-no-such-container" in r.stderr, (verb, r.stderr)


def test_name_in_use_is_conflict_125(docker: Docker, name: str) -> None:
    cid = _detached(docker, name, "sleep", "600")
    try:
        r = docker("run", "--name", name, "busybox", "true")
        assert r.returncode == 125
        assert (f'Conflict. The container name "/{name}" is already in use by container '
                f'"{cid}". You have to remove (or rename) that container to be able to '
                "reuse that name.").encode() in r.stderr, r.stderr
    finally:
        docker("rm", "-f", name)


def test_invalid_restart_policy(docker: Docker) -> None:
    r = docker("run", "--restart", "sometimes", "busybox", "true")
    assert r.returncode == 125 and b"restart" in r.stderr


def test_exec_in_stopped_container(docker: Docker, name: str) -> None:
    assert docker("create", "--name", name, "busybox", "true").returncode == 0
    try:
        r = docker("exec", name, "true")
        assert r.returncode != 0 and b"is not running" in r.stderr, r.stderr
    finally:
        docker("rm", "-f", name)


def test_run_it_under_a_pty(engine: Any) -> None:
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(docker_cli(), ["docker", "run", "-it", "--rm", "busybox", "sh"],
                  engine.docker_env)
    out, sent = b"", False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not sent and b"/ # " in out:
            os.write(fd, b"tty; echo mark-$((6*7)); exit 9\r")
            sent = True
        if select.select([fd], [], [], 0.5)[0]:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert b"mark-42" in out and b"/dev/pts/" in out, out
    assert os.waitstatus_to_exitcode(status) == 9


def test_version_and_info(docker: Docker) -> None:
    r = docker("version", "--format", "{{.Server.APIVersion}}")
    assert (r.returncode, r.stdout) == (0, b"1.41\n"), r.stderr
    r = docker("info", "--format", "{{.OSType}}")
    assert (r.returncode, r.stdout) == (0, b"linux\n"), r.stderr


def test_pause_unpause_rename_update_prune(docker: Docker, name: str) -> None:
    _detached(docker, name, "sleep", "600")
    renamed = f"{name}-r"
    try:
        assert docker("pause", name).stdout == f"{name}\n".encode()
        assert docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}"
                      ).stdout.endswith(b"(Paused)\n")
        assert docker("unpause", name).stdout == f"{name}\n".encode()
        assert docker("rename", name, renamed).returncode == 0
        assert docker("inspect", "-f", "{{.Name}}", renamed).stdout == f"/{renamed}\n".encode()
        r = docker("update", "--memory", "64m", "--memory-swap", "128m", renamed)
        assert r.returncode == 0, r.stderr
        assert docker("inspect", "-f", "{{.HostConfig.Memory}}", renamed).stdout == b"67108864\n"
        assert docker("kill", renamed).returncode == 0
        assert docker("wait", renamed).stdout == b"137\n"
        r = docker("container", "prune", "-f")
        assert r.returncode == 0 and b"Total reclaimed space" in r.stdout
        assert docker("inspect", renamed).returncode == 1
    finally:
        docker("rm", "-f", name, renamed)


def test_events_since_answer_after_a_daemon_restart(name: str) -> None:
    """`docker events --since` after a SIGKILLed daemon came back: the journal answers."""
    from labkit.lab.engine import LabEngine

    cli = docker_cli()
    eng = LabEngine("ev")  # its own daemon: the session's one keeps running for the others
    try:
        eng.start()

        def docker(*args: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run([cli, *args], env=eng.docker_env, capture_output=True,
                                  timeout=60, check=False)

        since = str(int(time.time()) - 1)
        r = docker("run", "--name", name, "--network", "none", "busybox", "true")
        assert r.returncode == 0, r.stderr
        fmt = ("events", "--since", since, "--filter", f"container={name}",
               "--format", "{{.Action}}")
        before = docker(*fmt, "--until", str(time.time())).stdout.split()
        assert before[:1] == [b"create"] and b"start" in before and b"die" in before, before
        eng.crash()
        eng.start()
        after = docker(*fmt, "--until", str(time.time()))
        assert after.returncode == 0, after.stderr
        assert after.stdout.split()[:len(before)] == before
        assert docker("rm", name).returncode == 0
    finally:
        eng.stop()


def test_run_of_a_non_executable_is_126_in_the_cli_and_in_inspect(docker: Docker,
                                                                   name: str) -> None:
    try:
        r = docker("run", "--name", name, "busybox", "/etc/passwd", timeout=20)
        assert r.returncode == 126 and b"permission denied" in r.stderr, (r.stdout, r.stderr)
        # the daemon's record says so too (the runtime's typed error, carried to the daemon)
        st = docker("inspect", "-f", "{{.State.ExitCode}} {{.State.Status}}", name)
        assert st.stdout.split() == [b"126", b"created"], st.stderr
    finally:
        docker("rm", "-f", name)


def test_exec_exit_codes_come_from_the_typed_error_not_its_text(docker: Docker,
                                                                 name: str) -> None:
    _detached(docker, name, "sleep", "600")
    try:
        assert docker("exec", name, "no-such-command").returncode == 127
        assert docker("exec", name, "/no/such/file").returncode == 127
        assert docker("exec", name, "/etc/passwd").returncode == 126
        # a file that exists but cannot be executed, whose name reads "not found": its
        # error text says "not found", its type says 126
        assert docker("exec", name, "sh", "-c", "echo > '/bin/not found'").returncode == 0
        r = docker("exec", name, "/bin/not found")
        assert r.returncode == 126, (r.stdout, r.stderr)
    finally:
        docker("rm", "-f", name)
