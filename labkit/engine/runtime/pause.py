"""`labkit-runtime pause` / `resume`: freeze and thaw every process of a container.

The cgroup freezer stops the tasks where they are, without a signal they could see
(cgroup-v1/freezer-subsystem.rst, cgroup-v2 cgroup.freeze); labkit.cgroups hides which.
State: running -> paused -> running (STYLE C11).
"""

from __future__ import annotations

# typing costs ~1.5 ms to import; annotations are strings here (PEP 563), and mypy treats
# any name TYPE_CHECKING as true (the same trick as labkit.ns).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from labkit import errors
from labkit.engine.runtime import state as statemod


def _cgroup(st: statemod.State) -> Any:
    from labkit.cgroups import open_cgroup

    cg = open_cgroup(st.cgroup) if st.cgroup else None
    if cg is None or not cg.exists():
        raise errors.NotFoundError("cgroup of container", st.id)
    return cg


def pause(root: str, container_id: str) -> statemod.State:
    """Freeze ``container_id``; InvalidStateError unless it is running."""
    st = statemod.load(root, container_id)
    if st.refresh() != statemod.RUNNING:
        raise errors.InvalidStateError(st.status, statemod.PAUSED)
    _cgroup(st).freeze(True)
    st.transition(statemod.PAUSED)
    st.save()
    return st


def resume(root: str, container_id: str) -> statemod.State:
    """Thaw ``container_id``; InvalidStateError unless it is paused."""
    st = statemod.load(root, container_id)
    if st.refresh() != statemod.PAUSED:
        raise errors.InvalidStateError(st.status, statemod.RUNNING)
    _cgroup(st).freeze(False)
    st.transition(statemod.RUNNING)
    st.save()
    return st
