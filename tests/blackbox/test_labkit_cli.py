"""The `labkit` command against a real labkit daemon: Docker's output and exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable

import pytest

from labkit.lab.engine import LabEngine
from labkit.measure.peers import docker_cli

pytestmark = pytest.mark.privileged

LABKIT = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", ".venv", "bin",
                      "labkit")
Run = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def labkit(engine: LabEngine) -> Run:
    def run(*args: str, input: bytes | None = None, timeout: float = 60
            ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([LABKIT, *args], env=engine.env, input=input,
                              capture_output=True, timeout=timeout, check=False)
    return run


def test_run_rm_output_and_status(labkit: Run) -> None:
    r = labkit("run", "--rm", "busybox", "echo", "hi")
    assert (r.returncode, r.stdout) == (0, b"hi\n"), r.stderr
    r = labkit("run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo e >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"", b"e\n")


def test_run_stdin(labkit: Run) -> None:
    r = labkit("run", "--rm", "-i", "busybox", "wc", "-c", input=b"12345")
    assert (r.returncode, r.stdout.strip()) == (0, b"5")


def test_run_missing_command_127(labkit: Run, name: str) -> None:
    r = labkit("run", "--name", name, "busybox", "no-such-command")
    labkit("rm", "-f", name)
    assert r.returncode == 127 and b"executable file not found" in r.stderr, r.stderr


def test_detached_ps_exec_logs_stop_rm(labkit: Run, name: str) -> None:
    r = labkit("run", "-d", "--name", name, "-e", "GREETING=hey", "busybox", "sh", "-c",
               "echo $GREETING; sleep 600")
    assert r.returncode == 0 and re.fullmatch(rb"[0-9a-f]{64}\n", r.stdout), r.stderr
    cid = r.stdout.decode().strip()
    try:
        ps = labkit("ps", "--format", "{{.ID}}|{{.Names}}|{{.Image}}|{{.State}}")
        assert f"{cid[:12]}|{name}|busybox|running\n".encode() in ps.stdout
        assert labkit("ps", "-q", "--no-trunc").stdout.decode().split().count(cid) == 1
        r = labkit("exec", name, "sh", "-c", "echo x$GREETING; exit 7")
        assert (r.returncode, r.stdout) == (7, b"xhey\n")
        assert labkit("logs", name).stdout == b"hey\n"
        r = labkit("inspect", "--format", "{{.State.Status}}", name)
        assert r.stdout == b"running\n"
        assert labkit("stop", "-t", "1", name).stdout == f"{name}\n".encode()
        assert labkit("inspect", "-f", "{{.State.Running}}", name).stdout == b"false\n"
    finally:
        assert labkit("rm", "-f", name).returncode == 0
    r = labkit("inspect", name)
    assert r.returncode == 1 and f"Error: No such object: {name}".encode() in r.stderr


def test_name_conflict_125(labkit: Run, name: str) -> None:
    assert labkit("create", "--name", name, "busybox", "true").returncode == 0
    try:
        r = labkit("run", "--name", name, "busybox", "true")
        assert r.returncode == 125 and b"is already in use" in r.stderr
    finally:
        labkit("rm", "-f", name)


def test_invalid_restart_125(labkit: Run) -> None:
    r = labkit("run", "--restart", "sometimes", "busybox", "true")
    assert r.returncode == 125 and b"--restart" in r.stderr


def test_autostart_when_no_daemon_answers() -> None:
    """`labkit run` in fresh dirs starts a daemon, says so once on stderr, and runs."""
    eng = LabEngine("ba")  # short: shim socket paths under LABKIT_RUN must fit in 108 bytes
    try:
        env = dict(eng.env)
        r = subprocess.run([LABKIT, "run", "--rm", "busybox", "echo", "hi"], env=env,
                           capture_output=True, timeout=120, check=False)
        assert (r.returncode, r.stdout) == (0, b"hi\n"), r.stderr
        assert r.stderr.count(b"started one") == 1
        assert (eng.run / "daemon.log").exists()
        r = subprocess.run([LABKIT, "ps", "-a", "-q"], env=env, capture_output=True,
                           timeout=60, check=False)
        assert (r.returncode, r.stdout, b"started one" in r.stderr) == (0, b"", False)
    finally:
        eng.stop()


def _pty_session(argv: list[str], env: dict[str, str], keys: list[bytes],
                 until: bytes, timeout: float = 20.0) -> tuple[bytes, int]:
    """Run ``argv`` on a new pty (pty(7)), type ``keys`` once ``until`` shows; (output, status)."""
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    out = b""
    deadline = time.monotonic() + timeout
    sent = False
    while time.monotonic() < deadline:
        if not sent and (until in out or not until):
            for k in keys:
                os.write(fd, k)
            sent = True
        if select.select([fd], [], [], 0.2)[0]:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        elif sent and os.waitpid(pid, os.WNOHANG)[0]:
            return out, -1
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out, os.waitstatus_to_exitcode(status)


def test_run_it_gets_a_tty_and_exit_status(engine: LabEngine) -> None:
    out, status = _pty_session([LABKIT, "run", "-it", "--rm", "busybox", "sh"], engine.env,
                               [b"tty; echo mark-$((6*7)); exit 5\r"], b"/ # ")
    assert b"mark-42" in out and b"/dev/pts/" in out, out
    assert status == 5


def test_run_it_detach_keys_leave_it_running(engine: LabEngine, labkit: Run,
                                             name: str) -> None:
    out, status = _pty_session([LABKIT, "run", "-it", "--name", name, "busybox", "sh"],
                               engine.env, [b"echo ready-$((1+1))\r", b"\x10\x11"], b"/ # ")
    try:
        assert status == 0, out
        r = labkit("inspect", "-f", "{{.State.Running}}", name)
        assert r.stdout == b"true\n"
    finally:
        labkit("rm", "-f", name)


def test_exec_it_gets_a_tty(engine: LabEngine, labkit: Run, name: str) -> None:
    assert labkit("run", "-d", "--name", name, "busybox", "sleep", "600").returncode == 0
    try:
        out, status = _pty_session([LABKIT, "exec", "-it", name, "sh"], engine.env,
                                   [b"tty; echo mark-$((6*7)); exit 4\r"], b"/ # ")
        assert b"mark-42" in out and b"/dev/pts/" in out, out
        assert status == 4
    finally:
        labkit("rm", "-f", name)


def test_same_text_as_the_docker_cli(engine: LabEngine, labkit: Run, name: str) -> None:
    """labkit and the real Docker CLI print the same for the same daemon state."""
    import json

    docker = docker_cli()

    def dock(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([docker, *args], env=engine.docker_env, capture_output=True,
                              timeout=60, check=False)

    assert labkit("run", "-d", "--name", name, "busybox", "sh", "-c",
                  "echo out; echo err >&2; sleep 600").returncode == 0
    try:
        fmt = "{{.ID}} {{.Names}} {{.Image}} {{.Command}} {{.State}} {{.Ports}} {{.Labels}}"
        for args in (["ps", "-a", "--format", fmt], ["ps", "-a", "-q"],
                     ["ps", "-a", "--no-trunc", "--format", "{{.ID}}\t{{.Command}}"],
                     ["container", "ls", "-a", "--format", "{{json .Names}}"],
                     ["inspect", "--format", "{{.State.Status}} {{.Config.Image}}", name],
                     ["port", name]):
            ours, theirs = labkit(*args), dock(*args)
            assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), args
        ours, theirs = labkit("logs", name), dock("logs", name)
        assert (ours.stdout, ours.stderr) == (theirs.stdout, theirs.stderr) == (b"out\n",
                                                                                b"err\n")
        assert json.loads(labkit("inspect", name).stdout) == json.loads(dock("inspect",
                                                                             name).stdout)
        ours, theirs = labkit("top", name), dock("top", name)
        assert ours.stdout.split(b"\n")[0].split() == theirs.stdout.split(b"\n")[0].split()
        ours = labkit("stats", "--no-stream", name)
        theirs = dock("stats", "--no-stream", name)
        assert ours.stdout.split(b"\n")[0] == theirs.stdout.split(b"\n")[0]
    finally:
        labkit("rm", "-f", name)


def test_pause_unpause_kill_wait_restart(labkit: Run, name: str) -> None:
    assert labkit("run", "-d", "--name", name, "busybox", "sleep", "600").returncode == 0
    try:
        assert labkit("pause", name).stdout == f"{name}\n".encode()
        assert labkit("inspect", "-f", "{{.State.Status}}", name).stdout == b"paused\n"
        assert labkit("unpause", name).stdout == f"{name}\n".encode()
        assert labkit("restart", "-t", "1", name).returncode == 0
        assert labkit("inspect", "-f", "{{.State.Running}}", name).stdout == b"true\n"
        # sleep is pid 1 in its pid namespace: TERM has no handler there and is ignored
        assert labkit("kill", "-s", "TERM", name).returncode == 0
        assert labkit("inspect", "-f", "{{.State.Running}}", name).stdout == b"true\n"
        assert labkit("kill", name).returncode == 0
        assert labkit("wait", name).stdout == b"137\n"
        r = labkit("container", "prune", "-f", "--filter", f"label=lk-none-{name}")
        assert r.returncode == 0 and b"Total reclaimed space:" in r.stdout
    finally:
        labkit("rm", "-f", name)


def test_run_flags_reach_the_container(labkit: Run, tmp_path: os.PathLike[str]) -> None:
    env_file = os.path.join(str(tmp_path), "env")
    with open(env_file, "w") as f:
        f.write("FROM_FILE=yes\n")
    r = labkit("run", "--rm", "-h", "box", "-w", "/tmp", "-u", "65534", "-e", "A=1",
               "--env-file", env_file, "--network", "none", "--memory", "32m",
               "--pids-limit", "10", "--init", "busybox", "sh", "-c",
               "hostname; pwd; id -u; echo $A $FROM_FILE; ls /sys/class/net | sort | "
               "tr '\\n' ' '; echo")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["box", "/tmp", "65534", "1 yes", "lo "]


def test_entrypoint_override(labkit: Run) -> None:
    r = labkit("run", "--rm", "--entrypoint", "/bin/echo", "busybox", "via", "entrypoint")
    assert (r.returncode, r.stdout) == (0, b"via entrypoint\n"), r.stderr


def test_logs_follow_and_attach(engine: LabEngine, labkit: Run, name: str) -> None:
    assert labkit("run", "-d", "--name", name, "busybox", "sh", "-c",
                  "sleep 0.5; for i in 1 2 3; do echo n$i; sleep 0.2; done; exit 4"
                  ).returncode == 0
    try:
        att = subprocess.Popen([LABKIT, "attach", name], env=engine.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        f = labkit("logs", "-f", name, timeout=30)
        assert (f.returncode, f.stdout) == (0, b"n1\nn2\nn3\n")
        out, _ = att.communicate(timeout=30)
        assert att.returncode == 4 and out.endswith(b"n3\n"), out
        assert labkit("logs", "--tail", "1", name).stdout == b"n3\n"
    finally:
        labkit("rm", "-f", name)


def test_signals_go_to_the_container(engine: LabEngine) -> None:
    """--sig-proxy: SIGINT to a foreground `labkit run` reaches the container's process."""
    import signal

    p = subprocess.Popen([LABKIT, "run", "--rm", "busybox", "sh", "-c",
                          ("trap 'echo got-int; exit 7' INT; echo ready; "
                           "while true; do sleep 0.1; done")],
                         env=engine.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
        assert (p.returncode, out) == (7, b"got-int\n")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_rename_and_update(labkit: Run, name: str) -> None:
    assert labkit("run", "-d", "--name", name, "busybox", "sleep", "600").returncode == 0
    renamed = f"{name}-r"
    try:
        assert labkit("rename", name, renamed).returncode == 0
        r = labkit("update", "--memory", "64m", "--memory-swap", "128m", "--pids-limit", "50",
                   renamed)
        assert (r.returncode, r.stdout) == (0, f"{renamed}\n".encode()), r.stderr
        r = labkit("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}", renamed)
        assert r.stdout == b"67108864 50\n"
    finally:
        labkit("rm", "-f", name, renamed)


def test_network_host_shares_the_host_netns(labkit: Run) -> None:
    r = labkit("run", "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net")
    assert (r.returncode, r.stdout.decode().strip()) == (0, os.readlink("/proc/self/ns/net"))
    r = labkit("run", "--rm", "--network", "none", "busybox", "readlink", "/proc/self/ns/net")
    assert r.returncode == 0 and r.stdout.decode().strip() != os.readlink("/proc/self/ns/net")


def test_restart_policy_reaches_the_daemon(labkit: Run, name: str) -> None:
    import time

    r = labkit("run", "-d", "--name", name, "--restart", "on-failure:2", "busybox", "sh", "-c",
               "exit 1")
    assert r.returncode == 0, r.stderr
    try:
        fmt = "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        assert labkit("inspect", "-f", fmt, name).stdout == b"on-failure 2\n"
        deadline = time.monotonic() + 60
        state = b""
        while time.monotonic() < deadline:
            state = labkit("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", name).stdout
            if state == b"2 exited\n":
                break
            time.sleep(0.2)
        assert state == b"2 exited\n"
    finally:
        labkit("rm", "-f", name)


def test_run_health_and_kernel_view_flags(labkit: Run, name: str) -> None:
    r = labkit("run", "-d", "--name", name, "--health-cmd", "echo fine", "--health-interval",
               "1s", "--ulimit", "nofile=300:400", "--sysctl", "kernel.shmmni=1000",
               "--security-opt", "no-new-privileges", "--shm-size", "8m", "busybox",
               "sleep", "600")
    assert r.returncode == 0, r.stderr
    try:
        r = labkit("exec", name, "sh", "-c", "ulimit -n; cat /proc/sys/kernel/shmmni; "
                   "grep NoNewPrivs /proc/self/status; df -k /dev/shm | tail -1")
        lines = r.stdout.decode().splitlines()
        assert lines[:2] == ["300", "1000"] and lines[2].split() == ["NoNewPrivs:", "1"], r
        assert lines[3].split()[1] == "8192", r
        deadline = time.monotonic() + 30
        while b"(healthy)" not in (ps := labkit("ps", "--filter", f"name={name}",
                                                "--format", "{{.Status}}")).stdout:
            assert time.monotonic() < deadline, ps
            time.sleep(0.1)
        r = labkit("inspect", "--format", "{{.State.Health.Status}}", name)
        assert r.stdout == b"healthy\n", r
    finally:
        labkit("rm", "-f", name)
