"""Reading Docker's multiplexed streams on the client side (docker-py ``utils/socket.py``).

Without a tty, attach, exec and logs carry stdout and stderr on one connection in the
frames of labkit.engine.shim.stdcopy (the one copy of that format); with a tty the bytes
are raw.  These helpers hide the difference from the resource modules.
"""

from __future__ import annotations

from labkit.engine.shim.stdcopy import STDERR, STDOUT, Decoder

__all__ = ["demux_all"]


def demux_all(data: bytes, tty: bool = False) -> tuple[bytes, bytes]:
    """Split a whole framed body into (stdout, stderr)."""
    if tty:
        return data, b""
    parts: dict[int, list[bytes]] = {STDOUT: [], STDERR: []}
    for stream, payload in Decoder().feed(data):
        parts.setdefault(stream, []).append(payload)
    return b"".join(parts[STDOUT]), b"".join(parts[STDERR])
