"""What the leader reads (a Snapshot of the store) and what it intends to write (a Plan).

Every decision module takes a Plan, changes working copies of objects in it, and the
leader writes back only what changed, each with a compare-and-swap on the version it
read: the leader is the only writer of these decisions, but agents (task status) and
the control API (specs) write the same objects, so a conflict means "read again".
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from labkit.engine.swarm import ca
from labkit.engine.swarm.store import ATTACH, CLUSTER, NAMES, SERVICES, TASKS

__all__ = ["ACTIVE_STATES", "NS", "TERMINAL", "Plan", "Snapshot", "Write", "parse_ts",
           "state_index", "ts"]

Obj = dict[str, Any]
NS = 1_000_000_000

# Docker's task states in order (swarmkit api TaskState); complete.. are terminal
STATES = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting",
          "running", "complete", "shutdown", "failed", "rejected", "remove", "orphaned")
TERMINAL = frozenset(("complete", "shutdown", "failed", "rejected", "remove", "orphaned"))
ACTIVE_STATES = frozenset(STATES[:STATES.index("running") + 1])


def state_index(state: str) -> int:
    return STATES.index(state) if state in STATES else 0


def ts(t: float) -> str:
    """RFC 3339 with nanoseconds (objects.now()'s format) for a given time."""
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond:06d}000Z"


