"""The orchestrator's services -> tasks decisions: replicas, global, node failure,
restart policy, history, deletion (MemoryStore, simulated agents)."""

from __future__ import annotations

import sys
from pathlib import Path

from labkit.engine.swarm.orchestrator.reconcile import restart_verdict
from labkit.engine.swarm.store import NAMES, SERVICES

# the shared World lives next to this file (pytest's importlib mode puts no test dir on
# sys.path, and tests/fakes belongs to the lead)
sys.path.insert(0, str(Path(__file__).parent))
from test_swarm_orch_world import NS, World


def test_replicated_scale_up_then_down_removes_the_highest_slots() -> None:
    w = World()
    sid = w.add_service("web", replicas=3)
    w.converge()
    assert sorted(t["Slot"] for t in w.running(sid)) == [1, 2, 3]
    # spread over the three nodes (fewest tasks of the service first)
    assert len({t["NodeID"] for t in w.running(sid)}) == 3
    w.update_service(sid, lambda s: s["Mode"]["Replicated"].update(Replicas=5))
    w.converge()
    assert sorted(t["Slot"] for t in w.running(sid)) == [1, 2, 3, 4, 5]
    first = {t["Slot"]: t["ID"] for t in w.running(sid)}
    w.update_service(sid, lambda s: s["Mode"]["Replicated"].update(Replicas=2))
    w.settle()
    assert sorted(t["Slot"] for t in w.tasks(sid, desired="running")) == [1, 2]
    assert {t["Slot"] for t in w.tasks(sid, desired="shutdown")} == {3, 4, 5}
    w.converge()
    # the scaled-down tasks are gone once stopped; slots 1-2 kept their tasks (a scale
    # is no update: nothing restarted)
    assert {t["Slot"]: t["ID"] for t in w.tasks(sid)} == {1: first[1], 2: first[2]}
    assert all(t["_SpecVersion"] == 3 for t in w.tasks(sid))


def test_new_tasks_go_new_pending_assigned_with_docker_messages() -> None:
    w = World()
    sid = w.add_service("web", replicas=1)
    w.settle()
    (t,) = w.tasks(sid)
    assert t["Status"]["State"] == "assigned"
    assert t["Status"]["Message"] == "scheduler assigned task to node"
    assert t["NodeID"] and t["DesiredState"] == "running" and t["_ServiceName"] == "web"
    assert t["Spec"]["ContainerSpec"]["Image"] == "busybox" and t["_SpecVersion"] == 1


def test_global_follows_nodes_joining_draining_and_going_down() -> None:
    w = World(nodes=2)
    sid = w.add_service("agent", mode="global")
    w.converge()
    assert sorted(t["NodeID"] for t in w.running(sid)) == ["node1", "node2"]
    assert all(t["Slot"] == 0 for t in w.running(sid))
    w.add_node("node3")
    w.converge()
    assert sorted(t["NodeID"] for t in w.running(sid)) == ["node1", "node2", "node3"]
    w.edit_node("node2", Availability="drain")
    w.settle()
    (gone,) = [t for t in w.tasks(sid) if t["NodeID"] == "node2"]
    assert gone["DesiredState"] == "shutdown"
    w.converge()
    assert sorted(t["NodeID"] for t in w.running(sid)) == ["node1", "node3"]
    w.store.alive_nodes.discard("node3")
    w.settle()
    assert sorted(t["NodeID"] for t in w.tasks(sid, desired="running")) == ["node1"]
    w.edit_node("node2", Availability="active")
    w.converge()
    assert sorted(t["NodeID"] for t in w.running(sid)) == ["node1", "node2"]


def test_global_respects_constraints_and_pause() -> None:
    w = World(nodes=3)
    w.edit_node("node1", Role="manager")
    w.edit_node("node3", Availability="pause")
    sid = w.add_service("mon", mode="global", template={
        "Placement": {"Constraints": ["node.role != manager"]}})
    w.converge()
    assert [t["NodeID"] for t in w.running(sid)] == ["node2"]


def test_unsatisfiable_constraint_stays_pending_with_dockers_reason_then_runs() -> None:
    w = World(nodes=3)
    sid = w.add_service("db", replicas=1, template={
        "Placement": {"Constraints": ["node.labels.disk==ssd"]}})
    w.settle()
    (t,) = w.tasks(sid)
    assert t["Status"]["State"] == "pending" and not t["NodeID"]
    assert t["Status"]["Err"] == \
        "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    assert t["Status"]["Message"] == "pending task scheduling"
    w.store.alive_nodes.discard("node3")
    w.settle()
    assert w.tasks(sid)[0]["Status"]["Err"] == ("no suitable node (1 node not available for "
                                                "new tasks; scheduling constraints not "
                                                "satisfied on 2 nodes)")
    w.edit_node("node2", Labels={"disk": "ssd"})
    w.settle()
    (t,) = w.tasks(sid)
    assert t["Status"]["State"] == "assigned" and t["NodeID"] == "node2"
    assert "Err" not in t["Status"]


