"""cgattach: every move of a process into a cgroup, per container, with its latency where
kprobes allow.

Hooks:

* tracepoint cgroup:cgroup_attach_task: a task was moved (a write to cgroup.procs or
  tasks), with the destination's hierarchy (``dst_root``: 0 is the v2 hierarchy), level,
  id and path, and the moved task's pid and comm.  It fires in the *writer's* context after
  the move, so attribution is by destination: the v2 id through lk_targets
  (labkit.probes.attribution), a v1 hierarchy's path against the targets' cgroup paths.
* a child born in a cgroup (clone3 with CLONE_INTO_CGROUP, how labkit-runtime and crun
  start a container) is no attach and fires no attach tracepoint: task:task_newtask sees
  the flag in the parent, syscalls:sys_exit_clone3 then runs in the child, already in its
  cgroup, whose id bpf_get_current_cgroup_id() gives (kind "clone_into").
* mode "kprobe" (kernels with kprobes, e.g. the VM): also a kprobe and a kretprobe on the
  kernfs write handlers of cgroup.procs / tasks (cgroup_procs_write, cgroup1_procs_write,
  cgroup1_tasks_write, cgroup_threads_write), so ``lat_ns`` is the whole write: the wait
  for cgroup_threadgroup_rwsem (the RCU grace period: 5-15 ms after a quiet spell here)
  plus the migration.  A kprobe on cgroup_attach_task would miss that wait (the lock is
  taken before it is called); it is used only when no write handler can be probed.  In
  mode "tracepoint" ``lat_ns`` is None and ``.missing`` says so.

Overhead: nothing but on cgroup moves and clone3, which are rare; kprobes add a trap each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from labkit import errors
from labkit._sys import features
from labkit.probes import attribution, base
from labkit.probes.target import Target

__all__ = ["BPF_TEXT", "WRITE_HANDLERS", "Attach", "AttachProbe", "Options", "attach",
           "render", "select"]

TOOL = "cgattach"
KINDS = {1: "attach", 2: "clone_into"}
LATENCY_MISSING = "attach latency (lat_ns): needs kprobes on the cgroup.procs write handlers"
# kernfs .write handlers of cgroup.procs/tasks/cgroup.threads (kernel/cgroup/cgroup.c,
# cgroup-v1.c): their address is taken, so they are never inlined and can be kprobed.
WRITE_HANDLERS = ("cgroup_procs_write", "cgroup_threads_write", "cgroup1_procs_write",
                  "cgroup1_tasks_write")
# Where none of them can be probed: cgroup_attach_task itself (the move, called with the
# lock already held, so its time leaves out the wait for it).  Never both: nested entries
# would overwrite each other's start time.
MIGRATE = "cgroup_attach_task"
CLONE_INTO_CGROUP = 0x200000000

BPF_TEXT = r"""
#include <linux/sched.h>

#define PATH_LEN 128

ATTRIBUTION

struct event_t {
    u64 ts_ns;
    u64 lat_ns;         // kprobe mode: the whole cgroup.procs write; else 0
    u64 dst_id;
    u32 kind;           // 1 attach, 2 clone_into
    u32 ix;             // attribution index of a v2 destination (0: none or v1)
    s32 dst_root;
    s32 dst_level;
    u32 pid;            // the task moved
    u32 by_pid;         // the writer (tgid)
    char comm[TASK_COMM_LEN];      // the task moved
    char by_comm[TASK_COMM_LEN];   // the writer
    char dst_path[PATH_LEN];
};

BPF_PERF_OUTPUT(events);
BPF_TABLE("lru_hash", u32, u64, lk_into, 4096);   // child tid born by CLONE_INTO_CGROUP

static __always_inline u32 lk_dst_ix(u64 dst_id) {
    u32 *p = lk_targets.lookup(&dst_id);
    return p ? *p : 0;
}

KPROBES
TRACEPOINT_PROBE(cgroup, cgroup_attach_task) {
    struct event_t ev = {};
    ev.ts_ns = bpf_ktime_get_ns();
    ev.kind = 1;
    ev.dst_root = args->dst_root;
    ev.dst_level = args->dst_level;
    DST_ID
    ev.ix = ev.dst_root == 0 ? lk_dst_ix(ev.dst_id) : 0;
    ev.pid = args->pid;
    ev.by_pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&ev.by_comm, sizeof(ev.by_comm));
    bpf_probe_read_kernel_str(&ev.dst_path, sizeof(ev.dst_path),
                              (void *)args + (args->data_loc_dst_path & 0xFFFF));
    bpf_probe_read_kernel_str(&ev.comm, sizeof(ev.comm),
                              (void *)args + (args->data_loc_comm & 0xFFFF));
    ON_ATTACH
    return 0;
}

