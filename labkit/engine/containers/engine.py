"""The container engine behind the daemon: Docker's lifecycle over the supervisor's tasks.

As in dockerd + containerd, ``create`` only writes a record (no task, no cgroup, no mount:
a failed create leaves nothing behind); ``start`` writes the OCI bundle, asks the supervisor
to Create the task (it mounts the overlay rootfs and starts a shim), lets waiting attach
sessions connect to the task's io socket, then Starts it.  One monitor per running container
waits for its exit, records it, wakes ``wait`` callers and applies the restart policy.
The daemon never parents a container: after a daemon restart, ``restore()`` adopts the
running tasks the supervisor lists (live-restore).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal as _signal
import time

from labkit import errors
from labkit.engine.containers import restart as rp
from labkit.engine.containers._start import StartMixin
from labkit.engine.containers.createbody import CreateSpec, validate_name
from labkit.engine.containers.events import EventBus
from labkit.engine.containers.execs import ExecMixin, ExecRecord
from labkit.engine.containers.health import HealthMonitor
from labkit.engine.containers.ops import OpsMixin
from labkit.engine.containers.record import ContainerRecord, new_id
from labkit.engine.containers.store import ContainerStore
from labkit.engine.containers.tasks import ExitInfo, TaskService
from labkit.engine.images.store import ImageStore

__all__ = ["Engine", "NotModifiedError", "parse_signal"]

log = logging.getLogger("labkit.daemon")


class NotModifiedError(errors.LabkitError):
    """Nothing to do (start on a running container): Docker answers 304."""


def parse_signal(sig: str | int | None, default: int = _signal.SIGKILL) -> int:
    """'KILL', 'SIGKILL', '9' or 9 -> 9; InvalidArgumentError for an unknown signal."""
    if sig in (None, ""):
        return default
    if isinstance(sig, int) or str(sig).isdigit():
        n = int(sig)
        if 0 < n < 65:
            return n
    else:
        name = str(sig).upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        if hasattr(_signal.Signals, name):
            return int(_signal.Signals[name])
    raise errors.InvalidArgumentError("signal", f"Invalid signal: {sig}")


def not_running(rec: ContainerRecord) -> errors.ConflictError:
    return errors.ConflictError(f"Container {rec.id} is not running")


class Engine(StartMixin, ExecMixin, OpsMixin):
    """Containers: records (ContainerStore), images (ImageStore), tasks (TaskService)."""

    def __init__(self, tasks: TaskService, store: ContainerStore | None = None,
                 images: ImageStore | None = None, *, init_binary: str | None = None) -> None:
        self.tasks = tasks
        self.store = store or ContainerStore()
        self.images = images or ImageStore()
        self.init_binary = init_binary
        self.bus = EventBus()
        self.exits: dict[str, list[asyncio.Future[ExitInfo]]] = {}
        self.removals: dict[str, list[asyncio.Future[ExitInfo]]] = {}
        self.monitors: dict[str, asyncio.Task[None]] = {}
        self.pending_io: dict[str, list[tuple[asyncio.Future[str], asyncio.Future[None]]]] = {}
        self.io_sockets: dict[str, str] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.backoff: dict[str, rp.Backoff] = {}
        self.execs: dict[str, ExecRecord] = {}
        self.health = HealthMonitor(self)  # opts: health checks

    def lock(self, rec: ContainerRecord) -> asyncio.Lock:
        return self.locks.setdefault(rec.id, asyncio.Lock())

    def emit(self, action: str, rec: ContainerRecord, **extra: str) -> None:
        self.bus.emit(action, rec.id, rec.image, rec.name, rec.config.get("Labels"), **extra)

    def get(self, ref: str) -> ContainerRecord:
        return self.store.get(ref)

    # -- create / remove ---------------------------------------------------------------
    def create(self, spec: CreateSpec) -> ContainerRecord:
        """Write the record and the container's directory; no task yet (Docker's create)."""
        from labkit.engine.containers.ocispec import command, merge_image
        image = self.images.get(spec.image)
        args = command(spec.config, image.container_config)
        config = merge_image(spec.config, image.container_config)
        cid = new_id()
        name = spec.name or self.store.generate_name(cid)
        d = self.store.root / cid
        rec = ContainerRecord(cid, name, spec.image, image.id, time.time(), args[0], args[1:],
                              config, spec.host_config, str(d), warnings=spec.warnings)
        self.store.reserve(rec)
        try:
            d.mkdir(parents=True)
            self.oci_config(rec, write=False)  # user, command: refuse now what start would
            rec.save()
        except BaseException:
            self.store.discard(rec)
            shutil.rmtree(d, ignore_errors=True)
            raise
        self.store.add(rec)
        self.emit("create", rec)
        return rec

    async def remove(self, ref: str, force: bool = False) -> None:
        """DELETE /containers/{id}: 409 when running without force; force kills first."""
        rec = self.get(ref)
        if rec.running and not force:
            raise errors.ConflictError(
                f"You cannot remove a running container {rec.id}. Stop the container before "
                "attempting removal or force remove")
        rec.manually_stopped = True
        if rec.running:
            await self._kill_and_wait(rec, _signal.SIGKILL, timeout=None)
        await self._destroy(rec)

    async def _destroy(self, rec: ContainerRecord, task_deleted: bool = False) -> None:
        """Remove the container: its task (unless ``task_deleted``: on_exit just deleted it
        and nothing started it again since), rootfs mount, record and directory."""
        async with self.lock(rec):
            if rec.id not in self.store.by_id:
                return
            task = self.monitors.pop(rec.id, None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
            self.health.stop(rec.id)  # opts
            if not (task_deleted and rec.status == "exited"):
                # (AutoRemove's on_exit path skips this: one supervisor round trip less
                # between the exit and the answer to `wait condition=removed`)
                with contextlib.suppress(errors.LabkitError):
                    await self.tasks.delete(rec.id, force=True)
            rootfs = rec.bundle / "rootfs"
            if os.path.ismount(rootfs):  # never rmtree through a live overlay
                from labkit.engine.images.mounts import unmount
                unmount(str(rootfs), detach=True)
            self.store.discard(rec)
            shutil.rmtree(rec.dir, ignore_errors=True)
            self.emit("destroy", rec)
            exit_ = ExitInfo(rec.exit_code, rec.finished_at, rec.oom_killed, rec.error)
            for fut in self.removals.pop(rec.id, []) + self.exits.pop(rec.id, []):
                if not fut.done():
                    fut.set_result(exit_)
            for ready, _ in self.pending_io.pop(rec.id, []):  # attach sessions still waiting
                if not ready.done():
                    ready.set_result("")  # no socket: the session ends quietly
        self.locks.pop(rec.id, None)
        self.backoff.pop(rec.id, None)
        for eid in [e for e, x in self.execs.items() if x.container_id == rec.id]:
            del self.execs[eid]  # dockerd forgets a container's execs with it

    # -- wait ------------------------------------------------------------------------------
    def wait_future(self, ref: str, condition: str = "not-running") -> asyncio.Future[ExitInfo]:
        """A future for POST /wait's condition; resolved synchronously so 404 comes first."""
        if condition not in ("not-running", "next-exit", "removed"):
            raise errors.InvalidArgumentError("condition", f"invalid condition: {condition!r}")
        rec = self.get(ref)
        fut: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()
        if condition == "not-running" and not rec.running:
            fut.set_result(ExitInfo(rec.exit_code, rec.finished_at, rec.oom_killed, rec.error))
        else:
            table = self.removals if condition == "removed" else self.exits
            table.setdefault(rec.id, []).append(fut)
        return fut

    # -- the exit path ---------------------------------------------------------------------
    def monitor(self, rec: ContainerRecord) -> None:
        old = self.monitors.get(rec.id)
        if old is None or old.done():
            self.monitors[rec.id] = asyncio.create_task(self._monitor(rec))

    async def _monitor(self, rec: ContainerRecord) -> None:
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
                await asyncio.sleep(0.5)
        await self.on_exit(rec, exit_)

    async def on_exit(self, rec: ContainerRecord, exit_: ExitInfo) -> None:
        """Record an exit, wake waiters, then remove (AutoRemove) or restart (policy)."""
        async with self.lock(rec):
            if rec.id not in self.store.by_id:
                return
            self.health.stop(rec.id)  # opts
            deleted = False
            with contextlib.suppress(errors.LabkitError):
                await self.tasks.delete(rec.id, force=True)
                deleted = True
            self.io_sockets.pop(rec.id, None)
            ran_for = (exit_.exited_at or time.time()) - rec.started_at
            rec.exit_code, rec.oom_killed = exit_.exit_status, exit_.oom_killed
            rec.finished_at, rec.error, rec.pid = exit_.exited_at or time.time(), exit_.error, 0
            rec.transition("exited")
            rec.save(sync=False)
            if exit_.oom_killed:
                self.emit("oom", rec)
            self.emit("die", rec, exitCode=str(exit_.exit_status))
            for fut in self.exits.pop(rec.id, []):
                if not fut.done():
                    fut.set_result(exit_)
            if self.monitors.get(rec.id) is asyncio.current_task():
                del self.monitors[rec.id]
        if rec.host_config.get("AutoRemove"):
            await self._destroy(rec, task_deleted=deleted)
        elif rp.should_restart(rec.host_config.get("RestartPolicy") or {}, rec.exit_code,
                               rec.restart_count, rec.manually_stopped):
            delay = self.backoff.setdefault(rec.id, rp.Backoff()).next_delay(ran_for)
            self.monitors[rec.id] = asyncio.create_task(self._restart_later(rec, delay))

    async def _restart_later(self, rec: ContainerRecord, delay: float) -> None:
        rec.transition("restarting")
        rec.save()
        await asyncio.sleep(delay)
        async with self.lock(rec):
            if rec.status != "restarting" or rec.manually_stopped:
                return
            rec.restart_count += 1
            self.monitors.pop(rec.id, None)
            try:
                await self.start_task(rec)
            except errors.LabkitError as err:
                rec.status, rec.error = "exited", str(err)
                rec.save()

    # -- stop / kill / restart / pause ------------------------------------------------------
    async def _kill_and_wait(self, rec: ContainerRecord, sig: int,
                             timeout: float | None) -> bool:
        """Send ``sig``; wait up to ``timeout`` s for the exit; True when it exited."""
        if rec.status == "restarting":
            async with self.lock(rec):
                rec.transition("exited")
                rec.save()
            return True
        fut = self.wait_future(rec.id, "not-running")
        with contextlib.suppress(errors.NotFoundError):
            await self.tasks.kill(rec.id, sig, all=sig == _signal.SIGKILL)
        self.emit("kill", rec, signal=str(sig))
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self, ref: str, timeout: int | None = None) -> None:
        """SIGTERM (or Config.StopSignal), then SIGKILL after ``timeout`` s (default 10)."""
        rec = self.get(ref)
        if not rec.running:
            raise NotModifiedError(f"container {rec.id} is already stopped")
        rec.manually_stopped = True
        rec.save()
        t = timeout if timeout is not None else rec.config.get("StopTimeout") or 10
        sig = parse_signal(rec.config.get("StopSignal") or None, _signal.SIGTERM)
        if rec.status == "paused":
            with contextlib.suppress(errors.LabkitError):
                await self.tasks.resume(rec.id)
        if t < 0 or not await self._kill_and_wait(rec, sig, t if t >= 0 else None):
            await self._kill_and_wait(rec, _signal.SIGKILL, None)
        self.emit("stop", rec)

    async def kill(self, ref: str, sig: str | None = None) -> None:
        rec = self.get(ref)
        if not rec.running:
            raise not_running(rec)
        n = parse_signal(sig)
        if n in (_signal.SIGKILL, _signal.SIGTERM):
            rec.manually_stopped = True  # moby: a killed container is not restarted
            rec.save()
        await self.tasks.kill(rec.id, n, all=n == _signal.SIGKILL)
        self.emit("kill", rec, signal=str(n))

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        rec = self.get(ref)
        if rec.running:
            await self.stop(ref, timeout)
        await self.start(ref)
        self.emit("restart", rec)

    async def pause(self, ref: str) -> None:
        rec = self.get(ref)
        if rec.status == "paused":
            raise errors.ConflictError(f"Container {rec.id} is already paused")
        if rec.status != "running":
            raise not_running(rec)
        await self.tasks.pause(rec.id)
        rec.transition("paused")
        rec.save()
        self.emit("pause", rec)

    async def unpause(self, ref: str) -> None:
        rec = self.get(ref)
        if rec.status != "paused":
            raise errors.ConflictError(f"Container {rec.id} is not paused")
        await self.tasks.resume(rec.id)
        rec.transition("running")
        rec.save()
        self.emit("unpause", rec)

    def rename(self, ref: str, new: str) -> None:
        rec = self.get(ref)
        new = validate_name(new)
        old = rec.name
        self.store.rename(rec, new)
        rec.save()
        self.emit("rename", rec, oldName=f"/{old}")
