"""Checks of notebook 16 (stacks): scale a service the stack way, through its compose file."""

from __future__ import annotations

from labkit import errors
from labkit.lab.exercises import Namespace, defined, exercise, fail, need
from labkit.lab.stack_demo import NAMESPACE, StackLab, replicas_in

STACK, SERVICE, WANT = "voter", "front", 3  # the notebook's stack, its front, the target


@exercise("16.scale_by_compose")
def scale_by_compose(ns: Namespace) -> str:
    """voter_front must run 3 tasks, and the compose file last deployed must say so (a
    `service scale` alone is undone by the next `stack deploy` of the old file)."""
    demo = defined(ns, "demo", "the StackLab (the set-up cell's `demo`)")
    need(isinstance(demo, StackLab), f"demo should be the set-up cell's StackLab, not "
         f"{type(demo).__name__}")
    name = f"{STACK}_{SERVICE}"
    try:
        svc = demo.service(name)
    except errors.LabkitError as err:
        fail(f"no service {name}: deploy the stack again ({err})")
    labels = svc["Spec"].get("Labels") or {}
    need(labels.get(NAMESPACE) == STACK, f"{name} is not part of the stack {STACK!r}")
    want = ((svc["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas")
    in_file = replicas_in(demo.last_compose, SERVICE) if demo.last_compose else None
    need(in_file == WANT, f"the compose file last deployed says {SERVICE}.deploy.replicas: "
         f"{in_file}; edit the text to {WANT} and deploy it with demo.deploy(text)"
         + (f" (the service wants {want} now, but the next deploy of that file would set "
            f"it back)" if want == WANT else ""))
    need(want == WANT, f"{name} wants {want} replicas: deploy the edited file")
    try:
        tasks = demo.wait_running(name, WANT, timeout=90)
    except errors.LabkitError as err:
        fail(f"{name} does not run {WANT} tasks: {err}")
    nodes = sorted({demo.node_of(t).name for t in tasks})
    return (f"{name}: {WANT} tasks on {', '.join(nodes)}, as the compose file says; "
            "the file stays the one truth about the stack")
