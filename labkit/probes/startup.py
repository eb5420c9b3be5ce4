"""startup: the kernel's side of container starts, event by event, for a timeline.

For the processes of one traced tree (the descendants of given root pids, followed through
every fork) or for every process (``roots=None``), one record per:

* syscall that builds a container, with its enter and exit time and return value:
  clone, clone3, unshare, setns, mount, pivot_root, execve (the flags or nstype argument
  for the namespace calls, the target path for mount and pivot_root, the file for execve);
* cgroup:cgroup_attach_task (the pid moved and the destination path, one record per v1
  hierarchy it joins);
* sched:sched_process_fork / sched_process_exec / sched_process_exit.

Times are CLOCK_MONOTONIC (bpf_ktime_get_ns), the clock of labkit's own trace points
(labkit._sys.trace), so labkit.measure.timeline joins the two.  Tracepoints only, no
kernel struct reads (only tracepoint args and user memory the syscall names).  The tree is
followed in BPF: a hash of tids, a child added at its fork when its parent is in it; the
tree as it stands at attach is seeded from /proc.  Overhead: a hash lookup per traced
syscall enter/exit of the machine, one perf record per event of the tree.

Not the per-container counts (labkit.probes.nssyscalls): this keeps every event with its
pid, in order, for one run.

Example::

    with startup.attach([daemon_pid, os.getpid()]) as p:
        subprocess.run(["docker", "run", "--rm", "busybox", "true"])
        events = p.read()          # [Event(kind='clone', ts_ns=..., enter_ns=..., ...)]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from labkit._sys import features
from labkit.probes import base

__all__ = ["BPF_TEXT", "SYSCALLS", "Event", "StartupProbe", "attach", "descendants", "render"]

TOOL = "startup"
SYSCALLS = ("clone", "clone3", "unshare", "setns", "mount", "pivot_root", "execve")
KINDS = {1: "fork", 2: "exec", 3: "exit", 4: "cgroup_attach",
         **{10 + i: name for i, name in enumerate(SYSCALLS)}}

BPF_TEXT = r"""
#include <linux/sched.h>

#define TEXT_LEN 64

struct event_t {
    u64 ts_ns;       // the event, or the syscall's exit
    u64 enter_ns;    // the syscall's enter (0 for the others)
    s64 ret;         // the syscall's return value
    u64 arg;         // clone/clone3/unshare/mount flags, setns nstype, attach: hierarchy id
    u32 kind;
    u32 pid;         // tgid of the current task
    u32 tid;
    u32 other;       // fork: the child; cgroup_attach: the pid moved
    char comm[TASK_COMM_LEN];
    char text[TEXT_LEN];  // exec/execve: file; mount/pivot_root: target; attach: cgroup
};

struct enter_t {
    u64 ts;
    u64 arg;
    char text[TEXT_LEN];
};

BPF_PERF_OUTPUT(events);
BPF_HASH(tracked, u32, u8, 65536);         // tids of the traced tree
BPF_PERCPU_ARRAY(scratch, struct enter_t, 1);
BPF_HASH(entered, u32, struct enter_t, 4096);  // tid -> its syscall in flight

static inline int traced(u32 tid, u32 tgid) {
    if (TRACE_ALL)
        return 1;
    return tracked.lookup(&tid) != 0 || tracked.lookup(&tgid) != 0;
}

static inline void fill(struct event_t *ev, u32 kind) {
    u64 id = bpf_get_current_pid_tgid();
    ev->ts_ns = bpf_ktime_get_ns();
    ev->kind = kind;
    ev->pid = id >> 32;
    ev->tid = (u32)id;
    bpf_get_current_comm(&ev->comm, sizeof(ev->comm));
}

static inline int enter(u64 arg, const char *user_text) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = id, tgid = id >> 32;
    if (!traced(tid, tgid))
        return 0;
    int zero = 0;
    struct enter_t *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    e->ts = bpf_ktime_get_ns();
    e->arg = arg;
    e->text[0] = 0;
    if (user_text)
        bpf_probe_read_user_str(&e->text, sizeof(e->text), user_text);
    entered.update(&tid, e);
    return 0;
}

