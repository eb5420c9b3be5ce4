"""The part of MessagePack (github.com/msgpack/msgpack/blob/master/spec.md) fluentd needs.

Fluentd's forward protocol frames events as MessagePack.  The encoder covers nil, bool,
int, float, str, bin, array and map plus the ext type fluentd's EventTime uses; the decoder
(for receivers: tests and the notebook's lab helper) reads the same and refuses anything
else.  Written here rather than depending on the ``msgpack`` package: ~100 lines, and the
shim that sends the events stays free of another C extension.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["ExtType", "Unpacker", "packb"]


class ExtType:
    """An ext value (fluentd EventTime is code 0, 8 bytes: uint32 sec, uint32 nsec)."""

    __slots__ = ("code", "data")

    def __init__(self, code: int, data: bytes) -> None:
        self.code, self.data = code, data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExtType) and (self.code, self.data) == (other.code, other.data)

    def __hash__(self) -> int:
        return hash((self.code, self.data))


def _len(n: int, fix: int, fixmax: int, c8: int | None, c16: int, c32: int) -> bytes:
    if n <= fixmax:
        return bytes([fix | n])
    if c8 is not None and n < 0x100:
        return bytes([c8, n])
    if n < 0x10000:
        return bytes([c16]) + struct.pack(">H", n)
    return bytes([c32]) + struct.pack(">I", n)


def packb(obj: Any) -> bytes:
    """``obj`` as MessagePack bytes."""
    if obj is None:
        return b"\xc0"
    if obj is True:
        return b"\xc3"
    if obj is False:
        return b"\xc2"
    if isinstance(obj, int):
        if 0 <= obj < 0x80:
            return bytes([obj])
        if -32 <= obj < 0:
            return struct.pack(">b", obj)
        if obj >= 0:
            return b"\xcf" + struct.pack(">Q", obj)
        return b"\xd3" + struct.pack(">q", obj)
    if isinstance(obj, float):
        return b"\xcb" + struct.pack(">d", obj)
    if isinstance(obj, str):
        raw = obj.encode("utf-8", "surrogateescape")
        return _len(len(raw), 0xA0, 31, 0xD9, 0xDA, 0xDB) + raw
    if isinstance(obj, bytes | bytearray):
        return _len(len(obj), 0xC4, -1, 0xC4, 0xC5, 0xC6) + bytes(obj)
    if isinstance(obj, list | tuple):
        return _len(len(obj), 0x90, 15, None, 0xDC, 0xDD) + b"".join(packb(x) for x in obj)
    if isinstance(obj, dict):
        return _len(len(obj), 0x80, 15, None, 0xDE, 0xDF) + b"".join(
            packb(k) + packb(v) for k, v in obj.items())
    if isinstance(obj, ExtType):
        if len(obj.data) == 8:
            return b"\xd7" + struct.pack(">b", obj.code) + obj.data
        return b"\xc7" + struct.pack(">Bb", len(obj.data), obj.code) + obj.data
    raise TypeError(f"cannot pack {type(obj).__name__}")


class _Need(Exception):
    """More bytes are needed to finish the value."""


class Unpacker:
    """Feed bytes, take whole values: ``feed(data)``, then ``for v in unpacker``."""

    def __init__(self, max_len: int = 1 << 24) -> None:
        self.buf = b""
        self.max_len = max_len  # a length field beyond this is damage (or an attack)

    def feed(self, data: bytes) -> None:
        self.buf += data

    def __iter__(self) -> Unpacker:
        return self

    def __next__(self) -> Any:
        try:
            value, pos = self._value(0, 0)
        except _Need:
            raise StopIteration from None
        self.buf = self.buf[pos:]
        return value

    def _take(self, pos: int, n: int) -> bytes:
        if n > self.max_len:
            raise ValueError(f"msgpack length {n} too large")
        if len(self.buf) < pos + n:
            raise _Need
        return self.buf[pos:pos + n]

    def _value(self, pos: int, depth: int) -> tuple[Any, int]:
        if depth > 32:
            raise ValueError("msgpack nesting too deep")
        b = self._take(pos, 1)[0]
        pos += 1
        if b < 0x80:
            return b, pos
        if b >= 0xE0:
            return b - 0x100, pos
        if 0x80 <= b <= 0x8F:
            return self._map(pos, b & 0x0F, depth)
        if 0x90 <= b <= 0x9F:
            return self._array(pos, b & 0x0F, depth)
        if 0xA0 <= b <= 0xBF:
            return self._str(pos, b & 0x1F)
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if b in simple:
            return simple[b], pos
        sized = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h",
                 0xD2: ">i", 0xD3: ">q", 0xCA: ">f", 0xCB: ">d"}
        if b in sized:
            fmt = sized[b]
            size = struct.calcsize(fmt)
            return struct.unpack(fmt, self._take(pos, size))[0], pos + size
        lens = {0xD9: (">B", "str"), 0xDA: (">H", "str"), 0xDB: (">I", "str"),
                0xC4: (">B", "bin"), 0xC5: (">H", "bin"), 0xC6: (">I", "bin"),
                0xDC: (">H", "arr"), 0xDD: (">I", "arr"), 0xDE: (">H", "map"),
                0xDF: (">I", "map")}
        if b in lens:
            fmt, kind = lens[b]
            size = struct.calcsize(fmt)
            n = struct.unpack(fmt, self._take(pos, size))[0]
            pos += size
            if kind == "str":
                return self._str(pos, n)
            if kind == "bin":
                return self._take(pos, n), pos + n
            return (self._array if kind == "arr" else self._map)(pos, n, depth)
        fixext = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
        if b in fixext:
            code = struct.unpack(">b", self._take(pos, 1))[0]
            return ExtType(code, self._take(pos + 1, fixext[b])), pos + 1 + fixext[b]
        if b == 0xC7:
            n, code = struct.unpack(">Bb", self._take(pos, 2))
            return ExtType(code, self._take(pos + 2, n)), pos + 2 + n
        raise ValueError(f"msgpack type byte 0x{b:02x} not supported")

    def _str(self, pos: int, n: int) -> tuple[str, int]:
        return self._take(pos, n).decode("utf-8", "replace"), pos + n

    def _array(self, pos: int, n: int, depth: int) -> tuple[list[Any], int]:
        out = []
        for _ in range(n):
            v, pos = self._value(pos, depth + 1)
            out.append(v)
        return out, pos

    def _map(self, pos: int, n: int, depth: int) -> tuple[dict[Any, Any], int]:
        out = {}
        for _ in range(n):
            k, pos = self._value(pos, depth + 1)
            v, pos = self._value(pos, depth + 1)
            if isinstance(k, list | dict):
                raise ValueError("msgpack map key must be a scalar")  # noqa: TRY004 - bad data
            out[k] = v
        return out, pos
