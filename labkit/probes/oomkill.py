"""oomkill: every process the OOM killer picks, with its memory at that moment (bcc oomkill).

Hook: tracepoint oom:mark_victim, which fires when the kernel marks a task as the OOM victim,
whether the global OOM killer or a memory cgroup at its limit chose it (mm/oom_kill.c).
bcc's oomkill uses a kprobe on oom_kill_process; the tracepoint needs no kprobes.

Which fields the tracepoint carries depends on the kernel: before 6.8 it had only ``pid``;
newer kernels add comm, total_vm, the rss split, uid, pgtables and oom_score_adj (all sizes
in kB).  ``render`` reads the tracepoint's format from tracefs and copies what exists; the
missing fields come back as None.  ``trigger_pid``/``trigger_comm`` name the task that was
allocating when the OOM happened (the current task at the tracepoint), which may differ
from the victim.

Overhead: nothing until an OOM happens, then one perf-buffer record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labkit._sys import features
from labkit.probes import base

__all__ = ["BPF_TEXT", "OomKill", "OomProbe", "Options", "attach", "render"]

TOOL = "oomkill"

BPF_TEXT = r"""
#include <linux/sched.h>

struct oom_event_t {
    u64 ts_ns;
    u32 trigger_pid;
    char trigger_comm[TASK_COMM_LEN];
    u64 has;            // bit i set when field i below was present in the tracepoint
    s64 pid;
    char comm[TASK_COMM_LEN];
    u64 total_vm;
    u64 anon_rss;
    u64 file_rss;
    u64 shmem_rss;
    u64 uid;
    u64 pgtables;
    s64 oom_score_adj;
};

BPF_PERF_OUTPUT(events);

TRACEPOINT_PROBE(oom, mark_victim) {
    struct oom_event_t ev = {};
    ev.ts_ns = bpf_ktime_get_ns();
    ev.trigger_pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&ev.trigger_comm, sizeof(ev.trigger_comm));
    COPY_FIELDS
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}
"""

# Numeric fields in the order of the bits in ``has`` (comm is handled apart).
NUMERIC = ("pid", "total_vm", "anon_rss", "file_rss", "shmem_rss", "uid", "pgtables",
           "oom_score_adj")


@dataclass(frozen=True, slots=True)
class Options:
    """oomkill takes no options today; kept so every probe has the same attach(opts) shape."""


@dataclass(frozen=True, slots=True)
class OomKill:
    """One OOM kill.  Memory figures are kB; None when this kernel's tracepoint lacks them."""

    ts_ns: int
    pid: int
    comm: str | None
    total_vm_kb: int | None
    anon_rss_kb: int | None
    file_rss_kb: int | None
    shmem_rss_kb: int | None
    uid: int | None
    pgtables_kb: int | None
    oom_score_adj: int | None
    trigger_pid: int
    trigger_comm: str


def render(opts: Options, fields: dict[str, str] | None = None) -> str:
    """The BPF C program, copying the fields ``oom:mark_victim`` has on this kernel.

    ``fields`` (name -> C type, as in features.tracepoint_fields) may be given to render for
    another kernel; by default it is read from tracefs.
    """
    if fields is None:
        fields = features.tracepoint_fields("oom", "mark_victim")
    lines = []
    for bit, name in enumerate(NUMERIC):
        if name in fields:
            lines.append(f"ev.{name} = args->{name}; ev.has |= 1ULL << {bit};")
    comm = fields.get("comm")
    if comm is not None:
        bit = len(NUMERIC)
        if comm.startswith("__data_loc"):
            # __data_loc: low 16 bits are the string's offset inside the record (__get_str).
            src = "(void *)args + (args->data_loc_comm & 0xFFFF)"
        else:
            src = "args->comm"
        lines.append(f"bpf_probe_read_kernel_str(&ev.comm, sizeof(ev.comm), {src}); "
                     f"ev.has |= 1ULL << {bit};")
    return BPF_TEXT.replace("COPY_FIELDS", "\n    ".join(lines))


class OomProbe(base.BccProbe[OomKill]):
    """An attached oomkill; ``read()`` returns the kills seen since the last read."""

    def _on_event(self, cpu: int, data: Any, size: int) -> None:
        ev = self.bpf[b"events"].event(data)
        has = int(ev.has)

        def num(name: str) -> int | None:
            return int(getattr(ev, name)) if has & (1 << NUMERIC.index(name)) else None

        self._pending.append(OomKill(
            ts_ns=int(ev.ts_ns), pid=int(ev.pid),
            comm=base.c_string(bytes(ev.comm)) if has & (1 << len(NUMERIC)) else None,
            total_vm_kb=num("total_vm"), anon_rss_kb=num("anon_rss"),
            file_rss_kb=num("file_rss"), shmem_rss_kb=num("shmem_rss"), uid=num("uid"),
            pgtables_kb=num("pgtables"), oom_score_adj=num("oom_score_adj"),
            trigger_pid=int(ev.trigger_pid), trigger_comm=base.c_string(bytes(ev.trigger_comm))))

    def read(self) -> list[OomKill]:
        return sorted(self._drain(), key=lambda e: e.ts_ns)


def attach(opts: Options | None = None) -> OomProbe:
    """Compile and attach oomkill.

    Raises:
        UnsupportedError: no bcc, not root, or no oom:mark_victim tracepoint (the hint says
            where to find a kernel that has it).
    """
    opts = opts or Options()
    return base.load_event_probe(OomProbe, render(opts), TOOL, (("oom", "mark_victim"),))
