"""A fake TaskService for unit tests: scripted processes, a real io socket, json-file logs.

Commands the fake understands (from config.json process.args): ``echo ARGS`` (prints and
exits 0), ``sh -c 'exit N'`` (exits N), ``cat`` (echoes stdin until EOF), ``sleep N`` or
anything else (runs until killed; SIGKILL/SIGTERM -> 128+N).  Output goes to every attached
io socket in stdcopy frames and to the json-file log, as the shim does.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine.containers.tasks import ExitInfo, ProcInfo, TaskEvent, TaskInfo, TaskStats
from labkit.engine.images.mounts import Mount
from labkit.engine.runtime.process import ExecutableNotFoundError
from labkit.engine.shim import stdcopy

__all__ = ["FakeTasks"]


@dataclass
class _Proc:
    key: str
    args: list[str]
    log_path: str
    io_socket: str
    tty: bool = False
    status: str = "created"
    pid: int = 0
    exit: asyncio.Future[ExitInfo] | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    stdin: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    server: asyncio.AbstractServer | None = None
    paused: bool = False


class FakeTasks:
    """TaskService double; ``calls`` records every call (name, id, exec_id)."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self.procs: dict[tuple[str, str], _Proc] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.next_pid = 1000

    async def _serve(self, p: _Proc) -> None:
        async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            hello = json.loads(await r.readline())
            if p.status == "stopped":
                w.close()
                return
            if hello.get("stdout") or hello.get("stderr"):
                p.writers.append(w)
            if hello.get("stdin"):
                while data := await r.read(4096):
                    p.stdin.put_nowait(data)
                p.stdin.put_nowait(None)
        p.server = await asyncio.start_unix_server(on_conn, p.io_socket)

    def _get(self, id: str, exec_id: str = "") -> _Proc:
        p = self.procs.get((id, exec_id))
        if p is None:
            raise errors.NotFoundError("task", f"{id}/{exec_id}" if exec_id else id)
        return p

    async def create(self, id: str, bundle: str, rootfs: list[Mount], *, terminal: bool,
                     stdin: bool, stdin_once: bool, log_path: str,
                     labels: dict[str, str], log_driver: str = "json-file",
                     log_options: dict[str, str] | None = None) -> TaskInfo:
        self.calls.append(("create", id, ""))
        if (id, "") in self.procs:
            raise errors.AlreadyExistsError("task", id)
        spec = json.loads((Path(bundle) / "config.json").read_text())
        if spec["process"]["args"][0] == "nosuch":  # the runtime's init searches PATH
            raise ExecutableNotFoundError("nosuch")
        p = _Proc(id, spec["process"]["args"], log_path, str(self.dir / f"{id[:12]}.io"),
                  terminal)
        await self._serve(p)
        self.procs[(id, "")] = p
        return self._info(p)

    def _info(self, p: _Proc) -> TaskInfo:
        return TaskInfo(p.key, p.pid, p.status, p.io_socket)

    async def _emit(self, p: _Proc, stream: int, data: bytes) -> None:
        with open(p.log_path, "a") as f:  # noqa: ASYNC230 - a test double
            f.write(json.dumps({"log": data.decode(), "stream": "stdout" if stream == 1 else
                                "stderr", "time": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z",
                                                                time.gmtime())}) + "\n")
        for w in p.writers:
            w.write(stdcopy.encode(stream, data))

    async def _run(self, p: _Proc) -> None:
        args, code = p.args, 0
        await asyncio.sleep(0.02)  # let attach sessions' hello lines arrive (as a shim would)
        if args[0] == "echo":
            await self._emit(p, 1, (" ".join(args[1:]) + "\n").encode())
        elif args[:2] == ["sh", "-c"] and args[2].startswith("exit "):
            code = int(args[2].split()[1])
        elif args[0] == "cat":
            while (data := await p.stdin.get()) is not None:
                await self._emit(p, 1, data)
        else:
            await asyncio.Event().wait()  # until killed
        self._finish(p, code)

    def _finish(self, p: _Proc, code: int) -> None:
        p.status = "stopped"
        for w in p.writers:
            with contextlib.suppress(Exception):
                w.close()
        if p.server is not None:
            p.server.close()
        assert p.exit is not None
        if not p.exit.done():
            p.exit.set_result(ExitInfo(code, time.time(), pid=p.pid))

    async def start(self, id: str, exec_id: str = "") -> ProcInfo:
        self.calls.append(("start", id, exec_id))
        p = self._get(id, exec_id)
        self.next_pid += 1
        p.pid, p.status = self.next_pid, "running"
        p.exit = asyncio.get_running_loop().create_future()
        p.task = asyncio.create_task(self._run(p))  # type: ignore[attr-defined]
        return ProcInfo(id, exec_id, p.pid, p.status, p.io_socket)

    async def kill(self, id: str, signal: int, exec_id: str = "", all: bool = False) -> None:
        self.calls.append(("kill", id, exec_id))
        p = self._get(id, exec_id)
        if p.status == "running":
            p.task.cancel()  # type: ignore[attr-defined]
            self._finish(p, 128 + signal)
            for (cid, eid), q in self.procs.items():
                if cid == id and eid and q.status == "running":
                    q.task.cancel()  # type: ignore[attr-defined]
                    self._finish(q, 128 + signal)

    async def delete(self, id: str, exec_id: str = "", force: bool = False) -> ExitInfo:
        self.calls.append(("delete", id, exec_id))
        p = self._get(id, exec_id)
        if p.status == "running":
            if not force:
                raise errors.ConflictError(f"task {id} is running")
            await self.kill(id, 9, exec_id)
        del self.procs[(id, exec_id)]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p.io_socket)
        return p.exit.result() if p.exit and p.exit.done() else ExitInfo(0)

    async def wait(self, id: str, exec_id: str = "") -> ExitInfo:
        p = self._get(id, exec_id)
        assert p.exit is not None
        return await asyncio.shield(p.exit)

    async def state(self, id: str) -> TaskInfo:
        return self._info(self._get(id))

    async def list(self) -> builtins.list[TaskInfo]:
        return [self._info(p) for (i, e), p in self.procs.items() if not e]

    async def exec(self, id: str, exec_id: str, process: dict[str, Any], *, terminal: bool,
                   stdin: bool) -> ProcInfo:
        self.calls.append(("exec", id, exec_id))
        task = self._get(id)
        p = _Proc(id, process["args"], task.log_path + ".exec", str(self.dir / f"{exec_id[:12]}.io"),
                  terminal)
        if p.args[0] == "nosuch":  # the runtime's typed error (exit code 127), as the shim's
            from labkit.engine.runtime.process import ExecutableNotFoundError

            raise ExecutableNotFoundError("nosuch")
        await self._serve(p)
        self.procs[(id, exec_id)] = p
        return ProcInfo(id, exec_id, 0, "created", p.io_socket)

    async def resize(self, id: str, exec_id: str, width: int, height: int) -> None:
        self.calls.append(("resize", id, exec_id))

    async def close_stdin(self, id: str, exec_id: str = "") -> None:
        self._get(id, exec_id).stdin.put_nowait(None)

    async def pause(self, id: str) -> None:
        self.calls.append(("pause", id, ""))
        self._get(id).status = "paused"

    async def resume(self, id: str) -> None:
        self.calls.append(("resume", id, ""))
        self._get(id).status = "running"

    async def pids(self, id: str) -> builtins.list[int]:
        return [os.getpid()]

    async def stats(self, id: str) -> TaskStats:
        self._get(id)
        return TaskStats(read_at=time.time(), memory_usage=1 << 20, memory_limit=1 << 30,
                         cpu_usage_ns=10**6, system_cpu_ns=10**12, online_cpus=2,
                         pids_current=1)

    async def update(self, id: str, resources: dict[str, Any]) -> None:
        self.calls.append(("update", id, json.dumps(resources, sort_keys=True)))

    async def events(self) -> AsyncIterator[TaskEvent]:
        if False:
            yield TaskEvent("", "")

    async def close(self) -> None:
        for p in self.procs.values():
            if p.server is not None:
                p.server.close()
