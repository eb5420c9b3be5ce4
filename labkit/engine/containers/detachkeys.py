"""Detach keys: the key sequence that leaves an attached TTY session (default ctrl-p,ctrl-q).

The spelling is moby/term's (``ToBytes``): comma-separated keys, each one character,
``ctrl-@``, ``ctrl-a``..``ctrl-z``, ``ctrl-[``, ``ctrl-\\``, ``ctrl-]``, ``ctrl-^``,
``ctrl-_`` or ``DEL``.  ``DetachMatcher`` finds the sequence in a stdin stream the way moby's
escapeProxy does, but also when several keys arrive in one read.
"""

from __future__ import annotations

from labkit import errors

__all__ = ["DEFAULT_DETACH_KEYS", "DetachMatcher", "parse_detach_keys"]

DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p,ctrl-q: moby's defaultEscapeSequence
# moby/term ASCII: "ctrl-@" is 0, "ctrl-a".."ctrl-z" 1..26, then ctrl-[ \\ ] ^ _ (27..31)
_CTRL = {f"ctrl-{c}": i for i, c in enumerate("@abcdefghijklmnopqrstuvwxyz[\\]^_")}


def parse_detach_keys(keys: str) -> bytes:
    """A detach-keys string ("ctrl-p,ctrl-q", "a,ctrl-x", "DEL") as bytes (moby/term
    ToBytes); InvalidArgumentError naming the bad key."""
    out = bytearray()
    for key in keys.split(","):
        if len(key) == 1:
            out.append(ord(key) & 0xFF)
        elif key in _CTRL:
            out.append(_CTRL[key])
        elif key == "DEL":
            out.append(127)
        else:
            raise errors.InvalidArgumentError("detachKeys", f"Unknown character: '{key}'")
    return bytes(out)


class DetachMatcher:
    """Find the detach sequence in a stdin stream, across chunk boundaries.

    ``feed`` returns the bytes to pass on and whether the sequence completed.  Bytes that
    may start the sequence are held back until the next chunk decides (moby escapeProxy).
    """

    def __init__(self, keys: bytes) -> None:
        self.keys, self.pos = keys, 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        out = bytearray()
        for b in data:
            if b == self.keys[self.pos]:
                self.pos += 1
                if self.pos == len(self.keys):
                    self.pos = 0
                    return bytes(out), True
                continue
            if self.pos:  # a partial match after all: give the held bytes back
                out += self.keys[:self.pos]
                self.pos = 0
                if b == self.keys[0]:
                    self.pos = 1
                    continue
            out.append(b)
        return bytes(out), False
