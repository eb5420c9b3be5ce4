"""Docker's ``local`` log driver: a compact binary file with rotation, and its reader.

On disk (moby daemon/logger/local, the same framing its dual-logging cache uses), each
record is::

    uint32 big-endian N | N bytes: protobuf LogEntry | uint32 big-endian N

LogEntry is moby's api/types/plugins/logdriver/entry.proto: ``source`` (1, string),
``time_nano`` (2, int64), ``line`` (3, bytes, without its newline), ``partial`` (4, bool: the
line had no newline).  The length after the record lets a reader walk the file backwards.
Both ends are encoded by hand below (a few varints): pulling in a protobuf runtime would
grow every shim for ten lines of work.

Rotation is the json-file writer's (``<path>.1[.gz]`` ...); the driver's defaults are moby's
local driver's: max-size 20m, max-file 5, compress true.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from labkit.engine.logs.jsonfile import JsonFileWriter, parse_bool, parse_size, rfc3339nano

if TYPE_CHECKING:  # the reader's dataclass stays out of the shim (logs/__init__.py)
    from labkit.engine.logs.reader import LogEntry

DEFAULTS = {"max-size": "20m", "max-file": "5", "compress": "true"}
OPTIONS = ("max-size", "max-file", "compress")
_MAX_RECORD = 1 << 20  # a record is at most a 16 KiB line plus a few bytes; more is damage


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_entry(source: str, ns: int, line: bytes, partial: bool) -> bytes:
    """One protobuf LogEntry (fields 1-4, proto3: defaults omitted)."""
    src = source.encode()
    body = b"\x0a" + _varint(len(src)) + src + b"\x10" + _varint(ns)
    body += b"\x1a" + _varint(len(line)) + line
    if partial:
        body += b"\x20\x01"
    return body


def frame(source: str, ns: int, msg: bytes) -> bytes:
    """A record for ``msg`` (a LineSplitter message: its newline, if any, is the end)."""
    partial = not msg.endswith(b"\n")
    body = encode_entry(source, ns, msg if partial else msg[:-1], partial)
    n = len(body).to_bytes(4, "big")
    return n + body + n


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def decode_entry(body: bytes) -> tuple[str, int, bytes, bool]:
    """(source, time_nano, line, partial) of a LogEntry; unknown fields skipped."""
    source, ns, line, partial = "stdout", 0, b"", False
    i = 0
    while i < len(body):
        key, i = _read_varint(body, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _read_varint(body, i)
            if field == 2:
                ns = val
            elif field == 4:
                partial = bool(val)
        elif wire == 2:
            ln, i = _read_varint(body, i)
            data = body[i:i + ln]
            if len(data) != ln:
                raise ValueError("truncated field")
            i += ln
            if field == 1:
                source = data.decode("utf-8", "replace")
            elif field == 3:
                line = data
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    return source, ns, line, partial


def check_options(options: dict[str, str]) -> tuple[int, int, bool]:
    """The local driver's --log-opt map (defaults filled in) -> (max_size, max_file,
    compress); moby's words for a bad value."""
    from labkit.errors import InvalidArgumentError

    for key in options:
        if key not in OPTIONS:
            raise InvalidArgumentError("unknown log opt", f"unknown log opt '{key}' for local "
                                       "log driver")
    opts = {**DEFAULTS, **options}
    max_size = parse_size(opts["max-size"])
    try:
        max_file = int(opts["max-file"])
    except ValueError:
        raise InvalidArgumentError("strconv.Atoi", f'strconv.Atoi: parsing '
                                   f'"{opts["max-file"]}": invalid syntax') from None
    if max_file < 1:
        raise InvalidArgumentError("max-file", "max-file cannot be less than 1")
    compress = parse_bool(opts["compress"], "log-opt compress")
    return max_size, max_file, compress and max_size > 0


class LocalWriter(JsonFileWriter):
    """The local format with the json-file writer's rotation (only the records differ)."""

    def encode(self, stream: str, msg: bytes, ns: int) -> bytes:
        return frame(stream, ns, msg)

    @classmethod
    def from_options(cls, path: str, options: dict[str, str],
                     attrs: dict[str, str] | None = None) -> LocalWriter:
        """(``attrs`` stays unused: the local driver takes no labels/env/tag, moby's neither,
        and check_options refuses them.)"""
        max_size, max_file, compress = check_options(options)
        return cls(path, max_size=max_size, max_file=max_file, compress=compress)


# -- reading ----------------------------------------------------------------------------

