"""Container endpoints (Engine API v1.41 "Container"), one method per route, docker-py's shape.

Methods return decoded JSON, except the streaming ones: ``wait`` returns the open
``Response`` as soon as its headers arrive (the daemon sends the body at exit, so a caller
can start the container in between, as ``docker run`` does), ``attach`` returns a ``Hijack``,
``logs`` and ``stats`` a ``Response`` to read as it streams.
"""

from __future__ import annotations

import builtins
from typing import Any

from labkit.engine.client.transport import Hijack, Response, Transport

__all__ = ["Containers"]


class Containers:
    def __init__(self, t: Transport) -> None:
        self.t = t

    def create(self, body: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        """POST /containers/create; ``body`` is Docker's create body (Image, Cmd, HostConfig...)."""
        return dict(self.t.post("/containers/create", body, name=name))

    def start(self, cid: str) -> None:
        self.t.request("POST", f"/containers/{cid}/start").read()

    def stop(self, cid: str, t: int | None = None) -> None:
        self.t.request("POST", f"/containers/{cid}/stop", {"t": t},
                       timeout=None).read()

    def kill(self, cid: str, signal: str | None = None) -> None:
        self.t.request("POST", f"/containers/{cid}/kill", {"signal": signal}).read()

    def restart(self, cid: str, t: int | None = None) -> None:
        self.t.request("POST", f"/containers/{cid}/restart", {"t": t}, timeout=None).read()

    def pause(self, cid: str) -> None:
        self.t.request("POST", f"/containers/{cid}/pause").read()

    def unpause(self, cid: str) -> None:
        self.t.request("POST", f"/containers/{cid}/unpause").read()

    def remove(self, cid: str, force: bool = False, volumes: bool = False) -> None:
        self.t.request("DELETE", f"/containers/{cid}",
                       {"force": force or None, "v": volumes or None}).read()

    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None,
             limit: int | None = None, size: bool = False) -> builtins.list[dict[str, Any]]:
        return list(self.t.get("/containers/json", all=all or None, filters=filters or None,
                               limit=limit, size=size or None))

    def inspect(self, cid: str) -> dict[str, Any]:
        return dict(self.t.get(f"/containers/{cid}/json"))

    def wait(self, cid: str, condition: str | None = None) -> Response:
        """POST /containers/{id}/wait: returns once the headers are in; ``.json()`` blocks."""
        return self.t.request("POST", f"/containers/{cid}/wait", {"condition": condition},
                              timeout=None)

    def attach(self, cid: str, stdin: bool = False, stdout: bool = True, stderr: bool = True,
               logs: bool = False, detach_keys: str | None = None) -> Hijack:
        params = {"stream": True, "stdin": stdin or None, "stdout": stdout or None,
                  "stderr": stderr or None, "logs": logs or None, "detachKeys": detach_keys}
        return self.t.hijack(f"/containers/{cid}/attach", params)

    def logs(self, cid: str, stdout: bool = True, stderr: bool = True, follow: bool = False,
             tail: str = "all", since: str | None = None, until: str | None = None,
             timestamps: bool = False) -> Response:
        params = {"stdout": stdout or None, "stderr": stderr or None, "follow": follow or None,
                  "tail": tail, "since": since, "until": until,
                  "timestamps": timestamps or None}
        return self.t.request("GET", f"/containers/{cid}/logs", params,
                              timeout=None if follow else -1.0)

    def top(self, cid: str, ps_args: str | None = None) -> dict[str, Any]:
        return dict(self.t.get(f"/containers/{cid}/top", ps_args=ps_args))

    def stats(self, cid: str, stream: bool = False) -> Response:
        return self.t.request("GET", f"/containers/{cid}/stats", {"stream": stream},
                              timeout=None if stream else -1.0)

    def resize(self, cid: str, height: int, width: int) -> None:
        self.t.request("POST", f"/containers/{cid}/resize", {"h": height, "w": width}).read()

    def rename(self, cid: str, name: str) -> None:
        self.t.request("POST", f"/containers/{cid}/rename", {"name": name}).read()

    def update(self, cid: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.t.post(f"/containers/{cid}/update", body) or {})

    def prune(self, filters: dict[str, builtins.list[str]] | None = None) -> dict[str, Any]:
        return dict(self.t.post("/containers/prune", None, filters=filters or None) or {})
