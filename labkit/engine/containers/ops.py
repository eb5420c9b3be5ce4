"""Container operations beside the lifecycle: update, prune, top, stats, resize, sizes, logs.

Owns no state: records are the store's (a host config update is saved on the record), the
processes the supervisor's.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit import errors
from labkit.engine.containers import resopts
from labkit.engine.containers.control import Control
from labkit.engine.containers.createbody import (
    HOST_TYPES,
    check_ranges,
    check_types,
    validate_resources,
    validate_restart,
)
from labkit.engine.containers.events import EventBus
from labkit.engine.containers.lifecycle import State, refuse_if_going
from labkit.engine.containers.record import ContainerRecord, rfc3339
from labkit.engine.containers.store import ContainerStore
from labkit.engine.images.store import ImageStore

if TYPE_CHECKING:
    from labkit.engine.containers.tasks import TaskService, TaskStats

__all__ = ["Ops", "docker_stats", "parse_ps"]

def docker_stats(rec: Any, now: TaskStats, pre: TaskStats | None) -> dict[str, Any]:
    """One GET /containers/{id}/stats object (moby types.StatsJSON, cgroup v1 fields)."""
    def cpu(s: TaskStats | None) -> dict[str, Any]:
        if s is None:
            return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                                  "usage_in_usermode": 0}, "throttling_data": {
                "periods": 0, "throttled_periods": 0, "throttled_time": 0}}
        return {"cpu_usage": {"total_usage": s.cpu_usage_ns, "usage_in_kernelmode":
                              s.cpu_system_ns, "usage_in_usermode": s.cpu_user_ns},
                "system_cpu_usage": s.system_cpu_ns, "online_cpus": s.online_cpus,
                "throttling_data": {"periods": 0, "throttled_periods": s.throttled_periods,
                                    "throttled_time": s.throttled_ns}}
    return {
        "read": rfc3339(now.read_at or time.time()),
        "preread": rfc3339(pre.read_at) if pre else "0001-01-01T00:00:00Z",
        "pids_stats": {"current": now.pids_current, **({"limit": now.pids_limit}
                                                       if now.pids_limit else {})},
        "blkio_stats": {"io_service_bytes_recursive": None},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": cpu(now), "precpu_stats": cpu(pre),
        "memory_stats": {"usage": now.memory_usage, "max_usage": now.memory_max_usage,
                         "limit": now.memory_limit, "stats": {},
                         "failcnt": now.oom_kills},
        "name": f"/{rec.name}", "id": rec.id, "networks": {},
    }


def parse_ps(out: str, pids: set[int]) -> dict[str, Any]:
    """`ps` output -> docker top's {"Titles", "Processes"}, rows whose PID is in ``pids``."""
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    if "PID" not in titles:
        raise errors.InvalidArgumentError("ps_args", "Couldn't find PID field in ps output")
    col = titles.index("PID")
    procs = []
    for ln in lines[1:]:
        fields = ln.split(None, len(titles) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            procs.append(fields)
    return {"Titles": titles, "Processes": procs}


class Ops:
    """update / prune / top / stats / resize / sizes / log paths."""

    def __init__(self, store: ContainerStore, images: ImageStore, tasks: TaskService,
                 control: Control, bus: EventBus) -> None:
        self.store, self.images, self.tasks = store, images, tasks
        self.control, self.bus = control, bus

    async def update(self, ref: str, body: dict[str, Any]) -> list[str]:
        check_types(body, HOST_TYPES)
        check_ranges(body)  # every limit in the body, also those the merge below skips
        rec = self.store.get(ref)
        refuse_if_going(rec.status, rec.id, '"update"')
        new = dict(rec.host_config)
        asked = resopts.update_fields(body)  # opts: refuse what is not applied
        new.update(asked)
        if "RestartPolicy" in asked:
            new["RestartPolicy"] = validate_restart(body["RestartPolicy"],
                                                    bool(new.get("AutoRemove")))
        if body.get("NanoCpus"):
            new["CpuQuota"], new["CpuPeriod"] = 0, 0
        validate_resources(new)
        resopts.check_cpuset(new)
        if rec.status in (State.RUNNING, State.PAUSED):
            from labkit.engine.containers.ocispec import resources
            res = resources(new)
            res.pop("devices", None)
            await self.tasks.update(rec.id, res)
        rec.host_config = new
        rec.save()
        self.bus.emit("update", rec.id, rec.image, rec.name, rec.config.get("Labels"))
        return []

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        from labkit.engine.containers.listing import label_match, parse_until
        for key in filters:  # moby containersAcceptedFilters, filters.Validate wording
            if key not in ("label", "label!", "until"):
                raise errors.InvalidArgumentError("invalid filter", f"invalid filter '{key}'")
        until = parse_until(filters.get("until", [None])[0]) if filters.get("until") else None
        deleted, reclaimed = [], 0
        for rec in list(self.store.all()):
            if rec.running or rec.status is State.REMOVING:  # (an rm in progress owns it)
                continue
            if until is not None and rec.created >= until:
                continue
            if not label_match(rec.config.get("Labels") or {}, filters.get("label", []),
                               filters.get("label!", [])):
                continue
            rw = self.sizes(rec)[0]  # moby: SpaceReclaimed sums the removed SizeRw
            try:
                await self.control.remove(rec.id)
            except (errors.ConflictError, errors.NotFoundError):
                continue  # started or removed meanwhile: moby's prune skips it too
            deleted.append(rec.id)
            reclaimed += rw
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    async def top(self, ref: str, ps_args: str = "-ef") -> dict[str, Any]:
        rec = self.store.get(ref)
        if not rec.running:
            raise errors.ConflictError(f"Container {rec.id} is not running")
        pids = set(await self.tasks.pids(rec.id))
        proc = await asyncio.create_subprocess_exec(
            "ps", *(ps_args or "-ef").split(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode:
            raise errors.InvalidArgumentError("ps_args", f"ps: {err.decode().strip()}")
        return parse_ps(out.decode(), pids)

    async def stats(self, ref: str, stream: bool,
                    one_shot: bool = False) -> AsyncIterator[dict[str, Any]]:
        rec = self.store.get(ref)
        pre = None
        if not rec.running:
            from labkit.engine.containers.tasks import TaskStats
            yield docker_stats(rec, TaskStats(read_at=time.time()), None)
            return
        if not stream and not one_shot:  # moby: two samples so CPU % has a base
            pre = await self.tasks.stats(rec.id)
            await asyncio.sleep(0.5)
        while True:
            now = await self.tasks.stats(rec.id)
            yield docker_stats(rec, now, pre)
            if not stream:
                return
            pre = now
            await asyncio.sleep(1.0)
            if not rec.running:
                return

    async def resize(self, ref: str, h: int, w: int) -> None:
        rec = self.store.get(ref)
        if not rec.running:
            raise errors.ConflictError(f"Container {rec.id} is not running")
        await self.tasks.resize(rec.id, "", w, h)

    def sizes(self, rec: ContainerRecord) -> tuple[int, int]:
        """(SizeRw, SizeRootFs): the container's upper dir, and that plus its image."""
        from labkit.engine.images.store import dir_size
        rw = dir_size(Path(rec.dir) / "upper")
        try:
            return rw, rw + self.images.for_container(rec.image_id).size
        except errors.NotFoundError:
            return rw, rw

    def log_path(self, ref: str) -> tuple[ContainerRecord, str]:
        rec = self.store.get(ref)
        driver = (rec.host_config.get("LogConfig") or {}).get("Type") or "json-file"
        if driver == "json-file" and not os.path.exists(rec.log_path):  # (other drivers'
            rec.log_path.touch(mode=0o600)  # files are elsewhere: logs/drivers.read_source)
        return rec, str(rec.log_path)

