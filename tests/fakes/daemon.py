"""A canned-response Docker Engine API server on a unix socket, for tests (docker-py fake_api shape)."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

Reply = tuple[int, dict[str, str], bytes | list[bytes]]
Route = Callable[[dict[str, Any]], Reply]


def js(status: int, obj: Any) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps(obj).encode()


class FakeDaemon:
    """Routes "METHOD /path" (version prefix and query stripped) to canned replies.

    A reply body given as a list is sent chunked, one chunk per item.  A route may return
    status 101 to hijack: the body bytes are sent raw after the headers, and whatever the
    client sends afterwards (until it half-closes) is recorded in ``hijack_input``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.routes: dict[str, Route] = {}
        self.requests: list[dict[str, Any]] = []
        self.hijack_input = b""
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    self._handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up first, as real clients may

            def _handle(self) -> None:
                line = self.rfile.readline().decode().rstrip("\r\n")
                method, target, _ = line.split(" ", 2)
                headers: dict[str, str] = {}
                while (h := self.rfile.readline().decode().rstrip("\r\n")):
                    k, _, v = h.partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = self.rfile.read(int(headers.get("content-length", 0) or 0))
                path, _, query = target.partition("?")
                if path.startswith("/v1."):
                    path = "/" + path.split("/", 2)[2]
                req = {"method": method, "path": path, "query": query, "headers": headers,
                       "body": body}
                daemon.requests.append(req)
                route = daemon.routes.get(f"{method} {path}")
                status, hdrs, payload = route(req) if route else js(
                    404, {"message": f"page not found: {path}"})
                reason = {101: "UPGRADED"}.get(status, "OK")
                head = f"HTTP/1.1 {status} {reason}\r\n"
                if isinstance(payload, list):
                    hdrs = dict(hdrs, **{"Transfer-Encoding": "chunked"})
                elif status != 101:
                    hdrs = dict(hdrs, **{"Content-Length": str(len(payload))})
                head += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
                self.wfile.write(head.encode())
                if status == 101:
                    self.wfile.write(payload if isinstance(payload, bytes) else b"")
                    self.wfile.flush()
                    while data := self.request.recv(4096):
                        daemon.hijack_input += data
                    return
                if isinstance(payload, list):
                    for chunk in payload:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                elif payload:
                    self.wfile.write(payload)

        self.server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> FakeDaemon:  # noqa: PYI034
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
