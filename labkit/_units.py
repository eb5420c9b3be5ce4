"""Docker's human-readable units (github.com/docker/go-units), shared by the CLI and the engine.

A leaf module: it imports nothing, so the `labkit` command's start path and the engine's
listing code can both use it without pulling the other's dependencies in.
"""

from __future__ import annotations

__all__ = ["human_duration"]

_HOUR = 3600
_DAY_H, _WEEK_H, _MONTH_H, _YEAR_H = 24, 24 * 7, 24 * 30, 24 * 365


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: "Less than a second", "3 seconds", "About a minute", ...

    What `docker ps` prints in CREATED ("... ago") and STATUS ("Up ...").  Seconds and
    minutes are truncated; hours are rounded half up (1h29m is "About an hour", 1h31m is
    "2 hours"); from 48 hours on the unit is days, from 14 days weeks, from 60 days months
    (of 30 days), from 2 years (of 365 days) years, each truncated.  The years count uses
    the unrounded hours, as go-units does.
    """
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / _HOUR + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 2 * _DAY_H:
        return f"{hours} hours"
    if hours < 2 * _WEEK_H:
        return f"{hours // _DAY_H} days"
    if hours < 2 * _MONTH_H:
        return f"{hours // _WEEK_H} weeks"
    if hours < 2 * _YEAR_H:
        return f"{hours // _MONTH_H} months"
    return f"{int(seconds / _HOUR) // _YEAR_H} years"
