"""The engine behind the daemon: the container services, composed (a facade, no state).

Each service owns its own state and is the only one to change it:

- ``store``   ContainerStore: records, names, per-container locks (store.py)
- ``link``    TaskLink: the supervisor's tasks, io sockets, attach sessions, exit monitors
- ``waiters`` Waiters: POST /wait and friends (waits.py)
- ``restarts`` Restarts: restart-policy backoffs and pending restarts (restart.py)
- ``execs``   Execs: exec instances (execs.py)
- ``bus``     EventBus: Docker's events (events.py)
- ``containers`` Containers: create, start, attach, wait, the exit path, removal (service.py)
- ``control`` Control: stop, kill, restart, pause, unpause, rm (control.py)
- ``ops``     Ops: update, prune, top, stats, resize, sizes, logs (ops.py)

A container's states and the legal moves between them are in lifecycle.py; daemon start is
recovery.py.  The daemon's handlers call the services through this object.
"""

from __future__ import annotations

import asyncio

from labkit.engine.containers import recovery
from labkit.engine.containers.bundle import Bundles
from labkit.engine.containers.control import Control, parse_signal
from labkit.engine.containers.events import EventBus
from labkit.engine.containers.execs import Execs
from labkit.engine.containers.health import HealthMonitor
from labkit.engine.containers.ops import Ops
from labkit.engine.containers.record import ContainerRecord
from labkit.engine.containers.restart import Restarts
from labkit.engine.containers.service import Containers, NotModifiedError
from labkit.engine.containers.store import ContainerStore
from labkit.engine.containers.tasklink import TaskLink
from labkit.engine.containers.tasks import TaskService
from labkit.engine.containers.waits import Waiters
from labkit.engine.daemonconfig import DaemonConfig
from labkit.engine.images.store import ImageStore
from labkit.engine.networks.endpoints import ContainerNet
from labkit.engine.networks.service import Networks

__all__ = ["Engine", "NotModifiedError", "parse_signal"]


class Engine:
    """The services of one daemon, wired together; holds no state of its own."""

    def __init__(self, tasks: TaskService, store: ContainerStore | None = None,
                 images: ImageStore | None = None, *, init_binary: str | None = None,
                 config: DaemonConfig | None = None, networking: bool = False) -> None:
        self.tasks = tasks
        self.config = config or DaemonConfig()  # daemon.json (daemonconfig.py)
        self.store = store or ContainerStore()
        self.images = images or ImageStore()
        self.bus = EventBus()
        self.link = TaskLink(tasks)
        self.waiters = Waiters()
        self.restarts = Restarts()
        self.bundles = Bundles(self.images, init_binary, self.store)
        # networking=False (unit tests' engines): no default bridge, no kernel objects made
        # at restore; the daemon passes True and daemon.json's "bridge" decides
        self.networks = Networks(self.bus, root=self.store.root.parent / "networks",
                                 default_bridge=networking and self.config.bridge != "none")
        self.networking = networking
        self.net = ContainerNet(self.networks)
        self.execs = Execs(self.store, tasks, self.bundles, self.bus)
        self.health = HealthMonitor(self.execs, tasks, self.bus)
        self.containers = Containers(self.store, self.images, self.bundles, self.link, self.waiters,
                                     self.restarts, self.execs, self.bus, self.health,
                                     net=self.net)
        self.volumes = self.containers.volumes  # (the VolumeStore asks containers who uses what)
        self.control = Control(self.containers, tasks)
        self.ops = Ops(self.store, self.images, tasks, self.control, self.bus)
        self.networks.bind(self.store.all)
        self.net.lookup = self.store.get

    async def restore(self) -> None:
        """Daemon start: networks, records and running tasks (recovery.py), then the
        networks' kernel state matched to the containers that still run."""
        if self.networking:
            await asyncio.to_thread(self.networks.start)
        await recovery.restore(self.containers)
        if self.networking:
            await self.net.reconcile(self.store.all())

    def log_path(self, ref: str) -> tuple[ContainerRecord, str]:
        """(record, json-file path) for the log readers (daemon/streams.py)."""
        return self.ops.log_path(ref)

    def close(self) -> None:
        """Daemon shutdown: stop watching; the containers go on (live-restore)."""
        self.link.close()
        self.restarts.close()

    async def aclose(self) -> None:
        """Daemon shutdown's async part: DNS listeners closed, host ports let go (the
        nft rules and namespaces stay for the containers: live-restore)."""
        await self.networks.close()
