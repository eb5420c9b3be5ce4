"""Daemon start: load the records and match them with the supervisor's tasks (live-restore).

Per record (moby daemon.restore, with Docker's restart-on-daemon-start rules):
- ``removing``: rm had begun when the daemon died; finish it, never restart it;
- ``dead``: kept for `docker rm`, as dockerd keeps them;
- its task runs (or is paused): adopt it, watch for its exit;
- its task stopped while no daemon ran: the exit path runs now (policy included);
- no task (or one created but never started): exited, and started again when the
  policy says so at daemon start.
A task with no record (a create that died before its record) is deleted; a task whose
record is unreadable is left running and reported (logged, and in `docker info`'s
Warnings): the record was moved aside, and only its owner can say what to do with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from labkit import errors
from labkit.engine.containers import restart as rp
from labkit.engine.containers.lifecycle import LIVE, State
from labkit.engine.containers.record import ContainerRecord
from labkit.engine.containers.service import Containers
from labkit.engine.containers.tasks import ExitInfo, TaskInfo

__all__ = ["restore"]

log = logging.getLogger("labkit.daemon")


async def restore(containers: Containers) -> None:
    """Load every record, adopt running tasks, finish what died meanwhile."""
    tasks = containers.link.tasks
    found = {t.id: t for t in await tasks.list()}
    records = containers.store.load_all(keep=frozenset(found))
    for rec in records:
        t = found.pop(rec.id, None)
        try:
            await _restore_one(containers, rec, t)
        except Exception as err:  # noqa: BLE001 - one broken record must not stop the daemon
            log.warning("restore %s: %s", rec.id[:12], err)
    unreadable = containers.store.unreadable
    if not unreadable:  # images rmi -f'd whose last container went while the daemon was down
        with contextlib.suppress(errors.LabkitError, OSError):
            await asyncio.to_thread(containers.images.release,
                                    {r.image_id for r in containers.store.all()})
    for t in found.values():
        if t.id in unreadable:  # never force-deleted: its record may yet be repaired
            unreadable[t.id] += f"; its task (pid {t.pid}, {t.status}) is left running"
            log.error("container %s: record unreadable, task pid %d left running", t.id[:12],
                      t.pid)
            continue
        if t.labels.get("lk.engine") == "daemon":  # a create that never reached a record
            with contextlib.suppress(errors.LabkitError):
                await tasks.delete(t.id, force=True)


async def _restore_one(containers: Containers, rec: ContainerRecord, t: TaskInfo | None) -> None:
    if rec.status is State.REMOVING:
        await containers.destroy(rec)
        return
    if rec.status is State.DEAD:
        return
    if t is not None and t.status in ("running", "paused"):
        rec.pid = t.pid
        rec.transition(State(t.status))
        containers.link.adopt(rec, t)
        await containers.net.adopt(rec)  # before the watch: an exit tears down after it
        containers.link.watch(rec, containers.on_exit)
        containers.health.start(rec)
        return
    if t is not None and t.status == "stopped":
        await containers.on_exit(rec, ExitInfo(t.exit_status, t.exited_at, t.oom_killed))
        return
    if t is not None:  # created but never started: the daemon died in between
        await containers.link.delete(rec)
    policy = rec.host_config.get("RestartPolicy") or {}
    if rec.status in LIVE:  # its task is gone (the machine rebooted, say)
        rec.exit_code, rec.finished_at, rec.pid = 255, time.time(), 0
        rec.transition(State.EXITED)
        if rp.restart_on_daemon_start(policy, False):
            await containers.start(rec.id)
    elif rec.status is State.EXITED and rp.restart_on_daemon_start(policy, rec.manually_stopped):
        await containers.start(rec.id)
