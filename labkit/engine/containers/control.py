"""Stopping a container and the other moves a user asks for: stop, kill, restart, pause,
unpause, rm.  Docker's semantics (moby daemon/stop.go, kill.go, delete.go): stop sends the
stop signal, waits, then SIGKILLs; a container the user stopped or killed is not restarted
by its policy; rm writes ``removing`` before it kills or tears anything down.

Owns no state: the records move through ContainerRecord.transition (lifecycle.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal as _signal

from labkit import errors
from labkit.engine.containers.createbody import parse_signal
from labkit.engine.containers.lifecycle import State, hold
from labkit.engine.containers.record import ContainerRecord
from labkit.engine.containers.service import Containers, NotModifiedError
from labkit.engine.containers.tasks import TaskService

__all__ = ["DEFAULT_STOP_TIMEOUT", "Control", "parse_signal"]

DEFAULT_STOP_TIMEOUT = 10  # seconds, dockerd's default when neither t nor StopTimeout is set


def not_running(rec: ContainerRecord) -> errors.ConflictError:
    return errors.ConflictError(f"Container {rec.id} is not running")


class Control:
    """stop / kill / restart / pause / unpause / rm over the containers service."""

    def __init__(self, containers: Containers, tasks: TaskService) -> None:
        self.containers, self.tasks = containers, tasks
        self.store, self.waiters = containers.store, containers.waiters

    async def _kill_and_wait(self, rec: ContainerRecord, sig: int,
                             timeout: float | None) -> bool:
        """Send ``sig``; wait up to ``timeout`` s for the exit; True when it exited."""
        if rec.status is State.RESTARTING:
            await self.containers.give_up_restart(rec)
            return True
        fut = self.waiters.wait(rec, "not-running")
        await self._signal(rec, sig)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return True
        except TimeoutError:
            return False

    async def _signal(self, rec: ContainerRecord, sig: int) -> None:
        """Send ``sig`` (SIGKILL to every process, as runc kill --all); a paused container
        is resumed after a SIGKILL so that it can die (moby killWithSignal)."""
        with contextlib.suppress(errors.NotFoundError):
            await self.tasks.kill(rec.id, sig, all=sig == _signal.SIGKILL)
        self.containers.emit("kill", rec, signal=str(sig))
        if sig == _signal.SIGKILL and rec.status is State.PAUSED:
            with contextlib.suppress(errors.LabkitError):
                await self.tasks.resume(rec.id)

    async def stop(self, ref: str, timeout: int | None = None) -> None:
        """The stop signal (Config.StopSignal, default SIGTERM), then SIGKILL after
        ``timeout`` s: the request's ``t``, else Config.StopTimeout, else 10.  A negative
        timeout waits for ever; 0 sends SIGKILL right after the stop signal (moby
        containerStop: a context with that deadline, none when negative)."""
        rec = self.store.get(ref)
        if not rec.running:
            raise NotModifiedError(f"container {rec.id} is already stopped")
        rec.manually_stopped = True
        rec.save()
        t = timeout if timeout is not None else rec.config.get("StopTimeout")
        t = DEFAULT_STOP_TIMEOUT if t is None else t
        sig = parse_signal(rec.config.get("StopSignal") or None, _signal.SIGTERM)
        if rec.status is State.PAUSED:
            with contextlib.suppress(errors.LabkitError):
                await self.tasks.resume(rec.id)
        if not await self._kill_and_wait(rec, sig, None if t < 0 else t):
            await self._kill_and_wait(rec, _signal.SIGKILL, None)
        self.containers.emit("stop", rec)

    async def kill(self, ref: str, sig: str | None = None) -> None:
        """Send a signal (default SIGKILL).  SIGKILL answers once the container has stopped,
        so an inspect right after shows it not running (moby daemon.Kill waits for it);
        any other signal answers once delivered."""
        rec = self.store.get(ref)
        if not rec.running:
            raise not_running(rec)
        n = parse_signal(sig)
        if n in (_signal.SIGKILL, _signal.SIGTERM):
            rec.manually_stopped = True  # moby: a killed container is not restarted
            rec.save()
        if n == _signal.SIGKILL:
            await self._kill_and_wait(rec, n, None)
            return
        await self.tasks.kill(rec.id, n, all=False)
        self.containers.emit("kill", rec, signal=str(n))

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        rec = self.store.get(ref)
        if rec.running:
            await self.stop(ref, timeout)
        await self.containers.start(ref)
        self.containers.emit("restart", rec)

    async def pause(self, ref: str) -> None:
        rec = self.store.get(ref)
        if rec.status is State.PAUSED:
            raise errors.ConflictError(f"Container {rec.id} is already paused")
        if rec.status is not State.RUNNING:
            raise not_running(rec)
        await self.tasks.pause(rec.id)
        rec.transition(State.PAUSED)
        self.containers.emit("pause", rec)

    async def unpause(self, ref: str) -> None:
        rec = self.store.get(ref)
        if rec.status is not State.PAUSED:
            raise errors.ConflictError(f"Container {rec.id} is not paused")
        await self.tasks.resume(rec.id)
        rec.transition(State.RUNNING)
        self.containers.emit("unpause", rec)

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        """DELETE /containers/{id}: 409 when running without force; force kills first;
        ``volumes`` (rm -v) removes the container's anonymous volumes too."""
        rec = self.store.get(ref)
        async with self.store.lock(rec):
            if rec.status is State.REMOVING:
                raise errors.ConflictError(f"removal of container {rec.id} is already in "
                                           "progress")
            if rec.running and not force:
                raise errors.ConflictError(
                    f"You cannot remove a running container {rec.id}. Stop the container "
                    "before attempting removal or force remove")
            live = rec.status in (State.RUNNING, State.PAUSED)
            fut = self.waiters.next_exit(rec) if live else None
            # Recorded (fsync) before anything is torn down: a daemon killed from here on
            # finishes the removal at its next start and never restarts the container.
            rec.manually_stopped = True
            rec.transition(State.REMOVING)
        await hold("rm:recorded")
        if fut is not None:
            await self._signal(rec, _signal.SIGKILL)
            await asyncio.shield(fut)
        await hold("rm:killed")
        await self.containers.destroy(rec, volumes=volumes)
