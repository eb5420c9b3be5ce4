"""Docker's event stream (GET /events): container events as dockerd emits them.

Each event is a dict shaped like moby's events.Message.  The bus keeps the last 1024 for
``since`` replays and fans live ones out to subscribers' queues.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["EventBus", "matches"]


def matches(ev: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Docker's event filters: container (id or name), event, image, label, type."""
    attrs = ev["Actor"]["Attributes"]
    checks: dict[str, Callable[[str], bool]] = {
        "container": lambda v: ev["Actor"]["ID"].startswith(v) or attrs.get("name") == v,
        "event": lambda v: ev["Action"].split(":", 1)[0] == v,
        "image": lambda v: attrs.get("image") == v or ev.get("from") == v,
        "type": lambda v: ev["Type"] == v,
        "label": lambda v: (attrs.get(v.partition("=")[0]) == v.partition("=")[2])
        if "=" in v else v in attrs,
    }
    for key, values in filters.items():
        check = checks.get(key)
        if check is not None and values and not any(check(v) for v in values):
            return False
    return True


class EventBus:
    """Publish container events; replay recent ones; stream live ones."""

    def __init__(self, keep: int = 1024) -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def emit(self, action: str, cid: str, image: str, name: str,
             labels: dict[str, str] | None = None, **extra: str) -> dict[str, Any]:
        ns = time.time_ns()
        attrs = {**(labels or {}), "image": image, "name": name, **extra}
        ev = {"status": action, "id": cid, "from": image, "Type": "container",
              "Action": action, "Actor": {"ID": cid, "Attributes": attrs}, "scope": "local",
              "time": ns // 10**9, "timeNano": ns}
        self.recent.append(ev)
        for q in self.subscribers:
            q.put_nowait(ev)
        return ev

    async def stream(self, since: float | None, until: float | None,
                     filters: dict[str, list[str]]) -> AsyncIterator[dict[str, Any]]:
        """Past events from ``since`` (unix s), then live ones until ``until`` (unix s)."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.subscribers.add(q)
        try:
            if since is not None:
                for ev in list(self.recent):
                    if ev["timeNano"] >= since * 1e9 and (until is None or
                                                          ev["timeNano"] <= until * 1e9) \
                            and matches(ev, filters):
                        yield ev
            while True:
                timeout = None if until is None else until - time.time()
                if timeout is not None and timeout <= 0:
                    return
                try:
                    ev = await asyncio.wait_for(q.get(), timeout)
                except TimeoutError:
                    return
                if matches(ev, filters):
                    yield ev
        finally:
            self.subscribers.discard(q)
