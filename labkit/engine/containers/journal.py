"""The event journal: Docker events on disk, so ``docker events --since`` outlives the daemon.

dockerd keeps its last events in memory only (daemon/events, 256 of them); labkit also
appends each one as a JSON line to ``LABKIT_ROOT/events/events.log`` so a restarted daemon
still answers ``--since``/``--until`` about what happened before it started.

* Bounded: when a line would take the current file past ``max_bytes`` the files rotate
  (events.log -> events.log.1 -> ... -> events.log.<keep-1>, the oldest dropped), as
  logrotate and the json-file log driver do, so the journal never holds more than
  ``keep`` files of at most ``max_bytes`` each.
* Private: the directory is 0700 and the files 0600 (labels and names may be secrets of a
  tenant); an existing file with other owner or mode is refused, never followed (O_NOFOLLOW).
* Append-only: one write(2) of one whole line per event on an O_APPEND fd; a daemon killed
  mid-write leaves at most a cut last line, which replay skips (it does not parse).  Lines
  are not fsynced one by one (that would put a disk flush on every `docker run`): a daemon
  crash loses nothing, a host crash may lose the last few seconds, as with dockerd's logs.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labkit import errors

__all__ = ["EventJournal"]

NAME = "events.log"


class EventJournal:
    """Append events to ``directory``; read them back in order with ``replay()``."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = 1 << 20,
                 keep: int = 5) -> None:
        if max_bytes < 1024:
            raise errors.InvalidArgumentError("max_bytes", f"{max_bytes}: at least 1024")
        if keep < 1:
            raise errors.InvalidArgumentError("keep", f"{keep}: at least 1 file")
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.keep = keep
        self._fd: int | None = None
        self._size = 0

    def path(self, n: int = 0) -> Path:
        """File ``n``: 0 is the one written now, keep-1 the oldest."""
        return self.dir / (NAME if n == 0 else f"{NAME}.{n}")

    # -- writing -----------------------------------------------------------------------
    def _open(self) -> int:
        if self._fd is None:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            _check_private(self.dir, stat.S_ISDIR)
            try:
                fd = os.open(self.path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT |
                             os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            except OSError as err:
                raise errors.from_errno(err.errno or errno.EIO, "open", str(self.path())) from None
            try:
                st = os.fstat(fd)
                _check_mode(self.path(), st, stat.S_ISREG)
            except BaseException:
                os.close(fd)
                raise
            self._fd, self._size = fd, st.st_size
        return self._fd

    def append(self, event: dict[str, Any]) -> None:
        """Write ``event`` as one line, rotating first when it would pass the bound."""
        line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        fd = self._open()
        if self._size and self._size + len(line) > self.max_bytes:
            self.rotate()
            fd = self._open()
        try:
            os.write(fd, line)
        except OSError as err:
            raise errors.from_errno(err.errno or errno.EIO, "write", str(self.path())) from None
        self._size += len(line)

    def rotate(self) -> None:
        """events.log.<k> -> .<k+1> (the oldest removed), events.log -> .1; the next append
        starts a new events.log."""
        self.close()
        self.path(self.keep - 1).unlink(missing_ok=True)
        for n in range(self.keep - 2, -1, -1):
            if self.path(n).exists():
                os.rename(self.path(n), self.path(n + 1))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- reading -----------------------------------------------------------------------
    def replay(self, since_ns: int | None = None,
               until_ns: int | None = None) -> Iterator[dict[str, Any]]:
        """Events with since_ns <= timeNano <= until_ns, oldest first, across the files."""
        if not self.dir.exists():
            return
        _check_private(self.dir, stat.S_ISDIR)  # events someone else could have written
        for n in range(self.keep - 1, -1, -1):
            try:
                fd = os.open(self.path(n), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue
            except OSError as err:
                raise errors.from_errno(err.errno or errno.EIO, "open", str(self.path(n))) from None
            with os.fdopen(fd, "rb") as f:
                for line in f:
                    ev = _parse(line)
                    if ev is None:
                        continue
                    t = ev["timeNano"]
                    if (since_ns is None or t >= since_ns) and (until_ns is None or t <= until_ns):
                        yield ev


def _parse(line: bytes) -> dict[str, Any] | None:
    # A line cut by a crash, or anything that is not one of our events, is skipped.
    try:
        ev = json.loads(line)
    except ValueError:
        return None
    if not isinstance(ev, dict) or not isinstance(ev.get("timeNano"), int) or \
            not isinstance(ev.get("Actor"), dict):
        return None
    return ev


def _check_private(path: Path, kind: Any) -> None:
    _check_mode(path, os.lstat(path), kind)


def _check_mode(path: Path, st: os.stat_result, kind: Any) -> None:
    """Refuse a journal file or directory someone else could read or swap."""
    if not kind(st.st_mode):
        raise errors.ConflictError(f"event journal {path}: not a regular file or directory")
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise errors.ConflictError(
            f"event journal {path}: owned by uid {st.st_uid} with mode "
            f"{stat.S_IMODE(st.st_mode):o}; expected ours with no group/other access",
            hint=f"remove or chmod {path}")
