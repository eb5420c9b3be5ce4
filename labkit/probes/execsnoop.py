"""execsnoop: every successful execve(2), as it happens (after bcc's tools/execsnoop.py).

Hooks: tracepoint sched:sched_process_exec (fires once per exec that succeeded, with the
file name the kernel resolved) and sched:sched_process_fork (to remember each new process's
parent, so a record can name its ppid without reading task_struct, whose layout the nearest
kernel headers may get wrong).  Tracepoints are a stable ABI; no kprobes are needed.

Overhead: one perf-buffer record (~300 bytes) per exec and one hash update per fork.
Caveats: ``ppid`` is None for processes forked before the probe attached; failed execs are
not seen (the tracepoint fires only on success); ``filename`` is what was executed, which
for a script is the script, not its interpreter.

Example::

    from labkit.probes import execsnoop
    with execsnoop.attach(execsnoop.Options(ppid=os.getpid())) as p:
        subprocess.run(["/bin/true"])
        p.read()   # [Exec(pid=..., ppid=..., comm='true', filename='/bin/true', ...)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labkit._sys import features
from labkit.probes import base

__all__ = ["BPF_TEXT", "Exec", "ExecProbe", "Options", "attach", "render"]

TOOL = "execsnoop"

BPF_TEXT = r"""
#include <linux/sched.h>

#define FILENAME_LEN 256

struct exec_event_t {
    u64 ts_ns;
    u32 pid;
    u32 ppid;
    u32 uid;
    char comm[TASK_COMM_LEN];
    char filename[FILENAME_LEN];
};

BPF_PERF_OUTPUT(events);
// child tgid -> parent tgid, learnt at fork; LRU so long runs cannot fill it up.
BPF_TABLE("lru_hash", u32, u32, parents, 16384);

TRACEPOINT_PROBE(sched, sched_process_fork) {
    // The tracepoint runs in the parent, so the current tgid is the parent process.
    u32 child = args->child_pid;
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    parents.update(&child, &parent);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec) {
    struct exec_event_t ev = {};
    ev.ts_ns = bpf_ktime_get_ns();
    ev.pid = bpf_get_current_pid_tgid() >> 32;
    ev.uid = (u32)bpf_get_current_uid_gid();
    UID_FILTER
    u32 *pp = parents.lookup(&ev.pid);
    if (pp)
        ev.ppid = *pp;
    PPID_FILTER
    bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
    FILENAME_READ
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}
"""


@dataclass(frozen=True, slots=True)
class Options:
    """Which execs to report: all, or only those of one uid / one parent process."""

    uid: int | None = None
    ppid: int | None = None


@dataclass(frozen=True, slots=True)
class Exec:
    """One successful exec.  ``ts_ns`` is CLOCK_MONOTONIC (bpf_ktime_get_ns)."""

    ts_ns: int
    pid: int
    ppid: int | None
    uid: int
    comm: str
    filename: str


def _filename_read() -> str:
    # The filename is a __data_loc field: the low 16 bits of data_loc_filename are its
    # offset inside the record (include/trace/stages/stage6_event_callback.h, __get_str).
    kind = features.tracepoint_fields("sched", "sched_process_exec").get("filename", "")
    if kind.startswith("__data_loc") or not kind:
        return ("bpf_probe_read_kernel_str(&ev.filename, sizeof(ev.filename), "
                "(void *)args + (args->data_loc_filename & 0xFFFF));")
    return "bpf_probe_read_kernel_str(&ev.filename, sizeof(ev.filename), args->filename);"


def render(opts: Options) -> str:
    """The BPF C program for ``opts``, placeholders filled (pure apart from the tracefs format)."""
    uid = f"if (ev.uid != {int(opts.uid)}) return 0;" if opts.uid is not None else ""
    ppid = f"if (ev.ppid != {int(opts.ppid)}) return 0;" if opts.ppid is not None else ""
    return (BPF_TEXT.replace("UID_FILTER", uid)
            .replace("PPID_FILTER", ppid)
            .replace("FILENAME_READ", _filename_read()))


class ExecProbe(base.BccProbe[Exec]):
    """An attached execsnoop; ``read()`` returns the execs seen since the last read."""

    def _on_event(self, cpu: int, data: Any, size: int) -> None:
        ev = self.bpf[b"events"].event(data)
        self._pending.append(Exec(
            ts_ns=int(ev.ts_ns), pid=int(ev.pid), ppid=int(ev.ppid) or None, uid=int(ev.uid),
            comm=base.c_string(bytes(ev.comm)), filename=base.c_string(bytes(ev.filename))))

    def read(self) -> list[Exec]:
        # Per-CPU perf buffers drain CPU by CPU: put the records back in time order.
        return sorted(self._drain(), key=lambda e: e.ts_ns)


def attach(opts: Options | None = None) -> ExecProbe:
    """Compile and attach execsnoop; close it (or use ``with``) to detach.

    Raises:
        UnsupportedError: no bcc, not root, no tracefs or no sched tracepoints.
    """
    opts = opts or Options()
    return base.load_event_probe(ExecProbe, render(opts), TOOL,
                                 (("sched", "sched_process_exec"),))
