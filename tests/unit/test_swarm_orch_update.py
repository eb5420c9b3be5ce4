"""Rolling updates and rollbacks (MemoryStore, simulated agents)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# the shared World lives next to this file (pytest's importlib mode puts no test dir on
# sys.path, and tests/fakes belongs to the lead)
sys.path.insert(0, str(Path(__file__).parent))
from test_swarm_orch_world import NS, World


def _image(name: str) -> Any:
    def change(spec: dict[str, Any]) -> None:
        spec["TaskTemplate"]["ContainerSpec"]["Image"] = name
    return change


def _images(w: World, sid: str) -> list[str]:
    return sorted(t["Spec"]["ContainerSpec"]["Image"] for t in w.running(sid))


def test_update_goes_in_batches_with_a_delay_then_completes() -> None:
    w = World(nodes=2)
    sid = w.add_service("web", replicas=4, UpdateConfig={
        "Parallelism": 2, "Delay": 10 * NS, "Monitor": 1 * NS})
    w.converge()
    w.update_service(sid, _image("nginx"))
    w.settle()
    status = w.service(sid)["UpdateStatus"]
    assert status["State"] == "updating" and status["Message"] == "update in progress"
    # stop-first: two old tasks told to stop, their replacements wait for that
    assert len(w.tasks(sid, desired="shutdown")) == 2
    waiting = [t for t in w.tasks(sid, desired="running")
               if t["Spec"]["ContainerSpec"]["Image"] == "nginx"]
    assert len(waiting) == 2 and all(t["Status"]["State"] == "new" for t in waiting)
    w.converge()
    assert _images(w, sid) == ["busybox", "busybox", "nginx", "nginx"]
    w.t += 5
    w.converge()   # still inside the 10 s delay between batches
    assert _images(w, sid) == ["busybox", "busybox", "nginx", "nginx"]
    w.t += 6
    w.converge()
    assert _images(w, sid) == ["nginx"] * 4
    assert w.service(sid)["UpdateStatus"]["State"] == "updating"   # monitoring the last
    w.t += 2
    w.settle()
    status = w.service(sid)["UpdateStatus"]
    assert status["State"] == "completed" and status["Message"] == "update completed"
    assert status["CompletedAt"] and all(t["_SpecVersion"] == 2 for t in w.running(sid))


def test_parallelism_zero_replaces_everything_at_once() -> None:
    w = World(nodes=3)
    sid = w.add_service("web", replicas=3, UpdateConfig={"Parallelism": 0, "Monitor": 0})
    w.converge()
    w.update_service(sid, _image("nginx"))
    w.settle()
    assert len(w.tasks(sid, desired="shutdown")) == 3
    w.converge()
    assert _images(w, sid) == ["nginx"] * 3
    assert w.service(sid)["UpdateStatus"]["State"] == "completed"


def test_start_first_keeps_the_old_task_until_the_new_one_runs() -> None:
    w = World(nodes=1)
    sid = w.add_service("web", replicas=1, UpdateConfig={"Order": "start-first",
                                                          "Monitor": 0})
    w.converge()
    (old,) = w.running(sid)
    w.update_service(sid, _image("nginx"))
    w.settle()
    assert len(w.tasks(sid, desired="running")) == 2
    new = next(t for t in w.tasks(sid, desired="running") if t["ID"] != old["ID"])
    assert new["Status"]["State"] == "assigned"
    w.set_state(new["ID"], "running")
    w.settle()
    assert [t["ID"] for t in w.tasks(sid, desired="running")] == [new["ID"]]
    w.converge()
    assert w.service(sid)["UpdateStatus"]["State"] == "completed"


def test_a_failing_task_pauses_the_update() -> None:
    w = World(nodes=2)
    sid = w.add_service("web", replicas=3, UpdateConfig={"Parallelism": 1},
                        template={"RestartPolicy": {"Condition": "none"}})
    w.converge()
    w.update_service(sid, _image("broken"))
    w.settle()
    (new,) = [t for t in w.tasks(sid) if t["Spec"]["ContainerSpec"]["Image"] == "broken"]
    w.run()
    w.settle()
    w.set_state(new["ID"], "failed", exit_code=1)   # dies before it ever ran
    w.settle()
    status = w.service(sid)["UpdateStatus"]
    assert status["State"] == "paused"
    assert status["Message"] == ("update paused due to failure or early termination of "
                                 f"task {new['ID']}")
    w.t += 60
    w.converge()
    assert _images(w, sid) == ["busybox", "busybox"]   # the rest left alone
    # a new update (the user fixes the image) starts again
    w.update_service(sid, _image("nginx"))
    w.converge()
    w.t += 60
    w.converge()
    assert w.service(sid)["UpdateStatus"]["State"] == "completed"
    assert _images(w, sid) == ["nginx"] * 3


def test_failure_action_rollback_restores_the_previous_spec() -> None:
    w = World(nodes=2)
    sid = w.add_service("web", replicas=2, template={"RestartPolicy": {"Condition": "none"}},
                        UpdateConfig={"FailureAction": "rollback", "Monitor": 5 * NS},
                        RollbackConfig={"Parallelism": 0, "Monitor": 0})
    w.converge()
    w.update_service(sid, _image("broken"))
    w.converge()
    new = next(t for t in w.running(sid) if t["Spec"]["ContainerSpec"]["Image"] == "broken")
    w.set_state(new["ID"], "failed", exit_code=1)
    w.settle()
    svc = w.service(sid)
    assert svc["UpdateStatus"]["State"] == "rollback_started"
    assert svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "busybox"
    assert svc["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "broken"
    assert svc["_SpecVersion"] == 3
    w.converge()
    assert _images(w, sid) == ["busybox", "busybox"]
    status = w.service(sid)["UpdateStatus"]
    assert status["State"] == "rollback_completed" and status["Message"] == "rollback completed"


def test_failure_within_max_failure_ratio_continues() -> None:
    w = World(nodes=2)
    sid = w.add_service("web", replicas=4, template={"RestartPolicy": {"Condition": "none"}},
                        UpdateConfig={"Parallelism": 1, "MaxFailureRatio": 0.5,
                                      "Delay": 10 * NS, "Monitor": 5 * NS})
    w.converge()
    w.update_service(sid, _image("nginx"))
    w.converge()
    (first,) = [t for t in w.running(sid) if t["Spec"]["ContainerSpec"]["Image"] == "nginx"]
    w.set_state(first["ID"], "failed", exit_code=1)   # 1 of 4 failed: under 0.5
    for _ in range(5):
        w.t += 11
        w.converge()
    assert w.service(sid)["UpdateStatus"]["State"] == "completed"
    assert _images(w, sid) == ["nginx"] * 3   # the failed one kept its slot (none)


def test_manual_rollback_uses_the_rollback_config() -> None:
    w = World(nodes=2)
    sid = w.add_service("web", replicas=2, RollbackConfig={"Parallelism": 1, "Monitor": 0},
                        UpdateConfig={"Parallelism": 0, "Monitor": 0})
    w.converge()
    w.update_service(sid, _image("nginx"))
    w.converge()
    assert w.service(sid)["UpdateStatus"]["State"] == "completed"
    w.update_service(sid, None, rollback=True)   # as ?rollback=previous does
    w.settle()
    assert w.service(sid)["UpdateStatus"]["State"] == "rollback_started"
    stopping = [t for t in w.tasks(sid, desired="shutdown")
                if t["Spec"]["ContainerSpec"]["Image"] == "nginx"]
    assert len(stopping) == 1   # Parallelism 1 of RollbackConfig
    w.converge()
    status = w.service(sid)["UpdateStatus"]
    assert status["State"] == "rollback_completed"
    assert status["Message"] == "manually requested rollback" or \
        status["Message"] == "rollback completed"
    assert _images(w, sid) == ["busybox", "busybox"]


def test_publishing_a_port_updates_the_tasks_onto_ingress() -> None:
    w = World(nodes=2)
    sid = w.add_service("web", replicas=2, UpdateConfig={"Parallelism": 0, "Monitor": 0})
    w.converge()
    assert all(t["NetworksAttachments"] == [] for t in w.running(sid))

    def publish(spec: dict[str, Any]) -> None:
        spec["EndpointSpec"] = {"Ports": [{"Protocol": "tcp", "TargetPort": 80,
                                           "PublishedPort": 8080}]}
    w.update_service(sid, publish)
    w.converge()
    assert len(w.running(sid)) == 2
    assert all(t["NetworksAttachments"][0]["Network"]["Spec"]["Ingress"] for t in w.running(sid))
    assert w.service(sid)["UpdateStatus"]["State"] == "completed"


def test_global_update_replaces_each_node_task_on_its_node() -> None:
    w = World(nodes=3)
    sid = w.add_service("agent", mode="global", UpdateConfig={"Parallelism": 1, "Monitor": 0})
    w.converge()
    w.update_service(sid, _image("nginx"))
    w.settle()
    assert len(w.tasks(sid, desired="shutdown")) == 1
    w.converge()
    assert sorted((t["NodeID"], t["Spec"]["ContainerSpec"]["Image"]) for t in w.running(sid)) \
        == [("node1", "nginx"), ("node2", "nginx"), ("node3", "nginx")]
    assert w.service(sid)["UpdateStatus"]["State"] == "completed"