def test_constraint_forms() -> None:
    w = World(nodes=2)
    w.edit_node("node1", Labels={"zone": "a"})
    cases = {
        "node.hostname==host-node2": "node2",
        "node.id==node1": "node1",
        "node.labels.zone!=a": "node2",
        "node.platform.os==Linux": "node1",   # OS and role compare without case
        "node.role==worker": "node1",
    }
    for expr, node in cases.items():
        sid = w.add_service(f"s{len(expr)}{node}", template={
            "Placement": {"Constraints": [expr, f"node.id=={node}"]}})
        w.settle()
        assert [t["NodeID"] for t in w.tasks(sid)] == [node], expr
    bad = w.add_service("bad", template={"Placement": {"Constraints": ["node.color==red"]}})
    w.settle()
    assert w.tasks(bad)[0]["Status"]["State"] == "pending"


def test_node_down_gets_replacements_on_other_nodes_in_one_tick() -> None:
    w = World(nodes=3)
    sid = w.add_service("web", replicas=3)
    w.converge()
    victim = [t for t in w.running(sid) if t["NodeID"] == "node1"]
    assert len(victim) == 1
    w.store.alive_nodes.discard("node1")
    w.tick()   # one tick: shut down, replace, allocate, schedule
    assert w.tasks(sid, desired="running", state="assigned")[0]["NodeID"] in {"node2", "node3"}
    old = next(t for t in w.tasks(sid) if t["ID"] == victim[0]["ID"])
    assert old["DesiredState"] == "shutdown"
    w.converge()
    assert len(w.running(sid)) == 3
    assert all(t["NodeID"] != "node1" for t in w.running(sid))


def test_drained_node_tasks_are_stopped_and_rescheduled() -> None:
    w = World(nodes=2)
    sid = w.add_service("web", replicas=2)
    w.converge()
    w.edit_node("node2", Availability="drain")
    w.converge()
    assert [t["NodeID"] for t in w.running(sid)] == ["node1", "node1"]
    assert all(t["Status"]["State"] == "shutdown" for t in w.tasks(sid, desired="shutdown"))


