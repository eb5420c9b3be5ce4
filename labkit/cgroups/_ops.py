"""Mechanics both backends share: all-or-nothing writes, bounded waits, the kill loop."""

from __future__ import annotations

import errno
import os
import signal
import time

from labkit import errors
from labkit._record import Frozen, _set
from labkit.cgroups import _io

# Not typing's TYPE_CHECKING, no pathlib, no dataclasses: this is on labkit-runtime's start
# path (see labkit/_record.py); mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from labkit.cgroups._io import StrPath


class Write(Frozen):
    """One planned write and what to write back if a later write of the same set() fails."""

    __slots__ = ("path", "data", "undo")  # noqa: RUF023 - field order
    __match_args__ = ("path", "data", "undo")
    path: str
    data: str
    undo: str | None

    def __init__(self, path: str, data: str, undo: str | None) -> None:
        _set(self, "path", path)
        _set(self, "data", data)
        _set(self, "undo", undo)


if TYPE_CHECKING:
    # w(controller, file, data, why): plan one write, checking the file exists first.
    WriteFn = Callable[[str, str, str, str], None]


def old_value(path: StrPath) -> str | None:
    """The current content of a single-value file, to restore on failure."""
    text = _io.read(path)
    return None if text is None else text.strip()


def apply(plan: list[Write]) -> None:
    """Write ``plan`` in order; if one write fails, undo the earlier ones, newest first.

    Validation happens before (Resources.__post_init__, the backends' planning), so this
    only guards against the kernel refusing a value (EINVAL, EBUSY): set() then leaves the
    cgroup as it found it, as far as the kernel lets us.
    """
    done: list[Write] = []
    try:
        for w in plan:
            _io.write(w.path, w.data)
            done.append(w)
    except errors.LabkitError:
        for w in reversed(done):
            if w.undo is None:
                continue
            try:
                _io.write(w.path, w.undo)
            except errors.LabkitError:
                pass  # best effort; the first error is the one the caller needs to see
        raise


def wait_for(pred: Callable[[], bool], timeout: float) -> bool:
    """Poll ``pred`` with a short backoff (1ms .. 20ms) until true or ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def kill_all(
    name: str,
    pids: Callable[[], list[int]],
    freeze: Callable[[bool], None] | None,
    timeout: float,
) -> None:
    """SIGKILL every process of a cgroup subtree and wait until it is empty.

    Without cgroup.kill there is a race: a process can fork between reading cgroup.procs and
    the kill.  Freezing first closes it (runc signalAllProcesses, crun cgroup_killall_path):
    a frozen task cannot fork, a SIGKILL to it is delivered on thaw.  Without a freezer the
    loop repeats until nothing is left.

    Raises:
        ConflictError: processes remained after ``timeout`` seconds.
    """
    frozen = False
    if freeze is not None:
        try:
            freeze(True)
            frozen = True
        except errors.LabkitError:
            pass  # killing unfrozen, in a loop, is still correct, just racier
    try:
        _signal(pids())
    finally:
        if frozen and freeze is not None:
            freeze(False)

    def empty() -> bool:
        left = pids()
        _signal(left)  # stragglers forked in the window (no freezer), or new arrivals
        return not left

    if not wait_for(empty, timeout):
        raise errors.ConflictError(
            f"cgroup {name}: processes {pids()} still there {timeout}s after SIGKILL",
            hint="a task in uninterruptible sleep (D state) dies only when its I/O returns",
        )


def _signal(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # exited in between: that is what we want


def remove_tree(top: StrPath, name: str, has_procs: Callable[[], list[int]], timeout: float) -> None:
    """rmdir(2) ``top`` and its child cgroups, deepest first, retrying EBUSY briefly.

    A cgroup directory can be removed only when it has no tasks and no children
    (cgroups(7)); the control files inside are not real files and go with it.  Right
    after the last task exits the kernel may still answer EBUSY for a moment.

    Raises:
        ConflictError: processes are still in the subtree (kill() them first).
    """
    if not os.path.isdir(top):
        return
    left = has_procs()
    if left:
        raise errors.ConflictError(
            f"cgroup {name} still has processes {left}", hint="call kill() before remove()")
    dirs = [d for d, _, _ in os.walk(top)]
    for d in reversed(dirs):  # os.walk is top-down, so reversed is children first
        _rmdir(d, timeout, name)


def _rmdir(d: str, timeout: float, name: str) -> None:
    err: OSError | None = None

    def attempt() -> bool:
        nonlocal err
        try:
            os.rmdir(d)
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            err = e
            if e.errno == errno.EBUSY:  # tasks just exited, the kernel has not let go yet
                return False
            if e.errno == errno.ENOTEMPTY:
                # cgroupfs never says ENOTEMPTY (a cgroup with children is EBUSY), so this
                # is a plain directory: a fake tree in a test.  Its control files are
                # ordinary files; drop them, as the kernel drops its own.
                for entry in os.scandir(d):
                    if entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
                return False
            raise errors.from_errno(e.errno or 0, "rmdir", d) from None

    if not wait_for(attempt, timeout) and err is not None:
        raise errors.from_errno(err.errno or 0, "rmdir", d,
                                hint=f"cgroup {name} is busy: a process or a child cgroup remains")
