"""labkit's own trace points: one line per hop of a container start, in a file named by env.

``mark(phase, key)`` appends ``"<ns>\\t<pid>\\t<tid>\\t<phase>\\t<key>\\n"`` to the file named by
``LABKIT_TRACE``: ``ns`` is CLOCK_MONOTONIC (time.monotonic_ns()), the clock of the kernel's
bpf_ktime_get_ns(), so marks and eBPF events line up on one axis (labkit.measure.timeline).
Without ``LABKIT_TRACE`` a mark costs one cached check (a global load and a test).

Why it is safe on the start path:

* one write(2) per mark on an O_APPEND fd: each record lands whole and at the end, even
  with daemon, supervisor, shims and runtime appending at once (write(2), "O_APPEND");
* the fd is O_CLOEXEC: it dies at the container's execve(2), so the container's program
  never holds it; and a process that inherited it (a fork) checks with fstat(2) that the
  number still names *our* file before writing (a fork child may have closed it, and the
  number may now be a socket or a file of the container's);
* a process that must reopen the file (it has none, or lost it) does so only while its "/"
  is the one the file was first opened under: after pivot_root(2) the path would name a
  file *in the container's* root, and the mark is dropped instead;
* the file is created 0600, refused unless it is a regular file of ours with no group or
  other bits (O_NOFOLLOW: no symlink planted at the path is followed);
* a mark never raises and never prints: a failing trace point must not fail the start it
  observes, and stderr may be the container's own stdio.
"""

from __future__ import annotations

import os
import stat
import time

__all__ = ["ENV", "dropped", "enabled", "mark", "reload", "status"]

ENV = "LABKIT_TRACE"
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW

# The cached check: None until the first mark reads the environment; then the path, or "".
_path: str | None = None
_fd = -1
_ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the file behind _fd
_root: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of "/" when the file was first opened
_pid = 0  # the process that last checked _fd
_scope = ""  # default key of this process (and its forks), set by mark(..., scope=True)
_dropped = 0
_why = ""
_tid = os.getpid  # threading.get_native_id once a trace file is open


def _ident_of(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _open() -> bool:
    """Open (or re-check) the trace file for this process; False: drop marks here."""
    global _fd, _ident, _root, _pid, _why, _tid
    pid = os.getpid()
    if _fd >= 0 and _pid == pid:
        return True
    if _fd >= 0:  # inherited over fork: is the number still our file?
        try:
            if _ident_of(os.fstat(_fd)) == _ident:
                _pid = pid
                return True
        except OSError:
            pass
        _fd = -1  # closed or reused: never ours to close or write
    root = _ident_of(os.stat("/"))
    if _root != (0, 0) and root != _root:
        _why = "the process changed its root (pivot_root): not reopening the trace file there"
        return False
    assert _path
    import threading  # only when tracing: the start path does not import it otherwise

    _tid = threading.get_native_id
    fd = os.open(_path, _FLAGS, 0o600)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        _why = f"{_path}: not a regular file of ours with mode 0600; tracing off"
        return False
    _fd, _ident, _root, _pid = fd, _ident_of(st), root, pid
    return True


def mark(phase: str, key: str = "", *, scope: bool = False) -> None:
    """Record that this process reached ``phase`` for container ``key`` (now).

    ``scope``: ``key`` is also the key of this process's later keyless marks, and of its
    forks' (the runtime's intermediate and init know no container id of their own)."""
    global _path, _scope, _dropped, _why
    if _path == "":
        return
    if _path is None:
        _path = os.environ.get(ENV, "")
        if not _path:
            return
    if scope:
        _scope = key
    try:
        if not _open():
            _dropped += 1
            return
        rec = "%d\t%d\t%d\t%s\t%s\n" % (  # noqa: UP031 - % is the cheapest format here
            time.monotonic_ns(), os.getpid(), _tid(),
            _clean(phase), _clean(key or _scope))
        os.write(_fd, rec.encode())
    except (OSError, ValueError, AssertionError) as err:
        _dropped += 1
        _why = str(err)


def _clean(s: str) -> str:
    return s.replace("\t", " ").replace("\n", " ")


def enabled() -> bool:
    """True when marks are written (LABKIT_TRACE was set at this process's first mark)."""
    if _path is None:
        return bool(os.environ.get(ENV))
    return bool(_path)


def dropped() -> int:
    """Marks this process could not write (see status())."""
    return _dropped


def status() -> str:
    """Why the last mark was dropped ("" if none was)."""
    return _why


def reload() -> None:
    """Forget the cached check and the fd (tests; a process that changed LABKIT_TRACE).

    The fd is closed only when this process opened it."""
    global _path, _fd, _ident, _root, _pid, _scope, _dropped, _why
    if _fd >= 0 and _pid == os.getpid():
        try:
            os.close(_fd)
        except OSError:
            pass
    _path, _fd, _ident, _root, _pid, _scope, _dropped, _why = None, -1, (0, 0), (0, 0), 0, "", 0, ""
