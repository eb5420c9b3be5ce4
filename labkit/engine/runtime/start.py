"""`labkit-runtime start`: release a created container's init into execve (runtime.md "start").

init is blocked in open(exec.fifo, O_WRONLY); opening the read end lets it through, and the
byte it writes says it got past the fifo (runc's exec.fifo protocol).  We wait on the fifo
and on a pidfd of init at once, so an init that died meanwhile is an error, not a hang.
"""

from __future__ import annotations

import os
import select

from labkit import errors
from labkit.engine.runtime import hooks as hookmod
from labkit.engine.runtime import state as statemod
from labkit.engine.runtime.hooks import HookError


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
                # "0", or "1" + why a startContainer hook failed (init.py _start_hooks):
                # one write below PIPE_BUF, so one read takes all of it (pipe(7)).
                got = os.read(fd, 4096)
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
    if got.startswith(b"1"):
        _destroy(root, container_id)
        raise HookError(got[1:].decode("utf-8", "replace"))
    os.unlink(fifo)
    st.transition(statemod.RUNNING)
    st.save()
    cfg_hooks = hookmod.from_state_dir(st.dir)
    if cfg_hooks.get("poststart"):
        # runtime.md "Lifecycle" step 9: after the program started, before start returns;
        # a failure only warns.
        hookmod.run_phase(cfg_hooks, "poststart", hookmod.state_json(st.oci()))
    return st


def _destroy(root: str, container_id: str) -> None:
    # runtime.md: a failed startContainer hook stops the container and the lifecycle goes
    # on at step 12, destroying it (delete also runs the poststop hooks).
    from labkit.engine.runtime.delete import delete

    delete(root, container_id, force=True)
