"""Docker's stdcopy framing for non-tty streams: [stream u8][0 0 0][length u32 BE][payload].

stream 0 = stdin, 1 = stdout, 2 = stderr (moby pkg/stdcopy).  With a terminal the stream is
raw bytes instead.
"""

from __future__ import annotations

import struct

__all__ = ["HEADER", "STDERR", "STDOUT", "decode_all", "encode"]

HEADER = struct.Struct(">BxxxL")
STDIN, STDOUT, STDERR = 0, 1, 2
STREAMS = {"stdout": STDOUT, "stderr": STDERR}


def encode(stream: int, payload: bytes) -> bytes:
    """One frame (an empty payload gives an empty result: Docker never sends empty frames)."""
    return HEADER.pack(stream, len(payload)) + payload if payload else b""


def decode_all(data: bytes) -> list[tuple[int, bytes]]:
    """Split a complete framed buffer into (stream, payload) pairs; for tests and clients."""
    out, i = [], 0
    while i + HEADER.size <= len(data):
        stream, n = HEADER.unpack_from(data, i)
        out.append((stream, data[i + HEADER.size:i + HEADER.size + n]))
        i += HEADER.size + n
    if i != len(data):
        raise ValueError(f"truncated frame at byte {i}")
    return out
