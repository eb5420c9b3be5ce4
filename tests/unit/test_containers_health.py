"""Health check rules (moby daemon/health.go): probe argv, Go durations, streaks and status."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from labkit.engine.containers import health
from labkit.engine.containers.health import HealthMonitor, go_duration, probe_command

S = health.SECOND


@pytest.mark.parametrize("ns,text", [(S, "1s"), (1500 * 10**6, "1.5s"), (500 * 10**6, "500ms"),
                                     (90 * S, "1m30s"), (3600 * S, "1h0m0s"), (1500, "1.5µs"),
                                     (0, "0s")])
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_probe_command() -> None:
    assert probe_command({}) is None
    assert probe_command({"Healthcheck": {"Test": ["NONE"]}}) is None
    assert probe_command({"Healthcheck": {"Test": ["CMD", "a", "b"]}}) == ["a", "b"]
    assert probe_command({"Healthcheck": {"Test": ["CMD-SHELL", "x y"]}}) == ["/bin/sh", "-c",
                                                                            "x y"]
    assert probe_command({"Healthcheck": {"Test": ["CMD-SHELL", "x"]},
                          "Shell": ["/bin/bash", "-e", "-c"]}) == ["/bin/bash", "-e", "-c", "x"]


def test_ps_suffix() -> None:
    assert health.health_suffix(None) == ""
    assert health.health_suffix({"Status": "starting"}) == " (health: starting)"
    assert health.health_suffix({"Status": "healthy"}) == " (healthy)"


class Rec:
    def __init__(self, hc: dict[str, Any]) -> None:
        self.id, self.status, self.started_at = "c" * 64, "running", time.time()
        self.image, self.name = "busybox", "lk-health"
        self.config = {"Healthcheck": {"Test": ["CMD", "true"], **hc}}
        self.health: dict[str, Any] | None = None
        self.saved = 0

    def save(self, sync: bool = True) -> None:
        self.saved += 1


class Engine:
    """The event bus the monitor reports to (the only service _record and _interval use)."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def emit(self, action: str, *_: Any, **__: Any) -> None:
        self.events.append(action)


def results(hc: dict[str, Any], codes: list[int], started_offset: float = 0) -> tuple[
        Rec, Engine]:
    """Feed probe exit codes through HealthMonitor._record as the monitor task would."""
    eng, rec = Engine(), Rec(hc)
    mon = HealthMonitor(None, None, eng)  # type: ignore[arg-type]

    async def go() -> None:
        mon.tasks[rec.id] = asyncio.current_task()  # type: ignore[assignment]
        rec.health = {"Status": "starting", "FailingStreak": 0, "Log": []}
        for code in codes:
            mon._record(rec, rec.config["Healthcheck"], rec.started_at + started_offset, code,
                        f"out{code}")
    asyncio.run(go())
    return rec, eng


def test_retries_make_it_unhealthy_and_success_resets() -> None:
    rec, eng = results({"Retries": 2}, [1, 1])
    assert rec.health is not None
    assert (rec.health["Status"], rec.health["FailingStreak"]) == ("unhealthy", 2)
    assert eng.events == ["health_status: unhealthy"]
    rec, eng = results({}, [1, 0, 1, 1])
    assert rec.health is not None
    assert (rec.health["Status"], rec.health["FailingStreak"]) == ("healthy", 2)
    assert eng.events == ["health_status: healthy"]
    rec, eng = results({}, [1, 1, 1])  # default retries: 3
    assert rec.health is not None and rec.health["Status"] == "unhealthy"


def test_start_period_failures_do_not_count_while_starting() -> None:
    rec, _ = results({"StartPeriod": 3600 * S, "Retries": 1}, [1, 1, 1])
    assert rec.health is not None
    assert (rec.health["Status"], rec.health["FailingStreak"]) == ("starting", 0)
    rec, _ = results({"StartPeriod": S, "Retries": 1}, [1], started_offset=5)
    assert rec.health is not None and rec.health["Status"] == "unhealthy"


def test_log_keeps_the_last_five() -> None:
    rec, _ = results({}, [0, 0, 0, 0, 0, 0, 7])
    assert rec.health is not None
    assert [e["ExitCode"] for e in rec.health["Log"]] == [0, 0, 0, 0, 7]
    assert rec.health["Log"][-1]["Output"] == "out7"


def test_intervals() -> None:
    mon = HealthMonitor(None, None, Engine())  # type: ignore[arg-type]
    rec = Rec({})
    rec.health = {"Status": "starting"}
    assert mon._interval(rec, {}) == 30.0
    assert mon._interval(rec, {"Interval": 2 * S}) == 2.0
    hc = {"Interval": 60 * S, "StartPeriod": 3600 * S, "StartInterval": S}
    assert mon._interval(rec, hc) == 1.0
    rec.health["Status"] = "healthy"
    assert mon._interval(rec, hc) == 60.0
    near = {"Interval": 60 * S, "StartPeriod": 10 * S}  # the period ends before the interval
    assert mon._interval(rec, near) <= 10.0
