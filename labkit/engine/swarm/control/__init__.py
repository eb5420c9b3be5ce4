"""The managers' control API: services, tasks, secrets, configs and swarm networks over the
cluster store (SWARM13.md; moby daemon/cluster over swarmkit manager/controlapi).

Every manager serves it (``SwarmNode.control()``); it only reads and writes store objects,
each write a create-if-absent or a compare-and-swap, so managers need no lock between them.
The leader's orchestrator (swarm/orchestrator/) acts on what it writes.  Bodies are checked
here (svcspec.py): what labkit cannot apply is refused by name, never dropped.
"""

from __future__ import annotations

from typing import Any

from labkit.engine.swarm.control import networks as _nets
from labkit.engine.swarm.control import secrets as _sec
from labkit.engine.swarm.control import services as _svc
from labkit.engine.swarm.control import tasks as _tasks
from labkit.engine.swarm.control.common import Obj, Store
from labkit.engine.swarm.control.networks import create_network
from labkit.engine.swarm.control.status import service_status
from labkit.engine.swarm.store import TASKS

__all__ = ["Control", "Store", "create_network"]


class Control:
    """The control API bound to one manager's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- services
    async def create_service(self, spec: Any) -> Obj:
        """POST /services/create -> {"ID", "Warnings"}."""
        return await _svc.create(self.store, spec)

    async def update_service(self, ref: str, version: int, spec: Any, *,
                             rollback: bool = False) -> Obj:
        """POST /services/{id}/update -> {"Warnings"}; ConflictError on a stale version."""
        return await _svc.update(self.store, ref, version, spec, rollback=rollback)

    async def remove_service(self, ref: str) -> None:
        await _svc.remove(self.store, ref)

    async def service(self, ref: str, *, insert_defaults: bool = False) -> Obj:
        return await _svc.inspect(self.store, ref, insert_defaults_=insert_defaults)

    async def services(self, filters: dict[str, list[str]], *, status: bool = False
                       ) -> list[Obj]:
        """GET /services; ``status`` adds ServiceStatus (RunningTasks, DesiredTasks,
        CompletedTasks)."""
        from labkit.engine.swarm import objects

        found = await _svc.list_(self.store, filters)
        out = [objects.render_service(s, v) for s, v in found]
        if status:
            tasks = [t for t, _ in await self.store.list(TASKS)]
            counts = service_status([s for s, _ in found], tasks, await self.store.alive())
            for item in out:
                item["ServiceStatus"] = counts[item["ID"]]
        return out

    async def service_object(self, ref: str) -> Obj:
        """The stored service (private keys included), for the logs handler: its id and
        ContainerSpec.TTY."""
        svc, _ = await _svc.get(self.store, ref)
        return svc

    # -- tasks
    async def tasks(self, filters: dict[str, list[str]]) -> list[Obj]:
        return await _tasks.list_(self.store, filters)

    async def task(self, ref: str) -> Obj:
        return await _tasks.inspect(self.store, ref)

    async def service_tasks(self, service_id: str) -> list[Obj]:
        """Every task of the service (stored shape), for logs."""
        return [t for t, _ in await self.store.list(TASKS)
                if t.get("ServiceID") == service_id]

    # -- secrets and configs (kind: "secret" or "config")
    async def create_secret(self, kind: str, body: Any) -> str:
        return await _sec.create(self.store, kind, body)

    async def secrets(self, kind: str, filters: dict[str, list[str]]) -> list[Obj]:
        return await _sec.list_(self.store, kind, filters)

    async def secret(self, kind: str, ref: str) -> Obj:
        return await _sec.inspect(self.store, kind, ref)

    async def update_secret(self, kind: str, ref: str, version: int, body: Any) -> None:
        await _sec.update(self.store, kind, ref, version, body)

    async def remove_secret(self, kind: str, ref: str) -> None:
        await _sec.remove(self.store, kind, ref)

    # -- swarm networks
    async def create_network(self, body: Any) -> Obj:
        """POST /networks/create with Driver overlay: the network (Docker's JSON)."""
        return _nets.render_network(await create_network(self.store, body))

    async def networks(self, filters: dict[str, list[str]]) -> list[Obj]:
        return await _nets.list_networks(self.store, filters)

    async def network(self, ref: str) -> Obj:
        net, _ = await _nets.find_network(self.store, ref)
        return _nets.render_network(net)

    async def remove_network(self, ref: str) -> None:
        await _nets.remove_network(self.store, ref)