def parse_ts(s: str | None) -> float:
    """Seconds since the epoch from an RFC 3339 time (Go's zero time and junk: 0)."""
    if not s:
        return 0.0
    try:
        base, _, rest = s.partition(".")
        frac = "".join(c for c in rest if c.isdigit())
        d = dt.datetime.strptime(base.rstrip("Z"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
        return d.timestamp() + (float("0." + frac) if frac else 0.0)
    except ValueError:
        return 0.0


class Write(NamedTuple):
    """One intended store write: create (if absent), cas (at version), delete, or
    release (delete a reservation only if it still names ``obj["ID"]``)."""
    op: Literal["create", "cas", "delete", "release"]
    key: str
    obj: Obj
    version: int


@dataclass
class Snapshot:
    """The store as the leader read it at the start of a tick."""
    cluster: Obj
    cluster_version: int
    nodes: dict[str, Obj] = field(default_factory=dict)
    alive: set[str] = field(default_factory=set)
    services: dict[str, tuple[Obj, int]] = field(default_factory=dict)
    tasks: dict[str, tuple[Obj, int]] = field(default_factory=dict)
    networks: dict[str, Obj] = field(default_factory=dict)
    attach: dict[tuple[str, str], tuple[Obj, int]] = field(default_factory=dict)


class Plan:
    """Working copies of the snapshot's objects plus the bookkeeping of what changed."""

    def __init__(self, snap: Snapshot, now: float) -> None:
        self.snap, self.now = snap, now
        self.cluster = copy.deepcopy(snap.cluster)
        self.nodes = snap.nodes
        self.alive = snap.alive
        self.networks = snap.networks
        self.services = {k: copy.deepcopy(o) for k, (o, _) in snap.services.items()}
        self.tasks = {k: copy.deepcopy(o) for k, (o, _) in snap.tasks.items()}
        self.attach = {k: copy.deepcopy(o) for k, (o, _) in snap.attach.items()}
        self.new_tasks: list[str] = []
        self.gone_tasks: set[str] = set()
        self.gone_services: set[str] = set()
        self.releases: list[tuple[str, str]] = []   # (key, owner id)

    # ------------------------------------------------------------------ reads
    def tasks_of(self, sid: str) -> list[Obj]:
        """The service's tasks, oldest first."""
        return sorted((t for t in self.tasks.values() if t.get("ServiceID") == sid),
                      key=lambda t: (t.get("CreatedAt", ""), t["ID"]))

    def ingress(self) -> Obj | None:
        for net in self.networks.values():
            if net.get("Ingress"):
                return net
        return None

    def node_up(self, node_id: str) -> bool:
        return node_id in self.nodes and node_id in self.alive

    def on_live_node(self, task: Obj) -> bool:
        """Whether an agent may still be acting on the task (so it must not vanish)."""
        return bool(task.get("NodeID")) and self.node_up(task["NodeID"])

    # ------------------------------------------------------------------ writes
    def add_task(self, task: Obj) -> None:
        self.tasks[task["ID"]] = task
        self.new_tasks.append(task["ID"])

    def drop_task(self, tid: str) -> None:
        self.tasks.pop(tid, None)
        self.gone_tasks.add(tid)

    def drop_service(self, sid: str) -> None:
        svc = self.services.pop(sid)
        self.gone_services.add(sid)
        name = svc.get("Spec", {}).get("Name")
        if name:
            self.releases.append((f"{NAMES}services/{name.lower()}", sid))
        for port in (svc.get("Endpoint") or {}).get("Ports") or []:
            if port.get("PublishedPort") and port.get("PublishMode", "ingress") == "ingress":
                proto = port.get("Protocol") or "tcp"
                self.releases.append((f"{NAMES}ports/{proto}/{port['PublishedPort']}", sid))

    def set_status(self, task: Obj, state: str, message: str, err: str | None = None) -> None:
        status = dict(task.get("Status") or {})
        if status.get("State") == state and status.get("Message") == message \
                and status.get("Err") == err:
            return
        status.update({"Timestamp": ts(self.now), "State": state, "Message": message})
        if err:
            status["Err"] = err
        else:
            status.pop("Err", None)
        task["Status"] = status

    def new_task(self, svc: Obj, slot: int, node: str = "") -> Obj:
        """A task of the service's current spec (Docker: state new, desired running)."""
        t = ts(self.now)
        task: Obj = {
            "ID": ca.new_id(), "CreatedAt": t, "UpdatedAt": t, "Labels": {},
            "Spec": copy.deepcopy(svc["Spec"].get("TaskTemplate") or {}),
            "ServiceID": svc["ID"], "Slot": slot, "NodeID": "",
            "Status": {"Timestamp": t, "State": "new", "Message": "created"},
            "DesiredState": "running", "NetworksAttachments": [],
            "_SpecVersion": svc.get("_SpecVersion", 1),
            # what the task was made for besides its TaskSpec: a change of published
            # ports or endpoint mode also makes it out of date (Docker's IsTaskDirty)
            "_EndpointSpec": copy.deepcopy(svc["Spec"].get("EndpointSpec") or {}),
            "_ServiceName": svc["Spec"].get("Name", ""),
        }
        if node:
            task["_TargetNode"] = node   # global: NodeID stays "" until the scheduler says
        self.add_task(task)
        return task

    def writes(self) -> list[Write]:
        """What changed, in a safe order: the cluster and services first (what the control
        API edits concurrently: a conflict there stops the tick before tasks follow a stale
        spec), then new and changed tasks, node attachments, and deletions last."""
        out: list[Write] = []
        stamp = ts(self.now)
        if self.cluster != self.snap.cluster:
            out.append(Write("cas", CLUSTER, self.cluster, self.snap.cluster_version))
        for sid, svc in self.services.items():
            old = self.snap.services.get(sid)
            if old is not None and svc != old[0]:
                svc["UpdatedAt"] = stamp
                out.append(Write("cas", SERVICES + sid, svc, old[1]))
        for tid in self.new_tasks:
            if tid in self.tasks:
                out.append(Write("create", TASKS + tid, self.tasks[tid], 0))
        for tid, task in self.tasks.items():
            old = self.snap.tasks.get(tid)
            if old is not None and task != old[0]:
                task["UpdatedAt"] = stamp
                out.append(Write("cas", TASKS + tid, task, old[1]))
        for (node, net), obj in self.attach.items():
            prev = self.snap.attach.get((node, net))
            if prev is None:
                out.append(Write("create", f"{ATTACH}{node}/{net}", obj, 0))
            elif prev[0] != obj:
                out.append(Write("cas", f"{ATTACH}{node}/{net}", obj, prev[1]))
        for node, net in self.snap.attach.keys() - self.attach.keys():
            out.append(Write("delete", f"{ATTACH}{node}/{net}", {}, 0))
        for tid in sorted(self.gone_tasks):
            if tid in self.snap.tasks:
                out.append(Write("delete", TASKS + tid, {}, 0))
        for sid in sorted(self.gone_services):
            out.append(Write("delete", SERVICES + sid, {}, 0))
        for key, owner in self.releases:
            out.append(Write("release", key, {"ID": owner}, 0))
        return out
