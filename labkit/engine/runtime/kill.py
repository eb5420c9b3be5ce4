"""`labkit-runtime kill`: send a signal to the container's init, or with --all to every
process in its cgroup (runtime.md "kill")."""

from __future__ import annotations

import os
import signal

from labkit import errors
from labkit.engine.runtime import state as statemod


def parse_signal(text: str) -> int:
    """"9", "KILL", "SIGKILL" -> 9; InvalidArgumentError for anything else."""
    t = text.strip().upper()
    if t.isdigit():
        num = int(t)
        if 0 < num < signal.NSIG:
            return num
    else:
        name = t if t.startswith("SIG") else "SIG" + t
        sig = getattr(signal.Signals, name, None) if name.isidentifier() else None
        if sig is not None:
            return int(sig)
    raise errors.InvalidArgumentError("signal", f"unknown signal {text!r}",
                                      hint="a number or a name like TERM, SIGKILL")


def kill(root: str, container_id: str, sig: int = signal.SIGTERM, *, all: bool = False) -> None:
    """Signal ``container_id``; InvalidStateError unless it is created, running or paused.

    SIGKILL to a paused container thaws it too, so that it dies."""
    st = statemod.load(root, container_id)
    if not st.alive():
        raise errors.InvalidStateError(st.status, "signalled",
                                       hint="the container is not running")
    pids = [st.pid]
    cg = None
    if st.cgroup and (all or st.status == statemod.PAUSED):
        from labkit.cgroups import open_cgroup

        cg = open_cgroup(st.cgroup)
        if all and cg.exists():
            pids = cg.procs()
    # pidfd_send_signal(2) through a pidfd opened after the start-time check: the pid
    # cannot be recycled between check and signal.
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)
    if sig == signal.SIGKILL and st.status == statemod.PAUSED and cg is not None and cg.exists():
        # A frozen task cannot die (cgroup-v1/freezer-subsystem.rst; cgroup.freeze in v2
        # likewise): thaw so the SIGKILL is acted on, as runc does.  The container then
        # stops; state.json is not rewritten, its status is recomputed from the kernel.
        cg.freeze(False)
