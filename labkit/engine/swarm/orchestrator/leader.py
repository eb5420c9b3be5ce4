"""The leader's control loop: read the store, decide (pure modules), write back with CAS.

One tick = one snapshot of services/, tasks/, nodes/, alive/, networks/, attach/ and the
cluster; then, in order: network keys, the ingress network, services -> tasks
(reconcile), rolling updates, addresses (ipalloc), nodes (scheduler), old tasks (reap).
Nothing is remembered between ticks: what is allocated and scheduled is read back from
the objects every time, so a new leader carries on where the last one stopped.  A write
that meets a newer version (ConflictError) ends the tick; the next one reads again.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from labkit import errors
from labkit.engine.swarm.orchestrator import ipalloc, keys, reconcile, scheduler, update
from labkit.engine.swarm.orchestrator.model import Plan, Snapshot, Write
from labkit.engine.swarm.store import ATTACH, CLUSTER, NETWORKS, NODES, SERVICES, TASKS

__all__ = ["Leader"]

log = logging.getLogger("labkit.swarm.orchestrator")
Obj = dict[str, Any]
IngressMaker = Callable[[Any, Obj], Awaitable[Any] | Any]
INGRESS_BODY: Obj = {"Name": "ingress", "Driver": "overlay", "Ingress": True,
                     "Attachable": False, "Labels": {}, "Options": {}}


class Store(Protocol):
    """The part of store.ClusterStore the leader uses (tests: fakes.swarm_store)."""

    async def get(self, key: str) -> tuple[Obj, int] | None: ...
    async def create(self, key: str, obj: Obj) -> None: ...
    async def cas(self, key: str, obj: Obj, version: int) -> None: ...
    async def list(self, prefix: str) -> list[tuple[Obj, int]]: ...
    async def delete(self, key: str) -> bool: ...
    async def alive(self) -> set[str]: ...


def _default_ingress() -> IngressMaker | None:
    """control/networks.create_network (the control API's; absent in a partial tree)."""
    try:
        mod = importlib.import_module("labkit.engine.swarm.control.networks")
    except ImportError:
        return None
    fn = getattr(mod, "create_network", None)
    if fn is None:
        return None

    def make(store: Any, body: Obj) -> Any:
        return fn(store, body, ingress=True)
    return make


class Leader:
    """Turns services into tasks, places and addresses them; call tick() while leading."""

    def __init__(self, store: Store, *, now: Callable[[], float] = time.time,
                 make_ingress: IngressMaker | None = None) -> None:
        self.store = store
        self.now = now
        self.make_ingress = make_ingress if make_ingress is not None else _default_ingress()
        self.wrote = 0            # writes applied by the last tick (0: nothing to do)
        self._ingress_warned = False
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Tick again soon (a spec or a node changed)."""
        self._wake.set()

    async def wait(self, period: float) -> None:
        """Until wake() or ``period`` seconds; right away again when the last tick wrote
        something (one change leads to the next: new -> pending -> assigned ...)."""
        if self.wrote:
            await asyncio.sleep(0.02)
            return
        try:
            await asyncio.wait_for(self._wake.wait(), period)
        except TimeoutError:
            pass
        self._wake.clear()

    async def run(self, leads: Callable[[], Awaitable[bool]], period: float = 0.2) -> None:
        """Tick for ever while ``leads()`` says so (Manager starts this as a task)."""
        while True:
            self.wrote = 0
            leading = False
            try:
                leading = await leads()
                if leading:
                    await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - a lost quorum, a restart: next tick
                log.warning("orchestrator tick: %s", err)
            # a follower only looks again now and then (each look is an etcd status call)
            await self.wait(period if leading else max(period, 1.0))

    async def snapshot(self) -> Snapshot | None:
        got = await self.store.get(CLUSTER)
        if got is None:
            return None
        snap = Snapshot(cluster=got[0], cluster_version=got[1])
        snap.nodes = {n["ID"]: n for n, _ in await self.store.list(NODES)}
        snap.alive = await self.store.alive()
        snap.services = {s["ID"]: (s, v) for s, v in await self.store.list(SERVICES)}
        snap.tasks = {t["ID"]: (t, v) for t, v in await self.store.list(TASKS)}
        snap.networks = {str(n.get("Id") or n.get("ID")): n
                         for n, _ in await self.store.list(NETWORKS)}
        snap.attach = {(str(a["NodeID"]), str(a["NetworkID"])): (a, v)
                       for a, v in await self.store.list(ATTACH)
                       if a.get("NodeID") and a.get("NetworkID")}
        return snap

    async def tick(self) -> None:
        """One round of decisions and their writes."""
        self.wrote = 0
        snap = await self.snapshot()
        if snap is None:
            return   # no swarm (yet)
        if not any(n.get("Ingress") for n in snap.networks.values()) and \
                await self._ensure_ingress():
            self.wrote += 1
            return   # read it back next tick
        plan = Plan(snap, self.now())
        keys.rotate(plan)
        reconcile.reconcile(plan)
        update.step_all(plan)
        ipalloc.allocate(plan)
        scheduler.schedule(plan)
        reconcile.reap(plan)
        await self.apply(plan.writes())

    async def _ensure_ingress(self) -> bool:
        """The swarm's ingress network, made once (Docker makes it at `swarm init`)."""
        if self.make_ingress is None:
            return False
        try:
            got = self.make_ingress(self.store, dict(INGRESS_BODY))
            if inspect.isawaitable(got):
                await got
        except (errors.AlreadyExistsError, errors.ConflictError):
            return False   # another manager's request made it meanwhile
        except errors.LabkitError as err:
            # services without published ports still need their tasks: go on without
            if not self._ingress_warned:
                log.warning("cannot create the ingress network: %s", err)
                self._ingress_warned = True
            return False
        log.info("ingress network created")
        return True

    async def apply(self, writes: list[Write]) -> None:
        for w in writes:
            try:
                if w.op == "create":
                    await self.store.create(w.key, w.obj)
                elif w.op == "cas":
                    await self.store.cas(w.key, w.obj, w.version)
                elif w.op == "delete":
                    await self.store.delete(w.key)
                else:
                    got = await self.store.get(w.key)
                    if got is not None and w.obj["ID"] in got[0].values():
                        await self.store.delete(w.key)
            except (errors.ConflictError, errors.AlreadyExistsError) as err:
                log.debug("orchestrator: %s %s: %s; again next tick", w.op, w.key, err)
                return
            self.wrote += 1
