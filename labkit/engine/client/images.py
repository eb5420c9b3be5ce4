"""Image endpoints: list, inspect, tag, build (a context tar) and commit (Engine API "Image")."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
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

    def build(self, context: bytes, *, tag: str | None = None, dockerfile: str | None = None,
              buildargs: dict[str, str] | None = None, nocache: bool = False,
              labels: dict[str, str] | None = None, target: str | None = None,
              quiet: bool = False, forcerm: bool = False) -> Iterator[dict[str, Any]]:
        """POST /build with a context tar; yields the JSON lines as they stream."""
        params = {"t": tag, "dockerfile": dockerfile, "buildargs": buildargs or None,
                  "nocache": nocache or None, "labels": labels or None, "target": target or None,
                  "q": quiet or None, "rm": True, "forcerm": forcerm or None}
        resp = self.t.request("POST", "/build", params, body=context,
                              headers={"Content-Type": "application/x-tar"}, timeout=None)
        for line in resp.iter_lines():
            yield json.loads(line)

    def tag(self, name: str, repo: str, tag: str | None = None) -> None:
        self.t.request("POST", f"/images/{name}/tag", {"repo": repo, "tag": tag}).read()

    def commit(self, container: str, repo: str | None = None, tag: str | None = None, *,
               comment: str | None = None, author: str | None = None,
               changes: Sequence[str] | None = None, pause: bool = True) -> str:
        """POST /commit; ``changes`` travel newline-joined in one parameter."""
        out = self.t.post("/commit", None, container=container, repo=repo, tag=tag,
                          comment=comment, author=author,
                          changes="\n".join(changes) if changes else None, pause=pause)
        return str(out["Id"])
