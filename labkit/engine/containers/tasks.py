"""What the engine needs from the supervisor, as a Protocol (containerd's Tasks service).

The daemon talks to ``TaskService``; the real implementation is the supervisor's own
client, labkit.engine.supervisor.client.TasksClient (supervisor.proto over a unix socket),
and unit tests use tests/fakes/tasks.py.  Results are the small frozen records of
labkit.engine.supervisor.records, re-exported here, so nothing above sees protobuf.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from typing import Any, Protocol

from labkit.engine.images.mounts import Mount
from labkit.engine.supervisor.records import (
    STATUS_NAMES,
    ExitInfo,
    ProcInfo,
    TaskEvent,
    TaskInfo,
    TaskStats,
)

__all__ = ["STATUS_NAMES", "ExitInfo", "ProcInfo", "TaskEvent", "TaskInfo", "TaskService", "TaskStats",
           "start_failure_code"]


class TaskService(Protocol):
    """The supervisor's task API (see supervisor.proto for each call's meaning)."""

    async def create(self, id: str, bundle: str, rootfs: list[Mount], *, terminal: bool,
                     stdin: bool, stdin_once: bool, log_path: str,
                     labels: dict[str, str], log_driver: str = "json-file",
                     log_options: dict[str, str] | None = None) -> TaskInfo: ...
    async def start(self, id: str, exec_id: str = "") -> ProcInfo: ...
    async def kill(self, id: str, signal: int, exec_id: str = "", all: bool = False) -> None: ...
    async def delete(self, id: str, exec_id: str = "", force: bool = False) -> ExitInfo: ...
    async def wait(self, id: str, exec_id: str = "") -> ExitInfo: ...
    async def state(self, id: str) -> TaskInfo: ...
    async def list(self) -> builtins.list[TaskInfo]: ...
    async def exec(self, id: str, exec_id: str, process: dict[str, Any], *, terminal: bool,
                   stdin: bool) -> ProcInfo: ...
    async def resize(self, id: str, exec_id: str, width: int, height: int) -> None: ...
    async def close_stdin(self, id: str, exec_id: str = "") -> None: ...
    async def pause(self, id: str) -> None: ...
    async def resume(self, id: str) -> None: ...
    async def pids(self, id: str) -> builtins.list[int]: ...
    async def stats(self, id: str) -> TaskStats: ...
    async def update(self, id: str, resources: dict[str, Any]) -> None: ...
    def events(self) -> AsyncIterator[TaskEvent]: ...
    async def close(self) -> None: ...


def start_failure_code(err: BaseException) -> int:
    """Docker's exit code for a process that could not be started: 127 (not found) or 126.

    The typed error says which (runtime.process.ExecutableNotFoundError carries exit_code
    127, ExecutablePermissionError 126, through the shim and the supervisor); any other
    failure to start is 126, as moby gives a start that failed for another reason.  Never
    read from the message: a file named "not found" that cannot run is 126."""
    code = getattr(err, "exit_code", None)
    return code if isinstance(code, int) and code in (126, 127) else 126
