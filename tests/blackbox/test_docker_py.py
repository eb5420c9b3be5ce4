"""The docker Python SDK (docker-py) drives labkit's daemon through DockerClient(base_url=unix://...)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import docker  # the dev extra installs it: a real client never skips
import pytest

from labkit.lab.engine import LabEngine

pytestmark = pytest.mark.privileged


@pytest.fixture
def dc(engine: LabEngine) -> Iterator[Any]:
    client = docker.DockerClient(base_url=f"unix://{engine.socket}", version="1.41")
    yield client
    client.close()


def test_ping_and_version(dc: Any) -> None:
    assert dc.ping() is True
    assert dc.version()["ApiVersion"] == "1.41"


def test_run_remove_returns_output(dc: Any) -> None:
    assert dc.containers.run("busybox", ["echo", "hi"], remove=True) == b"hi\n"


def test_run_nonzero_raises_container_error(dc: Any) -> None:
    with pytest.raises(docker.errors.ContainerError) as info:
        dc.containers.run("busybox", ["sh", "-c", "exit 3"], remove=True)
    assert info.value.exit_status == 3


def test_detached_lifecycle(dc: Any, name: str) -> None:
    c = dc.containers.run("busybox", ["sh", "-c", "echo started; sleep 600"], detach=True,
                          name=name)
    try:
        deadline = time.monotonic() + 15
        while b"started" not in c.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.logs() == b"started\n"
        c.reload()
        assert c.status == "running" and c.name == name
        assert name in [x.name for x in dc.containers.list()]
        code, out = c.exec_run(["sh", "-c", "echo in; exit 2"])
        assert (code, out) == (2, b"in\n")
        top = c.top()
        assert any("sleep 600" in " ".join(p) for p in top["Processes"])
        stats = c.stats(stream=False)
        assert stats["memory_stats"].get("usage", 0) > 0
        c.stop(timeout=1)
        c.reload()
        assert c.status == "exited"
        c.restart(timeout=1)
        c.reload()
        assert c.status == "running"
        c.kill()
        assert c.wait()["StatusCode"] == 137
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        dc.containers.get(name)


def test_remove_force_running(dc: Any, name: str) -> None:
    c = dc.containers.run("busybox", ["sleep", "600"], detach=True, name=name)
    c.remove(force=True)
    assert name not in [x.name for x in dc.containers.list(all=True)]


def test_unknown_container_is_not_found(dc: Any) -> None:
    with pytest.raises(docker.errors.NotFound) as info:
        dc.containers.get("lk-no-such-container")
    assert "No such container: lk-no-such-container" in str(info.value)


def test_name_conflict_is_409(dc: Any, name: str) -> None:
    c = dc.containers.run("busybox", ["sleep", "600"], detach=True, name=name)
    try:
        with pytest.raises(docker.errors.APIError) as info:
            dc.containers.create("busybox", ["true"], name=name)
        assert info.value.status_code == 409
        assert f'The container name "/{name}" is already in use' in str(info.value)
    finally:
        c.remove(force=True)


def test_invalid_restart_policy_is_400_and_leaves_nothing(dc: Any, name: str) -> None:
    with pytest.raises(docker.errors.APIError) as info:
        dc.containers.create("busybox", ["true"], name=name,
                             restart_policy={"Name": "sometimes"})
    assert info.value.status_code == 400 and "restart" in str(info.value).lower()
    assert name not in [x.name for x in dc.containers.list(all=True)]


def test_exec_in_stopped_container_is_409(dc: Any, name: str) -> None:
    c = dc.containers.create("busybox", ["true"], name=name)
    try:
        with pytest.raises(docker.errors.APIError) as info:
            c.exec_run(["true"])
        assert info.value.status_code == 409 and "is not running" in str(info.value)
    finally:
        c.remove(force=True)


def test_missing_command_is_127(dc: Any, name: str) -> None:
    c = dc.containers.create("busybox", ["no-such-command"], name=name)
    try:
        with pytest.raises(docker.errors.APIError) as info:
            c.start()
        assert "executable file not found" in str(info.value)
        c.reload()
        assert c.attrs["State"]["ExitCode"] == 127
    finally:
        c.remove(force=True)


def test_logs_stream_follow_and_exec_stream(dc: Any, name: str) -> None:
    c = dc.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo l$i; sleep 0.2; done"],
                          detach=True, name=name)
    try:
        lines = b"".join(c.logs(stream=True, follow=True))
        assert lines == b"l1\nl2\nl3\n"
        assert c.wait()["StatusCode"] == 0
    finally:
        c.remove(force=True)


def test_exec_run_stream_and_demux(dc: Any, name: str) -> None:
    c = dc.containers.run("busybox", ["sleep", "600"], detach=True, name=name)
    try:
        code, (out, err) = c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
        assert (code, out, err) == (0, b"o\n", b"e\n")
        chunks = c.exec_run(["sh", "-c", "echo a; sleep 0.2; echo b"], stream=True).output
        assert b"".join(chunks) == b"a\nb\n"
    finally:
        c.remove(force=True)


def test_events_report_the_lifecycle(dc: Any, name: str) -> None:
    since = int(time.time()) - 1
    dc.containers.run("busybox", ["true"], name=name, remove=True)
    until = int(time.time()) + 2
    actions = [e["Action"] for e in dc.events(since=since, until=until, decode=True,
                                              filters={"container": name})]
    assert actions[:1] == ["create"] and "start" in actions and "die" in actions, actions
    assert actions.index("start") < actions.index("die")
