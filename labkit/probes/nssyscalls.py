"""nssyscalls: the syscalls that build a container, each with its latency, per container.

clone, clone3, unshare, setns, mount, pivot_root and execve: what a runtime calls to make
namespaces, join them, lay out the root filesystem and start the process.  Hooks: the
syscalls:sys_enter_<name> / sys_exit_<name> tracepoints (a stable ABI).  The enter record is
kept per thread id; the exit computes the latency (CLOCK_MONOTONIC, bpf_ktime_get_ns) and
sends one event.  Flags are decoded in Python: clone/clone3/unshare flags and setns's nstype
to CLONE_NEW* names (clone3's flags are read from its struct clone_args in user memory, a
UAPI struct, not a kernel one); mount's target and type, pivot_root's new root and execve's
file are copied at enter (user pointers, valid only then).

Who is watched (labkit.probes.attribution): the ``targets``' cgroups, and with
``pids_under=PID`` also every process descended from PID, learnt at fork (task:task_newtask)
and forgotten at exit, so a runtime's start can be traced from its first fork, before its
child joins the container's cgroup; those events are named ``"pids under PID"`` until the
process is in a target's cgroup.  With neither, every process is watched, as "host".

Caveats: clone's exit is seen in the parent only (the child returns 0 on a thread that did
not enter); with CLONE_VFORK the parent's latency includes the child's run up to its exec;
a failed execve's latency is seen, a successful one's ends in the new program; an exec by a
non-leader thread changes its tid (de_thread) and loses that record; a call a seccomp
filter refuses never reaches sys_enter (seccomp runs first, kernel/entry/common.c), so a
container's denied unshare(2) is not seen at all.

Overhead: two hash operations per watched syscall plus one perf record; for unwatched
tasks one hash lookup on these (rare) syscalls.

Example::

    with nssyscalls.attach(nssyscalls.Options(pids_under=os.getpid())) as p:
        subprocess.run(["labkit-runtime", "run", ...])
        p.summary()   # {("pids under 123", "unshare"): Summary(count=1, p50_ns=..., ...)}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labkit import errors
from labkit._sys import consts, features
from labkit.probes import attribution, base
from labkit.probes.target import Target

__all__ = ["BPF_TEXT", "SYSCALLS", "Options", "Summary", "SyscallEvent", "SyscallProbe",
           "attach", "available", "decode_ns_flags", "render", "summarize"]

TOOL = "nssyscalls"
MODE = "tracepoint"
TREE_IX = 0xFFFF

# name -> (flags expression, user-string pointer expression or "", second string or "")
SYSCALLS: dict[str, tuple[str, str, str]] = {
    "clone": ("args->clone_flags", "", ""),
    "clone3": ("LK_CLONE3_FLAGS", "", ""),
    "unshare": ("args->unshare_flags", "", ""),
    "setns": ("args->flags", "", ""),
    "mount": ("args->flags", "args->dir_name", "args->type"),
    "pivot_root": ("0", "args->new_root", ""),
    "execve": ("0", "args->filename", ""),
}

NS_FLAGS = (("CLONE_NEWNS", consts.CLONE_NEWNS), ("CLONE_NEWCGROUP", consts.CLONE_NEWCGROUP),
            ("CLONE_NEWUTS", consts.CLONE_NEWUTS), ("CLONE_NEWIPC", consts.CLONE_NEWIPC),
            ("CLONE_NEWUSER", consts.CLONE_NEWUSER), ("CLONE_NEWPID", consts.CLONE_NEWPID),
            ("CLONE_NEWNET", consts.CLONE_NEWNET), ("CLONE_NEWTIME", consts.CLONE_NEWTIME))

BPF_TEXT = r"""
#include <linux/sched.h>

#define ARG_LEN 64
#define FSTYPE_LEN 16

ATTRIBUTION

struct enter_t {
    u64 ts;
    u64 flags;
    u32 kind;
    u32 ix;
    char arg[ARG_LEN];
    char fstype[FSTYPE_LEN];
};

