"""The swarm's two speed targets, measured on a local lab (labkit.measure.swarmlab).

* Leader failover: SIGKILL the leader node (its daemon and its etcd member), then write
  through a surviving manager's Engine API until a write is acknowledged: the time from the
  kill to that acknowledgement, and to the moment a manager first reports a new leader.
  Target: under 2 s with 3 managers (swarmkit's default election timeout alone is ~10 s).
* Join: a worker leaves and joins again; the time of the join call (POST /swarm/join,
  which returns once the node holds its certificate and heartbeats).  Target: under 1 s.

A "write" is a node update (a label) with the Version.Index round trip the Docker CLI
makes: a compare-and-swap in the store, so it is acknowledged only once etcd committed it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labkit import errors
from labkit.measure.swarmlab import LabNode, SwarmLab

__all__ = ["FailoverTrial", "failover_trials", "join_times", "write_label"]

Progress = Callable[[str], None]


@dataclass
class FailoverTrial:
    killed: str          # the leader that was killed (m1, m2, ...)
    new_leader: str      # who leads afterwards
    to_leader_s: float   # kill -> a manager reports a leader other than the killed one
    to_write_s: float    # kill -> the first acknowledged write


def write_label(via: LabNode, target_id: str, key: str, value: str,
                timeout: float = 2.0) -> None:
    """One acknowledged write: GET the node, POST its spec back with one more label."""
    node = via.client(timeout=timeout).transport.get(f"/nodes/{target_id}")
    spec = dict(node["Spec"])
    spec["Labels"] = {**(spec.get("Labels") or {}), key: value}
    via.client(timeout=timeout).transport.post(f"/nodes/{target_id}/update", spec,
                                               version=node["Version"]["Index"])


def failover_trials(lab: SwarmLab, trials: int = 5, timeout: float = 30.0,
                    progress: Progress | None = None) -> list[FailoverTrial]:
    """``trials`` leader kills on a running lab; the killed node is restarted and back
    as a reachable manager before the next trial."""
    say = progress or (lambda _m: None)
    out: list[FailoverTrial] = []
    target = lab.nodes[-1].node_id()  # the node whose labels the writes change
    for i in range(trials):
        leader = lab.leader()
        if leader is None:
            raise errors.UnsupportedError("failover bench", "the lab reports no leader")
        survivor = lab.any_manager(exclude=[leader])
        t0 = time.monotonic()
        lab.kill(leader)
        to_leader = to_write = None
        while time.monotonic() - t0 < timeout and (to_leader is None or to_write is None):
            if to_write is None:
                try:
                    write_label(survivor, target, f"trial{i}", "1")
                    to_write = time.monotonic() - t0
                except (errors.LabkitError, OSError, KeyError):
                    pass
            if to_leader is None:
                try:
                    now_leader = lab.leader(via=survivor)
                    if now_leader is not None and now_leader is not leader:
                        to_leader = time.monotonic() - t0
                        new = now_leader
                except (errors.LabkitError, OSError):
                    pass
            time.sleep(0.01)
        if to_leader is None or to_write is None:
            raise errors.UnsupportedError("failover bench", f"trial {i + 1}: no new leader "
                                          f"accepting writes within {timeout:.0f} s")
        out.append(FailoverTrial(leader.name, new.name, to_leader, to_write))
        say(f"trial {i + 1}: killed {leader.name}, {new.name} leads after {to_leader:.2f} s, "
            f"first write {to_write:.2f} s")
        lab.restart(leader)
        _wait_reachable(lab, leader, timeout)
    return out


def _wait_reachable(lab: SwarmLab, node: LabNode, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for n in lab.any_manager().api("GET", "/nodes"):
                if n["Description"]["Hostname"] == node.hostname and \
                        (n.get("ManagerStatus") or {}).get("Reachability") == "reachable" and \
                        n["Status"]["State"] == "ready":
                    return
        except (errors.LabkitError, OSError):
            pass
        time.sleep(0.1)
    raise errors.UnsupportedError("failover bench", f"{node.name} not back after restart")


def join_times(lab: SwarmLab, runs: int = 5, progress: Progress | None = None) -> list[float]:
    """Seconds per join of the lab's last worker (it leaves first each time)."""
    say = progress or (lambda _m: None)
    worker = next((n for n in reversed(lab.nodes) if n.role == "worker"), None)
    if worker is None:
        raise errors.InvalidArgumentError("lab", "the join bench needs a worker")
    first = lab.any_manager()
    token = first.api("GET", "/swarm")["JoinTokens"]["Worker"]
    out = []
    for i in range(runs):
        old = worker.node_id()
        worker.api("POST", "/swarm/leave", force=1)
        first.api("DELETE", f"/nodes/{old}", force=1)
        out.append(lab.join(worker, token))
        say(f"join {i + 1}: {out[-1] * 1000:.0f} ms")
    return out


def summary(trials: list[FailoverTrial], joins: list[float]) -> dict[str, Any]:
    """Medians against the targets."""
    fw = statistics.median(t.to_write_s for t in trials) if trials else float("nan")
    fl = statistics.median(t.to_leader_s for t in trials) if trials else float("nan")
    j = statistics.median(joins) if joins else float("nan")
    return {"failover_to_write_s": fw, "failover_to_leader_s": fl, "join_s": j,
            "failover_met": fw < 2.0, "join_met": j < 1.0,
            "trials": len(trials), "joins": len(joins)}
