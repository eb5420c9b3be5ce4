"""Starting a container (bundle, task, attach, start) and adopting running ones (restore).

The order matters for `docker run`: the CLI attaches *before* it starts, so ``start_task``
creates the task, hands its io socket to every attach session waiting for it and lets them
connect (the shim then has its readers) before the process is released with Start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine.containers import restart as rp
from labkit.engine.containers._hooks import EngineHooks
from labkit.engine.containers.record import ContainerRecord
from labkit.engine.containers.tasks import ExitInfo

__all__ = ["IoSession", "StartMixin", "layer_lookup"]

log = logging.getLogger("labkit.daemon")
ATTACH_GRACE = 2.0  # seconds start waits for attach sessions to reach the shim


def layer_lookup(dirs: list[Path]):  # type: ignore[no-untyped-def]
    """Read a file as the container would see it: the first of ``dirs`` (top first)."""
    def lookup(path: str) -> str | None:
        for d in dirs:
            p = d / path.lstrip("/")
            if p.is_file():
                try:
                    return p.read_text(errors="replace")
                except OSError:
                    return None
        return None
    return lookup


def find_executable(name: str, env: list[str], dirs: list[Path]) -> bool:
    """Whether ``name`` resolves in the rootfs layers ``dirs`` (runc's LookPath, in the image)."""
    def exists(path: str) -> bool:
        for d in dirs:
            p = d / path.lstrip("/")
            if os.path.lexists(p):
                return True
        return False
    if "/" in name:
        return exists(name)
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/bin:/bin")
    return any(exists(os.path.join(p or "/", name)) for p in path.split(":"))


class IoSession:
    """One attach (or exec) stream: the shim's io socket, framed stdcopy output."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tty: bool,
                 exit_future: asyncio.Future[Any] | None = None) -> None:
        self.reader, self.writer, self.tty = reader, writer, tty
        self.exit_future = exit_future
        self.error = ""  # written to the client as stderr before closing (a failed exec)

    @classmethod
    async def connect(cls, socket: str, exec_id: str, stdin: bool, stdout: bool, stderr: bool,
                      tty: bool) -> IoSession:
        reader, writer = await asyncio.open_unix_connection(socket)
        hello = {"exec_id": exec_id, "stdin": stdin, "stdout": stdout, "stderr": stderr}
        writer.write(json.dumps(hello).encode() + b"\n")
        await writer.drain()
        return cls(reader, writer, tty)


class StartMixin(EngineHooks):
    """Engine methods for start, attach and restore (see engine.py)."""

    def oci_config(self, rec: ContainerRecord, write: bool = True) -> dict[str, Any]:
        """Translate the record into config.json; write it (and the /etc files) when asked."""
        from labkit.engine.containers.ocispec import translate
        image = self.images.get(rec.image_id)
        d = Path(rec.dir)
        dirs = [d / "upper", *reversed(image.layers)]
        from labkit.engine.containers.ocihost import store_peer  # opts: /etc files, peer
        from labkit.engine.containers.ocispec import etc_files_text
        etc = etc_files_text(rec.id, rec.config, rec.host_config)
        etc_files = {}
        for dest, text in etc.items():
            if write:
                (d / dest.rsplit("/", 1)[1]).write_text(text)
            etc_files[dest] = str(d / dest.rsplit("/", 1)[1])
        init = self.init_binary if rec.host_config.get("Init") else None
        if rec.host_config.get("Init") and not init:
            raise errors.UnsupportedError("HostConfig.Init", "no static init binary found",
                                          hint="apt-get install tini (tini-static)")
        spec = translate(rec.id, rec.config, rec.host_config, image.container_config,
                         layer_lookup(dirs), etc_files=etc_files, init_binary=init,
                         peer=store_peer(self.store, running=write))
        if write:  # compact: json's C encoder (indent= falls back to the Python one)
            rec.bundle.mkdir(parents=True, exist_ok=True)
            (rec.bundle / "config.json").write_text(json.dumps(spec))
        return spec

    async def start(self, ref: str) -> None:
        """POST /containers/{id}/start; NotModifiedError (304) when already running."""
        from labkit.engine.containers.engine import NotModifiedError
        rec = self.get(ref)
        failure: errors.LabkitError | None = None
        async with self.lock(rec):
            if rec.status in ("running", "paused"):
                raise NotModifiedError(f"container {rec.id} is already started")
            if rec.status == "removing":
                raise errors.ConflictError(f"container {rec.id} is marked for removal")
            rec.manually_stopped = False
            self.backoff.pop(rec.id, None)
            try:
                await self.start_task(rec)
            except errors.LabkitError as err:
                if not rec.host_config.get("AutoRemove"):
                    raise
                failure = err
        if failure is not None:  # moby containerStart: an --rm container that cannot start
            await self._destroy(rec)  # is removed (and `wait condition=removed` returns)
            raise failure

    async def start_task(self, rec: ContainerRecord) -> None:
        """Bundle -> supervisor Create -> attach sessions connect -> Start -> monitor."""
        from labkit.engine.images.overlay import prepare
        image = self.images.get(rec.image_id)
        d = Path(rec.dir)
        spec = self.oci_config(rec)
        proc = spec["process"]
        layers = [d / "upper", *reversed(image.layers)]
        if not find_executable(rec.path, proc["env"], layers):
            msg = (f'failed to create shim task: OCI runtime create failed: exec: "{rec.path}": '
                   "executable file not found in $PATH: unknown")
            rec.exit_code, rec.error = 127, msg
            rec.save()
            raise errors.InvalidArgumentError("Cmd", msg)
        for sub in ("upper", "work", "bundle/rootfs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        mount = prepare(list(reversed(image.layers)), d / "upper", d / "work", rec.bundle / "rootfs")
        cfg = rec.config
        task = await self.tasks.create(
            rec.id, str(rec.bundle), [mount], terminal=bool(cfg.get("Tty")),
            stdin=bool(cfg.get("OpenStdin")), stdin_once=bool(cfg.get("StdinOnce")),
            log_path=str(rec.log_path), labels={"lk.engine": "daemon"},
            log_driver=rec.host_config["LogConfig"]["Type"],
            log_options=rec.host_config["LogConfig"]["Config"])
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
        try:
            started = await self.tasks.start(rec.id)
        except errors.LabkitError as err:
            with contextlib.suppress(errors.LabkitError):
                await self.tasks.delete(rec.id, force=True)
            rec.exit_code, rec.error = 127 if "not found" in str(err) else 126, str(err)
            rec.save()
            raise
        rec.pid, rec.started_at, rec.error = started.pid, time.time(), ""
        rec.has_been_started = True
        rec.transition("running")
        rec.save(sync=False)
        self.emit("start", rec)
        self.monitor(rec)
        self.health.start(rec)  # opts

    async def attach(self, ref: str, stdin: bool, stdout: bool,
                     stderr: bool) -> IoSession | None:
        """An io session to the container's process; waits for start when not running yet."""
        rec = self.get(ref)
        tty = bool(rec.config.get("Tty"))
        if rec.status in ("running", "paused"):
            sock = self.io_sockets.get(rec.id) or (await self.tasks.state(rec.id)).io_socket
            self.io_sockets[rec.id] = sock
            return await IoSession.connect(sock, "", stdin, stdout, stderr, tty)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[str] = loop.create_future()
        done: asyncio.Future[None] = loop.create_future()
        self.pending_io.setdefault(rec.id, []).append((ready, done))
        try:
            sock = await ready
            if not sock:  # removed before it ever started
                return None
            return await IoSession.connect(sock, "", stdin, stdout, stderr, tty)
        finally:
            if not done.done():
                done.set_result(None)
            self.emit("attach", rec)

    async def restore(self) -> None:
        """Daemon start: load records, adopt running tasks, finish what died meanwhile."""
        records = self.store.load_all()
        tasks = {t.id: t for t in await self.tasks.list()}
        for rec in records:
            t = tasks.pop(rec.id, None)
            try:
                await self._restore_one(rec, t)
            except Exception as err:  # noqa: BLE001 - one broken record must not stop the daemon
                log.warning("restore %s: %s", rec.id[:12], err)
        for t in tasks.values():  # a task whose create never reached a record
            if t.labels.get("lk.engine") == "daemon":
                with contextlib.suppress(errors.LabkitError):
                    await self.tasks.delete(t.id, force=True)

    async def _restore_one(self, rec: ContainerRecord, t: Any) -> None:
        if rec.status == "removing":
            await self._destroy(rec)
        elif t is not None and t.status in ("running", "paused"):
            rec.status, rec.pid = t.status, t.pid
            self.io_sockets[rec.id] = t.io_socket
            rec.save()
            self.monitor(rec)
            self.health.start(rec)  # opts
        elif t is not None and t.status == "stopped":
            rec.status = "running" if rec.status == "exited" else rec.status
            await self.on_exit(rec, ExitInfo(t.exit_status, t.exited_at, t.oom_killed))
        elif t is not None:  # created but never started: the daemon died in between
            with contextlib.suppress(errors.LabkitError):
                await self.tasks.delete(rec.id, force=True)
            rec.status = "created"
            rec.save()
        elif rec.status in ("running", "paused", "restarting"):
            rec.status, rec.exit_code, rec.finished_at, rec.pid = "exited", 255, time.time(), 0
            rec.save()
            if rp.restart_on_daemon_start(rec.host_config.get("RestartPolicy") or {}, False):
                await self.start(rec.id)
        elif rec.status == "exited" and rp.restart_on_daemon_start(
                rec.host_config.get("RestartPolicy") or {}, rec.manually_stopped):
            await self.start(rec.id)