struct event_t {
    u64 ts_ns;          // at enter
    u64 lat_ns;         // enter -> exit
    u64 flags;
    s64 ret;
    u32 kind;           // index into SYSCALLS
    u32 ix;             // attribution index; TREE_IX = the pids_under subtree
    u32 pid;
    u32 tid;
    char comm[TASK_COMM_LEN];
    char arg[ARG_LEN];
    char fstype[FSTYPE_LEN];
};

BPF_PERF_OUTPUT(events);
BPF_HASH(lk_enter, u32, struct enter_t, 16384);   // tid -> its syscall in flight
BPF_HASH(lk_tree, u32, u8, 65536);                // tgids under pids_under

static __always_inline int lk_watch(u32 *ix) {
    int keep = lk_target_of(ix);
    TREE_MATCH
    return keep;
}

static __always_inline int lk_on_enter(u32 kind, u64 flags, const char *arg,
                                       const char *fstype) {
    u32 ix = 0;
    if (!lk_watch(&ix))
        return 0;
    struct enter_t e = {};
    e.ts = bpf_ktime_get_ns();
    e.kind = kind;
    e.ix = ix;
    e.flags = flags;
    if (arg)
        bpf_probe_read_user_str(&e.arg, sizeof(e.arg), arg);
    if (fstype)
        bpf_probe_read_user_str(&e.fstype, sizeof(e.fstype), fstype);
    u32 tid = bpf_get_current_pid_tgid();
    lk_enter.update(&tid, &e);
    return 0;
}

static __always_inline int lk_on_exit(void *ctx, long ret) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = id;
    struct enter_t *e = lk_enter.lookup(&tid);
    if (!e)
        return 0;
    struct event_t ev = {};
    ev.ts_ns = e->ts;
    ev.lat_ns = bpf_ktime_get_ns() - e->ts;
    ev.flags = e->flags;
    ev.ret = ret;
    ev.kind = e->kind;
    ev.ix = e->ix;
    ev.pid = id >> 32;
    ev.tid = tid;
    __builtin_memcpy(&ev.arg, e->arg, sizeof(ev.arg));
    __builtin_memcpy(&ev.fstype, e->fstype, sizeof(ev.fstype));
    lk_enter.delete(&tid);
    bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
    events.perf_submit(ctx, &ev, sizeof(ev));
    return 0;
}

TREE_HOOKS

HOOKS
"""

_TREE_MATCH = """if (!keep) {
        u32 lk_tgid = bpf_get_current_pid_tgid() >> 32;
        if (lk_tree.lookup(&lk_tgid)) {
            *ix = TREE_IX;
            keep = 1;
        }
    }"""

_TREE_HOOKS = r"""
TRACEPOINT_PROBE(task, task_newtask) {
    if (args->clone_flags & 0x00010000ULL)      // CLONE_THREAD: same process
        return 0;
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    if (!lk_tree.lookup(&parent))
        return 0;
    u32 child = args->pid;
    u8 one = 1;
    lk_tree.update(&child, &one);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = id, tgid = id >> 32;
    lk_enter.delete(&tid);
    if (tid == tgid)
        lk_tree.delete(&tgid);
    return 0;
}
"""

_HOOK = """
TRACEPOINT_PROBE(syscalls, sys_enter_{name}) {{
    {pre}return lk_on_enter({kind}, {flags}, {arg}, {fstype});
}}

