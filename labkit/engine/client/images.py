"""Image endpoints the container commands need: list and inspect (Engine API "Image")."""

from __future__ import annotations

from typing import Any

from labkit.engine.client.transport import Transport

__all__ = ["Images"]


class Images:
    def __init__(self, t: Transport) -> None:
        self.t = t

    def list(self, all: bool = False) -> list[dict[str, Any]]:
        return list(self.t.get("/images/json", all=all or None))

    def inspect(self, name: str) -> dict[str, Any]:
        return dict(self.t.get(f"/images/{name}/json"))
