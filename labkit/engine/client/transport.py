"""HTTP/1.1 over an AF_UNIX stream socket (unix(7)), the way docker-py's ``unixconn`` talks to dockerd.

Written on the socket module alone, not ``http.client``: http.client pulls in the email
package (~11 ms of imports, STYLE: keep `labkit run` fast) and buffers bytes past the headers,
which a hijacked attach/exec stream (Docker's ``101 UPGRADED``) must not lose.  One connection
per request: connect(2) on a unix socket costs microseconds, and it keeps streaming responses
(wait, logs -f, stats) independent of each other.

Errors come back as ``{"type", "message", "errno"}`` bodies (STYLE C12); ``raise_for_status``
rebuilds the labkit.errors class named by ``type``, falling back to the HTTP status.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from labkit import errors

__all__ = ["API_VERSION", "APIError", "DaemonUnavailable", "Hijack", "Response", "Transport",
           "error_from_response"]

API_VERSION = "1.41"


class APIError(errors.LabkitError):
    """The daemon answered with an error status that no labkit.errors class describes."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.status, self.message, self.hint))


class DaemonUnavailable(errors.LabkitError, ConnectionError):
    """Nothing answers on the daemon socket (connect(2) gave ENOENT or ECONNREFUSED)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot connect to the labkit daemon at unix://{path}: {reason}")
        self.path, self.reason = path, reason
        self.hint = "start it with `labkit daemon`, or let `labkit run ...` start one"


# type name in the error body -> class; statuses as the daemon's errmap (STYLE C12).
_BY_TYPE: dict[str, type[errors.LabkitError]] = {
    c.__name__: c for c in (errors.NotFoundError, errors.AlreadyExistsError,
                            errors.InvalidStateError, errors.UnsupportedError,
                            errors.ConflictError, errors.InvalidArgumentError,
                            errors.ForbiddenError, errors.UnavailableError)}
_BY_STATUS: dict[int, type[errors.LabkitError]] = {
    404: errors.NotFoundError, 409: errors.ConflictError, 400: errors.InvalidArgumentError,
    501: errors.UnsupportedError, 403: errors.ForbiddenError, 503: errors.UnavailableError}


def error_from_response(status: int, body: bytes) -> errors.LabkitError:
    """Rebuild the exception the daemon raised: its class by ``type``, else by status.

    The message is kept exactly as the daemon wrote it (Docker's texts, e.g. "No such
    container: x"), so ``str(err)`` matches what the real Docker CLI prints.
    """
    try:
        doc = json.loads(body.decode("utf-8", "replace") or "{}")
    except ValueError:
        doc = {"message": body.decode("utf-8", "replace").strip()}
    if not isinstance(doc, dict):
        doc = {"message": str(doc)}
    message = str(doc.get("message") or f"HTTP {status}")
    cls = _BY_TYPE.get(str(doc.get("type"))) or _BY_STATUS.get(status)
    if cls is None:
        return APIError(status, message, doc.get("hint"))
    # The constructors take structured fields (kind, name, ...); the wire carries only the
    # rendered message, so build the instance without them and keep the message whole.
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.hint = doc.get("hint")
    for attr in ("message", "kind", "name", "what", "problem", "feature", "reason"):
        setattr(err, attr, message if attr == "message" else None)
    err.status = status  # type: ignore[attr-defined]
    return err


class _Reader:
    """A small buffered reader over a socket: lines, exact counts and whatever is available."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def readline(self) -> bytes:
        while b"\n" not in self.buf:
            if not self._fill():
                raise ConnectionError("the daemon closed the connection mid-response")
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("the daemon closed the connection mid-body")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_some(self, n: int) -> bytes:
        if not self.buf:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


class Response:
    """A response whose body is read on demand (Content-Length, chunked or until close)."""

    def __init__(self, sock: socket.socket, reader: _Reader, status: int, reason: str,
                 headers: dict[str, str], head: bool = False) -> None:
        self.sock, self._r, self.status, self.reason, self.headers = (
            sock, reader, status, reason, headers)
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._left: int | None = int(length) if length is not None else None
        if head or status in (204, 304) or 100 <= status < 200:
            self._left, self._chunked = 0, False
        self._done = self._left == 0

    def read1(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes as soon as any arrive; b"" at the end of the body."""
        if self._done:
            return b""
        if self._chunked:
            if self._left in (None, 0):
                size = int(self._r.readline().split(b";")[0] or b"0", 16)
                if size == 0:
                    while self._r.readline():  # trailers, then the empty line
                        pass
                    self._done = True
                    return b""
                self._left = size
            data = self._r.read_some(min(n, self._left or 0))
            self._left = (self._left or 0) - len(data)
            if not data:
                raise ConnectionError("the daemon closed the connection mid-chunk")
            if self._left == 0:
                self._r.read_exact(2)  # the CRLF after each chunk
            return data
        want = n if self._left is None else min(n, self._left)
        data = self._r.read_some(want)
        if self._left is not None:
            self._left -= len(data)
            if not data:
                raise ConnectionError("the daemon closed the connection mid-body")
        self._done = not data or self._left == 0
        return data

    def read(self) -> bytes:
        parts = []
        while chunk := self.read1():
            parts.append(chunk)
        self.close()
        return b"".join(parts)

    def json(self) -> Any:
        data = self.read()
        return json.loads(data) if data.strip() else None

    def iter_lines(self) -> Iterator[bytes]:
        """The body split at newlines as it streams (JSON streams: events, stats, pulls)."""
        pending = b""
        while chunk := self.read1():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from (line for line in lines if line.strip())
        if pending.strip():
            yield pending
        self.close()

    def close(self) -> None:
        self.sock.close()


class Hijack:
    """A hijacked connection (101 UPGRADED): raw bytes both ways on ``sock``.

    ``initial`` holds bytes the daemon sent right after its headers, read with them.
    """

    def __init__(self, sock: socket.socket, initial: bytes) -> None:
        self.sock, self.initial = sock, initial

    def recv(self, n: int = 65536) -> bytes:
        if self.initial:
            data, self.initial = self.initial[:n], self.initial[n:]
            return data
        return self.sock.recv(n)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        """Half-close (shutdown(2) SHUT_WR): stdin is over; output keeps coming."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


class Transport:
    """Requests to one daemon socket; paths are versioned (``/v1.41/...``) as the CLI does."""

    def __init__(self, socket_path: str | Path, timeout: float | None = 60.0,
                 version: str = API_VERSION,
                 on_unavailable: Callable[[], None] | None = None) -> None:
        self.path, self.timeout, self.version = str(socket_path), timeout, version
        # Called once when the very first connect finds no daemon (the CLI starts one there),
        # then the connect is retried; never after a request went through, so a verb is
        # never replayed against a fresh daemon halfway.
        self.on_unavailable = on_unavailable
        self.connects = 0

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError) as err:
            sock.close()
            if self.on_unavailable is not None and self.connects == 0:
                hook, self.on_unavailable = self.on_unavailable, None
                hook()
                return self._connect(timeout)
            raise DaemonUnavailable(self.path, err.strerror or str(err)) from None
        except BaseException:
            sock.close()
            raise
        self.connects += 1
        return sock

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        target = path if path.startswith("/_") or not self.version else f"/v{self.version}{path}"
        # A tuple value repeats its key (``changes=a&changes=b``, as the Docker CLI sends).
        query = [(k, _qs(x)) for k, v in (params or {}).items() if v is not None
                 for x in (v if isinstance(v, tuple) else (v,))]
        return _pct(target, "/:@!$&'()*+,;=") + (
            "?" + "&".join(f"{_pct(k)}={_pct(v)}" for k, v in query) if query else "")

    def _send(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any,
              headers: Mapping[str, str] | None, timeout: float | None,
              upgrade: bool = False, upload: Path | None = None,
              on_sent: Callable[[int], None] | None = None,
              ) -> tuple[socket.socket, _Reader, int, str, dict[str, str]]:
        data = b""
        hdrs = {"Host": "docker", "User-Agent": "labkit-client"}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs["Content-Type"] = ("application/json" if not isinstance(body, bytes)
                                    else "application/octet-stream")
        if method in ("POST", "PUT") or data:
            hdrs["Content-Length"] = str(len(data))
        if upload is not None:  # streamed from the file below, never held in memory
            hdrs["Content-Type"] = "application/x-tar"
            hdrs["Content-Length"] = str(os.stat(upload).st_size)
        hdrs["Connection"] = "Upgrade" if upgrade else "close"
        if upgrade:
            hdrs["Upgrade"] = "tcp"
        hdrs.update(headers or {})
        head = f"{method} {self.url(path, params)} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        sock = self._connect(timeout)
        try:
            sock.sendall(head.encode("latin-1") + data)
            if upload is not None:
                with open(upload, "rb") as f:
                    while chunk := f.read(1 << 20):
                        sock.sendall(chunk)
                        if on_sent is not None:
                            on_sent(len(chunk))
            reader = _Reader(sock)
            while True:
                status_line = reader.readline().decode("latin-1")
                parts = status_line.split(" ", 2)
                if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                    raise ConnectionError(f"not an HTTP response: {status_line[:80]!r}")
                status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
                resp_headers: dict[str, str] = {}
                while line := reader.readline():
                    key, _, value = line.decode("latin-1").partition(":")
                    resp_headers[key.strip().lower()] = value.strip()
                if status != 100:
                    return sock, reader, status, reason, resp_headers
        except BaseException:
            sock.close()
            raise

    def request(self, method: str, path: str, params: Mapping[str, Any] | None = None,
                body: Any = None, headers: Mapping[str, str] | None = None,
                timeout: float | None = -1.0) -> Response:
        """Send one request; raise the rebuilt labkit error for a status >= 400."""
        t = self.timeout if timeout == -1.0 else timeout
        sock, reader, status, reason, hdrs = self._send(method, path, params, body, headers, t)
        resp = Response(sock, reader, status, reason, hdrs, head=method == "HEAD")
        if status >= 400:
            raise error_from_response(status, resp.read())
        return resp

    def upload(self, path: str, src: Path, params: Mapping[str, Any] | None = None,
               on_sent: Callable[[int], None] | None = None,
               timeout: float | None = None) -> Response:
        """POST the file ``src`` as the body, streamed (a rootfs tar may be large);
        ``on_sent(n)`` after each chunk.  Raises the rebuilt labkit error for a status >= 400."""
        sock, reader, status, reason, hdrs = self._send("POST", path, params, None, None,
                                                        timeout, upload=src, on_sent=on_sent)
        resp = Response(sock, reader, status, reason, hdrs)
        if status >= 400:
            raise error_from_response(status, resp.read())
        return resp

    def hijack(self, path: str, params: Mapping[str, Any] | None = None,
               body: Any = None) -> Hijack:
        """POST with ``Connection: Upgrade`` / ``Upgrade: tcp`` and take over the socket."""
        sock, reader, status, reason, hdrs = self._send("POST", path, params, body, None,
                                                        None, upgrade=True)
        if status >= 400:
            raise error_from_response(status, Response(sock, reader, status, reason,
                                                       hdrs).read())
        if status not in (101, 200):
            sock.close()
            raise APIError(status, f"unexpected answer to a hijack: {status} {reason}")
        sock.settimeout(None)
        return Hijack(sock, reader.buf)

    # Conveniences that return decoded JSON.
    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params).json()

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, params, body).json()

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params).json()


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _pct(text: str, safe: str = "") -> str:
    """Percent-encode (RFC 3986 2.1) all but unreserved and ``safe`` characters.

    Written here rather than imported from urllib.parse, which pulls in ipaddress (~2 ms)."""
    keep = _UNRESERVED | frozenset(safe.encode())
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in text.encode())


def _qs(value: Any) -> str:
    """Query values as Docker's CLI writes them: booleans 1/0, maps as JSON."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
