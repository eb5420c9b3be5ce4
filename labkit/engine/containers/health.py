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
from labkit.engine.containers.record import rfc3339

__all__ = ["HealthMonitor", "check_healthcheck", "go_duration", "health_suffix",
           "probe_command"]

log = logging.getLogger("labkit.daemon")

SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096
_FRAME = 8  # stdcopy header: stream byte, 3 zero bytes, big-endian length


MIN_DURATION = 1_000_000  # moby container.MinimumDuration: 1ms, in ns


def check_healthcheck(hc: Any) -> dict[str, Any] | None:
    """Config.Healthcheck checked (moby verifyContainerSettings), or None when absent."""
    if hc is None:
        return None
    if not isinstance(hc, dict):
        raise errors.InvalidArgumentError("Healthcheck", "must be an object")
    test = hc.get("Test") or []
    if not isinstance(test, list) or not all(isinstance(t, str) for t in test):
        raise errors.InvalidArgumentError("Healthcheck.Test", "must be an array of strings")
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise errors.InvalidArgumentError(
            "Healthcheck.Test", f"unknown healthcheck type {test[0]!r}",
            hint='use ["CMD", prog, args...], ["CMD-SHELL", "command"] or ["NONE"]')
    if test and test[0] != "NONE" and len(test) < 2:
        raise errors.InvalidArgumentError("Healthcheck.Test", f"{test[0]} needs a command")
    out: dict[str, Any] = {"Test": list(test)}
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
        v = hc.get(key) or 0
        if isinstance(v, bool) or not isinstance(v, int):
            raise errors.InvalidArgumentError(f"Healthcheck.{key}", "must be an integer")
        if key == "Retries":
            if v < 0:
                raise errors.InvalidArgumentError(
                    "Healthcheck", "Retries in Healthcheck cannot be negative")
        elif v and v < MIN_DURATION:
            raise errors.InvalidArgumentError(
                "Healthcheck", f"{key} in Healthcheck cannot be less than 1ms")
        if v:  # moby HealthConfig: every field but Test is omitempty
            out[key] = v
    return out


def probe_command(config: dict[str, Any]) -> list[str] | None:
    """The argv the probe runs, or None (no healthcheck, or NONE)."""
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if len(test) < 2 or test[0] not in ("CMD", "CMD-SHELL"):
        return None
    if test[0] == "CMD":
        return list(test[1:])
    return [*(config.get("Shell") or ["/bin/sh", "-c"]), *test[1:]]


def _frac(n: int, size: int) -> str:
    whole, frac = divmod(n, size)
    if not frac:
        return str(whole)
    return f"{whole}." + str(frac).rjust(len(str(size)) - 1, "0").rstrip("0")


def go_duration(ns: int) -> str:
    """A duration as Go's time.Duration.String() prints it: 1s, 1.5s, 500ms, 1m30s, 1h0m0s."""
    if ns <= 0:
        return "0s"
    if ns < SECOND:
        unit, size = next((u, z) for u, z in (("ms", 10**6), ("µs", 10**3), ("ns", 1))
                          if ns >= z)
        return _frac(ns, size) + unit
    h, rest = divmod(ns, 3600 * SECOND)
    m, rest = divmod(rest, 60 * SECOND)
    s = _frac(rest, SECOND) + "s"
    return f"{h}h{m}m{s}" if h else f"{m}m{s}" if m else s


def health_suffix(health: dict[str, Any] | None) -> str:
    """What `docker ps` adds after "Up 5 minutes": " (healthy)", " (health: starting)"."""
    if not health:
        return ""
    status = health.get("Status") or "unhealthy"  # moby: no status yet reads unhealthy
    return " (health: starting)" if status == "starting" else f" ({status})"


class HealthMonitor:
    """One probing task per running container that has a CMD/CMD-SHELL healthcheck."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
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
        eng = self.engine
        ex = eng.exec_create(rec.id, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
        try:
            return await self._run_exec(rec, hc, ex)
        finally:
            eng.execs.pop(ex.id, None)  # dockerd keeps no finished probe execs around

    async def _run_exec(self, rec: Any, hc: dict[str, Any], ex: Any) -> tuple[int, str]:
        eng = self.engine
        session = await eng.exec_start(ex.id, detach=False)
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
                await eng.tasks.kill(rec.id, signal.SIGKILL, exec_id=ex.id)
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
            self.engine.emit(f"health_status: {h['Status']}", rec)
