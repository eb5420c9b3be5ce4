"""Secret and config endpoints (Engine API v1.41 "Secret", "Config"): create, list,
inspect, update (labels), remove.  Data goes base64 in the body as the Docker CLI sends it;
the daemon never returns a secret's data (a config's it does).  Standard library only."""

from __future__ import annotations

import base64
import builtins
from typing import Any

from labkit.engine.client.services import docker_filters, ref
from labkit.engine.client.transport import Transport

__all__ = ["Configs", "Secrets"]


class Secrets:
    kind = "secret"
    path = "/secrets"

    def __init__(self, t: Transport) -> None:
        self.t = t

    def create(self, name: str, data: bytes, labels: dict[str, str] | None = None,
               extra: dict[str, Any] | None = None) -> str:
        """POST /{secrets|configs}/create -> the new object's ID."""
        body: dict[str, Any] = {"Name": name, "Labels": dict(labels or {}),
                                "Data": base64.b64encode(data).decode()}
        body.update(extra or {})
        return str(self.t.post(f"{self.path}/create", body)["ID"])

    def list(self, filters: dict[str, builtins.list[str]] | None = None
             ) -> builtins.list[dict[str, Any]]:
        return builtins.list(self.t.get(self.path, filters=docker_filters(filters)) or [])

    def inspect(self, name: str) -> dict[str, Any]:
        return dict(self.t.get(f"{self.path}/{ref(self.kind, name)}"))

    def update(self, name: str, version: int, spec: dict[str, Any]) -> None:
        """POST /{id}/update?version=N (only Labels may change)."""
        self.t.request("POST", f"{self.path}/{ref(self.kind, name)}/update",
                       {"version": version}, spec).read()

    def remove(self, name: str) -> None:
        self.t.request("DELETE", f"{self.path}/{ref(self.kind, name)}").read()


class Configs(Secrets):
    kind = "config"
    path = "/configs"
