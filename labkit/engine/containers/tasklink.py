"""The link to the supervisor's tasks: create+start, io sockets, attach sessions, exit watch.

State owned here: each task's io socket, the attach sessions waiting for a container to
start, and the one monitor per running container that waits for its exit.

The order matters for `docker run`: the CLI attaches *before* it starts, so ``create``
makes the task, hands its io socket to every attach session waiting for it and lets them
connect (the shim then has its readers) before the process is released with Start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from labkit import errors
from labkit.engine.containers.iosession import IoSession
from labkit.engine.containers.record import ContainerRecord
from labkit.engine.containers.tasks import ExitInfo, ProcInfo, TaskInfo, TaskService
from labkit.engine.images.mounts import Mount

__all__ = ["ATTACH_GRACE", "OnExit", "TaskLink"]

log = logging.getLogger("labkit.daemon")
ATTACH_GRACE = 2.0  # seconds start waits for attach sessions to reach the shim
RETRY = 0.5  # seconds between Wait calls while the supervisor restarts (live-restore)
OnExit = Callable[[ContainerRecord, ExitInfo], Awaitable[None]]


def log_options(rec: ContainerRecord) -> dict[str, str]:
    """The container's --log-opt map plus who it is (logs/drivers.py CONTEXT_KEY), for the
    drivers that put it in their messages: the network ones, and json-file when it is asked
    for a tag or labels/env attributes."""
    from labkit.engine.containers.record import rfc3339
    from labkit.engine.logs.drivers import CONTEXT_KEY, NETWORK, attributes, context

    lc = rec.host_config["LogConfig"]
    opts = dict(lc["Config"])
    if lc["Type"] in NETWORK or (lc["Type"] == "json-file" and {"tag", "labels", "env"} & set(opts)):
        attrs = attributes(opts, rec.config.get("Labels") or {}, rec.config.get("Env") or [])
        opts[CONTEXT_KEY] = context(rec.id, rec.name, rec.image_id, rec.image,
                                    " ".join([rec.path, *rec.args]), rfc3339(rec.created), attrs)
    return opts


class TaskLink:
    """One container's task as the engine sees it, over a TaskService (GrpcTasks or a fake)."""

    def __init__(self, tasks: TaskService) -> None:
        self.tasks = tasks
        self.io_sockets: dict[str, str] = {}
        self.pending_io: dict[str, list[tuple[asyncio.Future[str], asyncio.Future[None]]]] = {}
        self.monitors: dict[str, asyncio.Task[None]] = {}

    # -- start -----------------------------------------------------------------------------
    async def create(self, rec: ContainerRecord, rootfs: Mount) -> None:
        """Create the task and let waiting attach sessions connect to its io socket."""
        cfg = rec.config
        task = await self.tasks.create(
            rec.id, str(rec.bundle), [rootfs], terminal=bool(cfg.get("Tty")),
            stdin=bool(cfg.get("OpenStdin")), stdin_once=bool(cfg.get("StdinOnce")),
            log_path=str(rec.log_path), labels={"lk.engine": "daemon"},
            log_driver=rec.host_config["LogConfig"]["Type"], log_options=log_options(rec))
        # (lo is up already in a new network namespace: the runtime does that, as runc)
        self.io_sockets[rec.id] = task.io_socket
        size = rec.host_config.get("ConsoleSize") or [0, 0]
        if cfg.get("Tty") and len(size) == 2 and all(size):  # 28.x sends [h, w] at create
            with contextlib.suppress(errors.LabkitError):
                await self.tasks.resize(rec.id, "", size[1], size[0])
        connected = []
        for ready, done in self.pending_io.pop(rec.id, []):
            if not ready.done():
                ready.set_result(task.io_socket)
                connected.append(done)
        if connected:
            await asyncio.wait(connected, timeout=ATTACH_GRACE)

    async def start(self, rec: ContainerRecord) -> ProcInfo:
        """Start the created task; one that fails to start is deleted again (nothing is
        left to clean up)."""
        try:
            return await self.tasks.start(rec.id)
        except errors.LabkitError:
            with contextlib.suppress(errors.LabkitError):
                await self.tasks.delete(rec.id, force=True)
            raise

    def adopt(self, rec: ContainerRecord, task: TaskInfo) -> None:
        """A task found running at daemon start (live-restore)."""
        self.io_sockets[rec.id] = task.io_socket

    # -- attach ----------------------------------------------------------------------------
    async def attach(self, rec: ContainerRecord, live: bool, stdin: bool, stdout: bool,
                     stderr: bool) -> IoSession | None:
        """An io session to the container's process; waits for its start unless ``live``.
        None when the container is removed before it ever started."""
        tty = bool(rec.config.get("Tty"))
        if live:
            sock = self.io_sockets.get(rec.id) or (await self.tasks.state(rec.id)).io_socket
            self.io_sockets[rec.id] = sock
            return await IoSession.connect(sock, "", stdin, stdout, stderr, tty)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[str] = loop.create_future()
        done: asyncio.Future[None] = loop.create_future()
        self.pending_io.setdefault(rec.id, []).append((ready, done))
        try:
            sock = await ready
            if not sock:
                return None
            return await IoSession.connect(sock, "", stdin, stdout, stderr, tty)
        finally:
            if not done.done():
                done.set_result(None)

    # -- the exit watch --------------------------------------------------------------------
    def watch(self, rec: ContainerRecord, on_exit: OnExit) -> None:
        """Wait for the task's exit in the background; then ``on_exit(rec, exit)``."""
        old = self.monitors.get(rec.id)
        if old is None or old.done():
            self.monitors[rec.id] = asyncio.create_task(self._monitor(rec, on_exit))

    async def _monitor(self, rec: ContainerRecord, on_exit: OnExit) -> None:
        while True:
            try:
                exit_ = await self.tasks.wait(rec.id)
                break
            except errors.NotFoundError:
                exit_ = ExitInfo(255, time.time(), error="task vanished")
                break
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - supervisor restarting: live-restore, try again
                log.info("wait %s: %s; retrying", rec.id[:12], err)
                await asyncio.sleep(RETRY)
        await on_exit(rec, exit_)

    def exit_seen(self, rec: ContainerRecord) -> None:
        """on_exit ran: the task's io socket is gone, and so is this exit's monitor."""
        self.io_sockets.pop(rec.id, None)
        if self.monitors.get(rec.id) is asyncio.current_task():
            del self.monitors[rec.id]

    def forget(self, rec: ContainerRecord) -> None:
        """The container is being removed: stop watching, end waiting attach sessions."""
        task = self.monitors.pop(rec.id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self.io_sockets.pop(rec.id, None)
        for ready, _ in self.pending_io.pop(rec.id, []):
            if not ready.done():
                ready.set_result("")  # no socket: the session ends quietly

    async def delete(self, rec: ContainerRecord) -> bool:
        """Force-delete the task (killing what is left); False when there was none."""
        try:
            await self.tasks.delete(rec.id, force=True)
            return True
        except errors.LabkitError:
            return False

    def close(self) -> None:
        """Daemon shutdown: stop watching (the containers go on: live-restore)."""
        for task in self.monitors.values():
            task.cancel()
