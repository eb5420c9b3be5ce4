"""`labkit-runtime delete`: remove a stopped container's cgroup and state (runtime.md "delete").

A created container may be deleted (its init never ran the workload: it is killed first, as
runc does); a running one only with ``force`` (SIGKILL, then wait for it to be gone).  The
container's mounts need no unmounting: they live in its mount namespace, which the kernel
destroys with its last process.
"""

from __future__ import annotations

import os
import select

from labkit import errors
from labkit.engine.runtime import hooks as hookmod
from labkit.engine.runtime import state as statemod

KILL_TIMEOUT = 10.0


def _wait_gone(pid: int, timeout: float) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        # A pidfd becomes readable when the process exits (pidfd_open(2)).
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        raise errors.from_errno(16, "wait", f"container init {pid}",
                                hint="it did not die after SIGKILL (stuck in the kernel?)")


def oom_kills(st: statemod.State) -> int | None:
    """How many processes the kernel's OOM killer killed in the container's cgroup."""
    if not st.cgroup:
        return None
    from labkit.cgroups import open_cgroup

    cg = open_cgroup(st.cgroup)
    return cg.stats().oom_kills if cg.exists() else None


def delete(root: str, container_id: str, *, force: bool = False) -> None:
    """Delete ``container_id``; InvalidStateError if it runs and ``force`` is not given."""
    st = statemod.load(root, container_id)
    status = st.refresh()
    if status in (statemod.RUNNING, statemod.PAUSED) and not force:
        raise errors.InvalidStateError(status, statemod.DELETED,
                                       hint="stop it first, or use delete --force")
    cg = None
    if st.cgroup:
        from labkit.cgroups import open_cgroup

        cg = open_cgroup(st.cgroup)
    if status == statemod.PAUSED and cg is not None and cg.exists():
        cg.freeze(False)  # a frozen task cannot die: thaw so SIGKILL is delivered
    if status != statemod.STOPPED:
        try:
            os.kill(st.pid, 9)
        except ProcessLookupError:
            pass
        _wait_gone(st.pid, KILL_TIMEOUT)
        st.transition(statemod.STOPPED)
    if cg is not None and cg.exists():
        # remove() refuses while processes are left (it lists them itself, so no procs()
        # walk of every hierarchy first): leftovers, e.g. processes that joined the cgroup
        # from outside, are killed and the removal tried again.
        try:
            cg.remove()
        except errors.ConflictError:
            cg.kill()
            cg.remove()
    # Read before the state directory (and its config.json copy) goes.
    cfg_hooks = hookmod.from_state_dir(st.dir)
    stopped = st.oci()
    st.transition(statemod.DELETED)
    for name in os.listdir(st.dir):
        os.unlink(os.path.join(st.dir, name))
    os.rmdir(st.dir)
    if cfg_hooks.get("poststop"):
        # runtime.md "Lifecycle" step 13: after the container is destroyed, before delete
        # returns; a failure only warns.
        hookmod.run_phase(cfg_hooks, "poststop", hookmod.state_json(stopped, statemod.STOPPED))
