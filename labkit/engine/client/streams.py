"""Docker's multiplexed stream format (docker-py ``utils/socket.py``, moby ``stdcopy``).

Without a tty, attach, exec and logs carry stdout and stderr on one connection as frames:
an 8-byte header ``[stream, 0, 0, 0, length (uint32 big-endian)]`` then ``length`` bytes;
stream 1 is stdout, 2 is stderr (0 would be stdin).  With a tty the bytes are raw.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

__all__ = ["STDERR", "STDOUT", "FrameDecoder", "demux_all", "frame", "frames"]

STDIN, STDOUT, STDERR = 0, 1, 2
_HEADER = struct.Struct(">BxxxL")


def frame(stream: int, payload: bytes) -> bytes:
    """Encode one frame (the daemon's side; used by tests and fakes)."""
    return _HEADER.pack(stream, len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, get whole (stream, payload) frames."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out: list[tuple[int, bytes]] = []
        while len(self._buf) >= _HEADER.size:
            stream, length = _HEADER.unpack_from(self._buf)
            if len(self._buf) < _HEADER.size + length:
                break
            out.append((stream, self._buf[_HEADER.size:_HEADER.size + length]))
            self._buf = self._buf[_HEADER.size + length:]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back (non-zero at EOF means a cut stream)."""
        return len(self._buf)


def frames(read: Callable[[], bytes], tty: bool = False) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) pairs from ``read()`` until it returns b""; raw stdout with a tty."""
    dec = FrameDecoder()
    while data := read():
        if tty:
            yield STDOUT, data
        else:
            yield from dec.feed(data)


def demux_all(data: bytes, tty: bool = False) -> tuple[bytes, bytes]:
    """Split a whole framed body into (stdout, stderr)."""
    if tty:
        return data, b""
    parts: dict[int, list[bytes]] = {STDOUT: [], STDERR: []}
    for stream, payload in FrameDecoder().feed(data):
        parts.setdefault(stream, []).append(payload)
    return b"".join(parts[STDOUT]), b"".join(parts[STDERR])
