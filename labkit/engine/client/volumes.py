"""Volume endpoints (Engine API "Volume"): create, list, inspect, remove, prune."""

from __future__ import annotations

import builtins
from typing import Any

from labkit.engine.client.transport import Transport

__all__ = ["Volumes"]


class Volumes:
    def __init__(self, t: Transport) -> None:
        self.t = t

    def create(self, name: str | None = None, driver: str | None = None,
               opts: dict[str, str] | None = None, labels: dict[str, str] | None = None
               ) -> dict[str, Any]:
        body: dict[str, Any] = {"Name": name or ""}
        if driver:
            body["Driver"] = driver
        if opts:
            body["DriverOpts"] = opts
        if labels:
            body["Labels"] = labels
        return dict(self.t.post("/volumes/create", body))

    def list(self, filters: dict[str, list[str]] | None = None) -> builtins.list[dict[str, Any]]:
        return list(self.t.get("/volumes", filters=filters or None).get("Volumes") or [])

    def inspect(self, name: str) -> dict[str, Any]:
        return dict(self.t.get(f"/volumes/{name}"))

    def remove(self, name: str, force: bool = False) -> None:
        self.t.request("DELETE", f"/volumes/{name}", {"force": force or None}).read()

    def prune(self, filters: dict[str, builtins.list[str]] | None = None) -> dict[str, Any]:
        return dict(self.t.post("/volumes/prune", filters=filters or None))
