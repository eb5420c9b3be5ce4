"""Control groups: one Cgroup interface, v1 and v2 backends chosen once by detection.

    from labkit.cgroups import open_cgroup, Resources
    cg = open_cgroup("lk-demo/ctr1")          # V2Cgroup on a unified host, else V1Cgroup
    cg.create(); cg.add(pid)
    cg.set(Resources(memory_max=64 << 20, pids_max=50))
    cg.stats().oom_kills; cg.freeze(True); cg.freeze(False); cg.kill(); cg.remove()

Nothing outside this package asks for the cgroup version (STYLE C6): the choice is made
here, from detect.detect_mode() (statfs magic, cgroups(7)), the way runc's manager/new.go
picks fs2 or fs.  Import cost is kept to the stdlib and labkit.errors: labkit-runtime
imports this on its start path.
"""

from __future__ import annotations

import os

# Not typing's TYPE_CHECKING: typing costs ~1.5 ms on labkit-runtime's start path (mypy
# treats any name TYPE_CHECKING as true).  Nor pathlib (~2.4 ms): DEFAULT_ROOT is lazy.
TYPE_CHECKING = False

from labkit.cgroups.base import (
    Cgroup,
    IoLimit,
    Pressure,
    PressureLine,
    Resources,
    Stats,
    check_name,
)
from labkit.cgroups.detect import _DEFAULT_ROOT, Mode, controllers, detect_mode

if TYPE_CHECKING:
    from typing import Any

    from labkit.cgroups.detect import DEFAULT_ROOT, StrPath
    from labkit.cgroups.v1 import V1Cgroup
    from labkit.cgroups.v2 import V2Cgroup

__all__ = [
    "DEFAULT_ROOT",
    "Cgroup",
    "IoLimit",
    "Mode",
    "Pressure",
    "PressureLine",
    "Resources",
    "Stats",
    "V1Cgroup",
    "V2Cgroup",
    "check_name",
    "controllers",
    "detect_mode",
    "open_cgroup",
]


def open_cgroup(name: str, *, root: StrPath = _DEFAULT_ROOT, mode: Mode | None = None) -> Cgroup:
    """A handle on cgroup ``name`` (relative, e.g. "lk-abc/ctr1"); nothing is created yet.

    UNIFIED -> V2Cgroup; HYBRID and LEGACY -> V1Cgroup (in hybrid mode the controllers live
    on the v1 hierarchies; the v2 mount there has none).  ``mode`` skips detection (fake
    trees in tests).

    Raises:
        InvalidArgumentError: the name is absolute, empty or contains "..".
        UnsupportedError: no cgroup filesystem under ``root``.
    """
    check_name(name)
    root = os.fspath(root)
    # Only the backend this host needs is imported (labkit-runtime's start path).
    if (mode or detect_mode(root)) is Mode.UNIFIED:
        from labkit.cgroups.v2 import V2Cgroup

        return V2Cgroup(root, name)
    from labkit.cgroups.v1 import V1Cgroup

    return V1Cgroup(root, name)


def __getattr__(name: str) -> Any:
    # PEP 562: V1Cgroup / V2Cgroup are imported on first use, DEFAULT_ROOT made on use.
    if name == "DEFAULT_ROOT":
        from labkit.cgroups import detect

        return detect.DEFAULT_ROOT
    if name == "V1Cgroup":
        from labkit.cgroups.v1 import V1Cgroup

        return V1Cgroup
    if name == "V2Cgroup":
        from labkit.cgroups.v2 import V2Cgroup

        return V2Cgroup
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
