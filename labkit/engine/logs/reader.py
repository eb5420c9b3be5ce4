"""Read json-file logs for `docker logs`: tail N, since/until, stdout/stderr, follow.

Files are read oldest first: ``<path>.<k>`` ... ``<path>.1``, then ``<path>`` (a rotated file
may be gzip-compressed, ``<path>.<n>.gz``).  Nothing is read whole: records are produced one
at a time (``scan``), and ``tail`` reads plain files backwards from their end, so a 1 GiB log
costs the daemon neither its memory nor, read in a worker thread, its event loop.  Following a
log survives rotation: when ``<path>`` is replaced (new inode) or truncated, the rest of the
old file is read through the still-open descriptor before the new one is opened, so no line
is skipped (the idea of moby's loggerutils follow.go, written with polling: inotify would
need ctypes or another dependency, and a 0.1 s poll costs nothing measurable).
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, cast

_BLOCK = 1 << 16  # bytes read per step backwards (tail)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One record: which stream, the bytes logged, the time (RFC 3339 text and unix ns),
    and json-file's attributes (labels/env/tag) as sorted (key, value) pairs."""

    stream: str
    log: bytes
    time: str
    ns: int
    attrs: tuple[tuple[str, str], ...] = ()


def parse_time(text: str) -> int:
    """RFC 3339 (with up to 9 fractional digits, "Z" or +hh:mm) -> unix nanoseconds."""
    import calendar

    t = text.strip()
    off = 0
    if t.endswith(("Z", "z")):
        t = t[:-1]
    elif len(t) > 6 and t[-6] in "+-" and t[-3] == ":":
        sign = 1 if t[-6] == "+" else -1
        off = sign * (int(t[-5:-3]) * 3600 + int(t[-2:]) * 60)
        t = t[:-6]
    base, _, frac = t.partition(".")
    try:
        st = time.strptime(base, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        from labkit.errors import InvalidArgumentError

        raise InvalidArgumentError("time", f"{text!r} is not RFC 3339") from None
    ns = (calendar.timegm(st) - off) * 10**9
    return ns + int((frac + "000000000")[:9]) if frac else ns


def _entry(line: bytes) -> LogEntry | None:
    try:
        rec = json.loads(line)
        t = rec.get("time", "")
        attrs = rec.get("attrs")
        pairs = tuple(sorted((str(k), str(v)) for k, v in attrs.items())) if isinstance(
            attrs, dict) else ()
        return LogEntry(rec.get("stream", "stdout"), rec.get("log", "").encode(), t,
                        parse_time(t) if t else 0, pairs)
    except (ValueError, AttributeError):
        return None  # a torn last line of a crashed writer: skip it, as Docker does


def log_files(path: str) -> list[str]:
    """The rotated files of ``path`` that exist (plain or .gz), oldest first, then ``path``."""
    rotated = []
    n = 1
    while True:
        name = f"{path}.{n}"
        if os.path.exists(name):  # plain wins: a crash between gzip and unlink left it whole
            rotated.append(name)
        elif os.path.exists(name + ".gz"):
            rotated.append(name + ".gz")
        else:
            break
        n += 1
    return rotated[::-1] + ([path] if os.path.exists(path) else [])


def _open(name: str) -> IO[bytes]:
    if name.endswith(".gz"):
        return cast(IO[bytes], gzip.open(name, "rb"))
    return open(name, "rb")


def _want(e: LogEntry, since: int, until: int, streams: frozenset[str]) -> bool:
    return e.stream in streams and e.ns >= since and (until <= 0 or e.ns <= until)


def _streams(stdout: bool, stderr: bool) -> frozenset[str]:
    return frozenset(s for s, on in (("stdout", stdout), ("stderr", stderr)) if on)


def _forward(name: str, end: int = -1) -> Iterator[bytes]:
    """The lines of one file oldest first (of its first ``end`` bytes when end >= 0)."""
    try:
        fh = _open(name)
    except FileNotFoundError:  # rotated away meanwhile
        return
    with fh:
        left = end
        for line in fh:
            if end >= 0:
                if left <= 0:
                    return
                line = line[:left]
                left -= len(line)
            yield line


def _backward(name: str, end: int = -1) -> Iterator[bytes]:
    """The lines of one file newest first, reading blocks from the end (gzip: forward)."""
    if name.endswith(".gz"):
        yield from reversed(list(_forward(name, end)))  # a rotated file: max-size bounded
        return
    try:
        fh = open(name, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with fh:
        pos = os.fstat(fh.fileno()).st_size if end < 0 else end
        rest = b""
        while pos > 0:
            step = min(_BLOCK, pos)
            pos -= step
            fh.seek(pos)
            lines = (fh.read(step) + rest).split(b"\n")
            rest = lines.pop(0)  # may continue in the block before
            for line in reversed(lines):
                if line:
                    yield line
        if rest:
            yield rest


def scan(path: str, *, tail: int = -1, since: int = 0, until: int = 0, stdout: bool = True,
         stderr: bool = True, end: int = -1) -> Iterator[LogEntry]:
    """The records of ``path`` and its rotations, oldest first, one at a time: the last
    ``tail`` (all when < 0) of those with since <= ns <= until (unix ns; 0 = unbounded).
    ``end`` limits the current file to its first ``end`` bytes (where a follower starts)."""
    streams = _streams(stdout, stderr)
    files = log_files(path)
    bound = {path: end}
    if tail < 0:
        for name in files:
            for line in _forward(name, bound.get(name, -1)):
                e = _entry(line)
                if e is not None and _want(e, since, until, streams):
                    yield e
        return
    newest: list[LogEntry] = []
    for name in reversed(files):
        for line in _backward(name, bound.get(name, -1)):
            if len(newest) >= tail:
                break
            e = _entry(line)
            if e is None:
                continue
            if e.ns and e.ns < since:  # records are in time order: nothing older can match
                yield from reversed(newest)
                return
            if _want(e, since, until, streams):
                newest.append(e)
        if len(newest) >= tail:
            break
    yield from reversed(newest)


def read_logs(path: str, *, tail: int = -1, since: int = 0, until: int = 0,
              stdout: bool = True, stderr: bool = True) -> list[LogEntry]:
    """``scan`` as a list (small logs, tests)."""
    return list(scan(path, tail=tail, since=since, until=until, stdout=stdout, stderr=stderr))


class Follower:
    """Incremental reader of a growing (and rotating) log: poll() returns what is new."""

    def __init__(self, path: str, *, since: int = 0, stdout: bool = True,
                 stderr: bool = True, from_end: bool = False, max_read: int = -1) -> None:
        self.path = path
        self.since = since
        self.streams = _streams(stdout, stderr)
        self.max_read = max_read  # bytes per poll (-1: all); a caller polls again for more
        self.fh: BinaryIO | None = None
        self.ino = -1
        self.partial = b""
        self.more = False  # the last poll stopped at max_read: more is there now
        self._open(seek_end=from_end)

    def _open(self, seek_end: bool = False) -> None:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        except FileNotFoundError:
            return
        self.fh = fh
        self.ino = os.fstat(fh.fileno()).st_ino
        if seek_end:
            fh.seek(self.line_end())

    def line_end(self) -> int:
        """The offset just past the last complete record of the open file (0 if none)."""
        if self.fh is None:
            return 0
        pos = size = os.fstat(self.fh.fileno()).st_size
        while pos > 0:
            step = min(_BLOCK, pos)
            pos -= step
            self.fh.seek(pos)
            nl = self.fh.read(step).rfind(b"\n")
            if nl >= 0:
                self.fh.seek(min(size, pos + nl + 1))
                return pos + nl + 1
        self.fh.seek(0)
        return 0

    def seek(self, offset: int) -> None:
        """Go on from ``offset`` of the open file (a record boundary from line_end)."""
        if self.fh is not None:
            self.fh.seek(offset)
            self.partial = b""

    def _drain(self) -> list[LogEntry]:
        out: list[LogEntry] = []
        if self.fh is None:
            return out
        chunk = self.fh.read(self.max_read) if self.max_read > 0 else self.fh.read()
        self.more = self.max_read > 0 and len(chunk) == self.max_read
        data = self.partial + chunk
        lines = data.split(b"\n")
        self.partial = lines.pop()  # a line the writer has not finished yet
        for line in lines:
            e = _entry(line)
            if e is not None and _want(e, self.since, 0, self.streams):
                out.append(e)
        return out

    def poll(self) -> list[LogEntry]:
        """Entries written since the last call (rotation and truncation handled)."""
        out = self._drain()
        if self.more:
            return out  # the current file first: a rotation is looked at when it is read
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
        elif st.st_size < self.fh.tell():  # truncated in place (max-file 1)
            self.fh.seek(0)
            self.partial = b""
            out += self._drain()
        return out

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def follow(path: str, *, tail: int = -1, since: int = 0, stdout: bool = True,
           stderr: bool = True, stop: Callable[[], bool] = lambda: False,
           interval: float = 0.1) -> Iterator[LogEntry]:
    """`docker logs -f`: the existing records (tail/since applied), then new ones as they
    are written, until ``stop()`` is true (checked every ``interval`` seconds).

    The async daemon can drive a Follower itself (poll() + asyncio.sleep) instead."""
    f = Follower(path, since=since, stdout=stdout, stderr=stderr)
    try:
        first = f.poll()  # the current file; older rotations come from read_logs below
        older: list[LogEntry] = []
        if tail != 0:
            for rf in log_files(path)[:-1]:
                older += read_logs(rf, since=since, stdout=stdout, stderr=stderr)
        backlog = older + first
        if tail >= 0:
            backlog = backlog[len(backlog) - tail:] if tail else []
        yield from backlog
        while not stop():
            new = f.poll()
            if new:
                yield from new
            else:
                time.sleep(interval)
    finally:
        f.close()
