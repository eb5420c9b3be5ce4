"""Health checks with the real Docker CLI and docker-py: State.Health, its log, health_status
events, `docker ps` showing (healthy)/(unhealthy)/(health: starting), HEALTHCHECK NONE."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from labkit.lab.engine import LabEngine

pytestmark = pytest.mark.privileged

Docker = Callable[..., subprocess.CompletedProcess[bytes]]


def _until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if got := check():
            return got
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def health(docker: Docker, name: str) -> dict[str, Any]:
    r = docker("inspect", "-f", "{{json .State.Health}}", name)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) or {}


def ps_status(docker: Docker, name: str) -> str:
    return docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout.decode()


@pytest.fixture
def detached(docker: Docker, name: str) -> Iterator[Callable[..., None]]:
    def start(*args: str) -> None:
        r = docker("run", "-d", "--name", name, *args, "busybox", "sleep", "600")
        assert r.returncode == 0, r.stderr
    yield start
    docker("rm", "-f", name)


def test_healthy_log_ps_and_event(docker: Docker, name: str, detached: Any) -> None:
    since = int(time.time()) - 1
    detached("--health-cmd", "echo probe-ok", "--health-interval", "1s")
    h = _until(lambda: (x := health(docker, name)).get("Status") == "healthy" and x)
    assert h["FailingStreak"] == 0
    entry = h["Log"][-1]
    assert entry["ExitCode"] == 0 and entry["Output"] == "probe-ok\n"
    assert entry["Start"] <= entry["End"]
    assert ps_status(docker, name).endswith("(healthy)\n")
    r = docker("ps", "--filter", "health=healthy", "--format", "{{.Names}}")
    assert name in r.stdout.decode().split()
    r = docker("events", "--since", str(since), "--until", str(int(time.time()) + 1),
               "--filter", f"container={name}", "--format", "{{.Action}}")
    assert "health_status: healthy" in r.stdout.decode().splitlines(), r
    r = docker("events", "--since", str(since), "--until", str(int(time.time()) + 1),
               "--filter", f"container={name}", "--filter", "event=health_status",
               "--format", "{{.Action}}")
    assert set(r.stdout.decode().split("\n")) - {""} == {"health_status: healthy"}, r
    # the log keeps the last 5 results
    _until(lambda: len(health(docker, name)["Log"]) == 5)
    assert len(health(docker, name)["Log"]) == 5


def test_unhealthy_after_retries(docker: Docker, name: str, detached: Any) -> None:
    detached("--health-cmd", "echo bad >&2; exit 3", "--health-interval", "1s",
             "--health-retries", "2")
    h = _until(lambda: (x := health(docker, name)).get("Status") == "unhealthy" and x)
    assert h["FailingStreak"] >= 2
    assert h["Log"][-1]["ExitCode"] == 3 and h["Log"][-1]["Output"] == "bad\n"
    assert ps_status(docker, name).endswith("(unhealthy)\n")


def test_timeout_is_a_failure(docker: Docker, name: str, detached: Any) -> None:
    detached("--health-cmd", "sleep 30", "--health-interval", "1s", "--health-timeout",
             "500ms", "--health-retries", "1")
    h = _until(lambda: (x := health(docker, name)).get("Status") == "unhealthy" and x)
    assert h["Log"][-1]["ExitCode"] == -1
    assert h["Log"][-1]["Output"] == "Health check exceeded timeout (500ms)"


def test_starting_and_start_period(docker: Docker, name: str, detached: Any) -> None:
    # (inside the start period the probe runs every StartInterval, 5s by default)
    detached("--health-cmd", "exit 1", "--health-interval", "1s", "--health-start-period",
             "1h", "--health-retries", "1")
    h = _until(lambda: len((x := health(docker, name)).get("Log") or []) >= 1 and x)
    # failures inside the start period do not count while the container is starting
    assert (h["Status"], h["FailingStreak"]) == ("starting", 0)
    assert ps_status(docker, name).endswith("(health: starting)\n")


def test_no_healthcheck(docker: Docker, name: str, detached: Any) -> None:
    detached("--no-healthcheck")
    r = docker("inspect", "-f", "{{json .Config.Healthcheck.Test}} {{json .State.Health}}", name)
    assert r.stdout == b'["NONE"] null\n', r
    assert "(" not in ps_status(docker, name)


def test_docker_py_cmd_form(engine: LabEngine, name: str) -> None:
    docker = pytest.importorskip("docker")
    dc = docker.DockerClient(base_url=f"unix://{engine.socket}", version="1.41")
    c = dc.containers.run("busybox", ["sleep", "600"], detach=True, name=name,
                          healthcheck={"test": ["CMD", "sh", "-c", "echo $HOSTNAME"],
                                       "interval": 10**9})
    try:
        def healthy() -> dict[str, Any] | None:
            c.reload()
            h = c.attrs["State"].get("Health") or {}
            return h if h.get("Status") == "healthy" else None
        h = _until(healthy)
        assert h["Log"][-1]["Output"] == c.id[:12] + "\n"  # the container's env
        assert c.attrs["Config"]["Healthcheck"]["Test"][0] == "CMD"
    finally:
        c.remove(force=True)
        dc.close()


def test_invalid_healthcheck_is_400(engine: LabEngine) -> None:
    docker = pytest.importorskip("docker")
    dc = docker.APIClient(base_url=f"unix://{engine.socket}", version="1.41")
    with pytest.raises(docker.errors.APIError) as info:
        dc.create_container("busybox", ["true"], healthcheck={"test": ["CMD", "true"],
                                                               "interval": 500})
    assert info.value.status_code == 400
    assert "Interval in Healthcheck cannot be less than 1ms" in str(info.value)
    dc.close()


def test_docker_py_kernel_view_options(engine: LabEngine) -> None:
    docker = pytest.importorskip("docker")
    dc = docker.DockerClient(base_url=f"unix://{engine.socket}", version="1.41")
    try:
        out = dc.containers.run(
            "busybox", ["sh", "-c", ("ulimit -n; cat /proc/sys/kernel/msgmax; id -G; "
                                     "grep NoNewPrivs /proc/self/status; df -k /dev/shm")],
            remove=True, ulimits=[docker.types.Ulimit(name="nofile", soft=333, hard=444)],
            sysctls={"kernel.msgmax": "9999"}, group_add=[1000, "nogroup"],
            security_opt=["no-new-privileges"], shm_size="4m").decode().splitlines()
        assert out[:2] == ["333", "9999"], out
        assert {"1000", "65534"} <= set(out[2].split()), out
        assert out[3].split() == ["NoNewPrivs:", "1"] and out[5].split()[1] == "4096", out
        from labkit.engine.containers.resopts import runtime_applies
        if not runtime_applies("oom_kill_disable"):
            with pytest.raises(docker.errors.APIError) as info:
                dc.containers.run("busybox", ["true"], remove=True, oom_kill_disable=True)
            assert info.value.status_code == 400 and "OomKillDisable" in str(info.value)
    finally:
        dc.close()
