"""Checks of notebook 12 (the swarm): make the swarm tolerate one more manager failure."""

from __future__ import annotations

from labkit import errors
from labkit.lab.exercises import Namespace, defined, exercise, fail, need
from labkit.lab.swarm_demo import SwarmDemo, tolerated_failures

FORMED_MANAGERS = 3  # the notebook's swarm: 3 managers tolerate 1 failure


@exercise("12.tolerate_one_more")
def tolerate_one_more(ns: Namespace) -> str:
    """The live lab must have enough reachable managers to lose one more than 3 managers can
    (so 5: 4 would still tolerate only 1), and ``tolerated`` must say how many may fail.
    The check then proves it: it kills that many managers (not the leader), makes one
    acknowledged write, and starts them again."""
    demo = defined(ns, "demo", "the SwarmDemo (the set-up cell's `demo`)")
    tol = defined(ns, "tolerated", "a number")
    need(isinstance(demo, SwarmDemo), f"demo should be the set-up cell's SwarmDemo, not "
         f"{type(demo).__name__}")
    need(isinstance(tol, int) and not isinstance(tol, bool),
         f"tolerated is {tol!r}: a whole number of managers")
    try:
        managers = demo.managers_settled(timeout=60)
    except errors.LabkitError as err:
        fail(f"the swarm did not settle: {err}")
    n = len(managers)
    most = tolerated_failures(n)
    need(most > tolerated_failures(FORMED_MANAGERS),
         f"{n} reachable managers: a quorum is {n // 2 + 1} of them, so {most} may fail, no "
         f"more than with {FORMED_MANAGERS}; promote workers until one more may fail"
         + (" (an even count adds a voter but no tolerance)" if n % 2 == 0 else ""))
    need(tol == most, f"tolerated is {tol}, but {n} managers (quorum {n // 2 + 1}) tolerate "
         f"{most} failures: (n - 1) // 2")
    try:
        proof = demo.survive(tol)
    except errors.LabkitError as err:
        fail(f"with {tol} managers killed the swarm did not take a write: {err}")
    return (f"{n} managers, quorum {n // 2 + 1}: with {', '.join(proof['killed'])} killed, "
            f"{proof['leader']} acknowledged a write in {proof['write_s']:.2f} s; they are back")
