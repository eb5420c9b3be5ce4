"""The containers' shared parent cgroup, for what labs and benchmarks make.

The runtime puts every container without a cgroupsPath of its own under one parent
(runtime.config.CGROUP_PARENT, "lk"), creating it on first use and keeping it, as Docker
keeps /docker.  A lab or a benchmark that caused it removes it again when it is done, so a
notebook or `labkit bench` run leaves no cgroup behind.  Removal is rmdir(2), which fails
with EBUSY while any process or child cgroup is inside: a parent that another engine's
container uses (made after the lab began) stays, and is then that engine's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from labkit import errors
from labkit.cgroups import Cgroup, open_cgroup
from labkit.engine.runtime.config import CGROUP_PARENT

__all__ = ["cleaned", "missing", "remove"]


def _parent() -> Cgroup:
    return open_cgroup(CGROUP_PARENT)


def missing() -> bool:
    """True when the parent surely does not exist yet.  When that cannot be told (no
    cgroup filesystem), False: nobody removes what it cannot know it made."""
    try:
        return not _parent().exists()
    except (errors.LabkitError, OSError):
        return False


def remove() -> None:
    """Remove the parent when it is empty; in use or already gone, leave it be."""
    with contextlib.suppress(errors.LabkitError, OSError):
        parent = _parent()
        if parent.exists():
            parent.remove()


@contextlib.contextmanager
def cleaned() -> Iterator[None]:
    """Around work that may create the parent: removed at the end if it caused it."""
    made = missing()
    try:
        yield
    finally:
        if made:
            remove()
