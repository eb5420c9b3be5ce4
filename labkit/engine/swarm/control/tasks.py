"""Tasks: GET /tasks with Docker's filters, GET /tasks/{id} (moby daemon/cluster/tasks.go,
swarmkit controlapi/task.go).  Tasks are written by the orchestrator and the dispatcher;
the control API only reads them.

Filters: id (prefix), name (SERVICE.SLOT or SERVICE.NODEID, optionally .TASKID), service
(id, name or id prefix: the 20.10 CLI polls by name), node (id or hostname), label (the
service's labels and the task's, as `stack ps` filters by com.docker.stack.namespace),
desired-state (running, shutdown, accepted), and the CLI's hidden _up-to-date (the task runs
its service's current spec).
"""

from __future__ import annotations

from labkit import errors
from labkit.engine.swarm import objects
from labkit.engine.swarm.control.common import Obj, Store, check_filters, find, labels_match
from labkit.engine.swarm.store import NODES, SERVICES, TASKS

__all__ = ["TASK_FILTERS", "inspect", "list_", "task_name"]

TASK_FILTERS = ("id", "name", "service", "node", "label", "desired-state", "_up-to-date")


def task_name(task: Obj, service_name: str = "") -> str:
    """SERVICE.SLOT (replicated) or SERVICE.NODEID (global), as `docker service ps` names."""
    name = service_name or str(task.get("_ServiceName", ""))
    slot = task.get("Slot") or 0
    return f"{name}.{slot if slot else task.get('NodeID', '')}"


async def inspect(store: Store, ref: str) -> Obj:
    task, version = await find(store, TASKS, ref, "task", lambda t: "")
    return objects.render_task(task, version)


async def list_(store: Store, filters: dict[str, list[str]]) -> list[Obj]:
    check_filters(filters, TASK_FILTERS)
    for v in filters.get("desired-state", []):
        if v not in ("running", "shutdown", "accepted"):
            raise errors.InvalidArgumentError("filter", f"Invalid desired-state filter: '{v}'")
    services = {s["ID"]: s for s, _ in await store.list(SERVICES)}
    want_services: set[str] | None = None
    if filters.get("service"):
        want_services = set()
        for ref in filters["service"]:
            # by name: the live service only (a removed one of that name may still have
            # tasks shutting down, which the CLI's convergence poll must not count)
            hits = [i for i, s in services.items() if i == ref or (
                s["Spec"]["Name"] == ref and not s.get("_Deleted"))]
            hits = hits or [i for i in services if i.startswith(ref)]
            want_services.update(hits)
    want_nodes: set[str] | None = None
    if filters.get("node"):
        nodes = [n for n, _ in await store.list(NODES)]
        want_nodes = set()
        for ref in filters["node"]:
            want_nodes.update(n["ID"] for n in nodes if n["ID"] == ref or (
                n.get("Description") or {}).get("Hostname") == ref or n["ID"].startswith(ref))
    up_to_date = any(v.lower() in ("true", "1") for v in filters.get("_up-to-date", []))
    out = []
    for task, version in await store.list(TASKS):
        svc = services.get(task.get("ServiceID", ""))
        sname = svc["Spec"]["Name"] if svc else str(task.get("_ServiceName", ""))
        if filters.get("id") and not any(task["ID"].startswith(v) for v in filters["id"]):
            continue
        if filters.get("name"):
            full = task_name(task, sname)
            if not any(v in (full, f"{full}.{task['ID']}") for v in filters["name"]):
                continue
        if want_services is not None and task.get("ServiceID") not in want_services:
            continue
        if want_nodes is not None and task.get("NodeID") not in want_nodes:
            continue
        if filters.get("label"):
            labels = {**((svc or {}).get("Spec", {}).get("Labels") or {}),
                      **(task.get("Labels") or {})}
            if not labels_match(labels, filters["label"]):
                continue
        if filters.get("desired-state") and task.get("DesiredState") not in filters[
                "desired-state"]:
            continue
        if up_to_date and (svc is None or task.get("_SpecVersion") != svc.get("_SpecVersion")):
            continue
        out.append(objects.render_task(task, version))
    return out
