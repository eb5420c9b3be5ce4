"""The one table from labkit errors to Docker Engine API statuses and bodies (STYLE C12).

Bodies are ``{"message": ..., "type": ..., "errno": ...}``: ``message`` is what the Docker CLI
prints ("Error response from daemon: <message>"), ``type`` lets labkit's own client rebuild
the same exception class (containerd ToGRPC/ToNative; docker-py create_api_error_from_...).
The first matching row wins, so subclasses come before their bases.
"""

from __future__ import annotations

from typing import Any

from labkit import errors
from labkit.engine.containers.engine import NotModifiedError
from labkit.engine.registry.client import Unauthorized
from labkit.engine.swarm.etcd.errors import QuorumError

__all__ = ["TABLE", "body_of", "status_of"]

TABLE: tuple[tuple[type[BaseException], int], ...] = (
    (NotModifiedError, 304),
    (Unauthorized, 401),
    (errors.NotFoundError, 404),
    (errors.AlreadyExistsError, 409),
    (errors.ConflictError, 409),
    (errors.ForbiddenError, 403),
    (errors.InvalidStateError, 409),
    (errors.InvalidArgumentError, 400),
    (errors.UnsupportedError, 501),
    (errors.UnavailableError, 503),  # moby daemon/cluster/errors.go notAvailableError
    (QuorumError, 503),  # the swarm's store lost its majority: writes wait for it
    (errors.SyscallPermissionError, 403),
)


def status_of(err: BaseException) -> int:
    """The HTTP status for ``err``; 500 for anything not in TABLE."""
    for cls, status in TABLE:
        if isinstance(err, cls):
            return status
    return 500


def message_of(err: BaseException) -> str:
    """Docker's wording where Docker has one; otherwise labkit's message with its hint."""
    if isinstance(err, errors.NotFoundError):  # a subclass may carry moby's own words
        text = getattr(err, "message", None) or f"No such {err.kind}: {err.name}"
    elif isinstance(err, errors.InvalidArgumentError):
        text = err.problem if err.what in err.problem or err.what in (
            "request body", "name", "Cmd", "signal", "container") else \
            f"{err.problem} ({err.what})"
    else:
        text = str(err) or type(err).__name__
    hint = getattr(err, "hint", None)
    return f"{text} ({hint})" if hint and isinstance(
        err, (errors.UnsupportedError, errors.NotFoundError)) else text


def body_of(err: BaseException) -> dict[str, Any]:
    return {"message": message_of(err), "type": type(err).__name__,
            "errno": getattr(err, "errno", None)}
