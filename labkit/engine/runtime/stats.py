"""`labkit-runtime ps` and `events --stats`: what runs in a container and what it uses.

runc's two read-only verbs over the container's cgroup: ps lists the processes in it
(cgroup.procs), events --stats reads its counters once.  The shim asks the runtime for
these instead of opening the cgroup itself (containerd's shim calls runc the same way).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from labkit import errors
from labkit.engine.runtime import state as statemod


def _cgroup(root: str, container_id: str) -> Any:
    from labkit.cgroups import open_cgroup

    st = statemod.load(root, container_id)
    cg = open_cgroup(st.cgroup) if st.cgroup else None
    if cg is None or not cg.exists():
        raise errors.NotFoundError("cgroup of container", container_id)
    return cg


def pids(root: str, container_id: str) -> list[int]:
    """The pids (host view) of every process in the container's cgroup."""
    return list(_cgroup(root, container_id).procs())


def stats(root: str, container_id: str) -> dict[str, Any]:
    """One reading of the container's cgroup counters (labkit.cgroups.Stats fields)."""
    s = _cgroup(root, container_id).stats()
    return {k: getattr(s, k) for k in s.__slots__}


def oom_kills(root: str, container_id: str) -> int:
    """How many processes the OOM killer killed in the container (0 when unknown)."""
    try:
        return stats(root, container_id).get("oom_kills") or 0
    except errors.NotFoundError:
        return 0
