"""Exec instances (POST /containers/{id}/exec, /exec/{id}/start, GET /exec/{id}/json).

An exec is a record in the daemon (dockerd keeps them in memory too) plus a process the
supervisor adds to the task.  ``Execs`` owns the exec records: only it adds, changes or
forgets one (a container's go with it, as dockerd forgets them).  ``ExitCode`` is set before the stream to the client closes:
the Docker CLI reads it with GET /exec/{id}/json right after (docker-api.md 3.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from labkit import errors
from labkit.engine.containers.bundle import Bundles
from labkit.engine.containers.createbody import SS, STRS, B, S, check_types
from labkit.engine.containers.detachkeys import parse_detach_keys
from labkit.engine.containers.events import EventBus
from labkit.engine.containers.iosession import IoSession
from labkit.engine.containers.lifecycle import EXEC_TRANSITIONS, ExecState, State, move
from labkit.engine.containers.record import ContainerRecord
from labkit.engine.containers.store import ContainerStore
from labkit.engine.containers.tasks import TaskService, start_failure_code

__all__ = ["EXEC_TYPES", "ExecRecord", "Execs"]

EXEC_TYPES = {"User": S, "Privileged": B, "Tty": B, "AttachStdin": B, "AttachStderr": B,
              "AttachStdout": B, "Detach": B, "DetachKeys": S, "Env": STRS, "WorkingDir": S,
              "Cmd": SS}

_CANON = {k.lower(): k for k in EXEC_TYPES}


@dataclass(slots=True)
class ExecRecord:
    id: str
    container_id: str
    cmd: list[str]
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool
    user: str
    env: list[str]
    workdir: str
    status: ExecState = ExecState.CREATED  # changed only by transition()
    exit_code: int | None = None
    pid: int = 0
    has_process: bool = False  # the supervisor holds its process (resize reaches it)
    size: tuple[int, int] | None = None  # a resize that came before the process existed
    detach_keys: str = ""  # the create body's DetachKeys ("" -> the daemon's default)
    done: asyncio.Future[int] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.status is ExecState.RUNNING

    def transition(self, to: ExecState) -> None:
        """Move to ``to``; InvalidStateError when lifecycle.EXEC_TRANSITIONS forbids it."""
        self.status = move(self.status, to, EXEC_TRANSITIONS, "exec")

    def inspect(self) -> dict[str, Any]:
        """GET /exec/{id}/json in Docker's shape."""
        return {"ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
                "ProcessConfig": {"tty": self.tty, "entrypoint": self.cmd[0],
                                  "arguments": self.cmd[1:], "privileged": False,
                                  "user": self.user},
                "OpenStdin": self.stdin, "OpenStderr": self.stderr, "OpenStdout": self.stdout,
                "CanRemove": False, "ContainerID": self.container_id,
                "DetachKeys": self.detach_keys,
                "Pid": self.pid}


