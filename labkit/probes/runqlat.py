"""runqlat: run-queue latency per container, the time from a wakeup to running (bcc runqlat).

A task that was woken (or preempted while runnable) waits on a run queue until the scheduler
picks it; that wait is run-queue latency.  This records it as one log2 histogram (in us) per
cgroup, with a count and a sum, like bcc's ``runqlat`` per cgroup, and ``read()`` turns them
into one row per container with p50/p95 estimated from the buckets.

Hooks (tracepoints only: no kprobes, and no task_struct reads, whose layout the nearest
kernel headers may get wrong):

* sched:sched_switch, in __schedule() while ``current`` is still the task switching OUT:
  bpf_get_current_cgroup_id() is that task's cgroup, so ``cgroup_of[prev_pid]`` is learnt
  there; a task switched out while still runnable (preempted: prev_state has no sleep bit)
  starts waiting again.  For ``next_pid``, the wait that began at its wakeup ends.
* sched:sched_wakeup: a known task (in ``cgroup_of``) of a watched cgroup starts waiting.
* sched:sched_wakeup_new: a new task starts waiting; it runs in its parent's cgroup, and
  the waking task is (nearly always) that parent, so the current cgroup names it.

What this misses, so the counts are a floor, not the truth:
* a task's first wakeup after attach when it had not been switched out since (its cgroup is
  not known yet): e.g. an idle process woken once is counted from its second wakeup on;
* a new task placed in another cgroup by clone3(CLONE_INTO_CGROUP), whose first run is
  charged to its parent's cgroup;
* a task moved to another cgroup is charged to its old one until it is next switched out.

The cgroup is the one bpf_get_current_cgroup_id() sees: the v2 (unified) hierarchy, which
on a hybrid host is /sys/fs/cgroup/unified.  With targets, a task is matched to a container
by labkit.probes.attribution (its cgroup or an ancestor is the target's), learnt while the
task is current, so sub-cgroups a container makes count for it.

Overhead: a hash update on every context switch and wakeup of the machine (a few hundred ns
each): meant for a measurement, not always-on.

Without bcc, ``procfs(opts)`` sums ``run_delay`` and the slice count of
/proc/PID/task/TID/schedstat over the container's tasks (Documentation/scheduler/sched-stats
.rst): a mean, but no histogram and no percentiles, and tasks that exited are lost.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.probes import attribution, base
from labkit.probes.target import Target

__all__ = ["BPF_TEXT", "Options", "ProcfsRunq", "RunqProbe", "RunqRow", "attach",
           "buckets_to_row", "cgroup_dir", "open_probe", "percentile", "procfs", "render"]

TOOL = "runqlat"
MAX_SLOTS = 40  # log2 buckets of microseconds: 2**40 us is 12 days

BPF_TEXT = r"""
#include <linux/sched.h>

ATTRIBUTION

struct wait_t {
    u64 ts_ns;
    u64 who;            // see who() below
};

struct hist_key_t {
    u64 who;
    u64 slot;
};

struct total_t {
    u64 count;
    u64 sum_ns;
};

BPF_TABLE("lru_hash", u32, u64, cgroup_of, 65536);    // pid -> who(), learnt when it was current
BPF_HASH(waiting, u32, struct wait_t, 65536);         // pid -> since when it is runnable
BPF_HISTOGRAM(dist, struct hist_key_t, MAX_ENTRIES);
BPF_HASH(totals, u64, struct total_t, 1024);

// Whom the current task's waits count for: with targets, 1 + the index of the target whose
// cgroup (or an ancestor of it) holds the task, 0 for none (labkit.probes.attribution);
// without targets, its cgroup id.
static u64 who(void) {
    WHO
}

static int start_wait(u32 pid, u64 w) {
    if (pid == 0 || w == 0)
        return 0;
    struct wait_t wt = {.ts_ns = bpf_ktime_get_ns(), .who = w};
    waiting.update(&pid, &wt);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup) {
    u32 pid = args->pid;
    u64 *w = cgroup_of.lookup(&pid);
    if (!w)
        return 0;               // not switched out since attach: its cgroup is unknown
    return start_wait(pid, *w);
}

TRACEPOINT_PROBE(sched, sched_wakeup_new) {
    // The new task is in its parent's cgroup, and its parent is the one waking it.
    u32 pid = args->pid;
    u64 w = who();
    cgroup_of.update(&pid, &w);
    return start_wait(pid, w);
}

