"""The supervisor's one client: every Tasks rpc, its errors, its replies as plain records.

The daemon uses ``TasksClient`` (grpc.aio) on its event loop; it satisfies the containers
room's ``TaskService`` Protocol.  Code without a loop (the test harness, the benchmark, a
notebook) uses ``SupervisorClient``, which runs one ``TasksClient`` on a private loop
thread, so each rpc is written once:

    from labkit.engine.supervisor.client import SupervisorClient, attach, read_frames
    with SupervisorClient() as sup:                      # paths.supervisor_socket()
        t = sup.create("web", "/var/lib/labkit/containers/web/bundle", log_path=".../web-json.log")
        io = attach(t.io_socket, stdout=True, stderr=True)  # before start: nothing lost
        sup.start("web")
        print(sup.wait("web").exit_status)
        sup.delete("web")

Every gRPC error comes back as the labkit error the server raised (errmap.to_native:
NotFoundError, AlreadyExistsError, InvalidStateError, ...; ExecutableNotFoundError keeps
its exit_code 127).  Replies are the frozen records of records.py: nothing past this
module sees protobuf.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import json
import os
import socket
import threading
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

import grpc
import grpc.aio

from labkit.engine.shim.protocol import encode
from labkit.engine.shim.stdcopy import Decoder
from labkit.engine.supervisor.api import supervisor_pb2 as pb
from labkit.engine.supervisor.api import supervisor_pb2_grpc as pbg
from labkit.engine.supervisor.errmap import to_native
from labkit.engine.supervisor.records import (
    STATUS_NAMES,
    ExitInfo,
    ProcInfo,
    TaskEvent,
    TaskInfo,
    TaskStats,
)

__all__ = ["SupervisorClient", "TasksClient", "attach", "read_frames"]

T = TypeVar("T")


def _task(t: Any) -> TaskInfo:
    return TaskInfo(t.id, t.pid, STATUS_NAMES.get(t.status, "unknown"), t.io_socket,
                    t.exit_status, t.exited_at, t.oom_killed, t.started_at, t.shim_pid,
                    dict(t.labels), t.bundle, t.terminal)


def _proc(p: Any) -> ProcInfo:
    return ProcInfo(p.id, p.exec_id, p.pid, STATUS_NAMES.get(p.status, "unknown"), p.io_socket)


def _exit(e: Any) -> ExitInfo:
    return ExitInfo(e.exit_status, e.exited_at, e.oom_killed, e.error, e.pid)


def _get(m: Any, key: str) -> Any:
    # rootfs mounts: labkit.engine.images Mounts, or dicts with type/source/options
    return m[key] if isinstance(m, Mapping) else getattr(m, key)


class TasksClient:
    """The supervisor's Tasks service at ``socket`` (a unix socket path), over grpc.aio."""

    def __init__(self, socket_path: str | os.PathLike[str] | None = None,
                 timeout: float | None = 60.0) -> None:
        if socket_path is None:
            from labkit.engine import paths

            socket_path = paths.supervisor_socket()
        self.socket = str(socket_path)
        self.timeout = timeout
        self.channel = grpc.aio.insecure_channel(f"unix://{self.socket}")
        self.stub = pbg.TasksStub(self.channel)  # type: ignore[no-untyped-call]

    async def _call(self, fn: Callable[..., Awaitable[T]], req: Any,
                    timeout: float | None | bool = True) -> T:
        try:
            return await fn(req, timeout=self.timeout if timeout is True else timeout)
        except grpc.aio.AioRpcError as err:
            raise to_native(err, self.socket) from None

    async def ready(self, timeout: float) -> bool:
        """True once the channel connects within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout)
            return True
        except (TimeoutError, grpc.aio.AioRpcError):
            return False

    async def create(self, id: str, bundle: str, rootfs: Sequence[Any] = (), *,
                     terminal: bool = False, stdin: bool = False, stdin_once: bool = False,
                     log_path: str = "", labels: Mapping[str, str] | None = None,
                     log_driver: str = "json-file",
                     log_options: Mapping[str, str] | None = None) -> TaskInfo:
        """Create task ``id`` from OCI ``bundle``, mounting ``rootfs`` at <bundle>/rootfs first."""
        req = pb.CreateTaskRequest(
            id=id, bundle=str(bundle), terminal=terminal, stdin=stdin, stdin_once=stdin_once,
            rootfs=[pb.Mount(type=_get(m, "type"), source=_get(m, "source"),
                             options=list(_get(m, "options") or ())) for m in rootfs],
            log=pb.LogConfig(driver=log_driver, path=log_path, options=dict(log_options or {})),
            labels=dict(labels or {}))
        return _task(await self._call(self.stub.Create, req))

    async def start(self, id: str, exec_id: str = "") -> ProcInfo:
        return _proc(await self._call(self.stub.Start, pb.StartRequest(id=id, exec_id=exec_id)))

    async def kill(self, id: str, signal: int = 15, exec_id: str = "", all: bool = False) -> None:
        await self._call(self.stub.Kill,
                         pb.KillRequest(id=id, exec_id=exec_id, signal=signal, all=all))

    async def delete(self, id: str, exec_id: str = "", force: bool = False) -> ExitInfo:
        return _exit(await self._call(self.stub.Delete,
                                      pb.DeleteRequest(id=id, exec_id=exec_id, force=force)))

    async def wait(self, id: str, exec_id: str = "", timeout: float | None = None) -> ExitInfo:
        """Until the process exits (no deadline unless ``timeout``)."""
        return _exit(await self._call(self.stub.Wait, pb.WaitRequest(id=id, exec_id=exec_id),
                                      timeout))

    async def state(self, id: str) -> TaskInfo:
        return _task(await self._call(self.stub.State, pb.TaskRequest(id=id)))

    async def list(self) -> builtins.list[TaskInfo]:
        resp = await self._call(self.stub.List, pb.ListRequest())
        return [_task(t) for t in resp.tasks]

    async def exec(self, id: str, exec_id: str, process: Mapping[str, Any], *,
                   terminal: bool = False, stdin: bool = False) -> ProcInfo:
        """Add process ``exec_id`` (an OCI process object); start() runs it."""
        req = pb.ExecRequest(id=id, exec_id=exec_id, process_json=json.dumps(process).encode(),
                             terminal=terminal, stdin=stdin)
        return _proc(await self._call(self.stub.Exec, req))

    async def resize(self, id: str, exec_id: str, width: int, height: int) -> None:
        await self._call(self.stub.ResizePty,
                         pb.ResizeRequest(id=id, exec_id=exec_id, width=width, height=height))

    async def close_stdin(self, id: str, exec_id: str = "") -> None:
        await self._call(self.stub.CloseStdin, pb.ProcessRequest(id=id, exec_id=exec_id))

    async def pause(self, id: str) -> None:
        await self._call(self.stub.Pause, pb.TaskRequest(id=id))

    async def resume(self, id: str) -> None:
        await self._call(self.stub.Resume, pb.TaskRequest(id=id))

    async def pids(self, id: str) -> builtins.list[int]:
        return builtins.list((await self._call(self.stub.Pids, pb.TaskRequest(id=id))).pids)

    async def stats(self, id: str) -> TaskStats:
        s = await self._call(self.stub.Stats, pb.TaskRequest(id=id))
        return TaskStats(**{f: getattr(s, f) for f in TaskStats.__dataclass_fields__})

    async def update(self, id: str, resources: Mapping[str, Any]) -> None:
        """Apply an OCI linux.resources object to the task's cgroup."""
        await self._call(self.stub.Update, pb.UpdateRequest(
            id=id, resources_json=json.dumps(resources).encode()))

    async def events(self) -> AsyncGenerator[TaskEvent, None]:
        """The event stream, until close() or the supervisor goes away (then the error)."""
        try:
            async for e in self.stub.Events(pb.EventsRequest()):
                yield TaskEvent(e.topic, e.id, e.exec_id, e.pid, e.exit_status, e.timestamp)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                raise to_native(err, self.socket) from None

    async def close(self) -> None:
        await self.channel.close()


