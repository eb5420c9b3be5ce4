"""Health checks survive the daemon: SIGKILL the daemon and the supervisor, start them again,
and the adopted container is monitored again (moby initHealthMonitor on restore)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from labkit.lab.engine import LabEngine

pytestmark = pytest.mark.privileged


@pytest.fixture
def engine() -> Iterator[LabEngine]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    eng = LabEngine("hc")
    try:
        eng.start()
        yield eng
    finally:
        eng.stop()


def test_health_checks_resume_after_a_daemon_restart(engine: LabEngine) -> None:
    docker = pytest.importorskip("docker")

    def client() -> Any:
        return docker.APIClient(base_url=f"unix://{engine.socket}", version="1.41")

    api = client()
    c = api.create_container("busybox", ["sleep", "600"], name=f"lk-hc-{os.getpid()}",
                             healthcheck={"test": ["CMD-SHELL", "echo alive"],
                                          "interval": 500_000_000})
    api.start(c)

    def health() -> dict[str, Any]:
        return api.inspect_container(c)["State"].get("Health") or {}
    deadline = time.monotonic() + 30
    while health().get("Status") != "healthy":
        assert time.monotonic() < deadline, health()
        time.sleep(0.1)
    last = health()["Log"][-1]["Start"]
    api.close()
    engine.crash()
    engine.start()
    api = client()
    # adopted: probed again, in the container that kept running meanwhile
    deadline = time.monotonic() + 30
    while not ((h := health()).get("Status") == "healthy" and h["Log"][-1]["Start"] > last):
        assert time.monotonic() < deadline, h
        time.sleep(0.1)
    assert h["Log"][-1]["Output"] == "alive\n"
    api.remove_container(c, force=True)
    api.close()
