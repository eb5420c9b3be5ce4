"""lifecycle: every fork, exec and exit of the watched containers, named by container.

Hooks (tracepoints only, a stable ABI; no task_struct reads):

* task:task_newtask: a new task, in its parent's context (so with the parent's cgroup, which
  the child inherits), with the clone flags: CLONE_THREAD tells a thread from a process
  (threads are left out unless ``Options(threads=True)``);
* sched:sched_process_exec: a successful exec, with the file the kernel resolved;
* sched:sched_process_exit: a task ends; a process is reported when its last thread does
  (the tracepoint's ``group_dead``; on kernels before it had that field, when the thread
  group leader exits);
* syscalls:sys_enter_exit_group: the status a process asked for.  sched_process_exit carries
  no exit code, so ``code`` is the exit_group(2) status when the process called it, and None
  when it did not (killed by a signal, or its last thread called exit(2)).

Each event is attributed to a container by its cgroup (labkit.probes.attribution); ``ppid``
is learnt at fork, so it is None for processes forked before the probe attached.

Overhead: a hash lookup per fork/exec/exit and exit_group on the machine, one perf record
per event of a watched container.

Example::

    from labkit.probes import lifecycle, target
    with lifecycle.attach(lifecycle.Options(targets=(target.resolve("web"),))) as p:
        ...
        [e for e in p.read() if e.kind == "exec"]   # [Event(container='web', ...)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labkit._sys import features
from labkit.probes import attribution, base
from labkit.probes.target import Target

__all__ = ["BPF_TEXT", "Event", "LifecycleProbe", "Options", "attach", "render"]

TOOL = "lifecycle"
KINDS = {1: "fork", 2: "exec", 3: "exit"}
MODE = "tracepoint"
MISSING: tuple[str, ...] = ()

BPF_TEXT = r"""
#include <linux/sched.h>

#define FILENAME_LEN 256
#define LK_CLONE_THREAD 0x00010000ULL

ATTRIBUTION

struct event_t {
    u64 ts_ns;
    u64 clone_flags;    // fork: the flags copy_process was given
    u32 kind;           // 1 fork, 2 exec, 3 exit
    u32 ix;             // attribution index (0 = host)
    u32 pid;            // fork: the new task; exec/exit: the process (tgid)
    u32 ppid;           // 0 = unknown
    s32 code;           // exit: exit_group(2) status
    u32 has_code;
    u32 ns_pid;         // exec/exit: the pid inside the container's pid namespace (0: none)
    u32 pad;
    char comm[TASK_COMM_LEN];
    char filename[FILENAME_LEN];
};

BPF_PERF_OUTPUT(events);
BPF_TABLE("lru_hash", u32, u32, lk_parents, 16384);   // tgid -> parent tgid, learnt at fork
BPF_TABLE("lru_hash", u32, s32, lk_codes, 16384);     // tgid -> exit_group status

TRACEPOINT_PROBE(task, task_newtask) {
    LK_TARGET(ix);
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    u32 child = args->pid;
    if (args->clone_flags & LK_CLONE_THREAD) {
        THREADS
    } else {
        lk_parents.update(&child, &parent);
    }
    struct event_t ev = {};
    ev.ts_ns = bpf_ktime_get_ns();
    ev.kind = 1;
    ev.ix = ix;
    ev.pid = child;
    ev.ppid = parent;
    ev.clone_flags = args->clone_flags;
    bpf_probe_read_kernel_str(&ev.comm, sizeof(ev.comm), args->comm);
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec) {
    LK_TARGET(ix);
    struct event_t ev = {};
    ev.ts_ns = bpf_ktime_get_ns();
    ev.kind = 2;
    ev.ix = ix;
    ev.pid = bpf_get_current_pid_tgid() >> 32;
    NS_PID
    u32 *pp = lk_parents.lookup(&ev.pid);
    if (pp)
        ev.ppid = *pp;
    bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
    FILENAME_READ
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}

EXIT_GROUP

TRACEPOINT_PROBE(sched, sched_process_exit) {
    LK_TARGET(ix);
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    PROCESS_DEAD
    struct event_t ev = {};
    ev.ts_ns = bpf_ktime_get_ns();
    ev.kind = 3;
    ev.ix = ix;
    ev.pid = tgid;
    NS_PID
    u32 *pp = lk_parents.lookup(&tgid);
    if (pp)
        ev.ppid = *pp;
    s32 *code = lk_codes.lookup(&tgid);
    if (code) {
        ev.code = *code;
        ev.has_code = 1;
        lk_codes.delete(&tgid);
    }
    lk_parents.delete(&tgid);
    bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}
