"""What the Engine's mixins (start, exec, ops) may use of the Engine: declared for mypy.

The mixins keep engine.py under the module size limit (STYLE C2); this base states the
attributes and methods they rely on, which engine.Engine provides.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labkit.engine.containers import restart as rp
    from labkit.engine.containers.events import EventBus
    from labkit.engine.containers.execs import ExecRecord
    from labkit.engine.containers.health import HealthMonitor
    from labkit.engine.containers.record import ContainerRecord
    from labkit.engine.containers.store import ContainerStore
    from labkit.engine.containers.tasks import ExitInfo, TaskService
    from labkit.engine.images.store import ImageStore

__all__ = ["EngineHooks"]


class EngineHooks:
    if TYPE_CHECKING:
        tasks: TaskService
        store: ContainerStore
        images: ImageStore
        init_binary: str | None
        bus: EventBus
        exits: dict[str, list[asyncio.Future[ExitInfo]]]
        removals: dict[str, list[asyncio.Future[ExitInfo]]]
        monitors: dict[str, asyncio.Task[None]]
        pending_io: dict[str, list[tuple[asyncio.Future[str], asyncio.Future[None]]]]
        io_sockets: dict[str, str]
        backoff: dict[str, rp.Backoff]
        execs: dict[str, ExecRecord]
        health: HealthMonitor

        def get(self, ref: str) -> ContainerRecord: ...
        def lock(self, rec: ContainerRecord) -> asyncio.Lock: ...
        def emit(self, action: str, rec: ContainerRecord, **extra: str) -> None: ...
        def monitor(self, rec: ContainerRecord) -> None: ...
        def wait_future(self, ref: str, condition: str = ...) -> asyncio.Future[ExitInfo]: ...
        async def on_exit(self, rec: ContainerRecord, exit_: ExitInfo) -> None: ...
        async def _destroy(self, rec: ContainerRecord,
                           task_deleted: bool = ...) -> None: ...
        async def remove(self, ref: str, force: bool = ...) -> None: ...
        async def start(self, ref: str) -> None: ...
        def oci_config(self, rec: ContainerRecord, write: bool = ...) -> dict[str, Any]: ...
