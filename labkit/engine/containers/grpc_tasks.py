"""TaskService over gRPC (grpc.aio) to the supervisor's unix socket.

gRPC errors come back as the labkit error classes the supervisor raised (its
errmap.to_native, containerd's errgrpc.ToNative), so NotFoundError stays NotFoundError.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio

from labkit.engine.containers.tasks import (
    STATUS_NAMES,
    ExitInfo,
    ProcInfo,
    TaskEvent,
    TaskInfo,
    TaskStats,
)
from labkit.engine.images.mounts import Mount
from labkit.engine.supervisor.api import supervisor_pb2 as pb
from labkit.engine.supervisor.api import supervisor_pb2_grpc as pbg

__all__ = ["GrpcTasks", "from_grpc"]

T = TypeVar("T")


def from_grpc(err: grpc.aio.AioRpcError, what: str) -> Exception:
    """A gRPC failure as the labkit error the supervisor raised (its errmap.to_native)."""
    from labkit.engine.supervisor.errmap import to_native
    return to_native(err, what)


def _task(t: Any) -> TaskInfo:
    return TaskInfo(t.id, t.pid, STATUS_NAMES.get(t.status, "unknown"), t.io_socket,
                    t.exit_status, t.exited_at, t.oom_killed, t.started_at, t.shim_pid,
                    dict(t.labels))


def _proc(p: Any) -> ProcInfo:
    return ProcInfo(p.id, p.exec_id, p.pid, STATUS_NAMES.get(p.status, "unknown"), p.io_socket)


def _exit(e: Any) -> ExitInfo:
    return ExitInfo(e.exit_status, e.exited_at, e.oom_killed, e.error, e.pid)


class GrpcTasks:
    """The supervisor's Tasks service at ``socket`` (a unix socket path)."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self.channel = grpc.aio.insecure_channel(f"unix://{socket}")
        self.stub = pbg.TasksStub(self.channel)  # type: ignore[no-untyped-call]

    async def _call(self, what: str, fn: Callable[..., Awaitable[T]], req: Any,
                    timeout: float | None = 60) -> T:
        try:
            return await fn(req, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise from_grpc(err, what) from None

    async def ready(self, timeout: float) -> bool:
        """True once the channel connects within ``timeout`` seconds."""
        import asyncio
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout)
            return True
        except (TimeoutError, grpc.aio.AioRpcError):
            return False

    async def create(self, id: str, bundle: str, rootfs: list[Mount], *, terminal: bool,
                     stdin: bool, stdin_once: bool, log_path: str,
                     labels: dict[str, str], log_driver: str = "json-file",
                     log_options: dict[str, str] | None = None) -> TaskInfo:
        req = pb.CreateTaskRequest(
            id=id, bundle=bundle, terminal=terminal, stdin=stdin, stdin_once=stdin_once,
            rootfs=[pb.Mount(type=m.type, source=m.source, options=list(m.options))
                    for m in rootfs],
            log=pb.LogConfig(driver=log_driver, path=log_path, options=log_options or {}),
            labels=labels)
        return _task(await self._call("create task", self.stub.Create, req))

    async def start(self, id: str, exec_id: str = "") -> ProcInfo:
        return _proc(await self._call("start", self.stub.Start,
                                      pb.StartRequest(id=id, exec_id=exec_id)))

    async def kill(self, id: str, signal: int, exec_id: str = "", all: bool = False) -> None:
        await self._call("kill", self.stub.Kill,
                         pb.KillRequest(id=id, exec_id=exec_id, signal=signal, all=all))

    async def delete(self, id: str, exec_id: str = "", force: bool = False) -> ExitInfo:
        return _exit(await self._call("delete", self.stub.Delete,
                                      pb.DeleteRequest(id=id, exec_id=exec_id, force=force)))

    async def wait(self, id: str, exec_id: str = "") -> ExitInfo:
        return _exit(await self._call("wait", self.stub.Wait,
                                      pb.WaitRequest(id=id, exec_id=exec_id), timeout=None))

    async def state(self, id: str) -> TaskInfo:
        return _task(await self._call("state", self.stub.State, pb.TaskRequest(id=id)))

    async def list(self) -> builtins.list[TaskInfo]:
        resp = await self._call("list", self.stub.List, pb.ListRequest())
        return [_task(t) for t in resp.tasks]

    async def exec(self, id: str, exec_id: str, process: dict[str, Any], *, terminal: bool,
                   stdin: bool) -> ProcInfo:
        req = pb.ExecRequest(id=id, exec_id=exec_id, process_json=json.dumps(process).encode(),
                             terminal=terminal, stdin=stdin)
        return _proc(await self._call("exec", self.stub.Exec, req))

    async def resize(self, id: str, exec_id: str, width: int, height: int) -> None:
        await self._call("resize", self.stub.ResizePty,
                         pb.ResizeRequest(id=id, exec_id=exec_id, width=width, height=height))

    async def close_stdin(self, id: str, exec_id: str = "") -> None:
        await self._call("close stdin", self.stub.CloseStdin,
                         pb.ProcessRequest(id=id, exec_id=exec_id))

    async def pause(self, id: str) -> None:
        await self._call("pause", self.stub.Pause, pb.TaskRequest(id=id))

    async def resume(self, id: str) -> None:
        await self._call("resume", self.stub.Resume, pb.TaskRequest(id=id))

    async def pids(self, id: str) -> builtins.list[int]:
        return list((await self._call("pids", self.stub.Pids, pb.TaskRequest(id=id))).pids)

    async def stats(self, id: str) -> TaskStats:
        s = await self._call("stats", self.stub.Stats, pb.TaskRequest(id=id))
        return TaskStats(**{f: getattr(s, f) for f in TaskStats.__dataclass_fields__})

    async def update(self, id: str, resources: dict[str, Any]) -> None:
        await self._call("update", self.stub.Update, pb.UpdateRequest(
            id=id, resources_json=json.dumps(resources).encode()))

    async def events(self) -> AsyncIterator[TaskEvent]:
        try:
            async for e in self.stub.Events(pb.EventsRequest()):
                yield TaskEvent(e.topic, e.id, e.exec_id, e.pid, e.exit_status, e.timestamp)
        except grpc.aio.AioRpcError as err:
            raise from_grpc(err, "events") from None

    async def close(self) -> None:
        await self.channel.close()
