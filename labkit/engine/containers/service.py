"""The containers service: create, start, attach, wait, the exit path and the removal.

As in dockerd + containerd, ``create`` only writes a record (no task, no cgroup, no mount:
a failed create leaves nothing behind); ``start`` writes the OCI bundle, asks the supervisor
to Create the task (it mounts the overlay rootfs and starts a shim), lets waiting attach
sessions connect to the task's io socket, then Starts it.  One monitor per running container
(TaskLink) waits for its exit; ``on_exit`` records it, wakes the waiters and applies the
restart policy.  The daemon never parents a container (live-restore: recovery.py).

This service changes records only through ``ContainerRecord.transition`` (lifecycle.py) and
owns no table of its own: records and names are the store's, tasks the link's, waiters
Waiters', backoffs Restarts', execs Execs'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from labkit import errors
from labkit.engine import paths
from labkit.engine.containers import restart as rp
from labkit.engine.containers.bundle import Bundles
from labkit.engine.containers.createbody import CreateSpec, validate_name
from labkit.engine.containers.events import EventBus
from labkit.engine.containers.execs import Execs
from labkit.engine.containers.health import HealthMonitor
from labkit.engine.containers.iosession import IoSession
from labkit.engine.containers.lifecycle import (
    GOING,
    TRANSITIONS,
    State,
    can_move,
    refuse_if_going,
)
from labkit.engine.containers.record import ContainerRecord, new_id
from labkit.engine.containers.store import ContainerStore
from labkit.engine.containers.tasklink import TaskLink
from labkit.engine.containers.tasks import ExitInfo, start_failure_code
from labkit.engine.containers.waits import Waiters, exit_of
from labkit.engine.images.store import ImageStore
from labkit.engine.networks.endpoints import ContainerNet, NetPlan
from labkit.engine.networks.service import Networks
from labkit.engine.volumes import VolumeStore
from labkit.engine.volumes import spec as volspec

__all__ = ["Containers", "NotModifiedError"]

log = logging.getLogger("labkit.daemon")


class NotModifiedError(errors.LabkitError):
    """Nothing to do (start on a running container): Docker answers 304."""


class Containers:
    """Docker's container lifecycle over the supervisor's tasks."""

    def __init__(self, store: ContainerStore, images: ImageStore, bundles: Bundles,
                 link: TaskLink, waiters: Waiters, restarts: rp.Restarts, execs: Execs,
                 bus: EventBus, health: HealthMonitor, volumes: VolumeStore | None = None,
                 net: ContainerNet | None = None) -> None:
        self.store, self.images, self.bundles, self.link = store, images, bundles, link
        self._net_tasks: dict[str, asyncio.Task[None]] = {}  # --rm teardowns in flight
        self.net = net or ContainerNet(Networks(bus, root=store.root.parent / "networks",
                                                        default_bridge=False))
        self.waiters, self.restarts, self.execs, self.bus = waiters, restarts, execs, bus
        self.health = health
        self.volumes = volumes or VolumeStore(users=self.volume_users)
        self.volumes.on_event = bus.emit_volume
        # Awaited with each container whose record is gone, by whichever path removed it
        # (rm, prune, --rm, a removal finished after a restart): what lives above the
        # engine gives back what the record held (a swarm's network attachments).
        self.removed_hooks: list[Callable[[ContainerRecord], Awaitable[None]]] = []

    def volume_users(self, name: str) -> list[str]:
        """IDs of the containers (running or not) whose mounts name volume ``name``."""
        return [r.id for r in self.store.all()
                if any(m.get("Name") == name for m in r.mounts if m.get("Type") == "volume")]

    def emit(self, action: str, rec: ContainerRecord, **extra: str) -> None:
        self.bus.emit(action, rec.id, rec.image, rec.name, rec.config.get("Labels"), **extra)

    def volume_events(self, rec: ContainerRecord, action: str) -> None:
        """moby's volume mount (setupMounts, before "start") and unmount (Cleanup, after
        "die") events, one per volume mount of the container."""
        for m in rec.mounts:
            if m.get("Type") != "volume" or not m.get("Name"):
                continue
            attrs = {"driver": str(m.get("Driver") or "local"), "container": rec.id}
            if action == "mount":
                attrs.update({"destination": str(m.get("Destination", "")),
                              "read/write": "true" if m.get("RW", True) else "false",
                              "propagation": str(m.get("Propagation") or "")})
            self.bus.emit_volume(action, m["Name"], attrs)

    # -- create / rename ---------------------------------------------------------------
    def create(self, spec: CreateSpec) -> ContainerRecord:
        """Write the record and the container's directory; no task yet (Docker's create)."""
        from labkit.engine.containers.ocispec import command, merge_image
        image = self.images.get(spec.image)
        args = command(spec.config, image.container_config)
        config = merge_image(spec.config, image.container_config)
        cid = new_id()
        name = spec.name or self.store.generate_name(cid)
        d = self.store.root / cid
        networks = self.net.prepare(spec.host_config, config, spec.endpoints)
        rec = ContainerRecord(cid, name, spec.image, image.id, time.time(), args[0], args[1:],
                              config, spec.host_config, str(d), warnings=spec.warnings,
                              networks=networks)
        # the image's VOLUMEs too, where no -v / --mount / request Volumes covers them
        taken = {m["Destination"] for m in spec.mounts}
        points = spec.mounts + volspec.from_volumes(image.container_config.get("Volumes"), taken)
        self.store.reserve(rec)
        try:
            rec.mounts = self.volumes.resolve(points)  # held until the record names them
        except BaseException:
            self.store.discard(rec)
            raise
        try:
            d.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True)  # the upper dir's setuid files stay ours
            self.bundles.oci_config(rec, write=False)  # user, command: refuse now what start would
            if any(m["Type"] == "volume" and not m.get("NoCopy") for m in rec.mounts):
                self._copy_up(rec)
            rec.save()
        except BaseException:
            self.store.discard(rec)
            self._unmount_view(d)
            shutil.rmtree(d, ignore_errors=True)
            self.volumes.release(rec.mounts)
            self.volumes.remove_anonymous(rec.mounts)
            raise
        self.store.add(rec)
        self.volumes.release(rec.mounts)
        self.emit("create", rec)
        return rec

    def _copy_up(self, rec: ContainerRecord) -> None:
        """Docker's copy-up at create: what the image holds at a volume's mount point goes
        into the volume while it is empty (not with ``nocopy``).  The image is seen through
        the container's own overlay, mounted privately for the copy (fsview.py)."""
        from labkit._sys.inroot import open_in_root
        from labkit.engine.containers.fsview import _mount_private
        path = _mount_private(self, rec)
        try:
            root = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                for m in rec.mounts:
                    if m["Type"] != "volume" or m.get("NoCopy"):
                        continue
                    try:
                        src = open_in_root(root, m["Destination"], os.O_RDONLY | os.O_DIRECTORY)
                    except (FileNotFoundError, NotADirectoryError):
                        continue  # nothing there in the image: nothing to copy
                    try:
                        self.volumes.populate(m["Name"], src)
                    finally:
                        os.close(src)
            finally:
                os.close(root)
        finally:
            self._unmount_view(Path(rec.dir))

    @staticmethod
    def _unmount_view(d: Path) -> None:
        view = d / ".lk-view"
        if os.path.ismount(view):
            from labkit.engine.containers.fsview import _unmount
            _unmount(str(view))
        with contextlib.suppress(OSError):
            view.rmdir()

    def rename(self, ref: str, new: str) -> None:
        rec = self.store.get(ref)
        refuse_if_going(rec.status, rec.id, "renamed")
        new = validate_name(new)
        old = rec.name
        self.store.rename(rec, new)
        rec.save()
        self.emit("rename", rec, oldName=f"/{old}")

    # -- start / attach / wait -----------------------------------------------------------
    async def start(self, ref: str) -> None:
        """POST /containers/{id}/start; NotModifiedError (304) when already running."""
        rec = self.store.get(ref)
        failure: errors.LabkitError | None = None
        async with self.store.lock(rec):
            if rec.status in (State.RUNNING, State.PAUSED):
                raise NotModifiedError(f"container {rec.id} is already started")
            if not can_move(rec.status, State.RUNNING, TRANSITIONS):  # removing, dead
                raise errors.ConflictError(f"container {rec.id} is marked for removal")
            rec.manually_stopped = False
            self.restarts.reset(rec.id)
            try:
                await self.start_task(rec)
            except errors.LabkitError as err:
                if not rec.host_config.get("AutoRemove"):
                    raise
                failure = err
        if failure is not None:  # moby containerStart: an --rm container that cannot start
            await self.destroy(rec)  # is removed (and `wait condition=removed` returns)
            raise failure

    async def start_task(self, rec: ContainerRecord) -> None:
        """Bundle -> supervisor Create -> attach sessions connect -> Start -> monitor.
        The caller holds the container's lock."""
        from labkit.engine.containers.ocispec import container_hostname
        plan = await self.net.setup(rec, container_hostname(rec.id, rec.config, rec.host_config))
        try:
            await self._start_task(rec, plan)
        except BaseException:
            await self.net.teardown(rec)
            raise

    async def _start_task(self, rec: ContainerRecord, plan: NetPlan) -> None:
        from labkit.engine.images.overlay import prepare
        image = self.images.for_container(rec.image_id)
        d = Path(rec.dir)
        self.bundles.oci_config(rec, plan=plan)
        for sub in ("upper", "work", "bundle/rootfs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        mount = prepare(list(reversed(image.layers)), d / "upper", d / "work", rec.bundle / "rootfs")
        try:
            await self.link.create(rec, mount)
        except errors.LabkitError as err:
            # PATH is searched once, by the runtime's init inside the container's own mounts
            # (runc's LookPath); its typed error carries 126/127 (moby
            # translateContainerdStartErr: exit code set, an invalid-parameter error).
            code = getattr(err, "exit_code", None)
            if code not in (126, 127):
                raise
            msg = ("failed to create task for container: failed to create shim task: OCI "
                   f"runtime create failed: unable to start container process: {err}: unknown")
            rec.exit_code, rec.error = code, msg
            rec.save()
            raise errors.InvalidArgumentError("Cmd", msg) from err
        try:
            started = await self.link.start(rec)
        except errors.LabkitError as err:
            rec.exit_code, rec.error = start_failure_code(err), str(err)
            rec.save()
            raise
        rec.pid, rec.started_at, rec.error = started.pid, time.time(), ""
        rec.has_been_started = True
        rec.transition(State.RUNNING)
        self.volume_events(rec, "mount")
        self.emit("start", rec)
        self.link.watch(rec, self.on_exit)
        self.health.start(rec)

    async def attach(self, ref: str, stdin: bool, stdout: bool,
                     stderr: bool) -> IoSession | None:
        """An io session to the container's process; waits for start when not running yet."""
        rec = self.store.get(ref)
        live = rec.status in (State.RUNNING, State.PAUSED)
        try:
            return await self.link.attach(rec, live, stdin, stdout, stderr)
        finally:
            if not live:
                self.emit("attach", rec)

    def wait(self, ref: str, condition: str = "not-running") -> asyncio.Future[ExitInfo]:
        """A future for POST /wait's condition; resolved synchronously so 404 comes first."""
        return self.waiters.wait(self.store.get(ref), condition)

    # -- the exit path ---------------------------------------------------------------------
    async def on_exit(self, rec: ContainerRecord, exit_: ExitInfo) -> None:
        """Record an exit, wake waiters, then remove (AutoRemove) or restart (policy)."""
        async with self.store.lock(rec):
            if not self.store.known(rec):
                return
            self.health.stop(rec.id)
            deleted = await self.link.delete(rec)
            self.link.exit_seen(rec)
            if rec.host_config.get("AutoRemove") and rec.status not in GOING:
                # --rm: the links' deletion (~20 ms waiting in the kernel) overlaps the
                # removal below; destroy() awaits it before it answers
                self._net_tasks[rec.id] = asyncio.create_task(
                    self.net.teardown(rec, save=False))
            else:
                await self.net.teardown(rec, save=False)
            ran_for = (exit_.exited_at or time.time()) - rec.started_at
            rec.exit_code, rec.oom_killed = exit_.exit_status, exit_.oom_killed
            rec.finished_at, rec.error, rec.pid = exit_.exited_at or time.time(), exit_.error, 0
            # removing/dead: rm has begun (and owns what follows); the exit is only noted
            going = rec.status in GOING
            rec.transition(rec.status if going else State.EXITED)
            if exit_.oom_killed:
                self.emit("oom", rec)
            self.emit("die", rec, exitCode=str(exit_.exit_status))
            self.volume_events(rec, "unmount")
            self.waiters.exited(rec.id, exit_)
        if going:
            return
        if rec.host_config.get("AutoRemove"):
            await self.destroy(rec, task_deleted=deleted, volumes=True)
        elif rp.should_restart(rec.host_config.get("RestartPolicy") or {}, rec.exit_code,
                               rec.restart_count, rec.manually_stopped):
            self.restarts.schedule(rec.id, ran_for, lambda delay: self._restart_later(rec, delay))

    async def _restart_later(self, rec: ContainerRecord, delay: float) -> None:
        async with self.store.lock(rec):
            if rec.status is not State.EXITED or rec.manually_stopped:
                return  # stopped, started or removed since the exit
            rec.transition(State.RESTARTING)
        await asyncio.sleep(delay)
        async with self.store.lock(rec):
            # State(): read afresh, it may have moved while we slept
            if State(rec.status) is not State.RESTARTING or rec.manually_stopped:
                return
            rec.restart_count += 1
            try:
                await self.start_task(rec)
            except errors.LabkitError as err:
                rec.error = str(err)
                rec.transition(State.EXITED)

    async def give_up_restart(self, rec: ContainerRecord) -> None:
        """stop/rm of a container waiting out its restart backoff: it stays exited."""
        async with self.store.lock(rec):
            if rec.status is State.RESTARTING:
                rec.transition(State.EXITED)

    # -- removal -----------------------------------------------------------------------------
    async def destroy(self, rec: ContainerRecord, task_deleted: bool = False,
                      volumes: bool = False) -> None:
        """Remove the container: its task (unless ``task_deleted``: on_exit just deleted it
        and nothing started it again since), rootfs mount, record and directory.
        ``removing`` is recorded first (lifecycle.DURABLE), so a daemon killed half way
        finishes this at its next start; a teardown that fails leaves it ``dead``."""
        async with self.store.lock(rec):
            if not self.store.known(rec):
                return
            # (AutoRemove's on_exit path skips the task delete: one supervisor round trip
            # less between the exit and the answer to `wait condition=removed`)
            delete_task = not (task_deleted and rec.status is State.EXITED)
            rec.transition(State.REMOVING)
            self.link.forget(rec)
            self.health.stop(rec.id)
            self.restarts.cancel(rec.id)
            if delete_task:
                await self.link.delete(rec)
            pending = self._net_tasks.pop(rec.id, None)
            if pending is None:
                await self.net.teardown(rec, save=False)
            rootfs = rec.bundle / "rootfs"
            try:
                if os.path.ismount(rootfs):  # never rmtree through a live overlay
                    from labkit.engine.images.mounts import unmount
                    unmount(str(rootfs), detach=True)
            except (OSError, errors.LabkitError):
                rec.transition(State.DEAD)  # moby SetRemovalError: `rm` again finishes it
                raise
            self.store.discard(rec)
            if rec.image_id in self.images.held():  # its image went with rmi -f: free it now
                await asyncio.to_thread(self.images.release,
                                        {r.image_id for r in self.store.all()})
            # In a worker thread: after the overlay's lazy unmount, removing its upper and
            # work dirs waits in the kernel for the superblock's teardown (8-70 ms measured
            # here), which would stall every other request on the event loop.
            await asyncio.to_thread(shutil.rmtree, rec.dir, True)
            if volumes:  # rm -v, --rm: the anonymous volumes go with the container
                await asyncio.to_thread(self.volumes.remove_anonymous, rec.mounts)
            if pending is not None:  # the network is gone before `rm` / --rm answers
                await pending
            self.emit("destroy", rec)
            self.waiters.removed(rec.id, exit_of(rec))
        self.execs.forget_container(rec.id)
        for hook in list(self.removed_hooks):
            try:
                await hook(rec)
            except Exception as err:  # noqa: BLE001 - the removal itself is done
                log.warning("after removing %s: %s", rec.id[:12], err)