def test_spread_preference_and_max_replicas() -> None:
    w = World(nodes=4)
    for nid, zone in (("node1", "a"), ("node2", "a"), ("node3", "a"), ("node4", "b")):
        w.edit_node(nid, Labels={"zone": zone})
    sid = w.add_service("web", replicas=4, template={"Placement": {
        "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]}})
    w.settle()
    zones = sorted("b" if t["NodeID"] == "node4" else "a" for t in w.tasks(sid))
    assert zones == ["a", "a", "b", "b"]
    capped = w.add_service("capped", replicas=3, template={"Placement": {
        "MaxReplicas": 1, "Constraints": ["node.labels.zone==a"]}})
    w.add_service("filler", replicas=0)
    w.edit_node("node3", Labels={"zone": "c"})
    w.settle()
    states = sorted(t["Status"]["State"] for t in w.tasks(capped))
    assert states == ["assigned", "assigned", "pending"]
    pending = w.tasks(capped, state="pending")[0]
    assert pending["Status"]["Err"] == ("no suitable node (scheduling constraints not "
                                        "satisfied on 2 nodes; max replicas per node limit "
                                        "exceed on 2 nodes)")


def test_restart_policy_verdicts() -> None:
    now = 1000.0
    failed = {"Status": {"State": "failed", "Timestamp": "1970-01-01T00:16:35.000000000Z"}}
    done = {"Status": {"State": "complete", "Timestamp": "1970-01-01T00:16:35.000000000Z"}}
    assert restart_verdict(failed, {}, now)[0] == "now"          # exited 5 s ago
    assert restart_verdict(failed, {}, now - 1)[0] == "later"    # default delay 5 s
    assert restart_verdict(done, {"Condition": "on-failure"}, now)[0] == "never"
    assert restart_verdict(failed, {"Condition": "on-failure"}, now)[0] == "now"
    assert restart_verdict(failed, {"Condition": "none"}, now)[0] == "never"
    tried = {**failed, "_Restarts": [990.0, 995.0]}
    assert restart_verdict(tried, {"MaxAttempts": 2}, now)[0] == "never"
    assert restart_verdict(tried, {"MaxAttempts": 2, "Window": 11 * NS}, now)[0] == "later"
    assert restart_verdict(tried, {"MaxAttempts": 2, "Window": 7 * NS}, now)[0] == "now"


def _one_running(w: World, **template: object) -> tuple[str, str]:
    sid = w.add_service("job", replicas=1, template=dict(template))
    w.converge()
    (t,) = w.running(sid)
    return sid, t["ID"]


def test_restart_any_waits_for_the_delay_then_replaces_in_the_same_slot() -> None:
    w = World(nodes=1)
    sid, tid = _one_running(w, RestartPolicy={"Condition": "any", "Delay": 2 * NS})
    w.set_state(tid, "complete", exit_code=0)
    w.t += 1
    w.settle()
    assert [t["ID"] for t in w.tasks(sid, desired="running")] == [tid]
    w.t += 1.5
    w.settle()
    new = w.tasks(sid, desired="running")
    assert len(new) == 1 and new[0]["ID"] != tid and new[0]["Slot"] == 1
    assert new[0]["Status"]["State"] == "assigned" and len(new[0]["_Restarts"]) == 1


def test_restart_none_and_on_failure() -> None:
    w = World(nodes=1)
    sid, tid = _one_running(w, RestartPolicy={"Condition": "none", "Delay": 0})
    w.set_state(tid, "failed", exit_code=1)
    w.t += 10
    w.converge()
    assert [t["ID"] for t in w.tasks(sid)] == [tid]   # kept its slot, not replaced
    sid2, tid2 = _one_running(w, RestartPolicy={"Condition": "on-failure", "Delay": 0})
    w.set_state(tid2, "complete", exit_code=0)
    w.converge()
    assert [t["ID"] for t in w.tasks(sid2)] == [tid2]
    w.update_service(sid2, lambda s: s["TaskTemplate"].update(ForceUpdate=1))
    w.converge()
    (t,) = w.running(sid2)
    w.set_state(t["ID"], "failed", exit_code=3)
    w.settle()
    assert len(w.tasks(sid2, desired="running")) == 1
    assert w.tasks(sid2, desired="running")[0]["ID"] != t["ID"]


def test_max_attempts_stops_restarting() -> None:
    w = World(nodes=1)
    sid, _tid = _one_running(w, RestartPolicy={"Delay": 0, "MaxAttempts": 2})
    for _ in range(4):
        (t,) = w.tasks(sid, desired="running")
        w.set_state(t["ID"], "failed", exit_code=1)
        w.t += 1
        w.converge()
    assert len(w.tasks(sid)) == 3   # the first run and two restarts
    assert w.tasks(sid, desired="running")[0]["Status"]["State"] == "failed"


def test_history_is_capped_per_slot() -> None:
    w = World(nodes=1)
    w.store.data["/lk/swarm/cluster"][0]["Spec"]["Orchestration"] = {
        "TaskHistoryRetentionLimit": 3}
    sid, _ = _one_running(w, RestartPolicy={"Delay": 0})
    for _ in range(6):
        (t,) = w.tasks(sid, desired="running")
        w.set_state(t["ID"], "failed", exit_code=1)
        w.t += 1
        w.converge()
    assert len(w.tasks(sid)) == 3
    assert len(w.tasks(sid, desired="running")) == 1


def test_deleted_service_tasks_stop_then_everything_goes() -> None:
    w = World(nodes=2)
    sid = w.add_service("web", replicas=2)
    w.converge()
    w.store.data[NAMES + "services/web"] = ({"ID": sid}, 1)
    w.store.data[NAMES + "services/other"] = ({"ID": "someone-else"}, 1)
    svc = w.service(sid)
    svc["_Deleted"] = True
    w._do(w.store.cas(SERVICES + sid, svc, w.store.data[SERVICES + sid][1]))
    w.settle()
    assert {t["DesiredState"] for t in w.tasks(sid)} == {"remove"}
    assert SERVICES + sid in w.store.data      # the agents have not answered yet
    w.store.alive_nodes.discard("node2")        # node2's task: its node is down
    w.run()
    w.settle()
    assert w.tasks(sid) == []
    assert SERVICES + sid not in w.store.data
    assert NAMES + "services/web" not in w.store.data
    assert NAMES + "services/other" in w.store.data


def test_two_tasks_meant_to_run_in_one_slot_keep_the_newest() -> None:
    w = World(nodes=1)
    sid = w.add_service("web", replicas=1)
    w.converge()
    (first,) = w.running(sid)
    twin = {**first, "ID": "twin", "CreatedAt": "2100-01-01T00:00:00.000000000Z"}
    w._do(w.store.create("/lk/swarm/tasks/twin", twin))   # e.g. from a racing leader
    w.settle()
    assert [t["ID"] for t in w.tasks(sid, desired="running")] == ["twin"]


def test_tasks_of_a_vanished_service_are_stopped_then_deleted() -> None:
    w = World(nodes=1)
    sid = w.add_service("web", replicas=2)
    w.converge()
    del w.store.data[SERVICES + sid]
    w.settle()
    assert {t["DesiredState"] for t in w.tasks(sid)} == {"remove"}
    w.run()
    w.settle()
    assert w.tasks(sid) == []
