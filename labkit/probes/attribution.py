"""Attribution: the BPF C side every container-aware probe shares, and its Python half.

The contract (lifecycle, nssyscalls, cgattach here; runqlat, net, oomkill build on it):

1. In ``render(opts)`` put ``attribution.render(targets)`` near the top of the BPF text (after
   the #includes).  It declares ``BPF_HASH(lk_targets, u64, u32)`` (cgroup v2 id -> target
   index), a helper ``lk_target_of(u32 *ix)`` and the macro ``LK_TARGET(ix)``.
2. In each probe function, before any work::

       LK_TARGET(ix);        // declares u32 ix; returns 0 when the task is not watched

   ``ix`` is 1 + the target's position in ``targets``; 0 means "host" (no target), which is
   only ever kept when no targets were given (everything is attributed to "host") or when
   ``render(targets, host=True)`` asked to keep the rest.  Store ``ix`` in the event/key.
3. After loading: ``attribution.fill(bpf, targets)`` fills ``lk_targets`` (targets with no
   cgroup id, or sharing one, are refused before anything is loaded: call ``check`` first).
4. When reading: ``attribution.name_of(targets, ix)`` gives the container's name.
5. Optionally, ``render(targets, ns_pid=True)`` adds ``lk_ns_pid(ix)``: the task's pid as the
   container sees it (in its pid namespace, the inode the runtime published), 0 otherwise.

How a task is matched: ``bpf_get_current_cgroup_id()`` is the task's cgroup in the v2
hierarchy (kernel/bpf/helpers.c, task_dfl_cgroup); on this hybrid host that is the mirror
labkit's v1 backend makes under /sys/fs/cgroup/unified.  A task in a child cgroup of a
target (a container that makes its own sub-cgroups) is matched through
``bpf_get_current_ancestor_cgroup_id(level)`` at each target's depth (Linux 5.6).
Only the helpers are used, never task_struct fields (the nearest kernel headers may lie).

The C depends only on the targets' depths, so ``render`` is pure and unit-testable.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from typing import Any

from labkit import errors
from labkit.probes.target import Target

__all__ = ["HOST", "MAX_TARGETS", "check", "fill", "levels", "name_of", "render"]

HOST = "host"
MAX_TARGETS = 256

C_TEXT = r"""
// ---- labkit.probes.attribution: cgroup v2 id -> target index (0 = host) ----
BPF_HASH(lk_targets, u64, u32, LK_MAX_TARGETS);

static __always_inline int lk_target_of(u32 *ix) {
    u64 lk_cg = bpf_get_current_cgroup_id();
    u32 *lk_p = lk_targets.lookup(&lk_cg);
    if (lk_p) {
        *ix = *lk_p;
        return 1;
    }
LK_ANCESTORS
    *ix = 0;
    return LK_KEEP_HOST;
}

#define LK_TARGET(ix) u32 ix = 0; if (!lk_target_of(&ix)) return 0;
LK_NS_PID_BLOCK
// ---- end attribution ----
"""

# The pid a task has inside target ix's pid namespace (0: not in it, or ix 0), with the
# helper bpf_get_ns_current_pid_tgid (Linux 5.7): the namespace named by the nsfs device
# and inode the runtime published, no task_struct read.
_NS_PID = r"""
BPF_ARRAY(lk_pidns, u64, LK_MAX_TARGETS_PLUS_1);   // ix -> its pid namespace's inode

static __always_inline u32 lk_ns_pid(u32 ix) {
    u64 *ino = lk_pidns.lookup(&ix);
    if (!ino || !*ino)
        return 0;
    struct bpf_pidns_info lk_ns = {};
    if (bpf_get_ns_current_pid_tgid(LK_NSFS_DEV, *ino, &lk_ns, sizeof(lk_ns)))
        return 0;
    return lk_ns.tgid;
}
"""

_ANCESTOR = """    lk_cg = bpf_get_current_ancestor_cgroup_id({level});
    lk_p = lk_targets.lookup(&lk_cg);
    if (lk_p) {{
        *ix = *lk_p;
        return 1;
    }}
