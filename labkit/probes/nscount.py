"""nscount: the namespace system calls of one process tree, counted by call and flags.

Which unshare(2), setns(2), clone(2) and clone3(2) calls does it take to make a box?  This
counts them for one process and every process it forks after the probe attached (and those it
had already forked, found in /proc at attach time), so a notebook sees its own spawns and
nothing of the rest of the machine.

Hooks (tracepoints, a stable ABI; no kprobes, no kernel structs):

* syscalls:sys_enter_unshare / sys_enter_setns / sys_enter_clone: the flags argument as the
  caller passed it (setns's is ``nstype``, the kind expected, 0 for any);
* syscalls:sys_enter_clone3: the flags are the first u64 of the caller's struct clone_args
  (include/uapi/linux/sched.h), read from user memory;
* sched:sched_process_fork: a child of a tracked process is tracked too.

Overhead: a hash lookup per fork on the machine and per namespace syscall; nothing else.
Caveats: calls that fail are counted too (this is the syscall entry); clone3's flags read 0
when its user memory was not readable (paged out) at entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from labkit._sys.consts import NS_FLAGS
from labkit.probes import base

__all__ = ["BPF_TEXT", "NsCall", "NsCountProbe", "Options", "attach", "kinds", "render"]

TOOL = "nscount"
SYSCALLS = ("unshare", "setns", "clone", "clone3")

BPF_TEXT = r"""
#include <linux/sched.h>

struct key_t {
    u32 nr;          // index into SYSCALLS
    u32 pid;         // tgid of the caller
    u64 flags;
    char comm[TASK_COMM_LEN];
};

BPF_HASH(counts, struct key_t, u64, 4096);
BPF_HASH(tracked, u32, u8, 65536);

static void count(u32 nr, u64 flags) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!tracked.lookup(&tgid))
        return;
    struct key_t key = {};
    key.nr = nr;
    key.pid = tgid;
    key.flags = flags;
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    counts.increment(key);
}

TRACEPOINT_PROBE(sched, sched_process_fork) {
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    if (!tracked.lookup(&parent))
        return 0;
    u32 child = args->child_pid;
    u8 one = 1;
    tracked.update(&child, &one);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_unshare) { count(0, args->unshare_flags); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_setns) { count(1, (u32)args->flags); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_clone) { count(2, args->clone_flags); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_clone3) {
    u64 flags = 0;
    bpf_probe_read_user(&flags, sizeof(flags), args->uargs);
    count(3, flags);
    return 0;
}
"""


@dataclass(frozen=True, slots=True)
class Options:
    """``pid``: the root of the process tree to count (default: this process)."""

    pid: int | None = None


@dataclass(frozen=True, slots=True)
class NsCall:
    """``count`` calls of ``syscall`` with ``flags`` by process ``pid`` (``comm``)."""

    syscall: str
    pid: int
    comm: str
    flags: int
    kinds: tuple[str, ...]   # the namespace kinds named by the CLONE_NEW* bits of flags
    count: int


def kinds(flags: int) -> tuple[str, ...]:
    """The namespace kinds whose CLONE_NEW* bit is set in ``flags`` (namespaces(7))."""
    return tuple(k for k, bit in NS_FLAGS.items() if flags & bit)


def render(opts: Options) -> str:
    """The BPF C program (it has no placeholders: the tree is seeded from user space)."""
    return BPF_TEXT


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it now, from /proc/*/stat (proc(5): field 4 is ppid)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone while we looked
        children.setdefault(ppid, []).append(int(d))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo += children.get(p, [])
    return out


class NsCountProbe(base.BccProbe[NsCall]):
    """An attached nscount; ``read()`` returns the running totals, in call order of kind."""

    def read(self) -> list[NsCall]:
        rows = [NsCall(SYSCALLS[int(k.nr)], int(k.pid), base.c_string(bytes(k.comm)),
                       int(k.flags), kinds(int(k.flags)), int(v.value))
                for k, v in self.bpf[b"counts"].items() if int(k.nr) < len(SYSCALLS)]
        return sorted(rows, key=lambda r: (SYSCALLS.index(r.syscall), r.pid, r.flags))


def attach(opts: Options | None = None) -> NsCountProbe:
    """Compile and attach nscount for the tree under ``opts.pid``.

    Raises:
        UnsupportedError: no bcc, not root, or a tracepoint is missing.
    """
    opts = opts or Options()
    base.require_root(TOOL)
    for event in ("sched_process_fork",):
        base.require_tracepoint("sched", event, TOOL)
    for call in SYSCALLS:
        base.require_tracepoint("syscalls", f"sys_enter_{call}", TOOL)
    probe = NsCountProbe(base.load_bpf(render(opts), TOOL), TOOL)
    try:
        table = probe.bpf[b"tracked"]
        for p in descendants(opts.pid if opts.pid is not None else os.getpid()):
            table[table.Key(p)] = table.Leaf(1)
    except BaseException:
        probe.close()
        raise
    return probe
