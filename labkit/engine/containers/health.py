"""Health checks (Config.Healthcheck, Dockerfile HEALTHCHECK): a probe exec'd in the container.

As moby daemon/health.go: while a container with a CMD or CMD-SHELL test runs, its monitor
waits ``Interval`` (``StartInterval`` while still starting inside ``StartPeriod``), runs the
test as an exec (the container's user, working dir and env; CMD-SHELL through Config.Shell or
``/bin/sh -c``), gives it ``Timeout``, and records the result in ``State.Health``: exit 0 is
healthy and resets the failing streak, anything else (a timeout or a probe that cannot start
is -1) adds to it, except that failures inside the start period do not count while the
container is still "starting"; ``Retries`` failures in a row make it unhealthy.  The log keeps
the last 5 results, each output cut at 4096 bytes.  A status change is the event
``health_status: <status>``.  ``["NONE"]`` (HEALTHCHECK NONE, --no-healthcheck) runs nothing.

The monitor only reads and writes ``rec.health``; the engine starts it when the container
starts (or is adopted after a daemon restart) and stops it when it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from labkit import errors
from labkit.engine.containers.events import EventBus
from labkit.engine.containers.execs import Execs
from labkit.engine.containers.healthcheck import (
    DEFAULT_INTERVAL,
    DEFAULT_RETRIES,
    DEFAULT_START_INTERVAL,
    DEFAULT_TIMEOUT,
    MAX_LOG,
    MAX_OUTPUT,
    SECOND,
    check_healthcheck,
    go_duration,
    health_suffix,
    probe_command,
)
from labkit.engine.containers.record import rfc3339
from labkit.engine.containers.tasks import TaskService

__all__ = ["HealthMonitor", "check_healthcheck", "go_duration", "health_suffix",
           "probe_command"]

log = logging.getLogger("labkit.daemon")

_FRAME = 8  # stdcopy header: stream byte, 3 zero bytes, big-endian length


class HealthMonitor:
    """One probing task per running container that has a CMD/CMD-SHELL healthcheck."""

    def __init__(self, execs: Execs, tasks: TaskService, bus: EventBus) -> None:
        self.execs, self.task_service, self.bus = execs, tasks, bus
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, rec: Any) -> None:
        """(Re)start monitoring ``rec`` from "starting" (moby initHealthMonitor)."""
        self.stop(rec.id)
        if probe_command(rec.config) is None:
            return
        old = rec.health or {}
        rec.health = {"Status": "starting", "FailingStreak": 0, "Log": old.get("Log") or []}
        self.tasks[rec.id] = asyncio.create_task(self._monitor(rec))

    def stop(self, cid: str) -> None:
        task = self.tasks.pop(cid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _interval(self, rec: Any, hc: dict[str, Any]) -> float:
        interval = hc.get("Interval") or DEFAULT_INTERVAL
        start_period = hc.get("StartPeriod") or 0
        elapsed = (time.time() - rec.started_at) * SECOND
        if elapsed >= start_period:
            return float(interval) / SECOND
        remaining = start_period - elapsed
        if remaining < interval:  # moby: the first check right when the start period ends
            return float(remaining) / SECOND
        if rec.health["Status"] == "starting":
            return float(hc.get("StartInterval") or DEFAULT_START_INTERVAL) / SECOND
        return float(interval) / SECOND

    async def _monitor(self, rec: Any) -> None:
        hc = rec.config["Healthcheck"]
        while True:
            await asyncio.sleep(self._interval(rec, hc))
            if rec.status != "running":  # paused: moby closes the monitor meanwhile
                continue
            started = time.time()
            try:
                code, output = await self._probe(rec, hc)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - a probe that cannot run is a failure
                log.info("health check %s: %s", rec.id[:12], err)
                code, output = -1, str(err)
            self._record(rec, hc, started, code, output)

    async def _probe(self, rec: Any, hc: dict[str, Any]) -> tuple[int, str]:
        cmd = probe_command(rec.config)
        assert cmd is not None
        ex = self.execs.create(rec.id, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
        try:
            return await self._run_exec(rec, hc, ex)
        finally:
            self.execs.forget(ex.id)  # dockerd keeps no finished probe execs around

    async def _run_exec(self, rec: Any, hc: dict[str, Any], ex: Any) -> tuple[int, str]:
        session = await self.execs.start(ex.id, False)
        out = bytearray()
        truncated = False

        async def read() -> None:
            nonlocal truncated
            if session is None:
                return
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    head = await session.reader.readexactly(_FRAME)
                    data = await session.reader.readexactly(int.from_bytes(head[4:], "big"))
                    keep = max(0, MAX_OUTPUT - len(out))
                    out.extend(data[:keep])
                    truncated = truncated or keep < len(data)
        timeout = hc.get("Timeout") or DEFAULT_TIMEOUT
        try:
            await asyncio.wait_for(asyncio.gather(read(), asyncio.shield(ex.done)),
                                   timeout / SECOND)
        except TimeoutError:
            with contextlib.suppress(errors.LabkitError):
                await self.task_service.kill(rec.id, signal.SIGKILL, exec_id=ex.id)
            with contextlib.suppress(TimeoutError):  # dying probes must not pile up
                await asyncio.wait_for(asyncio.shield(ex.done), 10)
            text = out.decode(errors="replace")
            msg = f"Health check exceeded timeout ({go_duration(timeout)})"
            return -1, f"{msg}: {text}" if text else msg
        finally:
            if session is not None:
                session.writer.close()
        text = out.decode(errors="replace") + ("..." if truncated else "")
        return int(ex.done.result()), text

    def _record(self, rec: Any, hc: dict[str, Any], started: float, code: int,
                output: str) -> None:
        h = rec.health
        if h is None or self.tasks.get(rec.id) is not asyncio.current_task():
            return  # stopped while probing
        old = h["Status"]
        h["Log"] = [*h["Log"], {"Start": rfc3339(started), "End": rfc3339(time.time()),
                                "ExitCode": code, "Output": output}][-MAX_LOG:]
        if code == 0:
            h["FailingStreak"], h["Status"] = 0, "healthy"
        elif not (old == "starting" and
                  (started - rec.started_at) * SECOND < (hc.get("StartPeriod") or 0)):
            h["FailingStreak"] += 1
            if h["FailingStreak"] >= (hc.get("Retries") or DEFAULT_RETRIES):
                h["Status"] = "unhealthy"
        if h["Status"] != old:
            rec.save(sync=False)
            self.bus.emit(f"health_status: {h['Status']}", rec.id, rec.image, rec.name,
                          rec.config.get("Labels"))
