"""eBPF probes built with bcc, tracepoint-first (STYLE C14), and the front door to them.

Each module is one tool in the shape of a bcc tool: ``render(opts)`` gives the BPF C text,
``attach(opts)`` loads it and returns a Probe with ``.read()`` and ``.close()``.

* ``execsnoop``: every exec (sched:sched_process_exec)
* ``oomkill``: every OOM kill (oom:mark_victim)
* ``kcount``: calls of a kernel function (kprobe), or of a syscall tracepoint instead
* ``proctree``: each process's fork, exec, exit and on-CPU time (sched tracepoints)
* ``nscount``: unshare/setns/clone/clone3 calls of one process tree, by flags
* ``selftest``: one tiny tracepoint program, used by ``labkit doctor``

Container-aware (every event named by its container, labkit.probes.attribution):

* ``lifecycle``: fork, exec, exit per container
* ``nssyscalls`` (kind "syscalls"): clone/clone3/unshare/setns/mount/pivot_root/execve with
  their latency
* ``cgattach``: moves into cgroups (and births in one, clone3 CLONE_INTO_CGROUP)
* ``runqlat``: run-queue latency per container, log2 histograms (sched tracepoints)
* ``netio`` (kind "net"): packets and bytes per device, ethertype and container
* ``oomkill`` (kind "oomkill"): each OOM kill, named by the victim's container
* ``target``: a container name -> its cgroup id and namespace inodes; ``fallback``: the
  procfs stand-ins

The front door picks eBPF when it can and says when it cannot::

    import labkit.probes as probes
    with probes.open("lifecycle", targets=["web"]) as p:
        ...
        p.read(); p.mode; p.missing     # "tracepoint", () -- or "procfs", (what it lacks)

Submodules are imported on demand: ``from labkit.probes import execsnoop``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from typing import Any

from labkit import errors

__all__ = ["KINDS", "base", "bcc_unusable", "execsnoop", "kcount", "nscount", "oomkill", "open",
           "proctree", "selftest"]

# kind -> the module that implements it with eBPF.  Adding a kind: the module has a frozen
# dataclass Options whose first field is ``targets: Sequence[Target] = ()`` and
# attach(Options) -> a probe with .read(), .close(), context manager, .mode ("tracepoint",
# "kprobe", ...) and .missing (a tuple of what that mode cannot see); its BPF C uses
# labkit.probes.attribution (render / LK_TARGET / fill / name_of).  The procfs stand-in, if
# any, goes in fallback.FALLBACKS with its fallback.MISSING text, or is the module's own
# procfs(Options, reason) (the kernel's counters, read directly); a kind without one gets
# fallback.NothingProbe (read() == [], .missing says why).
KINDS: dict[str, str] = {
    "lifecycle": "labkit.probes.lifecycle",
    "syscalls": "labkit.probes.nssyscalls",
    "cgattach": "labkit.probes.cgattach",
    # per-container statistics; each module has its own counter stand-in, procfs(opts, why)
    "runqlat": "labkit.probes.runqlat",
    "net": "labkit.probes.netio",
    "oomkill": "labkit.probes.oomkill",
}


def bcc_unusable() -> str | None:
    """Why the eBPF probes cannot run here (None when they may): not root, or no bcc."""
    from labkit._sys import features

    if os.geteuid() != 0:
        return "not root: loading eBPF programs needs CAP_BPF and CAP_PERFMON"
    if not features.has_bcc():
        return "the bcc Python module is not importable (apt-get install python3-bpfcc)"
    return None


def open(kind: str, targets: Iterable[Any] = (), *, fallback: bool = True,
         poll_interval: float = 0.05, state_root: str | None = None, **opts: Any) -> Any:
    """Attach probe ``kind`` to ``targets`` (container names/ids or probes.target.Target).

    eBPF when it is usable; else (``fallback``) the procfs stand-in of the same kind, with
    ``.mode == "procfs"`` and ``.missing`` saying what it cannot see.  ``opts`` are the
    kind's Options fields (checked either way); ``poll_interval`` is the stand-in's polling
    period, used only when it runs; ``state_root``: where runtime containers are named.

    Raises:
        InvalidArgumentError: an unknown kind or option, a target that cannot be told apart.
        NotFoundError: a target name that names no running container (the hint lists them).
        UnsupportedError: eBPF unusable and ``fallback`` False (or an option polling
            cannot honour).
    """
    from labkit.probes import fallback as fb
    from labkit.probes import target as tg

    if kind not in KINDS:
        raise errors.InvalidArgumentError("probe kind", f"{kind!r} is not one",
                                          hint="one of " + ", ".join(sorted(KINDS)))
    module = importlib.import_module(KINDS[kind])
    resolved = tuple(t if isinstance(t, tg.Target) else tg.resolve(t, state_root=state_root)
                     for t in targets)
    try:
        options = module.Options(targets=resolved, **opts)
    except TypeError as err:
        raise errors.InvalidArgumentError(f"{kind} option", str(err)) from None
    reason = bcc_unusable()
    if reason is None:
        try:
            return module.attach(options)
        except errors.UnsupportedError as err:
            reason = str(err)
    if not fallback:
        raise errors.UnsupportedError(f"probe {kind}", reason,
                                      hint="pass fallback=True for the procfs stand-in")
    if hasattr(module, "procfs"):  # runqlat, net, oomkill: the kernel's own counters
        return module.procfs(options, reason)
    return fb.open(kind, resolved, reason, interval=poll_interval, **opts)