"""

_EXIT_GROUP = r"""
TRACEPOINT_PROBE(syscalls, sys_enter_exit_group) {
    LK_TARGET(ix);
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    s32 code = args->error_code;
    lk_codes.update(&tgid, &code);
    return 0;
}
"""

TRACEPOINTS = (("task", "task_newtask"), ("sched", "sched_process_exec"),
               ("sched", "sched_process_exit"))
EXIT_CODES_MISSING = "exit codes: this kernel has no syscalls:sys_enter_exit_group tracepoint"


@dataclass(frozen=True, slots=True)
class Options:
    """``targets``: the containers to watch (empty: everything, as "host");
    ``threads``: report new threads as forks too (``Event.thread`` is then True)."""

    targets: Sequence[Target] = ()
    threads: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    """One fork, exec or exit.  ``ts_ns`` is CLOCK_MONOTONIC (bpf_ktime_get_ns).

    fork: ``ppid`` made ``pid`` (``thread`` when CLONE_THREAD); exec: ``pid`` ran
    ``filename``; exit: process ``pid`` ended, ``code`` its exit_group(2) status or None.
    ``comm`` is the task's name at the event (for a fork, the parent's); ``ns_pid``: for
    exec and exit, the pid inside the container's pid namespace (1 for its init), None for
    the host or a kernel before 5.7."""

    ts_ns: int
    kind: str
    container: str
    pid: int
    ppid: int | None
    comm: str
    filename: str = ""
    code: int | None = None
    thread: bool = False
    ns_pid: int | None = None


def _filename_read(fields: dict[str, str]) -> str:
    # __data_loc: the low 16 bits are the string's offset inside the record (__get_str).
    kind = fields.get("filename", "")
    if kind.startswith("__data_loc") or not kind:
        return ("bpf_probe_read_kernel_str(&ev.filename, sizeof(ev.filename), "
                "(void *)args + (args->data_loc_filename & 0xFFFF));")
    return "bpf_probe_read_kernel_str(&ev.filename, sizeof(ev.filename), args->filename);"


def _process_dead(fields: dict[str, str]) -> str:
    # group_dead (Linux 6.x): this was the process's last live thread.  Without it, the
    # thread group leader's exit stands for the process's.
    if "group_dead" in fields:
        return "if (!args->group_dead) return 0;"
    return "if ((u32)id != tgid) return 0;"


def render(opts: Options, *, exec_fields: dict[str, str] | None = None,
           exit_fields: dict[str, str] | None = None, exit_codes: bool = True,
           ns_pid: bool | None = None) -> str:
    """The BPF C program for ``opts``; the tracepoints' formats are read from tracefs unless
    given (to render for another kernel); ``exit_codes``: hook exit_group(2) (a kernel
    without syscall tracepoints has none, and its exits carry code None); ``ns_pid``: name
    each exec/exit's pid inside its container too (default: Linux 5.7+, for the helper)."""
    if exec_fields is None:
        exec_fields = features.tracepoint_fields("sched", "sched_process_exec")
    if exit_fields is None:
        exit_fields = features.tracepoint_fields("sched", "sched_process_exit")
    ns_pid = features.kernel_version() >= (5, 7) if ns_pid is None else ns_pid
    return (BPF_TEXT.replace("ATTRIBUTION", attribution.render(opts.targets, ns_pid=ns_pid))
            .replace("NS_PID", "ev.ns_pid = lk_ns_pid(ix);" if ns_pid else "")
            .replace("THREADS", "" if opts.threads else "return 0;")
            .replace("FILENAME_READ", _filename_read(exec_fields))
            .replace("PROCESS_DEAD", _process_dead(exit_fields))
            .replace("EXIT_GROUP", _EXIT_GROUP if exit_codes else ""))


class LifecycleProbe(base.BccProbe[Event]):
    """An attached lifecycle probe; ``read()`` returns the events since the last read."""

    mode = MODE

    def __init__(self, bpf: Any, tool: str) -> None:
        super().__init__(bpf, tool)
        self.targets: tuple[Target, ...] = ()
        self.missing: tuple[str, ...] = MISSING

    def _on_event(self, cpu: int, data: Any, size: int) -> None:
        ev = self.bpf[b"events"].event(data)
        flags = int(ev.clone_flags)
        self._pending.append(Event(
            ts_ns=int(ev.ts_ns), kind=KINDS.get(int(ev.kind), "?"),
            container=attribution.name_of(self.targets, int(ev.ix)), pid=int(ev.pid),
            ppid=int(ev.ppid) or None, comm=base.c_string(bytes(ev.comm)),
            filename=base.c_string(bytes(ev.filename)),
            code=int(ev.code) if int(ev.has_code) else None,
            thread=bool(flags & 0x00010000) and int(ev.kind) == 1,
            ns_pid=int(ev.ns_pid) or None))

    def read(self) -> list[Event]:
        # Per-CPU perf buffers drain CPU by CPU: put the records back in time order.
        return sorted(self._drain(), key=lambda e: e.ts_ns)


def attach(opts: Options | None = None) -> LifecycleProbe:
    """Compile and attach; close it (or use ``with``) to detach.

    Raises:
        InvalidArgumentError: a target that cannot be told apart (attribution.check).
        UnsupportedError: no bcc, not root, no tracefs or a missing tracepoint.
    """
    opts = opts or Options()
    attribution.check(opts.targets)
    base.ensure_tracefs()
    codes = features.tracepoint_exists("syscalls", "sys_enter_exit_group")
    probe = base.load_event_probe(LifecycleProbe, render(opts, exit_codes=codes), TOOL,
                                  TRACEPOINTS)
    try:
        probe.missing = MISSING if codes else (EXIT_CODES_MISSING,)
        probe.targets = tuple(opts.targets)
        attribution.fill(probe.bpf, opts.targets)
    except BaseException:
        probe.close()
        raise
    return probe
