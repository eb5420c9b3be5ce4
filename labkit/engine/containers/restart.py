"""Restart policies as Docker carries them out (moby restartmanager/restartmanager.go).

``should_restart`` is the decision, ``next_delay`` the backoff: the first restart waits 100 ms,
each further one twice as long, capped at one minute; a container that ran for at least
10 seconds before exiting starts the backoff again from 100 ms.  A container that the user
stopped (stop, kill, or `docker stop` before a daemon restart) is never restarted by
"always"/"unless-stopped" until it is started again by hand; after a *daemon* restart,
"always" containers come back even if they had been stopped by hand, "unless-stopped" ones
do not (Docker's documented difference between the two).

``Restarts`` owns the per-container state: each backoff and each restart that waits it out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_START",
    "RESET_AFTER",
    "Backoff",
    "Restarts",
    "restart_on_daemon_start",
    "should_restart",
]

BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
RESET_AFTER = 10.0


def should_restart(policy: dict[str, object], exit_code: int, restart_count: int,
                   manually_stopped: bool) -> bool:
    """True when the policy restarts a container that just exited with ``exit_code``."""
    name = policy.get("Name") or "no"
    if manually_stopped or name == "no":
        return False
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure":
        limit = int(policy.get("MaximumRetryCount") or 0)  # type: ignore[call-overload]
        return exit_code != 0 and (limit == 0 or restart_count < limit)
    return False


def restart_on_daemon_start(policy: dict[str, object], manually_stopped: bool) -> bool:
    """Whether an exited container is started when the daemon starts (moby daemon.restore)."""
    name = policy.get("Name") or "no"
    return name == "always" or (name == "unless-stopped" and not manually_stopped)


@dataclass(slots=True)
class Backoff:
    """Docker's restart delay for one container."""

    delay: float = 0.0

    def next_delay(self, ran_for: float) -> float:
        """The wait before the next restart, given how long the last run lasted."""
        if ran_for >= RESET_AFTER or self.delay == 0.0:
            self.delay = BACKOFF_START
        else:
            self.delay = min(self.delay * 2, BACKOFF_MAX)
        return self.delay


class Restarts:
    """Pending policy restarts: one backoff and at most one waiting restart per container."""

    def __init__(self) -> None:
        self._backoff: dict[str, Backoff] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}

    def schedule(self, cid: str, ran_for: float,
                 restart: Callable[[float], Awaitable[None]]) -> None:
        """Run ``restart(delay)`` in the background with the next backoff delay."""
        delay = self._backoff.setdefault(cid, Backoff()).next_delay(ran_for)
        self._pending[cid] = asyncio.create_task(self._run(cid, restart, delay))

    async def _run(self, cid: str, restart: Callable[[float], Awaitable[None]],
                   delay: float) -> None:
        try:
            await restart(delay)
        finally:
            if self._pending.get(cid) is asyncio.current_task():
                del self._pending[cid]

    def reset(self, cid: str) -> None:
        """Started by hand: the backoff starts again from the beginning."""
        self._backoff.pop(cid, None)

    def cancel(self, cid: str) -> None:
        """Removed: no restart comes, and its backoff is forgotten."""
        task = self._pending.pop(cid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._backoff.pop(cid, None)

    def close(self) -> None:
        for task in self._pending.values():
            task.cancel()
