"""Rolling updates and rollbacks (docs: "Apply rolling updates to a service",
`docker service update --update-*` / `--rollback-*`).

A task is out of date when its TaskSpec differs from the service's TaskTemplate (so a
scale, which changes only Mode, restarts nothing; TaskTemplate.ForceUpdate forces one).
Out-of-date tasks are replaced in batches of Parallelism (0: all at once), Delay between
batches, stop-first (the new task starts once the old one stopped) or start-first (the
old one stops once the new one runs).  A new task that ends within Monitor of starting
(or before starting) is a failure; once failures / tasks to update exceed
MaxFailureRatio, FailureAction pauses the update, continues, or rolls back (the previous
spec becomes the spec, updated with RollbackConfig).  UpdateStatus tells where it is.

The updater's own bookkeeping lives in the service's private "_Update":
{"Version": spec version, "Rollback": bool, "Batch": [new task ids], "Updated": {new task
id: time first seen running or None}, "Failed": [ids], "Total": n, "DelayUntil": t,
"Done": bool, "StatusStarted": the StartedAt of the rollback_started status it wrote or
adopted, so that status is not taken for a new ?rollback=previous at the next version}.
"""

from __future__ import annotations

from typing import Any

from labkit.engine.swarm.orchestrator.model import NS, TERMINAL, Plan, ts
from labkit.engine.swarm.orchestrator.reconcile import is_global, slot_of, state

__all__ = ["step_all"]

Obj = dict[str, Any]
DEFAULT_MONITOR = 5 * NS   # --update-monitor's default


def _cfg(svc: Obj, rollback: bool) -> Obj:
    return (svc["Spec"].get("RollbackConfig" if rollback else "UpdateConfig")) or {}


def current(svc: Obj, task: Obj) -> bool:
    """The task runs the service's TaskTemplate, made for its EndpointSpec."""
    spec = svc["Spec"]
    return bool(task.get("Spec") == (spec.get("TaskTemplate") or {}) and
                task.get("_EndpointSpec", {}) == (spec.get("EndpointSpec") or {}))


def _dirty(svc: Obj, tasks: list[Obj]) -> list[Obj]:
    """Tasks meant to run that are not current, and no replacement started."""
    replaced = {t.get("_Replaces") for t in tasks if t.get("DesiredState") == "running"}
    out = [t for t in tasks if t.get("DesiredState") == "running" and not current(svc, t)
           and t["ID"] not in replaced]
    return sorted(out, key=lambda t: (int(t.get("Slot", 0)), slot_of(svc, t), t["ID"]))


def _start(svc: Obj, now: float, n: int) -> Obj:
    status = svc.get("UpdateStatus") or {}
    up = svc.get("_Update") or {}
    rollback = status.get("State") == "rollback_started" and \
        status.get("StartedAt") != up.get("StatusStarted")
    if rollback:   # the control API's ?rollback=previous wrote this status
        started = status.get("StartedAt") or ts(now)
        svc["UpdateStatus"] = {"State": "rollback_started", "StartedAt": started,
                               "Message": status.get("Message") or "manually requested rollback"}
    else:
        started = ts(now)
        svc["UpdateStatus"] = {"State": "updating", "StartedAt": started,
                               "Message": "update in progress"}
    new = {"Version": svc.get("_SpecVersion", 1), "Rollback": rollback, "Batch": [],
           "Updated": {}, "Failed": [], "Total": n, "DelayUntil": 0.0, "Done": False,
           "StatusStarted": started if rollback else None}
    svc["_Update"] = new
    return new


def _rollback(plan: Plan, svc: Obj, culprit: str) -> None:
    """FailureAction rollback: the previous spec comes back as a new spec version."""
    prev = svc.get("PreviousSpec")
    if not prev:
        _pause(plan, svc, culprit, rollback=False)
        return
    svc["PreviousSpec"], svc["Spec"] = svc["Spec"], prev
    svc["_SpecVersion"] = int(svc.get("_SpecVersion", 1)) + 1
    started = ts(plan.now)
    svc["UpdateStatus"] = {"State": "rollback_started", "StartedAt": started,
                           "Message": "update rolled back due to failure or early "
                                      f"termination of task {culprit}"}
    svc["_Update"] = {"Version": svc["_SpecVersion"], "Rollback": True, "Batch": [],
                      "Updated": {}, "Failed": [], "Total": 0, "DelayUntil": 0.0,
                      "Done": False, "StatusStarted": started, "Fresh": True}


def _pause(plan: Plan, svc: Obj, culprit: str, rollback: bool) -> None:
    status = svc.get("UpdateStatus") or {}
    what = "rollback" if rollback else "update"
    svc["UpdateStatus"] = {"State": "rollback_paused" if rollback else "paused",
                           "StartedAt": status.get("StartedAt"),
                           "Message": f"{what} paused due to failure or early termination "
                                      f"of task {culprit}"}


