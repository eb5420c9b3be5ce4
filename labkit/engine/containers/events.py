"""Docker's event stream (GET /events): container events as dockerd emits them.

Each event is a dict shaped like moby's events.Message.  The bus appends each one to the
event journal (journal.py: LABKIT_ROOT/events, bounded and rotated), answers ``since`` and
``until`` from it, so events from before a daemon restart are still there, and fans live
ones out to subscribers' queues.  The last 1024 also stay in memory (``recent``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from labkit import errors
from labkit.engine.containers.journal import EventJournal

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


log = logging.getLogger("labkit.daemon")

DEFAULT = object()  # the journal under LABKIT_ROOT/events, chosen at the first event


class EventBus:
    """Publish container events; replay past ones from the journal; stream live ones.

    ``journal``: an EventJournal, None for memory only (replays then see ``recent``), or by
    default the one in paths.root()/events (resolved when first used, so LABKIT_ROOT set
    after the bus was made still counts).
    """

    def __init__(self, keep: int = 1024, journal: EventJournal | None | object = DEFAULT) -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._journal = journal

    @property
    def journal(self) -> EventJournal | None:
        if self._journal is DEFAULT:
            from labkit.engine import paths

            self._journal = EventJournal(paths.root() / "events")
        return self._journal if isinstance(self._journal, EventJournal) else None

    def emit(self, action: str, cid: str, image: str, name: str,
             labels: dict[str, str] | None = None, **extra: str) -> dict[str, Any]:
        ns = time.time_ns()
        attrs = {**(labels or {}), "image": image, "name": name, **extra}
        ev = {"status": action, "id": cid, "from": image, "Type": "container",
              "Action": action, "Actor": {"ID": cid, "Attributes": attrs}, "scope": "local",
              "time": ns // 10**9, "timeNano": ns}
        self.recent.append(ev)
        if (journal := self.journal) is not None:
            try:
                journal.append(ev)
            except (errors.LabkitError, OSError) as err:
                # The container operation happened; losing its record on disk must not undo
                # or fail it.  Live subscribers and `recent` still get the event.
                log.warning("event journal: %s", err)
        for q in self.subscribers:
            q.put_nowait(ev)
        return ev

    def past(self, since: float | None, until: float | None) -> list[dict[str, Any]]:
        """Recorded events with since <= time <= until (unix s; None: no bound), oldest first."""
        lo = None if since is None else int(since * 1e9)
        hi = None if until is None else int(until * 1e9)
        journal = self.journal
        if journal is not None:
            try:
                return list(journal.replay(lo, hi))
            except (errors.LabkitError, OSError) as err:
                log.warning("event journal: %s; answering from memory", err)
        return [ev for ev in self.recent
                if (lo is None or ev["timeNano"] >= lo) and (hi is None or ev["timeNano"] <= hi)]

    async def stream(self, since: float | None, until: float | None,
                     filters: dict[str, list[str]]) -> AsyncIterator[dict[str, Any]]:
        """Past events from ``since`` (unix s), then live ones until ``until`` (unix s).

        As dockerd's SubscribeTopic: either bound asks for recorded events first."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.subscribers.add(q)
        try:
            # Read without an await between subscribing and reading: every event is either
            # in this list or still to come through the queue, never in both.
            backlog = self.past(since, until) if since is not None or until is not None else []
            for ev in backlog:
                if matches(ev, filters):
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
