"""Image endpoints (Engine API "Image"): list, inspect, tag, remove, history, prune, save,
load, import (a rootfs tar streamed from a file, or a URL the daemon fetches), build (a
context tar) and commit."""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from labkit import errors
from labkit.engine.client.transport import Transport

__all__ = ["Images"]


def _stream_errors(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A JSON stream may end in {"error": ...} after a 200 (docker-api.md): raise it."""
    for line in lines:
        if line.get("error") or line.get("errorDetail"):
            raise errors.ConflictError(str(line.get("error") or line["errorDetail"]))
    return lines


class Images:
    def __init__(self, t: Transport) -> None:
        self.t = t

    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None
             ) -> builtins.list[dict[str, Any]]:
        return list(self.t.get("/images/json", all=all or None, filters=filters or None))

    def inspect(self, name: str) -> dict[str, Any]:
        return dict(self.t.get(f"/images/{name}/json"))

    def history(self, name: str) -> builtins.list[dict[str, Any]]:
        return list(self.t.get(f"/images/{name}/history"))

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

    def remove(self, name: str, force: bool = False) -> builtins.list[dict[str, str]]:
        return list(self.t.delete(f"/images/{name}", force=force or None))

    def prune(self, filters: dict[str, builtins.list[str]] | None = None) -> dict[str, Any]:
        return dict(self.t.post("/images/prune", filters=filters or None))

    def save(self, names: Sequence[str], out: IO[bytes]) -> None:
        """GET /images/get: the docker-archive tar written to ``out`` as it streams."""
        resp = self.t.request("GET", "/images/get", {"names": tuple(names)}, timeout=None)
        while chunk := resp.read1(1 << 20):
            out.write(chunk)
        resp.close()

    def load(self, src: Path) -> builtins.list[dict[str, Any]]:
        resp = self.t.upload("/images/load", src)
        return _stream_errors([json.loads(x) for x in resp.iter_lines()])

    def import_file(self, src: Path, ref: str | None = None, *, changes: Sequence[str] = (),
                    message: str = "", on_sent: Callable[[int], None] | None = None) -> str:
        """POST /images/create?fromSrc=-: the rootfs tar ``src`` streamed; returns the ID."""
        return self._import({"fromSrc": "-"}, ref, changes, message, src, on_sent)

    def import_url(self, url: str, ref: str | None = None, *, changes: Sequence[str] = (),
                   message: str = "") -> str:
        """POST /images/create?fromSrc=URL: the daemon fetches the tar; returns the ID."""
        return self._import({"fromSrc": url}, ref, changes, message, None, None)

    def _import(self, q: dict[str, Any], ref: str | None, changes: Sequence[str],
                message: str, src: Path | None, on_sent: Callable[[int], None] | None) -> str:
        if ref:
            last = ref.rsplit("/", 1)[-1]
            repo, _, tag = ref.rpartition(":") if ":" in last else (ref, "", "")
            q.update(repo=repo, tag=tag or None)
        q.update(message=message or None, changes=tuple(changes) or None)
        resp = (self.t.upload("/images/create", src, q, on_sent=on_sent) if src is not None
                else self.t.request("POST", "/images/create", q, timeout=None))
        lines = _stream_errors([json.loads(x) for x in resp.iter_lines()])
        ids = [str(x["status"]) for x in lines if str(x.get("status", "")).startswith("sha256:")]
        if not ids:
            raise errors.ConflictError(f"import answered no image ID: {lines!r}")
        return ids[-1]


    def pull(self, name: str, tag: str | None = None, *, auth: str | None = None
             ) -> builtins.list[dict[str, Any]]:
        """POST /images/create?fromImage=: the pull's progress messages (Docker's JSON
        stream); ``auth`` is an X-Registry-Auth header value.  Raises on a stream error."""
        hdr = {"X-Registry-Auth": auth} if auth else None
        resp = self.t.request("POST", "/images/create", {"fromImage": name, "tag": tag},
                              headers=hdr, timeout=None)
        return _stream_errors([json.loads(x) for x in resp.iter_lines() if x.strip()])

    def push(self, name: str, tag: str | None = None, *, auth: str | None = None
             ) -> builtins.list[dict[str, Any]]:
        """POST /images/{name}/push: the push's progress messages; raises on a stream error."""
        hdr = {"X-Registry-Auth": auth} if auth else None
        resp = self.t.request("POST", f"/images/{name}/push", {"tag": tag}, headers=hdr,
                              timeout=None)
        return _stream_errors([json.loads(x) for x in resp.iter_lines() if x.strip()])

    def commit(self, container: str, repo: str | None = None, tag: str | None = None, *,
               comment: str | None = None, author: str | None = None,
               changes: Sequence[str] | None = None, pause: bool = True) -> str:
        """POST /commit; ``changes`` travel newline-joined in one parameter."""
        out = self.t.post("/commit", None, container=container, repo=repo, tag=tag,
                          comment=comment, author=author,
                          changes="\n".join(changes) if changes else None, pause=pause)
        return str(out["Id"])