def _observe(plan: Plan, svc: Obj, up: Obj, monitor_s: float) -> None:
    """Note when each new task first runs, and which ended too early (failures)."""
    for tid, since in list(up["Updated"].items()):
        t = plan.tasks.get(tid)
        if t is None:
            continue
        st = state(t)
        if st == "running" and since is None:
            up["Updated"][tid] = plan.now
        elif st in TERMINAL and t.get("DesiredState") == "running" and \
                tid not in up["Failed"] and (since is None or plan.now - since < monitor_s):
            up["Failed"].append(tid)


def _settle_start_first(plan: Plan, tasks: list[Obj]) -> None:
    """start-first: the old task stops once its replacement runs (or gave up)."""
    for t in tasks:
        old_id = t.get("_Replaces")
        if not old_id:
            continue
        if state(t) == "running" or state(t) in TERMINAL or t.get("DesiredState") != "running":
            old = plan.tasks.get(old_id)
            if old is not None and old.get("DesiredState") == "running":
                old["DesiredState"] = "shutdown"
            t.pop("_Replaces")


def _replace(plan: Plan, svc: Obj, old: Obj, start_first: bool) -> Obj:
    node = str(old.get("NodeID") or old.get("_TargetNode") or "") if is_global(svc) else ""
    new = plan.new_task(svc, int(old.get("Slot", 0)), node)
    if start_first:
        new["_Replaces"] = old["ID"]
    else:
        old["DesiredState"] = "shutdown"
        new["_WaitFor"] = old["ID"]
    return new


def step(plan: Plan, svc: Obj) -> None:
    """One tick of the service's update (if any)."""
    ver = svc.get("_SpecVersion", 1)
    tasks = plan.tasks_of(svc["ID"])
    _settle_start_first(plan, tasks)
    for t in tasks:   # up to date, spec version unchanged (a scale): note the version
        if t.get("DesiredState") == "running" and current(svc, t):
            t["_SpecVersion"] = ver
    dirty = _dirty(svc, tasks)
    up = svc.get("_Update")
    if up is None or up.get("Version") != ver:
        if not dirty:
            if up is not None and not up.get("Done"):
                _complete(plan, svc, up)
            return
        up = _start(svc, plan.now, len(dirty))
    elif up.get("Fresh"):   # a rollback this updater started: count what it replaces
        up.pop("Fresh")
        up["Total"] = len(dirty)
    if up.get("Done"):
        return
    status = (svc.get("UpdateStatus") or {}).get("State")
    if status in ("paused", "rollback_paused"):
        return
    cfg = _cfg(svc, up["Rollback"])
    monitor = cfg.get("Monitor")
    monitor_s = (DEFAULT_MONITOR if monitor is None else int(monitor)) / NS
    _observe(plan, svc, up, monitor_s)
    if up["Failed"] and len(up["Failed"]) / max(1, up["Total"]) > \
            float(cfg.get("MaxFailureRatio") or 0):
        action = cfg.get("FailureAction") or "pause"
        culprit = up["Failed"][-1]
        if action == "rollback" and not up["Rollback"]:
            _rollback(plan, svc, culprit)
            return
        if action != "continue":
            _pause(plan, svc, culprit, up["Rollback"])
            return
    # the current batch: done when each new task runs or has ended
    busy = [tid for tid in up["Batch"] if tid in plan.tasks
            and state(plan.tasks[tid]) not in TERMINAL and state(plan.tasks[tid]) != "running"
            and plan.tasks[tid].get("DesiredState") == "running"]
    if busy:
        return
    if up["Batch"]:
        up["Batch"] = []
        up["DelayUntil"] = plan.now + int(cfg.get("Delay") or 0) / NS
    if dirty:
        if plan.now < up["DelayUntil"]:
            return
        size = int(cfg.get("Parallelism", 1) if cfg.get("Parallelism") is not None else 1)
        start_first = cfg.get("Order") == "start-first"
        for old in dirty[:size or len(dirty)]:
            new = _replace(plan, svc, old, start_first)
            up["Batch"].append(new["ID"])
            up["Updated"][new["ID"]] = None
        return
    # all replaced: finished once every new task ran through its monitor period
    for tid, since in up["Updated"].items():
        new_task = plan.tasks.get(tid)
        if new_task is None or tid in up["Failed"] or new_task.get("DesiredState") != "running":
            continue
        if since is None or plan.now - since < monitor_s:
            return
    _complete(plan, svc, up)


def _complete(plan: Plan, svc: Obj, up: Obj) -> None:
    status = svc.get("UpdateStatus") or {}
    rollback = bool(up.get("Rollback"))
    svc["UpdateStatus"] = {"State": "rollback_completed" if rollback else "completed",
                           "StartedAt": status.get("StartedAt") or ts(plan.now),
                           "CompletedAt": ts(plan.now),
                           "Message": "rollback completed" if rollback else "update completed"}
    up["Done"] = True
    up["Batch"] = []


def step_all(plan: Plan) -> None:
    for sid in sorted(plan.services):
        svc = plan.services[sid]
        if not svc.get("_Deleted"):
            step(plan, svc)
