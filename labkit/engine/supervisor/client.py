"""A small typed client of the supervisor's Tasks API; the daemon's way in.

    from labkit.engine.supervisor.client import SupervisorClient, attach
    with SupervisorClient() as sup:                      # paths.supervisor_socket()
        t = sup.create("web", "/var/lib/labkit/containers/web/bundle", rootfs=mounts,
                       log_path=".../web-json.log")
        io = attach(t.io_socket, stdout=True, stderr=True)  # before start: nothing lost
        sup.start("web")
        print(sup.wait("web").exit_status)
        sup.delete("web")

Every gRPC error comes back as the labkit error the server raised (errmap.to_native:
NotFoundError, AlreadyExistsError, InvalidStateError, ...; ExecutableNotFoundError keeps
its exit_code 127).  The calls are synchronous and thread-safe (grpc channels are); an
asyncio caller runs them in an executor, or uses the stubs of api/ with grpc.aio directly.
"""

from __future__ import annotations

import builtins
import json
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc

from labkit.engine.shim.protocol import encode, unframe
from labkit.engine.supervisor.api import supervisor_pb2 as pb
from labkit.engine.supervisor.api import supervisor_pb2_grpc as pb_grpc
from labkit.engine.supervisor.errmap import to_native

__all__ = ["SupervisorClient", "attach", "pb", "read_frames"]


class SupervisorClient:
    """One channel to the supervisor's unix socket; methods mirror the rpcs."""

    def __init__(self, socket_path: str | os.PathLike[str] | None = None,
                 timeout: float | None = 60.0) -> None:
        if socket_path is None:
            from labkit.engine import paths

            socket_path = paths.supervisor_socket()
        self.target = str(socket_path)
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{self.target}")
        self.stub = pb_grpc.TasksStub(self.channel)  # type: ignore[no-untyped-call]

    def _call(self, name: str, req: Any, timeout: float | None | bool = True) -> Any:
        try:
            return getattr(self.stub, name)(req, timeout=self.timeout if timeout is True else timeout)
        except grpc.RpcError as err:
            raise to_native(err, self.target) from None

    # -- tasks ---------------------------------------------------------------------------
    def create(self, id: str, bundle: str, *, rootfs: Sequence[Any] = (), terminal: bool = False,
               stdin: bool = False, stdin_once: bool = False, log_driver: str = "json-file",
               log_options: Mapping[str, str] | None = None, log_path: str = "",
               labels: Mapping[str, str] | None = None) -> pb.Task:
        """Create task ``id`` from OCI ``bundle``; ``rootfs``: labkit.engine.images Mounts
        (or dicts with type/source/options) to mount at <bundle>/rootfs first."""
        mounts = [pb.Mount(type=_get(m, "type"), source=_get(m, "source"),
                           options=list(_get(m, "options") or ())) for m in rootfs]
        req = pb.CreateTaskRequest(
            id=id, bundle=str(bundle), rootfs=mounts, terminal=terminal, stdin=stdin,
            stdin_once=stdin_once, labels=dict(labels or {}),
            log=pb.LogConfig(driver=log_driver, options=dict(log_options or {}), path=log_path))
        return self._call("Create", req)  # type: ignore[no-any-return]

    def start(self, id: str, exec_id: str = "") -> pb.Process:
        return self._call("Start", pb.StartRequest(id=id, exec_id=exec_id))  # type: ignore[no-any-return]

    def kill(self, id: str, signal: int = 15, *, exec_id: str = "", all: bool = False) -> None:
        self._call("Kill", pb.KillRequest(id=id, exec_id=exec_id, signal=signal, all=all))

    def delete(self, id: str, *, exec_id: str = "", force: bool = False) -> pb.Exit:
        return self._call("Delete", pb.DeleteRequest(id=id, exec_id=exec_id, force=force))  # type: ignore[no-any-return]

    def wait(self, id: str, exec_id: str = "", timeout: float | None = None) -> pb.Exit:
        """Block until the process exits (no deadline unless ``timeout``)."""
        return self._call("Wait", pb.WaitRequest(id=id, exec_id=exec_id), timeout)  # type: ignore[no-any-return]

    def state(self, id: str) -> pb.Task:
        return self._call("State", pb.TaskRequest(id=id))  # type: ignore[no-any-return]

    def list(self) -> builtins.list[pb.Task]:
        return builtins.list(self._call("List", pb.ListRequest()).tasks)

    def exec(self, id: str, exec_id: str, process: Mapping[str, Any], *, terminal: bool = False,
             stdin: bool = False) -> pb.Process:
        """Add process ``exec_id`` (an OCI process object); start() runs it."""
        req = pb.ExecRequest(id=id, exec_id=exec_id, process_json=json.dumps(process).encode(),
                             terminal=terminal, stdin=stdin)
        return self._call("Exec", req)  # type: ignore[no-any-return]

    def resize(self, id: str, width: int, height: int, exec_id: str = "") -> None:
        self._call("ResizePty", pb.ResizeRequest(id=id, exec_id=exec_id, width=width, height=height))

    def close_stdin(self, id: str, exec_id: str = "") -> None:
        self._call("CloseStdin", pb.ProcessRequest(id=id, exec_id=exec_id))

    def pause(self, id: str) -> None:
        self._call("Pause", pb.TaskRequest(id=id))

    def resume(self, id: str) -> None:
        self._call("Resume", pb.TaskRequest(id=id))

    def pids(self, id: str) -> builtins.list[int]:
        return builtins.list(self._call("Pids", pb.TaskRequest(id=id)).pids)

    def stats(self, id: str) -> pb.Stats:
        return self._call("Stats", pb.TaskRequest(id=id))  # type: ignore[no-any-return]

    def update(self, id: str, resources: Mapping[str, Any]) -> None:
        """Apply an OCI linux.resources object to the task's cgroup."""
        self._call("Update", pb.UpdateRequest(id=id, resources_json=json.dumps(resources).encode()))

    def events(self) -> Iterator[pb.Event]:
        """The event stream (until close() or the supervisor goes away)."""
        try:
            yield from self.stub.Events(pb.EventsRequest())
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                raise to_native(err, self.target) from None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> SupervisorClient:  # noqa: PYI034 -- 3.11 has typing.Self, kept simple
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _get(m: Any, key: str) -> Any:
    return m[key] if isinstance(m, Mapping) else getattr(m, key)


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
    buf = b""
    while True:
        data = s.recv(65536)
        if not data:
            return
        frames, buf = unframe(buf + data)
        yield from frames
