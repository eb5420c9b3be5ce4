"""Service and task endpoints (Engine API v1.41 "Service", "Task"), in docker-py's shape:
``client.services.create / list / inspect / update / remove / logs / distribution`` and
``client.tasks.list / inspect``.

Bodies are the ServiceSpec JSON the Docker CLI sends (docker/cli command/service); the
daemon validates them (H1's control API), so nothing is checked twice here beyond refusing
refs that would address another endpoint.  Standard library only.
"""

from __future__ import annotations

import builtins
from typing import Any

from labkit import errors
from labkit.engine.client.transport import Response, Transport

__all__ = ["Services", "Tasks", "docker_filters", "ref"]


def ref(kind: str, value: str) -> str:
    """A name or ID as one path segment.  The transport leaves "/" unescaped in paths, so
    "../containers/x/kill" would address another endpoint: no swarm object name holds a "/"
    or is a dot segment (RFC 3986 5.2.4), so such refs are refused before any request."""
    if not value or "/" in value or value in (".", ".."):
        raise errors.InvalidArgumentError(kind, f"invalid {kind} name or ID {value!r}")
    return value


def docker_filters(flt: dict[str, builtins.list[str]] | None) -> dict[str, dict[str, bool]] | None:
    """{"label": ["a=b"]} -> {"label": {"a=b": true}}: the map form the Docker CLI sends
    (api/types/filters ToJSON), so the daemon sees the same query from both clients."""
    if not flt:
        return None
    return {k: {v: True for v in vals} for k, vals in flt.items()}


class Services:
    def __init__(self, t: Transport) -> None:
        self.t = t

    def create(self, spec: dict[str, Any], registry_auth: str | None = None) -> dict[str, Any]:
        """POST /services/create -> {"ID", "Warnings"}."""
        headers = {"X-Registry-Auth": registry_auth} if registry_auth else None
        return dict(self.t.request("POST", "/services/create", None, spec,
                                   headers=headers).json() or {})

    def list(self, filters: dict[str, builtins.list[str]] | None = None,
             status: bool = False) -> builtins.list[dict[str, Any]]:
        """GET /services; ``status`` adds ServiceStatus (RunningTasks, DesiredTasks)."""
        return builtins.list(self.t.get("/services", filters=docker_filters(filters),
                                        status=status or None) or [])

    def inspect(self, service: str, insert_defaults: bool = False) -> dict[str, Any]:
        """GET /services/{id|name}: ID, Version.Index, Spec, Endpoint, UpdateStatus..."""
        return dict(self.t.get(f"/services/{ref('service', service)}",
                               insertDefaults=insert_defaults))

    def update(self, service: str, version: int, spec: dict[str, Any],
               rollback: bool = False) -> dict[str, Any]:
        """POST /services/{id}/update?version=N: the whole spec, read at ``version``; a stale
        version is refused by the daemon ("update out of sequence")."""
        params = {"version": version, "rollback": "previous" if rollback else None}
        return dict(self.t.request("POST", f"/services/{ref('service', service)}/update",
                                   params, spec).json() or {})

    def remove(self, service: str) -> None:
        self.t.request("DELETE", f"/services/{ref('service', service)}").read()

    def logs(self, service: str, follow: bool = False, tail: str = "all",
             timestamps: bool = False, since: str | None = None,
             details: bool = False) -> Response:
        """GET /services/{id}/logs: a multiplexed (stdcopy) stream, as a container's."""
        params = {"stdout": True, "stderr": True, "follow": follow or None, "tail": tail,
                  "timestamps": timestamps or None, "since": since, "details": details or None}
        return self.t.request("GET", f"/services/{ref('service', service)}/logs", params,
                              timeout=None if follow else -1.0)

    def distribution(self, image: str) -> dict[str, Any]:
        """GET /distribution/{image}/json: the digest the CLI pins a service's image with.
        An image reference may hold "/" (registry/repo) but never an empty or dot segment,
        which would make the path address another endpoint."""
        if not image or any(part in ("", ".", "..") for part in image.split("/")):
            raise errors.InvalidArgumentError("image", f"invalid image reference {image!r}")
        return dict(self.t.get(f"/distribution/{image}/json"))


class Tasks:
    def __init__(self, t: Transport) -> None:
        self.t = t

    def list(self, filters: dict[str, builtins.list[str]] | None = None
             ) -> builtins.list[dict[str, Any]]:
        """GET /tasks (filters id, name, service (id or name), node, label, desired-state,
        _up-to-date)."""
        return builtins.list(self.t.get("/tasks", filters=docker_filters(filters)) or [])

    def inspect(self, task: str) -> dict[str, Any]:
        return dict(self.t.get(f"/tasks/{ref('task', task)}"))