"""


def levels(targets: Sequence[Target]) -> list[int]:
    """The depths of the targets' cgroups ("/lk/web" is 2), each once, deepest first."""
    out = {len([p for p in (t.cgroup_path or "").split("/") if p]) for t in targets}
    return sorted((lv for lv in out if lv > 0), reverse=True)


def check(targets: Sequence[Target]) -> None:
    """Refuse targets that cannot be told apart by cgroup id.

    Raises:
        InvalidArgumentError: too many, one without a cgroup id, one in the v2 root (every
            process not placed elsewhere is there), or two sharing a cgroup.
    """
    if len(targets) > MAX_TARGETS:
        raise errors.InvalidArgumentError("targets", f"{len(targets)} > {MAX_TARGETS}")
    seen: dict[int, str] = {}
    for t in targets:
        if t.cgroup_id is None:
            raise errors.InvalidArgumentError(
                "target", f"{t.name} has no cgroup v2 id",
                hint="a legacy (v1 only) host has no v2 hierarchy; use the VM, or a hybrid host")
        if (t.cgroup_path or "/") == "/":
            raise errors.InvalidArgumentError(
                "target", f"{t.name} is in the root of the cgroup v2 hierarchy, with every "
                "process no engine placed elsewhere",
                hint="a container of an engine that does not join the unified hierarchy "
                     "(v1 only); labkit's containers do")
        if t.cgroup_id in seen:
            raise errors.InvalidArgumentError(
                "target", f"{t.name} and {seen[t.cgroup_id]} share cgroup {t.cgroup_path}")
        seen[t.cgroup_id] = t.name


def nsfs_dev() -> int:
    """The device of the nsfs filesystem, which names a namespace with its inode."""
    return os.stat("/proc/self/ns/pid").st_dev


def render(targets: Sequence[Target] | None, *, host: bool | None = None,
           ns_pid: bool = False, nsfs: int | None = None) -> str:
    """The attribution C block for ``targets`` (None or empty: attribute everything to host).

    ``host``: keep tasks that are in no target, with ix 0 (default: only when there are no
    targets).  ``ns_pid``: also ``lk_ns_pid(ix)``, the task's pid inside target ix's pid
    namespace (Linux 5.7; ``fill`` stores the inodes); ``nsfs``: nsfs's device number
    (default: read from /proc/self/ns/pid)."""
    targets = list(targets or ())
    keep = (not targets) if host is None else host
    ancestors = "".join(_ANCESTOR.format(level=lv) for lv in levels(targets))
    block = ""
    if ns_pid:
        block = (_NS_PID.replace("LK_MAX_TARGETS_PLUS_1", str(MAX_TARGETS + 1))
                 .replace("LK_NSFS_DEV", f"{nsfs_dev() if nsfs is None else nsfs}ULL"))
    return (C_TEXT.replace("LK_MAX_TARGETS", str(MAX_TARGETS))
            .replace("LK_ANCESTORS\n", ancestors)
            .replace("LK_KEEP_HOST", "1" if keep else "0")
            .replace("LK_NS_PID_BLOCK", block))


def fill(bpf: Any, targets: Sequence[Target] | None) -> None:
    """Put each target's cgroup id in ``lk_targets`` (index = position + 1)."""
    targets = list(targets or ())
    check(targets)
    table = bpf[b"lk_targets"]
    for ix, t in enumerate(targets, 1):
        assert t.cgroup_id is not None  # check() refused it otherwise
        table[ctypes.c_uint64(t.cgroup_id)] = ctypes.c_uint32(ix)
    try:
        pidns = bpf[b"lk_pidns"]  # only when rendered with ns_pid=True
    except KeyError:
        return
    for ix, t in enumerate(targets, 1):
        if t.ns.get("pid"):
            pidns[ctypes.c_int(ix)] = ctypes.c_uint64(t.ns["pid"])


def name_of(targets: Sequence[Target] | None, ix: int) -> str:
    """The name of target ``ix`` (as the BPF side stored it); 0 is "host"."""
    targets = targets or ()
    if ix == 0:
        return HOST
    if 1 <= ix <= len(targets):
        return targets[ix - 1].name
    return f"?{ix}"
