"""Checks of notebook 14 (services and discovery): endpoint mode dnsrr, and its answers."""

from __future__ import annotations

import time

from labkit import errors
from labkit.lab.exercises import Namespace, defined, exercise, fail, need
from labkit.lab.services_demo import ServiceLab

SERVICE, NETWORK, CLIENT = "web", "lk-app", "client"  # the notebook's names


@exercise("14.dnsrr")
def dnsrr(ns: Namespace) -> str:
    """``web`` must be in endpoint mode dnsrr, and ``predicted`` (a set of addresses) must be
    what the embedded DNS now answers for ``web`` from inside the client task: every
    running task's address, no VIP.  The check asks the DNS itself (waiting up to 20 s for
    the nodes to apply the change)."""
    demo = defined(ns, "demo", "the ServiceLab (the set-up cell's `demo`)")
    predicted = defined(ns, "predicted", "a set of IPv4 addresses")
    need(isinstance(demo, ServiceLab), f"demo should be the set-up cell's ServiceLab, not "
         f"{type(demo).__name__}")
    need(isinstance(predicted, set | frozenset | list | tuple) and all(
        isinstance(a, str) for a in predicted),
        f"predicted is {predicted!r}: a set of address strings, e.g. {{'10.0.1.5', ...}}")
    want = set(predicted)
    try:
        mode = demo.endpoint_mode(SERVICE)
    except errors.LabkitError as err:
        fail(f"the service {SERVICE} is not there: {err}")
    need(mode == "dnsrr", f"{SERVICE} is still in endpoint mode {mode!r}: "
         f"demo.set_endpoint_mode('{SERVICE}', 'dnsrr')")
    try:
        tasks = set(demo.task_ips(SERVICE, NETWORK))
        client = demo.tasks(CLIENT, running=True)[0]
    except (errors.LabkitError, IndexError) as err:
        fail(f"the lab is not as the notebook left it: {err}")
    answer: set[str] = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answer = set(demo.dns(client, SERVICE))
        if answer == tasks:
            break
        time.sleep(0.5)
    need(len(want) > 1 or len(tasks) <= 1, f"{sorted(want)} is one address: that is what a VIP "
         "answer looks like; in dnsrr mode the name resolves to the tasks themselves")
    need(want == answer, f"you predicted {sorted(want)}, the DNS answers {sorted(answer)} "
         f"(the running tasks are {sorted(tasks)})")
    need(answer == tasks, f"the DNS answers {sorted(answer)}, not the running tasks "
         f"{sorted(tasks)}")
    return (f"{SERVICE} resolves to its {len(tasks)} task addresses in turn: the client "
            "picks one and no VIP balances the connections")