TRACEPOINT_PROBE(syscalls, sys_exit_{name}) {{
    return lk_on_exit(args, args->ret);
}}
"""

# clone3(2): the flags are the first __aligned_u64 of struct clone_args (uapi/linux/sched.h).
_CLONE3_PRE = ("u64 lk_flags = 0;\n    "
               "bpf_probe_read_user(&lk_flags, sizeof(lk_flags), (void *)args->uargs);\n    ")


@dataclass(frozen=True, slots=True)
class Options:
    """``targets``: containers to watch; ``pids_under``: also every descendant of this pid
    (and the pid itself); ``syscalls``: a subset of SYSCALLS (default: all this kernel has).
    """

    targets: Sequence[Target] = ()
    pids_under: int | None = None
    syscalls: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class SyscallEvent:
    """One syscall: entered at ``ts_ns`` (CLOCK_MONOTONIC), returned ``ret`` after ``lat_ns``.

    ``ns_flags``: the CLONE_NEW* names in clone/clone3/unshare flags or setns's nstype;
    ``arg``: mount's target, pivot_root's new root or execve's file; ``fstype``: mount's type.
    """

    ts_ns: int
    lat_ns: int
    syscall: str
    container: str
    pid: int
    tid: int
    comm: str
    ret: int
    flags: int
    ns_flags: tuple[str, ...]
    arg: str = ""
    fstype: str = ""


@dataclass(frozen=True, slots=True)
class Summary:
    """Count and latency percentiles (nearest rank) of one (container, syscall)."""

    count: int
    p50_ns: int
    p95_ns: int
    failed: int


def decode_ns_flags(syscall: str, flags: int) -> tuple[str, ...]:
    """CLONE_NEW* names set in ``flags``.  clone(2)'s low byte is the exit signal, so
    CLONE_NEWTIME (0x80, which only clone3, unshare and setns take) is not read there."""
    if syscall not in ("clone", "clone3", "unshare", "setns"):
        return ()
    if syscall == "clone":
        flags &= ~0xFF
    return tuple(name for name, bit in NS_FLAGS if flags & bit)


def available(names: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(syscalls this kernel has both tracepoints for, those it lacks), from ``names``."""
    want = list(SYSCALLS) if names is None else list(names)
    for n in want:
        if n not in SYSCALLS:
            raise errors.InvalidArgumentError(
                "syscalls", f"{n!r} is not one this probe knows", hint=", ".join(SYSCALLS))
    have: list[str] = []
    lack: list[str] = []
    for n in want:
        ok = all(features.tracepoint_exists("syscalls", f"sys_{d}_{n}") for d in ("enter", "exit"))
        (have if ok else lack).append(n)
    return have, lack


def render(opts: Options, syscalls: Sequence[str] | None = None) -> str:
    """The BPF C program for ``opts``, hooking ``syscalls`` (default: every one in
    opts.syscalls or SYSCALLS; pass the list explicitly to render for another kernel)."""
    names = list(syscalls if syscalls is not None else (opts.syscalls or SYSCALLS))
    hooks = []
    for name in names:
        flags, arg, fstype = SYSCALLS[name]
        pre = ""
        if flags == "LK_CLONE3_FLAGS":
            pre, flags = _CLONE3_PRE, "lk_flags"
        hooks.append(_HOOK.format(name=name, kind=list(SYSCALLS).index(name), pre=pre,
                                  flags=flags, arg=f"(const char *){arg}" if arg else "0",
                                  fstype=f"(const char *){fstype}" if fstype else "0"))
    tree = opts.pids_under is not None
    # Nothing named: watch everything, as "host"; else only the targets and the subtree.
    host = not opts.targets and not tree
    return (BPF_TEXT.replace("ATTRIBUTION", attribution.render(opts.targets, host=host))
            .replace("TREE_MATCH", _TREE_MATCH if tree else "")
            .replace("TREE_HOOKS", _TREE_HOOKS if tree else "")
            .replace("TREE_IX", str(TREE_IX))
            .replace("HOOKS", "".join(hooks)))


