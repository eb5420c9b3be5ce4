"""What the runtime's verbs import lazily, for a long-lived caller to import once.

The runtime's CLI imports per command (each `labkit-runtime` run is a fresh interpreter
and pays only for what it uses).  A caller that runs the verbs in-process many times --
the shim template, whose forked shims share its pages copy-on-write -- imports them all
up front instead, so that no create, exec or update imports anything (an import in a
shim costs milliseconds on the start path and private memory in every shim).
"""

from __future__ import annotations

import importlib

MODULES = ("labkit.engine.runtime.exec", "labkit.engine.runtime.create",
           "labkit.engine.runtime.init", "labkit.engine.runtime.config",
           "labkit.engine.runtime.seccomp", "labkit.engine.runtime.rootfs",
           "labkit.engine.runtime.process", "labkit.engine.runtime.start",
           "labkit.engine.runtime.kill", "labkit.engine.runtime.delete",
           "labkit.engine.runtime.pause", "labkit.engine.runtime.update",
           "labkit.engine.runtime.stats", "labkit._sys.fs",
           "labkit.cgroups", "labkit.cgroups._oci", "labkit.cgroups._ops", "labkit.cgroups._io")


def warm_up() -> None:
    """Import MODULES and what cgroups import on first use on this host."""
    for name in MODULES:
        importlib.import_module(name)
    from labkit import errors
    from labkit.cgroups import Resources, open_cgroup

    Resources.from_oci({})
    try:
        open_cgroup("lk/warm-up")  # imports this host's backend; caches the cgroup mode
    except errors.LabkitError:
        pass  # no cgroups here: create will say so with a proper error
