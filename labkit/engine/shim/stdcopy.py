"""Docker's stdout/stderr stream framing (moby pkg/stdcopy), the one copy in labkit.

Without a terminal, attach, exec, logs and a shim's io socket carry stdout and stderr on
one byte stream as frames: an 8-byte header ``[stream u8][0 0 0][length u32 big-endian]``
then ``length`` bytes.  Stream 0 is stdin, 1 stdout, 2 stderr (moby's stdcopy.StdType;
the Docker CLI and docker-py's utils/socket.py read it so).  With a terminal the bytes are
raw and this module is not used.

It lives in the shim's room because the shim is the lowest room that writes it (its io
socket, see supervisor.proto); supervisor, containers, daemon, client and cli import it
from here (DESIGN.md: a room imports only rooms above it).
"""

from __future__ import annotations

import struct

__all__ = ["HEADER", "MAX_PAYLOAD", "STDERR", "STDIN", "STDOUT", "STREAMS", "Decoder",
           "decode_all", "encode", "split"]

HEADER = struct.Struct(">BxxxL")
STDIN, STDOUT, STDERR = 0, 1, 2
STREAMS = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR}
MAX_PAYLOAD = (1 << 32) - 1  # what the uint32 length can say


def encode(stream: int, payload: bytes) -> bytes:
    """One frame of ``payload`` on ``stream``; ValueError for a stream or a length the
    header cannot carry (a frame longer than 4 GiB - 1 must be split by the caller)."""
    if stream not in (STDIN, STDOUT, STDERR):
        raise ValueError(f"stream {stream} is not 0 (stdin), 1 (stdout) or 2 (stderr)")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(stream, len(payload)) + payload


def split(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The complete (stream, payload) frames at the start of ``buf``, and the rest."""
    out: list[tuple[int, bytes]] = []
    i, size = 0, HEADER.size
    while len(buf) - i >= size:
        stream, n = HEADER.unpack_from(buf, i)
        if len(buf) - i - size < n:
            break
        out.append((stream, bytes(buf[i + size:i + size + n])))
        i += size + n
    return out, bytes(buf[i:])


class Decoder:
    """Incremental decoder: feed bytes as they arrive, get whole (stream, payload) frames.

    Bytes are appended to one bytearray and a consumed prefix is cut once per feed, so a
    large frame arriving in many reads costs linear time, not a copy per read."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out: list[tuple[int, bytes]] = []
        buf, i, size = self._buf, 0, HEADER.size
        while len(buf) - i >= size:
            stream, n = HEADER.unpack_from(buf, i)
            if len(buf) - i - size < n:
                break
            out.append((stream, bytes(buf[i + size:i + size + n])))
            i += size + n
        if i:
            del buf[:i]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back (non-zero at EOF means a cut stream)."""
        return len(self._buf)


def decode_all(data: bytes) -> list[tuple[int, bytes]]:
    """Split a complete framed body into (stream, payload) pairs; ValueError when it ends
    inside a frame."""
    frames, rest = split(data)
    if rest:
        raise ValueError(f"truncated frame at byte {len(data) - len(rest)}")
    return frames
