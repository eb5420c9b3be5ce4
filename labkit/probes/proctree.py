"""proctree: each process's life (fork, exec, exit) and its time on a CPU, from tracepoints.

What a start costs, hop by hop, without touching the components: the kernel already knows
when each process of the engine was forked, exec'd and ended, and how long each ran.

Hooks (all tracepoints, a stable ABI; no kprobes, no task_struct reads whose layout the
nearest kernel headers may get wrong):

* sched:sched_switch: on-CPU time per process.  The tracepoint fires in __schedule() while
  ``current`` is still the task being switched out, so bpf_get_current_pid_tgid() names its
  process (tgid); the time since that thread was switched in is added to the process.
* sched:sched_process_fork / sched_process_exec / sched_process_exit: one record each, with
  CLOCK_MONOTONIC time (bpf_ktime_get_ns).  exec's record carries the CPU the process used
  before it (its old program's share); exit is recorded for a thread-group leader only.

Overhead: a hash update on every context switch of the machine (a few hundred ns each), one
perf record per fork/exec/exit.  Meant for benchmark runs, not for always-on use.
Caveats: a thread's first slice, when it was already on a CPU at attach, is not counted.

Example::

    with proctree.attach() as p:
        subprocess.run(["/bin/true"])
        events, cpu = p.read(), p.cpu_ns()   # [Event(kind='fork', ...)], {tgid: ns}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labkit._sys import features
from labkit.probes import base

__all__ = ["BPF_TEXT", "Event", "ProcTreeProbe", "attach", "render"]

TOOL = "proctree"
KINDS = {1: "fork", 2: "exec", 3: "exit"}

BPF_TEXT = r"""
#include <linux/sched.h>

#define FILENAME_LEN 128

struct event_t {
    u64 ts_ns;
    u64 cpu_ns;      // exec: on-CPU time of the process before this exec
    u32 kind;        // 1 fork, 2 exec, 3 exit
    u32 pid;         // fork: the parent's tgid; exec/exit: the process
    u32 child;       // fork: the new task's pid (a thread's tid, or a new process)
    u32 pad;
    char comm[TASK_COMM_LEN];
    char filename[FILENAME_LEN];
};

BPF_PERF_OUTPUT(events);
BPF_HASH(since, u32, u64, 65536);     // tid -> when it was last switched in
BPF_HASH(oncpu, u32, u64, 65536);     // tgid -> ns on a CPU (since its last exec)

static u64 take(u32 tid, u32 tgid, u64 now) {
    // Close the running slice of ``tid`` at ``now``; return the process's total so far.
    u64 *t0 = since.lookup(&tid);
    u64 *acc = oncpu.lookup(&tgid);
    u64 total = acc ? *acc : 0;
    if (t0 && now > *t0)
        total += now - *t0;
    return total;
}

TRACEPOINT_PROBE(sched, sched_switch) {
    u64 now = bpf_ktime_get_ns();
    u64 id = bpf_get_current_pid_tgid();
    u32 prev = args->prev_pid, next = args->next_pid;
    if (prev != 0) {
        u32 tgid = id >> 32;
        u64 total = take(prev, tgid, now);
        oncpu.update(&tgid, &total);
        since.delete(&prev);
    }
    if (next != 0)
        since.update(&next, &now);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork) {
    struct event_t ev = {};
    ev.ts_ns = bpf_ktime_get_ns();
    ev.kind = 1;
    ev.pid = bpf_get_current_pid_tgid() >> 32;
    ev.child = args->child_pid;
    bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec) {
    struct event_t ev = {};
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = id, tgid = id >> 32;
    ev.ts_ns = bpf_ktime_get_ns();
    ev.kind = 2;
    ev.pid = tgid;
    ev.cpu_ns = take(tid, tgid, ev.ts_ns);
    u64 zero = 0;
    oncpu.update(&tgid, &zero);           // from here on, the new program's time
    since.update(&tid, &ev.ts_ns);
    bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
    FILENAME_READ
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 id = bpf_get_current_pid_tgid();
    if ((u32)id != (u32)(id >> 32))
        return 0;                         // a thread, not the process
    struct event_t ev = {};
    ev.ts_ns = bpf_ktime_get_ns();
    ev.kind = 3;
    ev.pid = id >> 32;
    bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}
"""


@dataclass(frozen=True, slots=True)
class Event:
    """One fork, exec or exit.  ``ts_ns`` is CLOCK_MONOTONIC (bpf_ktime_get_ns).

    fork: ``pid`` forked ``child``; exec: ``pid`` ran ``filename`` after ``cpu_ns`` of CPU
    in its old program; exit: process ``pid`` ended."""

    ts_ns: int
    kind: str
    pid: int
    child: int = 0
    comm: str = ""
    filename: str = ""
    cpu_ns: int = 0


def render() -> str:
    """The BPF C program, the exec filename read filled in for this kernel's format."""
    kind = features.tracepoint_fields("sched", "sched_process_exec").get("filename", "")
    if kind.startswith("__data_loc") or not kind:
        read = ("bpf_probe_read_kernel_str(&ev.filename, sizeof(ev.filename), "
                "(void *)args + (args->data_loc_filename & 0xFFFF));")
    else:
        read = "bpf_probe_read_kernel_str(&ev.filename, sizeof(ev.filename), args->filename);"
    return BPF_TEXT.replace("FILENAME_READ", read)


class ProcTreeProbe(base.BccProbe[Event]):
    """An attached proctree: ``read()`` the events since the last read, ``cpu_ns()`` the
    on-CPU time of every process seen (since its last exec)."""

    def _on_event(self, cpu: int, data: Any, size: int) -> None:
        ev = self.bpf[b"events"].event(data)
        self._pending.append(Event(
            ts_ns=int(ev.ts_ns), kind=KINDS.get(int(ev.kind), "?"), pid=int(ev.pid),
            child=int(ev.child), comm=base.c_string(bytes(ev.comm)),
            filename=base.c_string(bytes(ev.filename)), cpu_ns=int(ev.cpu_ns)))

    def read(self) -> list[Event]:
        # Per-CPU perf buffers drain CPU by CPU: put the records back in time order.
        return sorted(self._drain(), key=lambda e: e.ts_ns)

    def cpu_ns(self) -> dict[int, int]:
        """{tgid: ns on a CPU since its last exec (or since attach)}: a snapshot."""
        return {int(k.value): int(v.value) for k, v in self.bpf[b"oncpu"].items()}


def attach() -> ProcTreeProbe:
    """Compile and attach proctree; close it (or use ``with``) to detach.

    Raises:
        UnsupportedError: no bcc, not root, no tracefs or no sched tracepoints.
    """
    events = ("sched_switch", "sched_process_fork", "sched_process_exec", "sched_process_exit")
    return base.load_event_probe(ProcTreeProbe, render(), TOOL,
                                 tuple(("sched", e) for e in events))
