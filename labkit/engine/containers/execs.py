"""Exec instances (POST /containers/{id}/exec, /exec/{id}/start, GET /exec/{id}/json).

An exec is a record in the daemon (dockerd keeps them in memory too) plus a process the
supervisor adds to the task.  ``ExitCode`` is set before the stream to the client closes:
the Docker CLI reads it with GET /exec/{id}/json right after (docker-api.md 3.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from labkit import errors
from labkit.engine.containers._hooks import EngineHooks
from labkit.engine.containers._start import IoSession, layer_lookup
from labkit.engine.containers.createbody import SS, STRS, B, S, check_types
from labkit.engine.containers.detachkeys import parse_detach_keys

__all__ = ["EXEC_TYPES", "ExecMixin", "ExecRecord"]

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
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    created: bool = False
    size: tuple[int, int] | None = None  # a resize that came before the process existed
    detach_keys: str = ""  # the create body's DetachKeys ("" -> the daemon's default)
    done: asyncio.Future[int] | None = field(default=None, repr=False)

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


class ExecMixin(EngineHooks):
    """Engine methods for exec (see engine.py)."""

    def exec_create(self, ref: str, body: dict[str, Any]) -> ExecRecord:
        """Validate the body; 409 when the container is not running or paused."""
        # Go's encoding/json matches field names case-insensitively (docker-py sends
        # "detachKeys"); exact spellings win, as there.
        body = {k if k in EXEC_TYPES else _CANON.get(k.lower(), k): v for k, v in body.items()}
        check_types(body, EXEC_TYPES)
        rec = self.get(ref)
        if rec.status == "paused":
            raise errors.ConflictError(f"Container {rec.id} is paused, unpause the container "
                                       "before exec")
        if rec.status == "restarting":  # moby errContainerIsRestarting
            raise errors.ConflictError(f"Container {rec.id} is restarting, wait until the "
                                       "container is running")
        if rec.status != "running":
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
        self.execs[ex.id] = ex
        self.emit(f"exec_create: {' '.join(cmd)}", rec, execID=ex.id)
        return ex

    def exec_get(self, exec_id: str) -> ExecRecord:
        ex = self.execs.get(exec_id)
        if ex is None:
            raise errors.NotFoundError("exec instance", exec_id)
        return ex

    def _process(self, ex: ExecRecord) -> dict[str, Any]:
        from labkit.engine.containers.ocispec import merge_env, resolve_user
        rec = self.get(ex.container_id)
        spec = json.loads((rec.bundle / "config.json").read_text())
        proc: dict[str, Any] = spec["process"]
        image = self.images.get(rec.image_id)
        proc["env"] = merge_env(proc["env"], ex.env, {})
        proc["args"] = ex.cmd
        proc["terminal"] = ex.tty
        if ex.workdir:
            proc["cwd"] = ex.workdir
        if ex.user:
            from pathlib import Path
            dirs = [Path(rec.dir) / "upper", *reversed(image.layers)]
            proc["user"] = resolve_user(ex.user, layer_lookup(dirs))
        return proc

    async def exec_start(self, exec_id: str, detach: bool) -> IoSession | None:
        """Add the process, connect its stream (unless detached), start it, watch its exit."""
        ex = self.exec_get(exec_id)
        if ex.started:
            raise errors.ConflictError(f"Error: Exec command {ex.id} is already running")
        rec = self.get(ex.container_id)
        if rec.status != "running":
            raise errors.ConflictError(f"Container {rec.id} is not running")
        ex.started = True
        ex.done = asyncio.get_running_loop().create_future()
        session = None
        try:
            proc = await self.tasks.exec(rec.id, ex.id, self._process(ex), terminal=ex.tty,
                                         stdin=ex.stdin)
            ex.created = True
            if ex.tty and ex.size is not None:  # `docker exec -it` resizes right away
                await self.tasks.resize(rec.id, ex.id, ex.size[1], ex.size[0])
            if not detach:
                session = await IoSession.connect(proc.io_socket, ex.id, ex.stdin, ex.stdout,
                                                  ex.stderr, ex.tty)
                session.exit_future = ex.done
            started = await self.tasks.start(rec.id, ex.id)
        except errors.LabkitError as err:
            text = str(err).lower()
            ex.exit_code = 127 if "not found" in text or "no such file" in text else 126
            ex.done.set_result(ex.exit_code)
            with contextlib.suppress(errors.LabkitError):
                await self.tasks.delete(rec.id, ex.id)
            if session is not None:
                session.writer.close()
            raise errors.LabkitError(f"OCI runtime exec failed: {err}") from err
        ex.pid, ex.running = started.pid, True
        self.emit(f"exec_start: {' '.join(ex.cmd)}", rec, execID=ex.id)
        asyncio.create_task(self._exec_wait(ex))
        return session

    async def _exec_wait(self, ex: ExecRecord) -> None:
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
        ex.exit_code, ex.running = code, False
        assert ex.done is not None
        if not ex.done.done():
            ex.done.set_result(code)
        with contextlib.suppress(errors.LabkitError):
            await self.tasks.delete(ex.container_id, ex.id)
        with contextlib.suppress(errors.NotFoundError):
            self.emit("exec_die", self.get(ex.container_id), execID=ex.id,
                      exitCode=str(code))

    async def exec_resize(self, exec_id: str, h: int, w: int) -> None:
        ex = self.exec_get(exec_id)
        ex.size = (h, w)
        if ex.created and ex.exit_code is None:
            await self.tasks.resize(ex.container_id, ex.id, w, h)
