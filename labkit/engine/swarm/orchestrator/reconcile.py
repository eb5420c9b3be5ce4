"""Desired = actual: the tasks each service should have, from its mode and the nodes.

Docker's documented behaviour ("How services work", "Swarm task states", `docker service
create` --restart-*, `docker swarm update --task-history-limit`):
- replicated: slots 1..Replicas, one task meant to run per slot; scaling down shuts down
  the highest slots; global: one task per eligible node;
- a task whose node is down, drained, removed or no longer meets the constraints is shut
  down and (its slot now empty) replaced at once;
- a task that exited is replaced per its RestartPolicy (Condition any/on-failure/none,
  Delay after the exit, MaxAttempts within Window); one that is not replaced keeps its slot;
- old tasks are kept up to TaskHistoryRetentionLimit per slot (or node), older ones go;
- a deleted service's tasks are told to go away, then deleted, then the service.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from labkit.engine.swarm.orchestrator import scheduler
from labkit.engine.swarm.orchestrator.model import NS, TERMINAL, Plan, parse_ts

__all__ = ["reconcile", "restart_verdict"]

Obj = dict[str, Any]
DEFAULT_RESTART_DELAY = 5 * NS   # docker service create --restart-delay's default
DEFAULT_HISTORY = 5              # Spec.Orchestration.TaskHistoryRetentionLimit's default


def state(task: Obj) -> str:
    return str((task.get("Status") or {}).get("State") or "new")


def is_global(svc: Obj) -> bool:
    return "Global" in ((svc.get("Spec") or {}).get("Mode") or {})


def replicas(svc: Obj) -> int:
    mode = (svc.get("Spec") or {}).get("Mode") or {}
    rep = mode.get("Replicated")
    if rep is None:
        return 1 if not mode else 0
    return int(rep.get("Replicas", 1) if rep.get("Replicas") is not None else 1)


def slot_of(svc: Obj, task: Obj) -> str:
    """A replicated task's slot number, a global task's node."""
    if is_global(svc):
        return str(task.get("NodeID") or task.get("_TargetNode") or "")
    return str(task.get("Slot", 0))


def deletable(plan: Plan, task: Obj) -> bool:
    """No agent can still be acting on the task: it ended, or no live node holds it."""
    return state(task) in TERMINAL or not plan.on_live_node(task)


def restart_verdict(task: Obj, policy: Obj, now: float) -> tuple[str, list[float]]:
    """("now" | "later" | "never", the exit times counted against MaxAttempts)."""
    cond = policy.get("Condition") or "any"
    exited = parse_ts((task.get("Status") or {}).get("Timestamp")) or now
    window = int(policy.get("Window") or 0) / NS
    attempts = [a for a in task.get("_Restarts") or [] if not window or now - a <= window]
    if cond == "none" or (cond == "on-failure" and state(task) == "complete"):
        return "never", attempts
    max_attempts = int(policy.get("MaxAttempts") or 0)
    if max_attempts and len(attempts) >= max_attempts:
        # within a Window the oldest attempt ages out and another restart is allowed
        return ("later" if window else "never"), attempts
    delay = policy.get("Delay")
    delay_s = (DEFAULT_RESTART_DELAY if delay is None else int(delay)) / NS
    return ("now" if now >= exited + delay_s else "later"), [*attempts, exited]


def _fence(plan: Plan, svc: Obj, tasks: list[Obj]) -> None:
    """Tasks meant to run on a node that cannot keep them are shut down."""
    for t in tasks:
        node_id = t.get("NodeID") or t.get("_TargetNode")
        if t.get("DesiredState") != "running" or not node_id:
            continue
        node = plan.nodes.get(node_id)
        constraints = scheduler.placement(t.get("Spec") or {}).get("Constraints") or []
        if node is None or node_id not in plan.alive or \
                (node.get("Spec") or {}).get("Availability") == "drain" or \
                not scheduler.constraints_met(node, constraints):
            t["DesiredState"] = "shutdown"


def _restart(plan: Plan, svc: Obj, tasks: list[Obj]) -> None:
    policy = ((svc["Spec"].get("TaskTemplate") or {}).get("RestartPolicy")) or {}
    for t in tasks:
        if t.get("DesiredState") != "running" or state(t) not in TERMINAL:
            continue
        verdict, attempts = restart_verdict(t, policy, plan.now)
        if verdict != "now":
            continue
        t["DesiredState"] = "shutdown"
        node = str(t.get("NodeID") or "") if is_global(svc) else ""
        if is_global(svc) and not node:
            continue   # never placed: the per-node pass makes the node's task
        new = plan.new_task(svc, int(t.get("Slot", 0)), node)
        new["_Restarts"] = attempts


def _dedupe(plan: Plan, slot_tasks: list[Obj]) -> None:
    """At most one task meant to run per slot: the newest, unless a start-first update is
    running a replacement next to its predecessor (update.py settles those)."""
    running = [t for t in slot_tasks if t.get("DesiredState") == "running"]
    ids = {t["ID"] for t in running}
    if len(running) < 2 or any(t.get("_Replaces") in ids for t in running):
        return
    for t in running[:-1]:
        t["DesiredState"] = "shutdown"


def _replicated(plan: Plan, svc: Obj, tasks: list[Obj]) -> None:
    want = replicas(svc)
    by_slot: dict[int, list[Obj]] = defaultdict(list)
    for t in tasks:
        by_slot[int(t.get("Slot", 0))].append(t)
    for slot, group in by_slot.items():
        if slot > want:
            for t in group:
                if t.get("DesiredState") == "running":
                    t["DesiredState"] = "shutdown"
        else:
            _dedupe(plan, group)
    for slot in range(1, want + 1):
        if not any(t.get("DesiredState") == "running" for t in by_slot.get(slot, [])):
            plan.new_task(svc, slot)


def _global(plan: Plan, svc: Obj, tasks: list[Obj]) -> None:
    by_node: dict[str, list[Obj]] = defaultdict(list)
    for t in tasks:
        by_node[slot_of(svc, t)].append(t)
    for group in by_node.values():
        _dedupe(plan, group)
    for node_id in sorted(plan.nodes):
        if any(t.get("DesiredState") == "running" for t in by_node.get(node_id, [])):
            continue
        if scheduler.eligible(plan, svc["Spec"].get("TaskTemplate") or {}, node_id):
            plan.new_task(svc, 0, node_id)


def _reap(plan: Plan, svc: Obj, limit: int) -> None:
    """Keep at most ``limit`` tasks per slot (the one meant to run counts); tasks of slots
    above Replicas and of removed nodes go as soon as they can."""
    if limit < 0:
        return
    groups: dict[str, list[Obj]] = defaultdict(list)
    for t in plan.tasks_of(svc["ID"]):
        groups[slot_of(svc, t)].append(t)
    gl = is_global(svc)
    for key, group in groups.items():
        old = [t for t in group if t.get("DesiredState") != "running"]
        live = len(group) - len(old)
        gone = (key not in plan.nodes) if gl else (int(key) > replicas(svc))
        keep = 0 if gone else max(0, limit - live)
        for t in old[:max(0, len(old) - keep)]:
            if deletable(plan, t):
                plan.drop_task(t["ID"])


def _remove(plan: Plan, sid: str) -> None:
    """A deleted service: its tasks are told to go, deleted once stopped, then it goes."""
    for t in plan.tasks_of(sid):
        t["DesiredState"] = "remove"
        if deletable(plan, t):
            plan.drop_task(t["ID"])
    if not plan.tasks_of(sid):
        plan.drop_service(sid)


def _orphans(plan: Plan) -> None:
    """Tasks of no service go; a standalone container's network attachment (a task with
    "_Attachment", made for AttachNetwork) goes once detached or its node left."""
    for t in list(plan.tasks.values()):
        if t.get("_Attachment") is not None:
            if (t.get("DesiredState") != "running" or t.get("NodeID") not in plan.nodes) \
                    and deletable(plan, t):
                plan.drop_task(t["ID"])
            continue
        if t.get("ServiceID") not in plan.services:
            t["DesiredState"] = "remove"
            if deletable(plan, t):
                plan.drop_task(t["ID"])


def _release_waits(plan: Plan) -> None:
    """A stop-first replacement starts once its predecessor stopped (or cannot answer)."""
    for t in plan.tasks.values():
        prev_id = t.get("_WaitFor")
        if not prev_id:
            continue
        prev = plan.tasks.get(prev_id)
        if prev is None or deletable(plan, prev):
            t.pop("_WaitFor")


def reconcile(plan: Plan) -> None:
    """Every service's tasks toward what its spec and the nodes ask for."""
    orch = (plan.cluster.get("Spec") or {}).get("Orchestration") or {}
    limit = orch.get("TaskHistoryRetentionLimit")
    limit = DEFAULT_HISTORY if limit is None else int(limit)
    _orphans(plan)
    for sid in sorted(plan.services):
        svc = plan.services[sid]
        if svc.get("_Deleted"):
            _remove(plan, sid)
            continue
        tasks = plan.tasks_of(sid)
        _fence(plan, svc, tasks)
        _restart(plan, svc, tasks)
        tasks = plan.tasks_of(sid)
        if is_global(svc):
            _global(plan, svc, tasks)
        else:
            _replicated(plan, svc, tasks)
    _release_waits(plan)


def reap(plan: Plan) -> None:
    """Old tasks beyond the history limit (run after the updater, which shuts tasks down)."""
    orch = (plan.cluster.get("Spec") or {}).get("Orchestration") or {}
    limit = orch.get("TaskHistoryRetentionLimit")
    limit = DEFAULT_HISTORY if limit is None else int(limit)
    for sid in sorted(plan.services):
        if not plan.services[sid].get("_Deleted"):
            _reap(plan, plan.services[sid], limit)