TRACEPOINT_PROBE(task, task_newtask) {
    if (!(args->clone_flags & CLONE_INTO_CGROUP_FLAG))
        return 0;
    u32 child = args->pid;
    u64 ts = bpf_ktime_get_ns();
    lk_into.update(&child, &ts);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_clone3) {
    if (args->ret != 0)
        return 0;                       // the parent's return
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = id;
    u64 *born = lk_into.lookup(&tid);
    if (!born)
        return 0;
    lk_into.delete(&tid);
    u32 ix = 0;
    lk_target_of(&ix);                  // host=True: always kept, ix 0 when no target
    struct event_t ev = {};
    ev.ts_ns = *born;
    ev.kind = 2;
    ev.ix = ix;
    ev.dst_root = 0;
    ev.dst_level = -1;
    ev.dst_id = bpf_get_current_cgroup_id();
    ev.pid = id >> 32;
    ev.by_pid = 0;
    bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}
"""

_SUBMIT = "events.perf_submit(args, &ev, sizeof(ev));"

# kprobe mode: the tracepoint parks its record per writer thread; the write handler's
# return sends it with the time since the handler's entry.  Rendered before the tracepoint
# program, which uses these maps (C wants them declared first).
_KPROBES = r"""
BPF_HASH(lk_wstart, u32, u64, 4096);                 // writer tid -> write handler entry
BPF_HASH(lk_parked, u32, struct event_t, 4096);      // writer tid -> its attach record

int lk_write_enter(struct pt_regs *ctx) {
    u32 tid = bpf_get_current_pid_tgid();
    u64 ts = bpf_ktime_get_ns();
    lk_wstart.update(&tid, &ts);
    return 0;
}

int lk_write_return(struct pt_regs *ctx) {
    u32 tid = bpf_get_current_pid_tgid();
    u64 *t0 = lk_wstart.lookup(&tid);
    struct event_t *ev = lk_parked.lookup(&tid);
    if (t0 && ev) {
        ev->lat_ns = bpf_ktime_get_ns() - *t0;
        events.perf_submit(ctx, ev, sizeof(*ev));
    }
    lk_wstart.delete(&tid);
    lk_parked.delete(&tid);
    return 0;
}
"""

_PARK = ("u32 lk_tid = bpf_get_current_pid_tgid();\n"
         "    if (lk_wstart.lookup(&lk_tid)) { lk_parked.update(&lk_tid, &ev); return 0; }\n"
         "    " + _SUBMIT)


@dataclass(frozen=True, slots=True)
class Options:
    """``targets``: containers to watch (empty: every move, as "host"); ``mode``: "auto"
    (kprobes where the kernel has them), "tracepoint", or "kprobe" (refused without)."""

    targets: Sequence[Target] = ()
    mode: Literal["auto", "tracepoint", "kprobe"] = "auto"


@dataclass(frozen=True, slots=True)
class Attach:
    """One move into a cgroup (kind "attach") or a birth in one (kind "clone_into").

    ``dst_root`` 0 is the v2 hierarchy (then ``dst_id`` is the cgroup id probes see);
    ``pid``/``comm``: the task moved; ``by_pid``/``by_comm``: who wrote cgroup.procs (a
    task moving itself is both; None for clone_into); ``lat_ns``: kprobe mode only.
    ``dst_path`` is empty for clone_into (the BPF side cannot read it without kernel
    structs); ``container`` names it anyway, by cgroup id."""

    ts_ns: int
    kind: str
    container: str
    pid: int
    comm: str
    dst_root: int
    dst_level: int
    dst_id: int
    dst_path: str
    by_pid: int | None
    by_comm: str
    lat_ns: int | None


def select(mode: str, *, has_kprobes: bool | None = None,
           has_symbol: Callable[[str], bool] | None = None
           ) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(mode that runs, write handlers to kprobe, what that mode cannot see).

    Raises:
        InvalidArgumentError: an unknown mode.
        UnsupportedError: mode "kprobe" on a kernel without kprobes or without the handlers.
    """
    if mode not in ("auto", "tracepoint", "kprobe"):
        raise errors.InvalidArgumentError("mode", f"{mode!r}: use auto, tracepoint or kprobe")
    kp = features.has_kprobes() if has_kprobes is None else has_kprobes
    sym = features.kallsyms_has if has_symbol is None else has_symbol
    fns: tuple[str, ...] = ()
    if kp and mode != "tracepoint":
        fns = tuple(f for f in WRITE_HANDLERS if sym(f))
        if not fns and sym(MIGRATE):
            # no write handler to probe: time the migration alone (without the lock wait)
            fns = (MIGRATE,)
    if mode == "kprobe" and not fns:
        why = ("this kernel was built without CONFIG_KPROBES" if not kp
               else f"none of {', '.join((*WRITE_HANDLERS, MIGRATE))} is in /proc/kallsyms")
        raise errors.UnsupportedError("kprobes", why,
                                      hint=base.VM_HINT + "; or Options(mode='tracepoint')")
    if fns:
        return "kprobe", fns, ()
    return "tracepoint", (), (LATENCY_MISSING,)


