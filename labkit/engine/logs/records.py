"""Reading a container's log records off the event loop: the one reader behind
`GET /containers/{id}/logs` (daemon/streams.py) and a swarm task's logs (swarm/agent/logs.py).

Every file read happens in a worker thread, a bounded batch at a time, so a large log never
stalls the daemon's event loop.  ``records`` works on the engine's container record (duck
typed: ``running``, ``id``) and its store (``by_id``): when a followed container stops, the
stream ends after the last record.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

__all__ = ["in_thread", "records"]

T = TypeVar("T")


async def records(engine: Any, rec: Any, path: str, chunk: Any, follow: bool, tail: int,
                   since: int, until: int, stdout: bool, stderr: bool,
                   fmt: str = "json-file") -> AsyncIterator[bytes]:
    from labkit.engine.logs import local, reader
    scan: Any = local.scan if fmt == "local" else reader.scan
    Follower: Any = local.LocalFollower if fmt == "local" else reader.Follower
    if not follow:
        async for e in in_thread(scan(path, tail=tail, since=since, until=until, stdout=stdout,
                                      stderr=stderr)):
            yield chunk(e)
        return
    # Follow: the follower holds the current file from the last whole record on; the backlog
    # is everything before that point (older rotations first), so nothing falls between the
    # two.  Every read happens in a worker thread, a bounded piece at a time.
    follower = Follower(path, since=since, stdout=stdout, stderr=stderr, max_read=1 << 20)
    try:
        end = await asyncio.to_thread(follower.line_end)
        async for e in in_thread(scan(path, tail=tail, since=since, until=until, stdout=stdout,
                                      stderr=stderr, end=end)):
            yield chunk(e)
        while True:
            entries = await asyncio.to_thread(follower.poll)
            for e in entries:
                if not until or e.ns <= until:
                    yield chunk(e)
            if until and time.time_ns() > until:
                return
            if not entries and not follower.more:
                if not rec.running or rec.id not in engine.store.by_id:
                    for e in await asyncio.to_thread(follower.poll):
                        yield chunk(e)
                    return
                await asyncio.sleep(0.1)
    finally:
        follower.close()



async def in_thread(items: Iterator[T], batch: int = 512) -> AsyncIterator[T]:
    """Pull a blocking iterator (file reads) in a worker thread, ``batch`` items at a time,
    so that reading a large log never stalls the event loop: `docker ps` and every other
    request go on while a 1 GiB `docker logs` streams.  The iterator is closed at the end,
    also when the client goes away mid-stream."""
    def take() -> list[T]:
        return list(itertools.islice(items, batch))
    try:
        while True:
            got = await asyncio.to_thread(take)
            if not got:
                return
            for item in got:
                yield item
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