TRACEPOINT_PROBE(sched, sched_switch) {
    u32 prev = args->prev_pid, next = args->next_pid;
    if (prev != 0) {
        u64 w = who();                    // current is still prev
        cgroup_of.update(&prev, &w);
        // No sleep bit in the reported state (S D T t X Z P I: the low byte): prev was
        // preempted or yielded while runnable, so it waits on the run queue from now.
        if ((args->prev_state & 0xff) == 0)
            start_wait(prev, w);
    }
    if (next == 0)
        return 0;
    struct wait_t *w = waiting.lookup(&next);
    if (!w)
        return 0;
    u64 now = bpf_ktime_get_ns();
    u64 delta = now > w->ts_ns ? now - w->ts_ns : 0;
    struct hist_key_t key = {.who = w->who, .slot = bpf_log2l(delta / 1000)};
    if (key.slot >= MAX_SLOTS)
        key.slot = MAX_SLOTS - 1;
    dist.increment(key);
    struct total_t zero = {};
    struct total_t *t = totals.lookup_or_try_init(&w->who, &zero);
    if (t) {
        __sync_fetch_and_add(&t->count, 1);
        __sync_fetch_and_add(&t->sum_ns, delta);
    }
    waiting.delete(&next);
    return 0;
}
"""


def cgroup_dir(t: Target) -> Path:
    """The directory of a target's cgroup in the v2 hierarchy (Target.cgroup_path is
    relative to its mount: /sys/fs/cgroup/unified on a hybrid host, else /sys/fs/cgroup)."""
    if t.cgroup_path is None:
        raise errors.InvalidArgumentError("target", f"{t.name} has no cgroup v2 path")
    for root in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        if (root / "cgroup.procs").exists():
            return root / t.cgroup_path.lstrip("/")
    raise errors.UnsupportedError("cgroup v2", "no v2 hierarchy is mounted",
                                  hint="use the VM: labkit vm")


@dataclass(frozen=True, slots=True)
class Options:
    """``targets``: the containers to watch (none: every cgroup, each row named by its id)."""

    targets: Sequence[Target] = ()


@dataclass(frozen=True, slots=True)
class RunqRow:
    """One container's run-queue latency: ``buckets`` are (low_us, high_us, count) of the
    log2 histogram (empty in procfs mode, where p50/p95 are None too)."""

    target: str
    cgroup_id: int
    count: int
    sum_ns: int
    mean_us: float
    p50_us: float | None
    p95_us: float | None
    buckets: tuple[tuple[int, int, int], ...] = field(default=())


def render(opts: Options) -> str:
    """The BPF C program: with targets, only tasks in their cgroups (or below) are timed,
    matched by labkit.probes.attribution; without, every cgroup by its id."""
    who = ("u32 ix = 0;\n    lk_target_of(&ix);\n    return ix;" if opts.targets
           else "return bpf_get_current_cgroup_id();")
    return (BPF_TEXT.replace("ATTRIBUTION", attribution.render(opts.targets, host=False))
            .replace("WHO", who)
            .replace("MAX_ENTRIES", str(MAX_SLOTS * max(len(opts.targets), 64)))
            .replace("MAX_SLOTS", str(MAX_SLOTS)))


def bucket_range(slot: int) -> tuple[int, int]:
    """bcc's log2 bucket ``slot`` as [low, high] microseconds.

    bpf_log2l(v) is floor(log2 v) + 1 for v >= 1 and 1 for v == 0 (bcc's helpers.h), so
    slot s holds [2**(s-1), 2**s - 1], slot 1 holds 0 and 1 (bcc's print_log2_hist)."""
    low, high = (1 << slot) >> 1, (1 << slot) - 1
    return (max(low - 1, 0), high) if low == high else (low, high)


def percentile(buckets: Sequence[tuple[int, int, int]], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a log2 histogram, interpolated inside its bucket.

    An estimate: a bucket only says its values lie in [low, high]; assuming them spread
    evenly there, the error is at most the bucket's width (a factor of 2)."""
    if not 0.0 <= q <= 1.0:
        raise errors.InvalidArgumentError("q", f"{q!r} is not between 0 and 1")
    total = sum(c for _, _, c in buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for low, high, count in buckets:
        if count and seen + count >= rank:
            return low + (high - low) * max(rank - seen, 0) / count
        seen += count
    return float(buckets[-1][1])


def buckets_to_row(target: str, cgid: int, slots: Mapping[int, int], count: int,
                   sum_ns: int) -> RunqRow:
    """A RunqRow from a cgroup's slot counts ({slot: n}) and its totals."""
    buckets = tuple((*bucket_range(s), n) for s, n in sorted(slots.items()) if n)
    return RunqRow(target=target, cgroup_id=cgid, count=count, sum_ns=sum_ns,
                   mean_us=sum_ns / count / 1000 if count else 0.0,
                   p50_us=percentile(buckets, 0.5), p95_us=percentile(buckets, 0.95),
                   buckets=buckets)


class RunqProbe(base.BccProbe[RunqRow]):
    """An attached runqlat; ``read()`` is a snapshot since attach (or the last ``clear()``)."""

    mode = "tracepoint"
    missing: tuple[str, ...] = ()

    def __init__(self, bpf: Any, tool: str, targets: Sequence[Target] = ()) -> None:
        super().__init__(bpf, tool)
        self.targets = tuple(targets)

    def _named(self, w: int) -> tuple[str, int]:
        """(name, cgroup id) of a ``who`` key: a target's index + 1, or a cgroup id."""
        if self.targets:
            t = self.targets[w - 1]
            return t.name, t.cgroup_id or 0
        return f"cgroup:{w}", w

    def read(self) -> list[RunqRow]:
        """One row per container (or cgroup) that had a wait, targets in their order."""
        # The maps change while we read them: the count is the histogram's own sum, so
        # that percentiles and count agree; the sum is read after, a few waits newer.
        slots: dict[int, dict[int, int]] = {}
        for k, v in self.bpf[b"dist"].items():
            slots.setdefault(int(k.who), {})[int(k.slot)] = int(v.value)
        sums = {int(k.value): int(v.sum_ns) for k, v in self.bpf[b"totals"].items()}
        rows = [buckets_to_row(*self._named(w), s, sum(s.values()), sums.get(w, 0))
                for w, s in sorted(slots.items())]
        return rows

    def clear(self) -> None:
        """Start the histograms again from zero."""
        self.bpf[b"dist"].clear()
        self.bpf[b"totals"].clear()


def attach(opts: Options | None = None) -> RunqProbe:
    """Compile and attach runqlat for ``opts.targets`` (or every cgroup).

    Raises:
        UnsupportedError: no bcc, not root, no tracefs or no sched tracepoints.
    """
    opts = opts or Options()
    attribution.check(opts.targets)
    base.require_root(TOOL)
    for event in ("sched_switch", "sched_wakeup", "sched_wakeup_new"):
        base.require_tracepoint("sched", event, TOOL)
    probe = RunqProbe(base.load_bpf(render(opts), TOOL), TOOL, opts.targets)
    try:
        attribution.fill(probe.bpf, opts.targets)
    except BaseException:
        probe.close()
        raise
    return probe


# -- the fallback: /proc/PID/task/TID/schedstat ------------------------------------------------

def cgroup_tasks(path: str | Path) -> list[int]:
    """Every thread id in the cgroup directory ``path`` and below (cgroup.threads, or the
    v1 ``tasks`` file)."""
    out: list[int] = []
    for d, _, _ in os.walk(path):
        for fname in ("cgroup.threads", "tasks"):
            try:
                text = Path(d, fname).read_text()
            except OSError:
                continue
            out += [int(x) for x in text.split()]
            break
    return sorted(set(out))


def read_schedstat(tid: int, proc: str | Path = "/proc") -> tuple[int, int] | None:
    """(run_delay_ns, timeslices) of one thread, None once it is gone.

    /proc/PID/task/TID/schedstat is "time on cpu, time waiting on a runqueue, timeslices
    run" (Documentation/scheduler/sched-stats.rst)."""
    try:
        fields = Path(proc, str(tid), "task", str(tid), "schedstat").read_text().split()
        return int(fields[1]), int(fields[2])
    except (OSError, IndexError, ValueError):
        return None


class ProcfsRunq(base.CounterFallback):
    """runqlat without bcc: run_delay summed over the container's tasks, since open."""

    missing = ("histogram", "p50/p95", "tasks that exited before read()")

    def __init__(self, targets: Sequence[Target], proc: str | Path = "/proc",
                 reason: str = "") -> None:
        if not targets:
            raise errors.InvalidArgumentError(
                "targets", "the procfs fallback needs containers to sum over",
                hint="name at least one container (the eBPF mode watches every cgroup)")
        attribution.check(targets)
        self.targets = tuple(targets)
        self.tool = TOOL
        super().__init__(reason)  # why eBPF did not run (the front door says)
        self._proc = proc
        self._base = {t.name: self._sample(t) for t in self.targets}

    def _sample(self, t: Target) -> dict[int, tuple[int, int]]:
        out = {}
        for tid in cgroup_tasks(cgroup_dir(t)):
            if (s := read_schedstat(tid, self._proc)) is not None:
                out[tid] = s
        return out

    def read(self) -> list[RunqRow]:
        if self._closed:
            raise errors.InvalidStateError("closed", "read", what=f"probe {self.tool}")
        rows = []
        for t in self.targets:
            was, now = self._base[t.name], self._sample(t)
            delay = sum(d - was.get(tid, (0, 0))[0] for tid, (d, _) in now.items())
            count = sum(n - was.get(tid, (0, 0))[1] for tid, (_, n) in now.items())
            rows.append(RunqRow(target=t.name, cgroup_id=t.cgroup_id or 0, count=count,
                                sum_ns=delay, mean_us=delay / count / 1000 if count else 0.0,
                                p50_us=None, p95_us=None))
        return rows

    def clear(self) -> None:
        self._base = {t.name: self._sample(t) for t in self.targets}



def procfs(opts: Options, reason: str = "") -> ProcfsRunq:
    """The fallback: run_delay from /proc, per container (needs targets); ``reason``: why
    eBPF is not used."""
    return ProcfsRunq(opts.targets, reason=reason)


def open_probe(opts: Options | None = None) -> RunqProbe | ProcfsRunq:
    """eBPF when it can load, else the procfs fallback (``.mode`` says which ran)."""
    opts = opts or Options()
    try:
        return attach(opts)
    except errors.UnsupportedError as err:
        return procfs(opts, str(err))
