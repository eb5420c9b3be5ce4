"""Docker's event stream (GET /events): container, image and volume events as dockerd
emits them.

Each event is a dict shaped like moby's events.Message.  The bus appends each one to the
event journal (journal.py: LABKIT_ROOT/events, bounded and rotated), answers ``since`` and
``until`` from it, so events from before a daemon restart are still there, and fans live
ones out to subscribers' queues.  The last 1024 also stay in memory (``recent``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from labkit import errors
from labkit.engine.containers.journal import EventJournal

__all__ = ["FILTERS", "EventBus", "check_filters", "matches"]


# moby daemon/events/filter.go: the keys dockerd's Filter.Include reads.  Those naming an
# object match an event's Actor.ID or its "name" attribute by prefix (fuzzyMatchName), for
# events of every type, as moby does.
_BY_NAME = ("config", "container", "daemon", "network", "node", "plugin", "secret",
            "service", "volume")
FILTERS = (*_BY_NAME, "event", "image", "label", "scope", "type")
# moby #25798: these event filters match "exec_create: sh -c ..." etc. by prefix
_FUZZY_EVENTS = {"health_status", "exec_create", "exec_start"}


def check_filters(filters: dict[str, list[str]]) -> None:
    """Refuse a filter key GET /events does not know (it would otherwise be ignored)."""
    for key in filters:
        if key not in FILTERS:
            raise errors.InvalidArgumentError("filters", f"invalid filter '{key}'",
                                              hint=f"event filters: {', '.join(FILTERS)}")


def _fuzzy(values: list[str], source: str) -> bool:
    return any(source == v or source.startswith(v) for v in values)


def _strip_tag(image: str) -> str:
    """moby stripTag: the familiar repository name of an image reference, else itself."""
    from labkit.engine.registry import reference
    try:
        return reference.parse(image).familiar_name
    except errors.LabkitError:
        return image


def _image_hit(ev: dict[str, Any], values: list[str]) -> bool:
    """moby matchImage: Actor.ID or the image name (the "name" attribute of an image event,
    "image" of a container's), each also without its tag."""
    actor = ev["Actor"]
    ident = actor.get("ID", "")
    name = actor["Attributes"].get("name" if ev["Type"] == "image" else "image", "")
    cands = {ident, name, _strip_tag(ident) if ident else "", _strip_tag(name) if name else ""}
    return any(v in cands for v in values)


def _labels_hit(attrs: dict[str, str], values: list[str]) -> bool:
    """moby Args.MatchKVList: every label filter must hold (KEY, or KEY=VALUE)."""
    for v in values:
        key, eq, want = v.partition("=")
        if key not in attrs or (eq and attrs[key] != want):
            return False
    return True


def matches(ev: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """dockerd's event filter (daemon/events/filter.go Include): each key given must hold;
    the values of one key are alternatives (labels: all must hold)."""
    actor = ev["Actor"]
    attrs: dict[str, str] = actor["Attributes"]
    for key, values in filters.items():
        if not values:
            continue
        if key == "event":
            action = ev["Action"]
            hit = _fuzzy(values, action) if _FUZZY_EVENTS & set(values) else action in values
        elif key == "type":
            hit = ev["Type"] in values
        elif key == "scope":
            hit = ev.get("scope", "") in values
        elif key == "image":
            hit = _image_hit(ev, values)
        elif key == "label":
            hit = _labels_hit(attrs, values)
        elif key in _BY_NAME:
            hit = _fuzzy(values, actor.get("ID", "")) or _fuzzy(values, attrs.get("name", ""))
        else:
            raise errors.InvalidArgumentError("filters", f"invalid filter '{key}'")
        if not hit:
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
        # each subscriber's queue with the loop it is read on
        self.subscribers: dict[asyncio.Queue[dict[str, Any]], asyncio.AbstractEventLoop] = {}
        # publishing (journal, recent, the subscriber list) and a new subscriber's backlog
        # read are one step each: events may come from worker threads (image/volume work)
        self._lock = threading.Lock()
        self._journal = journal

    @property
    def journal(self) -> EventJournal | None:
        if self._journal is DEFAULT:
            from labkit.engine import paths

            self._journal = EventJournal(paths.root() / "events")
        return self._journal if isinstance(self._journal, EventJournal) else None

    def emit(self, action: str, cid: str, image: str, name: str,
             labels: dict[str, str] | None = None, **extra: str) -> dict[str, Any]:
        """A container event (moby LogContainerEventWithAttributes: labels, image, name)."""
        attrs = {**(labels or {}), "image": image, "name": name, **extra}
        return self._publish("container", action, cid, attrs, legacy=True, image=image)

    def emit_image(self, action: str, actor_id: str, name: str = "",
                   labels: dict[str, str] | None = None) -> dict[str, Any]:
        """An image event (moby ImageService.LogImageEvent): the image's labels while it
        still exists, and ``name`` when given.  ``actor_id`` is what moby logs for the
        action: the reference for pull/push, the image ID for the others."""
        attrs = {**(labels or {})}
        if name:
            attrs["name"] = name
        return self._publish("image", action, actor_id, attrs, legacy=True)

    def emit_volume(self, action: str, name: str, attrs: dict[str, str]) -> dict[str, Any]:
        """A volume event (moby LogVolumeEvent): Actor.ID is the volume's name; no legacy
        status/id/from fields (moby fills those for containers and images only)."""
        return self._publish("volume", action, name, dict(attrs), legacy=False)

    def emit_network(self, action: str, network_id: str, attrs: dict[str, str]
                     ) -> dict[str, Any]:
        """A network event (moby LogNetworkEventWithAttributes): Actor.ID is the network's
        id; ``name`` and ``type`` (the driver), and ``container`` for connect/disconnect."""
        return self._publish("network", action, network_id, dict(attrs), legacy=False)

    def emit_prune(self, kind: str, reclaimed: int) -> dict[str, Any]:
        """moby's "prune" event of an image/volume/container prune: no Actor.ID, the bytes
        freed in ``reclaimed``."""
        return self._publish(kind, "prune", "", {"reclaimed": str(reclaimed)},
                             legacy=kind in ("container", "image"))

    def _publish(self, typ: str, action: str, actor_id: str, attrs: dict[str, str], *,
                 legacy: bool, image: str | None = None) -> dict[str, Any]:
        """Stamp the event now (the moment of the change), record it, and hand it to the
        subscribers.  Safe from a worker thread: a subscriber's queue is only touched on
        its own event loop (call_soon_threadsafe), as asyncio.Queue is not thread-safe."""
        ns = time.time_ns()
        ev: dict[str, Any] = {}
        if legacy:  # moby events.Log: omitempty status/id/from, filled for these types
            if action:
                ev["status"] = action
            if actor_id:
                ev["id"] = actor_id
            if image:
                ev["from"] = image
        ev.update({"Type": typ, "Action": action,
                   "Actor": {"ID": actor_id, "Attributes": attrs}, "scope": "local",
                   "time": ns // 10**9, "timeNano": ns})
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None  # a worker thread
        with self._lock:
            self.recent.append(ev)
            if (journal := self.journal) is not None:
                try:
                    journal.append(ev)
                except (errors.LabkitError, OSError) as err:
                    # The operation happened; losing its record on disk must not undo or
                    # fail it.  Live subscribers and `recent` still get the event.
                    log.warning("event journal: %s", err)
            subs = list(self.subscribers.items())
        for q, loop in subs:
            if loop is here:
                q.put_nowait(ev)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(q.put_nowait, ev)
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
        check_filters(filters)
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        try:
            # Subscribe and read under the publish lock: every event is either in this
            # list or still to come through the queue, never in both.
            with self._lock:
                self.subscribers[q] = asyncio.get_running_loop()
                backlog = self.past(since, until) if since is not None or until is not None \
                    else []
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
            self.subscribers.pop(q, None)
