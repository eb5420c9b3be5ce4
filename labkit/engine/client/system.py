"""System endpoints: _ping, version, info, events (Docker Engine API v1.41 "System")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from labkit.engine.client.transport import Transport

__all__ = ["System"]


class System:
    def __init__(self, t: Transport) -> None:
        self.t = t

    def ping(self, timeout: float | None = 5.0) -> dict[str, str]:
        """GET /_ping; the answer's headers (Api-Version, Ostype, ...)."""
        resp = self.t.request("GET", "/_ping", timeout=timeout)
        resp.read()
        return resp.headers

    def version(self) -> dict[str, Any]:
        return dict(self.t.get("/version"))

    def info(self) -> dict[str, Any]:
        return dict(self.t.get("/info"))

    def events(self, since: str | None = None, until: str | None = None,
               filters: dict[str, list[str]] | None = None) -> Iterator[dict[str, Any]]:
        """GET /events: a JSON stream, one event per line, until ``until`` or forever."""
        resp = self.t.request("GET", "/events", {"since": since, "until": until,
                                                 "filters": filters}, timeout=None)
        for line in resp.iter_lines():
            yield json.loads(line)
