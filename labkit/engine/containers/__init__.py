"""The engine's container model: records, Docker create bodies -> OCI bundles, lifecycle.

``Engine`` (engine.py) composes the services the daemon's handlers call (containers, control,
execs, ops, events, ...); each owns its state.  A container's lifecycle is lifecycle.py; its
record a ``ContainerRecord`` in the ``ContainerStore``; its process a task of the supervisor
(``TaskService``, over gRPC).
"""

from labkit.engine.containers.createbody import CreateSpec, parse_create, parse_json
from labkit.engine.containers.engine import Engine, NotModifiedError, parse_signal
from labkit.engine.containers.record import ContainerRecord
from labkit.engine.containers.store import ContainerStore
from labkit.engine.containers.tasks import TaskService

__all__ = ["ContainerRecord", "ContainerStore", "CreateSpec", "Engine", "NotModifiedError",
           "TaskService", "parse_create", "parse_json", "parse_signal"]
