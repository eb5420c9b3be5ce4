"""`labkit-runtime start`: release a created container's init into execve (runtime.md "start").

init is blocked in open(exec.fifo, O_WRONLY); opening the read end lets it through, and the
byte it writes says it got past the fifo (runc's exec.fifo protocol).  We wait on the fifo
and on a pidfd of init at once, so an init that died meanwhile is an error, not a hang.
"""

from __future__ import annotations

import os
import select

from labkit import errors
from labkit.engine.runtime import state as statemod


def start(root: str, container_id: str) -> statemod.State:
    """Start ``container_id``; InvalidStateError unless it is "created"."""
    st = statemod.load(root, container_id)
    if st.refresh() != statemod.CREATED:
        raise errors.InvalidStateError(st.status, statemod.RUNNING)
    fifo = os.path.join(st.dir, statemod.EXEC_FIFO)
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise errors.InvalidStateError(statemod.RUNNING, statemod.RUNNING,
                                       hint="already started by someone else") from None
    pidfd = os.pidfd_open(st.pid)
    try:
        got = b""
        while not got:
            ready, _, _ = select.select([fd, pidfd], [], [])
            if fd in ready:
                got = os.read(fd, 1)
                if got:
                    break
            if pidfd in ready:
                break
    finally:
        os.close(pidfd)
        os.close(fd)
    if not got:
        st.transition(statemod.STOPPED)
        st.save()
        raise errors.InvalidStateError(statemod.STOPPED, statemod.RUNNING,
                                       hint="the container's init exited before start")
    os.unlink(fifo)
    st.transition(statemod.RUNNING)
    st.save()
    return st