def _records(fh: IO[bytes], end: int = -1) -> Iterator[tuple[str, int, bytes, bool]]:
    """The whole records of an open file, oldest first (a torn last one is left out)."""
    pos = 0
    while end < 0 or pos < end:
        head = fh.read(4)
        if len(head) < 4:
            return
        n = int.from_bytes(head, "big")
        if n > _MAX_RECORD:
            return  # damaged: stop rather than allocate what the length claims
        rest = fh.read(n + 4)
        if len(rest) < n + 4 or (end >= 0 and pos + 8 + n > end):
            return
        pos += 8 + n
        try:
            yield decode_entry(rest[:n])
        except ValueError:
            continue  # one damaged record: the framing still holds, go on


def _entry(rec: tuple[str, int, bytes, bool]) -> LogEntry:
    from labkit.engine.logs.reader import LogEntry

    source, ns, line, partial = rec
    return LogEntry(source, line if partial else line + b"\n", rfc3339nano(ns), ns)


def scan(path: str, *, tail: int = -1, since: int = 0, until: int = 0, stdout: bool = True,
         stderr: bool = True, end: int = -1) -> Iterator[LogEntry]:
    """Like reader.scan for the local format: oldest first, the last ``tail`` of those in
    [since, until].  Tail keeps only ``tail`` entries in memory while reading forwards
    (the files are bounded by max-size x max-file)."""
    from labkit.engine.logs.reader import _open, log_files

    streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}

    def gen() -> Iterator[LogEntry]:
        for name in log_files(path):
            try:
                fh = _open(name)
            except FileNotFoundError:
                continue
            with fh:
                for rec in _records(fh, end if name == path else -1):
                    if rec[0] in streams and rec[1] >= since and (until <= 0 or rec[1] <= until):
                        yield _entry(rec)
    if tail < 0:
        yield from gen()
        return
    if tail == 0:
        return
    yield from deque(gen(), maxlen=tail)


class LocalFollower:
    """reader.Follower for the local format: poll() returns the records written since."""

    def __init__(self, path: str, *, since: int = 0, stdout: bool = True,
                 stderr: bool = True, from_end: bool = False, max_read: int = -1) -> None:
        self.path = path
        self.since = since
        self.streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
        self.max_read = max_read
        self.fh: IO[bytes] | None = None
        self.ino = -1
        self.partial = b""
        self.more = False
        self._open()
        if from_end:
            self.seek(self.line_end())

    def _open(self) -> None:
        try:
            self.fh = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        except FileNotFoundError:
            return
        self.ino = os.fstat(self.fh.fileno()).st_ino

    def line_end(self) -> int:
        """The offset just past the last whole record (walks the length prefixes)."""
        if self.fh is None:
            return 0
        size = os.fstat(self.fh.fileno()).st_size
        pos = 0
        with open(self.path, "rb") as fh:
            while pos + 4 <= size:
                fh.seek(pos)
                n = int.from_bytes(fh.read(4), "big")
                if n > _MAX_RECORD or pos + 8 + n > size:
                    break
                pos += 8 + n
        self.fh.seek(pos)
        return pos

    def seek(self, offset: int) -> None:
        if self.fh is not None:
            self.fh.seek(offset)
            self.partial = b""

    def _drain(self) -> list[LogEntry]:
        out: list[LogEntry] = []
        if self.fh is None:
            return out
        chunk = self.fh.read(self.max_read) if self.max_read > 0 else self.fh.read()
        self.more = self.max_read > 0 and len(chunk) == self.max_read
        buf = self.partial + chunk
        i = 0
        while len(buf) - i >= 4:
            n = int.from_bytes(buf[i:i + 4], "big")
            if n > _MAX_RECORD:
                i = len(buf)  # damaged beyond repair: drop what is here
                break
            if len(buf) - i < 8 + n:
                break
            try:
                rec = decode_entry(buf[i + 4:i + 4 + n])
            except ValueError:
                rec = None
            i += 8 + n
            if rec is not None and rec[0] in self.streams and rec[1] >= self.since:
                out.append(_entry(rec))
        self.partial = buf[i:]
        return out

    def poll(self) -> list[LogEntry]:
        out = self._drain()
        if self.more:
            return out
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out
        if self.fh is None or st.st_ino != self.ino:
            if self.fh is not None:
                self.fh.close()
            self.partial = b""
            self._open()
            out += self._drain()
        elif st.st_size < self.fh.tell():
            self.fh.seek(0)
            self.partial = b""
            out += self._drain()
        return out

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
