"""The socket under the network log drivers: connect at container start, send, survive.

Docker's syslog, gelf and fluentd drivers dial their endpoint when the container starts, and a
container whose endpoint cannot be reached does not start ("failed to initialize logging
driver").  Afterwards a receiver that goes away must never stop the container: a send that
fails closes the socket, the message is dropped, and the next message dials again (at most
once per RETRY seconds, so a dead receiver costs a container one connect attempt per RETRY,
not one per line).  Sends are bounded by TIMEOUT: Docker's default "blocking" mode also
makes the container wait on its log driver, but never forever here.
"""

from __future__ import annotations

import errno
import socket
import time

from labkit import errors

TIMEOUT = 5.0
RETRY = 1.0


class Endpoint:
    """A connected socket to ``family``/``kind``/``addr`` that re-dials after a failure."""

    def __init__(self, driver: str, family: int, kind: int, addr: object) -> None:
        self.driver, self.family, self.kind, self.addr = driver, family, kind, addr
        self.sock: socket.socket | None = None
        self.failed_at = 0.0
        self.dropped = 0  # messages lost to a failed send (visible in tests)
        try:
            self._dial()
        except OSError as err:
            raise errors.from_errno(
                err.errno or errno.ETIMEDOUT, f"failed to initialize logging driver {driver}: "
                "dial", str(addr), hint=f"start the {driver} receiver first, or pick another "
                "--log-driver") from None

    @property
    def stream(self) -> bool:
        return self.kind == socket.SOCK_STREAM

    def _dial(self) -> None:
        s = socket.socket(self.family, self.kind | socket.SOCK_CLOEXEC)
        try:
            s.settimeout(TIMEOUT)
            s.connect(self.addr)  # type: ignore[arg-type]
        except OSError:
            s.close()
            raise
        self.sock = s

    def send(self, data: bytes) -> bool:
        """Send one message (a datagram, or bytes on the stream); False when dropped."""
        if self.sock is None:
            if time.monotonic() - self.failed_at < RETRY:
                self.dropped += 1
                return False
            try:
                self._dial()
            except OSError:
                self.failed_at = time.monotonic()
                self.dropped += 1
                return False
        assert self.sock is not None
        try:
            if self.stream:
                self.sock.sendall(data)
            else:
                self.sock.send(data)
            return True
        except OSError:
            self.sock.close()
            self.sock = None
            self.failed_at = time.monotonic()
            self.dropped += 1
            return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def host_port(text: str, what: str, default_port: int) -> tuple[str, int]:
    """"host:port" / "host" / "[v6]:port" -> (host, port); an error names ``what``."""
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise errors.InvalidArgumentError(what, f"{text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise errors.InvalidArgumentError(what, f"{text!r}: bad port")
            port = _port(rest[1:], what)
    elif ":" in text:
        host, p = text.rsplit(":", 1)
        port = _port(p, what)
    if not host:
        raise errors.InvalidArgumentError(what, f"{text!r}: no host")
    return host, port


def _port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise errors.InvalidArgumentError(what, f"invalid port {text!r}")
    return int(text)


def inet(driver: str, host: str, port: int, kind: int) -> Endpoint:
    """An Endpoint to host:port (resolved now, as Docker resolves at start)."""
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except OSError as err:
        raise errors.InvalidArgumentError(f"log driver {driver}", "failed to initialize "
                                          f"logging driver: lookup {host}: {err}") from None
    fam, _, _, _, addr = infos[0]
    return Endpoint(driver, fam, kind, addr)