def render(opts: Options, *, kprobes: bool = False,
           fields: dict[str, str] | None = None) -> str:
    """The BPF C program; ``kprobes``: with the write-handler latency (see ``select``);
    ``fields``: cgroup_attach_task's format (default: read from tracefs)."""
    if fields is None:
        fields = features.tracepoint_fields("cgroup", "cgroup_attach_task")
    # dst_id is a u64 since Linux 5.7 (cgroup ids became kernfs ids); older: int.
    dst = "ev.dst_id = args->dst_id;" if "dst_id" in fields or not fields else "ev.dst_id = 0;"
    return (BPF_TEXT.replace("ATTRIBUTION", attribution.render(opts.targets, host=True))
            .replace("DST_ID", dst)
            .replace("CLONE_INTO_CGROUP_FLAG", f"{CLONE_INTO_CGROUP:#x}ULL")
            .replace("ON_ATTACH", _PARK if kprobes else _SUBMIT)
            .replace("KPROBES", _KPROBES if kprobes else ""))


class AttachProbe(base.BccProbe[Attach]):
    """An attached cgattach; ``read()`` returns the moves since the last read."""

    def __init__(self, bpf: Any, tool: str) -> None:
        super().__init__(bpf, tool)
        self.targets: tuple[Target, ...] = ()
        self.mode = "tracepoint"
        self.missing: tuple[str, ...] = (LATENCY_MISSING,)

    def _container(self, ix: int, path: str) -> str | None:
        if ix:
            return attribution.name_of(self.targets, ix)
        for t in self.targets:
            # a v1 hierarchy's move: the same path as the target's v2 mirror, or below it
            if t.cgroup_path and (path == t.cgroup_path or path.startswith(t.cgroup_path + "/")):
                return t.name
        return None if self.targets else attribution.HOST

    def _on_event(self, cpu: int, data: Any, size: int) -> None:
        ev = self.bpf[b"events"].event(data)
        path = base.c_string(bytes(ev.dst_path))
        name = self._container(int(ev.ix), path)
        if name is None:
            return  # not a watched container
        kind = KINDS.get(int(ev.kind), "?")
        self._pending.append(Attach(
            ts_ns=int(ev.ts_ns), kind=kind, container=name, pid=int(ev.pid),
            comm=base.c_string(bytes(ev.comm)), dst_root=int(ev.dst_root),
            dst_level=int(ev.dst_level), dst_id=int(ev.dst_id), dst_path=path,
            by_pid=int(ev.by_pid) if kind == "attach" else None,
            by_comm=base.c_string(bytes(ev.by_comm)),
            lat_ns=int(ev.lat_ns) if self.mode == "kprobe" else None))

    def read(self) -> list[Attach]:
        return sorted(self._drain(), key=lambda e: e.ts_ns)


def _attach_kprobes(probe: AttachProbe, fns: tuple[str, ...], asked: str) -> None:
    """kprobe + kretprobe on each write handler.  If the kernel refuses one (a function on
    the kprobe blacklist, say), mode "auto" goes on as "tracepoint": without an entry time
    the tracepoint sends its record itself (see _PARK)."""
    done: list[str] = []
    try:
        for fn in fns:
            probe.bpf.attach_kprobe(event=fn.encode(), fn_name=b"lk_write_enter")
            done.append(fn)
            probe.bpf.attach_kretprobe(event=fn.encode(), fn_name=b"lk_write_return")
    except Exception as err:  # bcc raises bare Exception when attaching fails
        for fn in done:
            for detach in (probe.bpf.detach_kprobe, probe.bpf.detach_kretprobe):
                try:
                    detach(event=fn.encode())
                except Exception:  # noqa: BLE001, S112 - the other half may never have attached
                    continue
        if asked == "kprobe":
            raise errors.UnsupportedError(
                "kprobes", f"attaching to {fns[len(done)]} failed: {err}",
                hint="Options(mode='tracepoint')") from err
        probe.mode = "tracepoint"
        probe.missing = (f"{LATENCY_MISSING} ({fns[len(done)]}: {err})",)


def attach(opts: Options | None = None) -> AttachProbe:
    """Compile and attach; ``.mode`` says which ran, ``.missing`` what it cannot see.

    Raises:
        InvalidArgumentError: a bad mode, or targets that cannot be told apart.
        UnsupportedError: no bcc, not root, no cgroup tracepoint; mode "kprobe" without
            kprobes.
    """
    opts = opts or Options()
    attribution.check(opts.targets)
    mode, fns, missing = select(opts.mode)
    tps = (("cgroup", "cgroup_attach_task"), ("task", "task_newtask"),
           ("syscalls", "sys_exit_clone3"))
    probe = base.load_event_probe(AttachProbe, render(opts, kprobes=bool(fns)), TOOL, tps)
    try:
        probe.targets = tuple(opts.targets)
        probe.mode, probe.missing = mode, missing
        _attach_kprobes(probe, fns, opts.mode)
        attribution.fill(probe.bpf, opts.targets)
    except BaseException:
        probe.close()
        raise
    return probe