class Execs:
    """Exec instances: create, start (attached or detached), resize, inspect."""

    def __init__(self, store: ContainerStore, tasks: TaskService, bundles: Bundles,
                 bus: EventBus) -> None:
        self.store, self.tasks, self.bundles, self.bus = store, tasks, bundles, bus
        self._execs: dict[str, ExecRecord] = {}

    def _emit(self, action: str, rec: ContainerRecord, **extra: str) -> None:
        self.bus.emit(action, rec.id, rec.image, rec.name, rec.config.get("Labels"), **extra)

    def create(self, ref: str, body: dict[str, Any]) -> ExecRecord:
        """Validate the body; 409 when the container is not running or paused."""
        # Go's encoding/json matches field names case-insensitively (docker-py sends
        # "detachKeys"); exact spellings win, as there.
        body = {k if k in EXEC_TYPES else _CANON.get(k.lower(), k): v for k, v in body.items()}
        check_types(body, EXEC_TYPES)
        rec = self.store.get(ref)
        if rec.status is State.PAUSED:
            raise errors.ConflictError(f"Container {rec.id} is paused, unpause the container "
                                       "before exec")
        if rec.status is State.RESTARTING:  # moby errContainerIsRestarting
            raise errors.ConflictError(f"Container {rec.id} is restarting, wait until the "
                                       "container is running")
        if rec.status is not State.RUNNING:
            raise errors.ConflictError(f"Container {rec.id} is not running")
        cmd = body.get("Cmd")
        cmd = [cmd] if isinstance(cmd, str) else list(cmd or [])
        if not cmd:
            raise errors.InvalidArgumentError("Cmd", "No exec command specified")
        if body.get("DetachKeys"):
            try:
                parse_detach_keys(body["DetachKeys"])
            except errors.InvalidArgumentError:  # moby daemon/exec.go wording
                raise errors.InvalidArgumentError(
                    "DetachKeys", f"Invalid escape keys ({body['DetachKeys']}) provided") from None
        if body.get("Privileged"):
            raise errors.UnsupportedError("exec --privileged", "privileged is not offered")
        ex = ExecRecord(secrets.token_hex(32), rec.id, cmd, bool(body.get("Tty")),
                        bool(body.get("AttachStdin")), bool(body.get("AttachStdout")),
                        bool(body.get("AttachStderr")), body.get("User") or "",
                        list(body.get("Env") or []), body.get("WorkingDir") or "",
                        detach_keys=body.get("DetachKeys") or "")
        self._execs[ex.id] = ex
        self._emit(f"exec_create: {' '.join(cmd)}", rec, execID=ex.id)
        return ex

    def get(self, exec_id: str) -> ExecRecord:
        ex = self._execs.get(exec_id)
        if ex is None:
            raise errors.NotFoundError("exec instance", exec_id)
        return ex

    def ids_of(self, cid: str) -> list[str]:
        """The exec IDs of container ``cid`` (inspect's ExecIDs)."""
        return [e for e, x in self._execs.items() if x.container_id == cid]

    def forget(self, exec_id: str) -> None:
        """Drop one exec record (a health probe's, once it ended)."""
        self._execs.pop(exec_id, None)

    def forget_container(self, cid: str) -> None:
        """The container is gone: dockerd forgets its execs with it."""
        for eid in self.ids_of(cid):
            del self._execs[eid]

    async def start(self, exec_id: str, detach: bool) -> IoSession | None:
        """Add the process, connect its stream (unless detached), start it, watch its exit."""
        ex = self.get(exec_id)
        if ex.status is not ExecState.CREATED:
            raise errors.ConflictError(f"Error: Exec command {ex.id} is already running")
        rec = self.store.get(ex.container_id)
        if rec.status is not State.RUNNING:
            raise errors.ConflictError(f"Container {rec.id} is not running")
        ex.transition(ExecState.RUNNING)  # from here on, as moby: a second start is refused
        ex.done = asyncio.get_running_loop().create_future()
        session = None
        try:
            process = self.bundles.exec_process(rec, ex.cmd, ex.env, ex.tty, ex.workdir, ex.user)
            proc = await self.tasks.exec(rec.id, ex.id, process, terminal=ex.tty,
                                         stdin=ex.stdin)
            ex.has_process = True
            if ex.tty and ex.size is not None:  # `docker exec -it` resizes right away
                await self.tasks.resize(rec.id, ex.id, ex.size[1], ex.size[0])
            if not detach:
                session = await IoSession.connect(proc.io_socket, ex.id, ex.stdin, ex.stdout,
                                                  ex.stderr, ex.tty)
                session.exit_future = ex.done
            started = await self.tasks.start(rec.id, ex.id)
        except errors.LabkitError as err:
            ex.exit_code = start_failure_code(err)
            ex.transition(ExecState.EXITED)
            ex.done.set_result(ex.exit_code)
            with contextlib.suppress(errors.LabkitError):
                await self.tasks.delete(rec.id, ex.id)
            if session is not None:
                session.writer.close()
            raise errors.LabkitError(f"OCI runtime exec failed: {err}") from err
        ex.pid = started.pid
        self._emit(f"exec_start: {' '.join(ex.cmd)}", rec, execID=ex.id)
        asyncio.create_task(self._wait(ex))
        return session

    async def _wait(self, ex: ExecRecord) -> None:
        while True:
            try:
                exit_ = await self.tasks.wait(ex.container_id, ex.id)
                code = exit_.exit_status
                break
            except errors.NotFoundError:
                code = 255
                break
            except Exception:  # noqa: BLE001 - supervisor restarting: live-restore, try again
                await asyncio.sleep(0.5)
        ex.exit_code = code
        ex.transition(ExecState.EXITED)
        assert ex.done is not None
        if not ex.done.done():
            ex.done.set_result(code)
        with contextlib.suppress(errors.LabkitError):
            await self.tasks.delete(ex.container_id, ex.id)
        with contextlib.suppress(errors.NotFoundError):
            self._emit("exec_die", self.store.get(ex.container_id), execID=ex.id,
                       exitCode=str(code))

    async def resize(self, exec_id: str, h: int, w: int) -> None:
        ex = self.get(exec_id)
        ex.size = (h, w)
        if ex.has_process and ex.exit_code is None:
            await self.tasks.resize(ex.container_id, ex.id, w, h)
