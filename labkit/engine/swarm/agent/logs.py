"""A task's log lines, read from its container's log as `docker logs` reads them.

A LogRequest names tasks; each task's container is found by its task-id label, and its log
(json-file, or local's) is read by the daemon's own readers (daemon/streams.py), follow
included, so `docker service logs` shows what `docker logs` on the node would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from labkit import errors

__all__ = ["TASK_LABEL", "container_of", "task_lines"]

TASK_LABEL = "com.docker.swarm.task.id"


def container_of(engine: Any, task_id: str) -> Any | None:
    """The container record of a task (by label), or None."""
    for rec in engine.store.all():
        if (rec.config.get("Labels") or {}).get(TASK_LABEL) == task_id:
            return rec
    return None


async def task_lines(engine: Any, task_id: str, *, follow: bool, tail: int, since_ns: int,
                     until_ns: int, stdout: bool,
                     stderr: bool) -> AsyncIterator[tuple[int, int, bytes]]:
    """(stream 1|2, time ns, line) of the task's container; NotFoundError without one."""
    from labkit.engine.logs.drivers import ReadNotSupportedError, read_source
    from labkit.engine.logs.records import records

    rec = container_of(engine, task_id)
    if rec is None:
        raise errors.NotFoundError("task container", task_id)
    rec, json_path = engine.log_path(rec.id)
    lc = rec.host_config.get("LogConfig") or {}
    source = read_source(lc.get("Type") or "json-file", lc.get("Config") or {}, json_path)
    if source is None:
        raise ReadNotSupportedError
    path, fmt = source

    def chunk(e: Any) -> tuple[int, int, bytes]:
        return (2 if e.stream == "stderr" else 1), int(e.ns), bytes(e.log)
    items: Any = records(engine, rec, path, chunk, follow, tail, since_ns, until_ns,
                          stdout, stderr, fmt)
    async for item in items:
        yield item
