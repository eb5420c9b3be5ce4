"""Read json-file logs for `docker logs`: tail N, since/until, stdout/stderr, follow.

Files are read oldest first: ``<path>.<k>`` ... ``<path>.1``, then ``<path>``.  Following a
log survives rotation: when ``<path>`` is replaced (new inode) or truncated, the rest of the
old file is read through the still-open descriptor before the new one is opened, so no line
is skipped (the idea of moby's loggerutils follow.go, written with polling: inotify would
need ctypes or another dependency, and a 0.1 s poll costs nothing measurable).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One record: which stream, the bytes logged, the time (RFC 3339 text and unix ns)."""

    stream: str
    log: bytes
    time: str
    ns: int


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
        return LogEntry(rec.get("stream", "stdout"), rec.get("log", "").encode(), t,
                        parse_time(t) if t else 0)
    except (ValueError, AttributeError):
        return None  # a torn last line of a crashed writer: skip it, as Docker does


def log_files(path: str) -> list[str]:
    """The rotated files of ``path`` that exist, oldest first, then ``path``."""
    rotated = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        rotated.append(f"{path}.{n}")
        n += 1
    return rotated[::-1] + ([path] if os.path.exists(path) else [])


def _want(e: LogEntry, since: int, until: int, streams: frozenset[str]) -> bool:
    return e.stream in streams and e.ns >= since and (until <= 0 or e.ns <= until)


def _streams(stdout: bool, stderr: bool) -> frozenset[str]:
    return frozenset(s for s, on in (("stdout", stdout), ("stderr", stderr)) if on)


def read_logs(path: str, *, tail: int = -1, since: int = 0, until: int = 0,
              stdout: bool = True, stderr: bool = True) -> list[LogEntry]:
    """The records of ``path`` (and its rotations): the last ``tail`` (all when < 0) of
    those with since <= ns <= until (unix nanoseconds; 0 = unbounded)."""
    streams = _streams(stdout, stderr)
    keep: deque[LogEntry] = deque(maxlen=tail if tail >= 0 else None)
    for f in log_files(path):
        with open(f, "rb") as fh:
            for line in fh:
                e = _entry(line)
                if e is not None and _want(e, since, until, streams):
                    keep.append(e)
    return list(keep)


class Follower:
    """Incremental reader of a growing (and rotating) log: poll() returns what is new."""

    def __init__(self, path: str, *, since: int = 0, stdout: bool = True,
                 stderr: bool = True, from_end: bool = False) -> None:
        self.path = path
        self.since = since
        self.streams = _streams(stdout, stderr)
        self.fh: BinaryIO | None = None
        self.ino = -1
        self.partial = b""
        self._open(seek_end=from_end)

    def _open(self, seek_end: bool = False) -> None:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        except FileNotFoundError:
            return
        self.fh = fh
        self.ino = os.fstat(fh.fileno()).st_ino
        if seek_end:
            fh.seek(0, os.SEEK_END)

    def _drain(self) -> list[LogEntry]:
        out: list[LogEntry] = []
        if self.fh is None:
            return out
        data = self.partial + self.fh.read()
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