def _nearest_rank(sorted_ns: list[int], q: float) -> int:
    k = max(1, -(-len(sorted_ns) * q // 100))  # ceil(n * q / 100), at least the first
    return sorted_ns[int(k) - 1]


def summarize(events: Sequence[SyscallEvent]) -> dict[tuple[str, str], Summary]:
    """{(container, syscall): Summary} over ``events``."""
    groups: dict[tuple[str, str], list[SyscallEvent]] = {}
    for e in events:
        groups.setdefault((e.container, e.syscall), []).append(e)
    out = {}
    for key, evs in sorted(groups.items()):
        lat = sorted(e.lat_ns for e in evs)
        out[key] = Summary(count=len(evs), p50_ns=_nearest_rank(lat, 50),
                           p95_ns=_nearest_rank(lat, 95), failed=sum(e.ret < 0 for e in evs))
    return out


def _descendants(pid: int) -> list[int]:
    """``pid`` and the processes below it now, from /proc/*/stat's ppid (proc(5))."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rfind(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class SyscallProbe(base.BccProbe[SyscallEvent]):
    """An attached nssyscalls; ``read()`` gives the syscalls returned since the last read,
    ``summary()`` counts and latencies over everything read so far (it reads first)."""

    mode = MODE

    def __init__(self, bpf: Any, tool: str) -> None:
        super().__init__(bpf, tool)
        self.targets: tuple[Target, ...] = ()
        self.pids_under: int | None = None
        self.syscalls: tuple[str, ...] = ()
        self.missing: tuple[str, ...] = ()
        self._seen: list[SyscallEvent] = []

    def _name(self, ix: int) -> str:
        if ix == TREE_IX:
            return f"pids under {self.pids_under}"
        return attribution.name_of(self.targets, ix)

    def _on_event(self, cpu: int, data: Any, size: int) -> None:
        ev = self.bpf[b"events"].event(data)
        name = list(SYSCALLS)[int(ev.kind)]
        flags = int(ev.flags)
        self._pending.append(SyscallEvent(
            ts_ns=int(ev.ts_ns), lat_ns=int(ev.lat_ns), syscall=name,
            container=self._name(int(ev.ix)), pid=int(ev.pid), tid=int(ev.tid),
            comm=base.c_string(bytes(ev.comm)), ret=int(ev.ret), flags=flags,
            ns_flags=decode_ns_flags(name, flags), arg=base.c_string(bytes(ev.arg)),
            fstype=base.c_string(bytes(ev.fstype))))

    def read(self) -> list[SyscallEvent]:
        out = sorted(self._drain(), key=lambda e: e.ts_ns)
        self._seen.extend(out)
        return out

    def summary(self) -> dict[tuple[str, str], Summary]:
        """{(container, syscall): Summary(count, p50_ns, p95_ns, failed)} so far."""
        self.read()
        return summarize(self._seen)


def attach(opts: Options | None = None) -> SyscallProbe:
    """Compile and attach; close it (or use ``with``) to detach.

    Raises:
        InvalidArgumentError: an unknown syscall name, a bad pid, targets that cannot be
            told apart.
        UnsupportedError: no bcc, not root, no tracefs, or none of the syscalls traceable.
    """
    opts = opts or Options()
    if opts.pids_under is not None and (isinstance(opts.pids_under, bool)
                                        or not isinstance(opts.pids_under, int)
                                        or opts.pids_under <= 0):
        raise errors.InvalidArgumentError("pids_under", f"{opts.pids_under!r} is not a pid")
    attribution.check(opts.targets)
    base.ensure_tracefs()
    have, lack = available(opts.syscalls)
    if not have:
        raise errors.UnsupportedError(
            TOOL, f"this kernel has no syscall tracepoints for {', '.join(lack)}",
            hint=base.VM_HINT)
    tps = tuple(("syscalls", f"sys_{d}_{n}") for n in have for d in ("enter", "exit"))
    if opts.pids_under is not None:
        tps += (("task", "task_newtask"), ("sched", "sched_process_exit"))
    probe = base.load_event_probe(SyscallProbe, render(opts, have), TOOL, tps)
    try:
        probe.targets = tuple(opts.targets)
        probe.syscalls = tuple(have)
        probe.missing = tuple(f"syscall {n}: no tracepoint" for n in lack)
        attribution.fill(probe.bpf, opts.targets)
        if opts.pids_under is not None:
            import ctypes

            probe.pids_under = opts.pids_under
            tree = probe.bpf[b"lk_tree"]
            for pid in _descendants(opts.pids_under):
                tree[ctypes.c_uint32(pid)] = ctypes.c_uint8(1)
    except BaseException:
        probe.close()
        raise
    return probe
