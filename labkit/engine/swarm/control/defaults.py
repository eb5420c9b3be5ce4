"""The defaults dockerd inserts into a ServiceSpec for GET /services/{id}?insertDefaults=true
(moby daemon/cluster/services.go -> swarmkit api/defaults: `docker service inspect --pretty`
shows them).  The store keeps the spec as sent; these are filled in on the way out only."""

from __future__ import annotations

import copy

from labkit.engine.swarm.control.common import Obj

__all__ = ["SERVICE_DEFAULTS", "insert_defaults"]

SECOND = 10**9
_UPDATE: Obj = {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5 * SECOND,
                "MaxFailureRatio": 0, "Order": "stop-first"}
SERVICE_DEFAULTS: Obj = {
    "TaskTemplate": {
        "ContainerSpec": {"StopGracePeriod": 10 * SECOND, "DNSConfig": {}},
        "Resources": {"Limits": {}, "Reservations": {}},
        "RestartPolicy": {"Condition": "any", "Delay": 5 * SECOND, "MaxAttempts": 0},
        "Placement": {},
        "ForceUpdate": 0,
        "Runtime": "container",
    },
    "Mode": {"Replicated": {"Replicas": 1}},
    "UpdateConfig": _UPDATE,
    "RollbackConfig": _UPDATE,
    "EndpointSpec": {"Mode": "vip"},
}


def _merge(into: Obj, defaults: Obj) -> None:
    for key, value in defaults.items():
        if key not in into or into[key] is None:
            into[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(into[key], dict):
            if key == "Mode":  # a Global service gets no Replicated default
                continue
            _merge(into[key], value)


def insert_defaults(spec: Obj) -> Obj:
    """A copy of ``spec`` with every default that is absent filled in."""
    out = copy.deepcopy(spec)
    _merge(out, SERVICE_DEFAULTS)
    return out
