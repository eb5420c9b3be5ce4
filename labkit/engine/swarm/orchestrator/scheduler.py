"""The scheduler: which node runs a pending task (pure functions over a Plan).

Docker's documented placement (docs "Deploy services to a swarm", "Control service
placement"): a node is a candidate when it is ready and its availability is active, it
meets every constraint (`node.labels.zone == east`, `!=`), and it runs fewer than
Placement.MaxReplicas tasks of the service.  Placement preferences
(`spread=node.labels.KEY`) spread tasks evenly over the label's values first, then the
node with the fewest tasks of the service, then the fewest tasks overall, wins.  A task
no node can take stays pending and says why, in Docker's words.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from labkit.engine.swarm.orchestrator.model import TERMINAL, Plan

__all__ = ["constraints_met", "eligible", "schedule"]

Obj = dict[str, Any]
_CONSTRAINT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|!=)\s*(.*?)\s*$")
# these compare without case in Docker (a role, an OS or an architecture name)
_FOLD = {"node.role", "node.platform.os", "node.platform.arch", "node.hostname"}


def _node_value(node: Obj, key: str) -> str | None:
    desc = node.get("Description") or {}
    spec = node.get("Spec") or {}
    if key == "node.id":
        return str(node.get("ID", ""))
    if key == "node.hostname":
        return str(desc.get("Hostname", ""))
    if key == "node.role":
        return str(spec.get("Role", ""))
    if key == "node.platform.os":
        return str((desc.get("Platform") or {}).get("OS", ""))
    if key == "node.platform.arch":
        return str((desc.get("Platform") or {}).get("Architecture", ""))
    if key.startswith("node.labels."):
        got = (spec.get("Labels") or {}).get(key.removeprefix("node.labels."))
        return None if got is None else str(got)
    if key.startswith("engine.labels."):
        got = ((desc.get("Engine") or {}).get("Labels") or {}).get(
            key.removeprefix("engine.labels."))
        return None if got is None else str(got)
    raise KeyError(key)


def constraints_met(node: Obj, constraints: list[str]) -> bool:
    """Every constraint holds on the node.  A missing label equals nothing (so `!=` holds);
    an expression that cannot be parsed or names an unknown attribute holds nowhere (the
    control API refuses those at create; a stored one must not place tasks at random)."""
    for expr in constraints:
        m = _CONSTRAINT.match(expr)
        if m is None:
            return False
        key, op, want = m.groups()
        try:
            have = _node_value(node, key)
        except KeyError:
            return False
        same = have is not None and (have.lower() == want.lower() if key in _FOLD
                                     else have == want)
        if same != (op == "=="):
            return False
    return True


def placement(spec: Obj) -> Obj:
    return (spec or {}).get("Placement") or {}


def _ready(plan: Plan, node_id: str) -> bool:
    node = plan.nodes.get(node_id)
    return node is not None and node_id in plan.alive and \
        (node.get("Spec") or {}).get("Availability", "active") == "active"


def eligible(plan: Plan, spec: Obj, node_id: str) -> bool:
    """Whether a NEW task of this spec may go to the node (ready, active, constraints)."""
    return _ready(plan, node_id) and \
        constraints_met(plan.nodes[node_id], placement(spec).get("Constraints") or [])


def _plural(n: int) -> str:
    return f"{n} node" if n == 1 else f"{n} nodes"


def _counts(plan: Plan) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Tasks each node is (about to be) running, overall and per service."""
    total: Counter[str] = Counter()
    per: Counter[tuple[str, str]] = Counter()
    for t in plan.tasks.values():
        node = t.get("NodeID")
        if node and t.get("DesiredState") == "running" and \
                (t.get("Status") or {}).get("State") not in TERMINAL:
            total[node] += 1
            per[(t.get("ServiceID", ""), node)] += 1
    return total, per


def _spread_key(plan: Plan, prefs: list[Obj], node_id: str) -> tuple[str | None, ...]:
    node = plan.nodes[node_id]
    out: list[str | None] = []
    for p in prefs:
        desc = str((p.get("Spread") or {}).get("SpreadDescriptor", ""))
        try:
            out.append(_node_value(node, desc))
        except KeyError:
            out.append(None)
    return tuple(out)


def choose(plan: Plan, task: Obj, total: Counter[str],
           per: Counter[tuple[str, str]]) -> tuple[str | None, str]:
    """(node id, "") for the best node, or (None, Docker's "no suitable node" reason)."""
    spec = task.get("Spec") or {}
    place = placement(spec)
    sid = task["ServiceID"]
    target = task.get("_TargetNode")
    nodes = [target] if target else sorted(plan.nodes)
    constraints = place.get("Constraints") or []
    max_per = int(place.get("MaxReplicas") or 0)
    not_ready = unmet = full = 0
    ok: list[str] = []
    # the filters in Docker's order; a node is counted by the first one that refuses it
    for nid in nodes:
        if not _ready(plan, nid):
            not_ready += 1
        elif not constraints_met(plan.nodes[nid], constraints):
            unmet += 1
        elif max_per and per[(sid, nid)] >= max_per:
            full += 1
        else:
            ok.append(nid)
    if not ok:
        why = []
        if not_ready:
            why.append(f"{_plural(not_ready)} not available for new tasks")
        if unmet:
            why.append(f"scheduling constraints not satisfied on {_plural(unmet)}")
        if full:
            why.append(f"max replicas per node limit exceed on {_plural(full)}")
        return None, "no suitable node" + (f" ({'; '.join(why)})" if why else "")
    prefs = [p for p in place.get("Preferences") or [] if p.get("Spread")]
    # spread: at each level the branch (label value) with the fewest tasks of the service
    groups: list[Counter[tuple[str | None, ...]]] = [Counter() for _ in prefs]
    keys = {nid: _spread_key(plan, prefs, nid) for nid in ok}
    for nid in ok:
        for level in range(len(prefs)):
            groups[level][keys[nid][:level + 1]] += per[(sid, nid)]

    def rank(nid: str) -> tuple[Any, ...]:
        spread = tuple(groups[lv][keys[nid][:lv + 1]] for lv in range(len(prefs)))
        return (*spread, per[(sid, nid)], total[nid], nid)

    return min(ok, key=rank), ""


def schedule(plan: Plan) -> None:
    """Assign every pending task that wants to run (oldest first); the rest keep their
    reason, re-checked every tick."""
    total, per = _counts(plan)
    for t in plan.tasks.values():   # attachments are made for their node already
        if t.get("_Attachment") is not None and t.get("NodeID") and \
                (t.get("Status") or {}).get("State") == "pending":
            plan.set_status(t, "assigned", "scheduler assigned task to node")
    pending = sorted((t for t in plan.tasks.values()
                      if (t.get("Status") or {}).get("State") == "pending"
                      and t.get("DesiredState") == "running" and not t.get("NodeID")
                      and t.get("_Attachment") is None),
                     key=lambda t: (t.get("CreatedAt", ""), t.get("Slot", 0), t["ID"]))
    for task in pending:
        node, why = choose(plan, task, total, per)
        if node is None:
            plan.set_status(task, "pending", "pending task scheduling", why)
            continue
        task["NodeID"] = node
        task.pop("_TargetNode", None)
        plan.set_status(task, "assigned", "scheduler assigned task to node")
        total[node] += 1
        per[(task["ServiceID"], node)] += 1