class SupervisorClient:
    """A blocking face on one TasksClient, for callers without an event loop.

    ``sup.create(...)``, ``sup.wait(...)`` and the other rpcs take TasksClient's arguments
    and return its records; they are safe to call from several threads at once (each is
    handed to the private loop, where grpc.aio wants all use of a channel to happen).
    """

    def __init__(self, socket_path: str | os.PathLike[str] | None = None,
                 timeout: float | None = 60.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="lk-supervisor-client")
        self._thread.start()
        self._closed = False
        # the channel is made on the loop that will use it
        self.tasks: TasksClient = self._run(_make(socket_path, timeout))
        self.target = self.tasks.socket

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        # Only the rpcs: the attribute names of TasksClient's coroutine methods.
        if name.startswith("_") or name in ("events", "close") or \
                not asyncio.iscoroutinefunction(getattr(TasksClient, name, None)):
            raise AttributeError(name)
        method = getattr(self.tasks, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        call.__name__ = name
        return call

    def events(self) -> Iterator[TaskEvent]:
        """The event stream as a blocking iterator; it ends when close() is called."""
        stream = self.tasks.events()
        try:
            while True:
                try:
                    yield self._run(_next(stream))
                except (StopAsyncIteration, asyncio.CancelledError,
                        concurrent.futures.CancelledError, RuntimeError):
                    # RuntimeError: the loop was stopped by close() under us
                    return
        finally:
            if not self._closed:
                asyncio.run_coroutine_threadsafe(stream.aclose(), self._loop)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self.tasks.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if not self._loop.is_running():
                self._loop.close()

    def __enter__(self) -> SupervisorClient:  # noqa: PYI034 -- 3.11 has typing.Self, kept simple
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _next(stream: AsyncGenerator[TaskEvent, None]) -> TaskEvent:
    event: TaskEvent = await stream.__anext__()
    return event


async def _make(socket_path: str | os.PathLike[str] | None, timeout: float | None) -> TasksClient:
    return TasksClient(socket_path, timeout)


def attach(io_socket: str, exec_id: str = "", *, stdin: bool = False, stdout: bool = True,
           stderr: bool = True) -> socket.socket:
    """Connect to a task's io socket (wire format: supervisor.proto); returns the socket.

    Write stdin bytes to it, shutdown(SHUT_WR) for EOF; read frames with read_frames()."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(io_socket)
    s.sendall(encode({"exec_id": exec_id, "stdin": stdin, "stdout": stdout, "stderr": stderr}))
    return s


def read_frames(s: socket.socket) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) frames from an attached socket until the shim closes it."""
    dec = Decoder()
    while data := s.recv(65536):
        yield from dec.feed(data)
