"""ServiceStatus for GET /services?status=true (API >= 1.41; `docker service ls` REPLICAS):
RunningTasks, DesiredTasks, CompletedTasks, counted as moby daemon/cluster/services.go does.

Running: tasks whose Status.State is running on a node that is alive.  Desired: the
replica count (replicated), or the tasks not desired to be shut down (global).  Completed
counts job tasks; labkit has no job modes, so it is always 0.
"""

from __future__ import annotations

from labkit.engine.swarm.control.common import Obj

__all__ = ["service_status"]


def service_status(services: list[Obj], tasks: list[Obj], alive: set[str]) -> dict[str, Obj]:
    """ServiceStatus by service id."""
    running: dict[str, int] = {}
    not_shutdown: dict[str, int] = {}
    for t in tasks:
        sid = t.get("ServiceID", "")
        if t.get("DesiredState") not in ("shutdown", "remove"):
            not_shutdown[sid] = not_shutdown.get(sid, 0) + 1
        if t.get("Status", {}).get("State") == "running" and t.get("NodeID") in alive:
            running[sid] = running.get(sid, 0) + 1
    out = {}
    for s in services:
        mode = s["Spec"]["Mode"]
        desired = (mode["Replicated"].get("Replicas", 1) if "Replicated" in mode
                   else not_shutdown.get(s["ID"], 0))
        out[s["ID"]] = {"RunningTasks": running.get(s["ID"], 0), "DesiredTasks": desired,
                        "CompletedTasks": 0}
    return out
