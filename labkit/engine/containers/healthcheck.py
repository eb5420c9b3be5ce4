"""Health check settings (Config.Healthcheck, Dockerfile HEALTHCHECK): their checks, Go
durations, the probe's argv and `docker ps`'s suffix; pure, so create (createbody) and the
listing use them without the monitor (health.py), which runs the probes."""

from __future__ import annotations

from typing import Any

from labkit import errors

__all__ = ["DEFAULT_INTERVAL", "DEFAULT_RETRIES", "DEFAULT_START_INTERVAL", "DEFAULT_TIMEOUT",
           "MAX_LOG", "MAX_OUTPUT", "MIN_DURATION", "SECOND", "check_healthcheck",
           "go_duration", "health_suffix", "probe_command"]

SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096


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
