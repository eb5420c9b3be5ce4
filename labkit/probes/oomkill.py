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

Container attribution (``Options(targets=...)``): at mark_victim the current task is the one
whose allocation ran into the limit, not necessarily the victim, so its cgroup id
(bpf_get_current_cgroup_id) is recorded as ``trigger_cgroup_id`` and the victim is matched
later: sched:sched_process_exit fires in the victim itself when the SIGKILL ends it, where the
current cgroup is the victim's own; that is ``cgroup_id``, exact (``attributed_by="exit"``).
Before its exit is seen, ``read()`` falls back to the trigger's cgroup when the trigger was the
victim (``"trigger"``, exact too), else to /proc/PID/cgroup read in Python when ``read()``
drains the record (``"proc"``: the victim may be gone by then), else None.  Cgroup ids are
v2 (unified hierarchy) ids, on a hybrid host those of /sys/fs/cgroup/unified; the container
is named through labkit.probes.attribution at both hooks (its sub-cgroups count for it).

Cross-check: ``kill_count(kills, name)`` is the probe's count for a container; it must equal
``cgroup_oom_kills(path)``, the memory cgroup's own ``oom_kill`` counter (v1
memory.oom_control, v2 memory.events), read by labkit.cgroups Stats.

Overhead: nothing until an OOM happens, then one perf-buffer record; a hash lookup per task
exit (to spot the victim's).

Without bcc, ``procfs(opts)`` reads those counters only: how many kills per container since
open, no victim, no time, no memory figures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from labkit import errors
from labkit._sys import features
from labkit.probes import attribution, base
from labkit.probes.target import Target

__all__ = ["BPF_TEXT", "OomCount", "OomKill", "OomProbe", "Options", "ProcfsOom", "attach",
           "cgroup_oom_kills", "kill_count", "open_probe", "procfs", "render"]

TOOL = "oomkill"

BPF_TEXT = r"""
#include <linux/sched.h>

ATTRIBUTION

struct oom_event_t {
    u64 ts_ns;
    u32 kind;           // 1: mark_victim; 2: the victim's exit (pid and cgid only)
    u32 trigger_pid;
    u64 cgid;           // mark_victim: the trigger's cgroup id; exit: the victim's
    u32 ix;             // the same task's target: 1 + index (attribution), 0 for none
    u32 pad;
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
BPF_HASH(victims, u32, u64, 1024);   // victim tid -> when it was marked

TRACEPOINT_PROBE(oom, mark_victim) {
    struct oom_event_t ev = {};
    ev.ts_ns = bpf_ktime_get_ns();
    ev.kind = 1;
    ev.trigger_pid = bpf_get_current_pid_tgid() >> 32;
    ev.cgid = bpf_get_current_cgroup_id();
    lk_target_of(&ev.ix);
    bpf_get_current_comm(&ev.trigger_comm, sizeof(ev.trigger_comm));
    COPY_FIELDS
    u32 tid = args->pid;
    victims.update(&tid, &ev.ts_ns);
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    // Runs in the exiting task: for a marked victim, current's cgroup is the victim's.
    u32 tid = bpf_get_current_pid_tgid();
    if (!victims.lookup(&tid))
        return 0;
    victims.delete(&tid);
    struct oom_event_t ev = {};
    ev.ts_ns = bpf_ktime_get_ns();
    ev.kind = 2;
    ev.pid = tid;
    ev.cgid = bpf_get_current_cgroup_id();
    lk_target_of(&ev.ix);
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}
"""

# Numeric fields in the order of the bits in ``has`` (comm is handled apart).
NUMERIC = ("pid", "total_vm", "anon_rss", "file_rss", "shmem_rss", "uid", "pgtables",
           "oom_score_adj")


@dataclass(frozen=True, slots=True)
class Options:
    """``targets``: containers to name in the records (a kill elsewhere is still reported,
    with ``target`` None)."""

    targets: Sequence[Target] = ()


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
    trigger_cgroup_id: int = 0
    cgroup_id: int | None = None       # the victim's v2 cgroup id (see attributed_by)
    attributed_by: str | None = None   # "exit" | "trigger" | "proc" | None
    target: str | None = None


@dataclass(frozen=True, slots=True)
class OomCount:
    """The procfs fallback's record: a container's OOM kills since open, from the memory
    cgroup's own counter."""

    target: str
    kills: int


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
    return (BPF_TEXT.replace("ATTRIBUTION", attribution.render(opts.targets, host=False))
            .replace("COPY_FIELDS", "\n    ".join(lines)))


class OomProbe(base.BccProbe[OomKill]):
    """An attached oomkill; ``read()`` returns the kills seen since the last read."""

    mode = "tracepoint"
    missing: tuple[str, ...] = ()

    def __init__(self, bpf: Any, tool: str, targets: Sequence[Target] = ()) -> None:
        super().__init__(bpf, tool)
        self.targets = tuple(targets)
        self._exits: dict[int, tuple[int, int]] = {}  # victim tid -> (cgroup id, ix) at exit
        self._trigger_ix: dict[tuple[int, int], int] = {}  # (ts, pid) -> the trigger's ix

    def _on_event(self, cpu: int, data: Any, size: int) -> None:
        ev = self.bpf[b"events"].event(data)
        if int(ev.kind) == 2:
            self._exits[int(ev.pid)] = (int(ev.cgid), int(ev.ix))
            return
        has = int(ev.has)

        def num(name: str) -> int | None:
            return int(getattr(ev, name)) if has & (1 << NUMERIC.index(name)) else None

        pid = int(ev.pid)
        kill = OomKill(
            ts_ns=int(ev.ts_ns), pid=pid,
            comm=base.c_string(bytes(ev.comm)) if has & (1 << len(NUMERIC)) else None,
            total_vm_kb=num("total_vm"), anon_rss_kb=num("anon_rss"),
            file_rss_kb=num("file_rss"), shmem_rss_kb=num("shmem_rss"), uid=num("uid"),
            pgtables_kb=num("pgtables"), oom_score_adj=num("oom_score_adj"),
            trigger_pid=int(ev.trigger_pid), trigger_comm=base.c_string(bytes(ev.trigger_comm)),
            trigger_cgroup_id=int(ev.cgid))
        self._trigger_ix[(kill.ts_ns, pid)] = int(ev.ix)
        if kill.trigger_pid != pid and (cgid := proc_cgroup_id(pid)) is not None:
            # Read now, while the victim may still be there; its exit record overrides it.
            kill = replace(kill, cgroup_id=cgid, attributed_by="proc")
        self._pending.append(kill)

    def _name(self, cgid: int | None, ix: int = 0) -> str | None:
        """The target: by attribution index when the BPF side matched one (its cgroup or
        an ancestor), else by the exact cgroup id."""
        if 1 <= ix <= len(self.targets):
            return self.targets[ix - 1].name
        for t in self.targets:
            if cgid is not None and t.cgroup_id == cgid:
                return t.name
        return None

    def _attribute(self, k: OomKill) -> OomKill:
        trigger_ix = self._trigger_ix.pop((k.ts_ns, k.pid), 0)
        if k.pid in self._exits:
            cgid, ix = self._exits.pop(k.pid)
            return replace(k, cgroup_id=cgid, attributed_by="exit", target=self._name(cgid, ix))
        if k.attributed_by is None and k.trigger_pid == k.pid:
            return replace(k, cgroup_id=k.trigger_cgroup_id, attributed_by="trigger",
                           target=self._name(k.trigger_cgroup_id, trigger_ix))
        return replace(k, target=self._name(k.cgroup_id))

    def read(self) -> list[OomKill]:
        """The kills since the last read, each attributed to its victim's cgroup."""
        kills = self._drain()  # exit records land in _exits while draining
        return sorted((self._attribute(k) for k in kills), key=lambda e: e.ts_ns)

    def counts(self) -> dict[str, int]:
        """{target: kills} over what ``read()`` returns now (which it drains)."""
        out = {t.name: 0 for t in self.targets}
        for k in self.read():
            if k.target is not None:
                out[k.target] += 1
        return out


def attach(opts: Options | None = None) -> OomProbe:
    """Compile and attach oomkill.

    Raises:
        UnsupportedError: no bcc, not root, or no oom:mark_victim tracepoint (the hint says
            where to find a kernel that has it).
    """
    opts = opts or Options()
    text = render(opts)
    attribution.check(opts.targets)
    base.require_root(TOOL)
    for category, event in (("oom", "mark_victim"), ("sched", "sched_process_exit")):
        base.require_tracepoint(category, event, TOOL)
    probe = OomProbe(base.load_bpf(text, TOOL), TOOL, opts.targets)
    try:
        probe._open_events("events")
    except BaseException:
        probe.close()
        raise
    return probe


def kill_count(kills: Sequence[OomKill], target: str) -> int:
    """How many of ``kills`` the probe attributed to container ``target``."""
    return sum(1 for k in kills if k.target == target)


def proc_cgroup_id(pid: int, proc: str | Path = "/proc",
                   unified: str | Path = "/sys/fs/cgroup/unified") -> int | None:
    """The v2 cgroup id of a live process: the inode of its "0::" cgroup directory
    (/proc/PID/cgroup, cgroups(7)); None once it is gone.  ``unified`` is where that
    hierarchy is mounted (/sys/fs/cgroup on a v2-only host: tried when it is absent)."""
    try:
        lines = Path(proc, str(pid), "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            rel = line[3:].lstrip("/")
            for root in (Path(unified), Path("/sys/fs/cgroup")):
                if (root / "cgroup.procs").exists():  # a v2 mount
                    try:
                        return os.stat(root / rel).st_ino
                    except OSError:
                        return None
    return None


def _relative(cgroup: str | Path) -> str:
    """A cgroup's name relative to the hierarchies' mounts: ``cgroup`` is either that name
    (Target.cgroup_path, "/lk/web") or a directory under /sys/fs/cgroup/[HIERARCHY/]."""
    text = os.fspath(cgroup)
    if text.startswith("/sys/fs/cgroup/") or text == "/sys/fs/cgroup":
        rest = Path(text).parts[4:]
        from labkit.cgroups import Mode, detect_mode

        if detect_mode() is not Mode.UNIFIED and rest:
            rest = rest[1:]  # /sys/fs/cgroup/<hierarchy>/<name...>
    else:
        rest = tuple(p for p in text.split("/") if p)
    if not rest or ".." in rest:
        raise errors.InvalidArgumentError("cgroup", f"{text!r} names no container's cgroup")
    return "/".join(rest)


def cgroup_oom_kills(cgroup: str | Path) -> int:
    """The memory cgroup's own OOM-kill counter of a container: v1 memory.oom_control / v2
    memory.events ``oom_kill``, through labkit.cgroups Stats.  ``cgroup``: its name
    (Target.cgroup_path) or its directory in any hierarchy.

    Raises:
        UnsupportedError: this kernel's memory cgroup has no oom_kill counter (before 4.13).
    """
    from labkit.cgroups import open_cgroup

    kills = open_cgroup(_relative(cgroup)).stats().oom_kills
    if kills is None:
        raise errors.UnsupportedError(
            "oom_kill counter", f"the memory cgroup of {cgroup} does not count OOM kills",
            hint="kernel 4.13 or newer; or the VM: labkit vm")
    return kills


def _path(t: Target) -> str:
    if t.cgroup_path is None:
        raise errors.InvalidArgumentError("target", f"{t.name} has no cgroup path")
    return t.cgroup_path


class ProcfsOom(base.CounterFallback):
    """oomkill without bcc: the memory cgroups' oom_kill counters, since open."""

    missing = ("victim pid and comm", "kill time", "memory figures", "trigger")

    def __init__(self, targets: Sequence[Target], reason: str = "") -> None:
        if not targets:
            raise errors.InvalidArgumentError(
                "targets", "the counter fallback reads containers' memory cgroups: name one")
        attribution.check(targets)
        self.targets = tuple(targets)
        self.tool = TOOL
        super().__init__(reason)  # why eBPF did not run (the front door says)
        self._base = {t.name: cgroup_oom_kills(_path(t)) for t in self.targets}

    def read(self) -> list[OomCount]:
        if self._closed:
            raise errors.InvalidStateError("closed", "read", what=f"probe {self.tool}")
        return [OomCount(t.name, cgroup_oom_kills(_path(t)) - self._base[t.name])
                for t in self.targets]

    def counts(self) -> dict[str, int]:
        return {r.target: r.kills for r in self.read()}



def procfs(opts: Options, reason: str = "") -> ProcfsOom:
    """The fallback: the targets' memory-cgroup OOM-kill counters; ``reason``: why eBPF is
    not used."""
    return ProcfsOom(opts.targets, reason)


def open_probe(opts: Options | None = None) -> OomProbe | ProcfsOom:
    """eBPF when it can load, else the counters (``.mode`` says which ran)."""
    opts = opts or Options()
    try:
        return attach(opts)
    except errors.UnsupportedError as err:
        return procfs(opts, str(err))
