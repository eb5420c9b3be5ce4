"""labkit's own framing between a parent and the children it forks: [tag][length][payload].

One frame is a one-byte tag (b"P" pid, b"E" pickled error, b"R" ready, ...), the payload
length as a big-endian uint32, then the payload.  It runs on the socketpairs and pipes of
the namespace handshake (labkit.ns.apply), the spawn helpers and the fork server
(labkit.ns._spawn, _forkserver) and the runtime's init sync pipe
(labkit.engine.runtime.create, exec).  It lives in labkit.ns, the lowest room that speaks
it; the runtime imports it from here.  Only os, select and struct: the runtime pays for
every import on each container start (tests/unit/test_import_cost.py).
"""

from __future__ import annotations

import errno
import os
import select
import struct

from labkit import errors

__all__ = ["HEADER", "MAX_PAYLOAD", "Reader", "pack", "read_to_eof", "split"]

HEADER = struct.Struct("!cI")  # tag byte, uint32 length: 5 bytes, no padding in "!" order
MAX_PAYLOAD = (1 << 32) - 1
_CHUNK = 1 << 16  # large reads, so a SOCK_SEQPACKET message is never truncated


def pack(tag: bytes, payload: bytes = b"") -> bytes:
    """One frame; ValueError for a tag that is not one byte or a payload over 4 GiB - 1."""
    if len(tag) != 1:
        raise ValueError(f"frame tag {tag!r} is not one byte")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(tag, len(payload)) + payload


def split(buf: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The complete (tag, payload) frames at the start of ``buf``, and the rest."""
    out: list[tuple[bytes, bytes]] = []
    i, size = 0, HEADER.size
    while len(buf) - i >= size:
        tag, n = HEADER.unpack_from(buf, i)
        if len(buf) - i - size < n:
            break
        out.append((tag, buf[i + size:i + size + n]))
        i += size + n
    return out, buf[i:]


def _read(fd: int, timeout: float | None, what: str) -> bytes:
    if timeout is not None:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise errors.from_errno(errno.ETIMEDOUT, "read", what,
                                    hint=f"the peer did not answer within {timeout:.0f}s")
    try:
        return os.read(fd, _CHUNK)
    except OSError as err:
        raise errors.from_errno(err.errno or errno.EIO, "read", what) from None


class Reader:
    """Consecutive frames from ``fd``, keeping what was read ahead of the current one."""

    def __init__(self, fd: int, what: str) -> None:
        self.fd, self.what, self._buf = fd, what, b""
        self._ready: list[tuple[bytes, bytes]] = []

    def next(self, timeout: float | None = None) -> tuple[bytes, bytes] | None:
        """The next (tag, payload); None at EOF.  A frame cut by EOF raises SyscallError
        (EPIPE), so does a peer silent for ``timeout`` seconds (ETIMEDOUT)."""
        while not self._ready:
            chunk = _read(self.fd, timeout, self.what)
            if not chunk:
                if self._buf:
                    raise errors.from_errno(errno.EPIPE, "read", f"{self.what}: truncated frame")
                return None
            self._ready, self._buf = split(self._buf + chunk)
        return self._ready.pop(0)


def read_to_eof(fd: int, timeout: float | None, what: str) -> list[tuple[bytes, bytes]]:
    """Every frame on ``fd`` until EOF (all writers closed it); ``timeout`` bounds each wait."""
    reader, out = Reader(fd, what), []
    while (frame := reader.next(timeout)) is not None:
        out.append(frame)
    return out