static inline int leave(void *ctx, u32 kind, s64 ret) {
    u32 tid = bpf_get_current_pid_tgid();
    struct enter_t *e = entered.lookup(&tid);
    if (!e)
        return 0;
    struct event_t ev = {};
    fill(&ev, kind);
    ev.enter_ns = e->ts;
    ev.arg = e->arg;
    ev.ret = ret;
    __builtin_memcpy(&ev.text, e->text, sizeof(ev.text));
    entered.delete(&tid);
    events.perf_submit(ctx, &ev, sizeof(ev));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_clone) { return enter(args->clone_flags, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_clone) { return leave(args, 10, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_clone3) {
    u64 flags = 0;   // struct clone_args starts with its u64 flags (linux/sched.h, uapi)
    bpf_probe_read_user(&flags, sizeof(flags), (void *)args->uargs);
    return enter(flags, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_clone3) { return leave(args, 11, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_unshare) { return enter(args->unshare_flags, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_unshare) { return leave(args, 12, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_setns) { return enter(args->SETNS_FLAG, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_setns) { return leave(args, 13, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_mount) { return enter(args->flags, args->dir_name); }
TRACEPOINT_PROBE(syscalls, sys_exit_mount) { return leave(args, 14, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_pivot_root) { return enter(0, args->new_root); }
TRACEPOINT_PROBE(syscalls, sys_exit_pivot_root) { return leave(args, 15, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_execve) { return enter(0, args->filename); }
TRACEPOINT_PROBE(syscalls, sys_exit_execve) { return leave(args, 16, args->ret); }

TRACEPOINT_PROBE(sched, sched_process_fork) {
    u32 parent = args->parent_pid, child = args->child_pid;
    u64 id = bpf_get_current_pid_tgid();
    if (!traced(parent, id >> 32))
        return 0;
    u8 one = 1;
    if (!TRACE_ALL)
        tracked.update(&child, &one);
    struct event_t ev = {};
    fill(&ev, 1);
    ev.other = child;
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec) {
    u64 id = bpf_get_current_pid_tgid();
    if (!traced((u32)id, id >> 32))
        return 0;
    struct event_t ev = {};
    fill(&ev, 2);
    EXEC_FILENAME_READ
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = id, tgid = id >> 32;
    if (!traced(tid, tgid))
        return 0;
    tracked.delete(&tid);    // its tid may be reused by an unrelated process
    entered.delete(&tid);
    if (tid != tgid)
        return 0;            // a thread, not the process
    struct event_t ev = {};
    fill(&ev, 3);
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_attach_task) {
    u64 id = bpf_get_current_pid_tgid();
    u32 moved = args->pid;
    if (!traced((u32)id, id >> 32) && !traced(moved, moved))
        return 0;
    struct event_t ev = {};
    fill(&ev, 4);
    ev.other = moved;
    ev.arg = args->dst_root;
    bpf_probe_read_kernel_str(&ev.text, sizeof(ev.text),
                              (void *)args + (args->data_loc_dst_path & 0xFFFF));
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}
"""


@dataclass(frozen=True, slots=True)
class Event:
    """One kernel event of the traced tree.  Times are CLOCK_MONOTONIC ns.

    ``kind``: a syscall name (clone, clone3, unshare, setns, mount, pivot_root, execve;
    ``enter_ns`` .. ``ts_ns`` its duration, ``ret`` its result), or fork (``other`` the
    child), exec, exit, cgroup_attach (``other`` the pid moved, ``text`` the cgroup)."""

    ts_ns: int
    kind: str
    pid: int
    tid: int
    comm: str = ""
    text: str = ""
    enter_ns: int = 0
    ret: int = 0
    arg: int = 0
    other: int = 0


def render(roots: list[int] | None = None) -> str:
    """The BPF C program for this kernel: follow a tree (``roots``) or every process (None)."""
    kind = features.tracepoint_fields("sched", "sched_process_exec").get("filename", "")
    if kind.startswith("__data_loc") or not kind:
        read = ("bpf_probe_read_kernel_str(&ev.text, sizeof(ev.text), "
                "(void *)args + (args->data_loc_filename & 0xFFFF));")
    else:
        read = "bpf_probe_read_kernel_str(&ev.text, sizeof(ev.text), args->filename);"
    # setns(2)'s second argument: "nstype" in older kernels' tracepoint, "flags" in newer
    setns = features.tracepoint_fields("syscalls", "sys_enter_setns")
    flag = "nstype" if "nstype" in setns else "flags"
    return (BPF_TEXT.replace("EXEC_FILENAME_READ", read).replace("SETNS_FLAG", flag)
            .replace("TRACE_ALL", "0" if roots is not None else "1"))


def descendants(roots: list[int]) -> set[int]:
    """``roots`` and every live process and thread below them, from /proc (the tree at attach)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out: set[int] = set()
    todo = [r for r in roots if r > 0]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo.extend(children.get(pid, []))
    tids: set[int] = set()
    for pid in out:
        try:
            tids.update(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
    return out | tids


class StartupProbe(base.BccProbe[Event]):
    """An attached startup probe; ``read()`` drains the events since the last read, in order."""

    def _on_event(self, cpu: int, data: Any, size: int) -> None:
        ev = self.bpf[b"events"].event(data)
        self._pending.append(Event(
            ts_ns=int(ev.ts_ns), kind=KINDS.get(int(ev.kind), "?"), pid=int(ev.pid),
            tid=int(ev.tid), comm=base.c_string(bytes(ev.comm)),
            text=base.c_string(bytes(ev.text)), enter_ns=int(ev.enter_ns), ret=int(ev.ret),
            arg=int(ev.arg), other=int(ev.other)))

    def follow(self, pids: set[int] | list[int]) -> None:
        """Add processes (and their future children) to the traced tree."""
        table = self.bpf[b"tracked"]
        for pid in pids:
            table[table.Key(pid)] = table.Leaf(1)

    def read(self) -> list[Event]:
        # Per-CPU perf buffers drain CPU by CPU: put the records back in time order.
        return sorted(self._drain(), key=lambda e: e.ts_ns)


def attach(roots: list[int] | None = None) -> StartupProbe:
    """Compile and attach; ``roots``: trace these pids' trees (seeded from /proc now), or
    every process when None.  Close it (or use ``with``) to detach.

    Raises:
        UnsupportedError: no bcc, not root, no tracefs, or a tracepoint is missing.
    """
    tps = [("syscalls", f"sys_{d}_{s}") for s in SYSCALLS for d in ("enter", "exit")]
    tps += [("sched", e) for e in ("sched_process_fork", "sched_process_exec",
                                   "sched_process_exit")]
    tps.append(("cgroup", "cgroup_attach_task"))
    probe = base.load_event_probe(StartupProbe, render(roots), TOOL, tuple(tps))
    if roots is not None:
        try:
            probe.follow(descendants(roots))
        except BaseException:
            probe.close()
            raise
    return probe
