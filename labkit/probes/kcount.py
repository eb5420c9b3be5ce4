"""kcount: how often each process calls a kernel function (after bcc's tools/funccount.py).

Hook: a kprobe on ``function`` (Documentation/trace/kprobes.rst).  Kernels built without
CONFIG_KPROBES cannot do this; ``attach`` says so with an UnsupportedError *before* compiling
anything.  For a few functions a syscall tracepoint counts nearly the same thing; ask for it
with ``Options(fallback="tracepoint")`` (see ``TRACEPOINT_ALTERNATIVES`` for what is counted
instead: the syscall entry, not the kernel function, so in-kernel callers are not seen).

Overhead: one hash increment per call; kprobes cost more than tracepoints (a breakpoint or
an ftrace trampoline per hit), so avoid very hot functions on a busy machine.

Example (a kernel with kprobes, e.g. the VM)::

    from labkit.probes import kcount
    with kcount.attach(kcount.Options(function="do_sys_openat2")) as p:
        open("/etc/hostname").close()
        p.read()    # [CallCount(hook='kprobe:do_sys_openat2', pid=..., comm=..., count=...)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from labkit import errors
from labkit._sys import features
from labkit.probes import base

__all__ = ["BPF_TEXT", "TRACEPOINT_ALTERNATIVES", "CallCount", "CountProbe", "Options",
           "attach", "hooks", "render"]

TOOL = "kcount"

BPF_TEXT = r"""
#include <linux/sched.h>

struct key_t {
    u32 pid;
    char comm[TASK_COMM_LEN];
};

BPF_HASH(counts, struct key_t, u64, 10240);

// HOOKS
int count_call(void *ctx) {
    struct key_t key = {};
    key.pid = bpf_get_current_pid_tgid() >> 32;
    PID_FILTER
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    counts.increment(key);
    return 0;
}
"""

# kernel function -> syscall tracepoints that reach it from user space.
TRACEPOINT_ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "do_sys_openat2": ("syscalls:sys_enter_open", "syscalls:sys_enter_openat",
                       "syscalls:sys_enter_openat2"),
    "do_sys_open": ("syscalls:sys_enter_open", "syscalls:sys_enter_openat"),
    "vfs_read": ("syscalls:sys_enter_read", "syscalls:sys_enter_pread64"),
    "vfs_write": ("syscalls:sys_enter_write", "syscalls:sys_enter_pwrite64"),
    "__x64_sys_getpid": ("syscalls:sys_enter_getpid",),
    "do_exit": ("sched:sched_process_exit",),
    "kernel_clone": ("sched:sched_process_fork",),
}

_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")


@dataclass(frozen=True, slots=True)
class Options:
    """``function``: a kernel function (as in /proc/kallsyms); ``pid``: count only this tgid.

    ``fallback="tracepoint"`` uses TRACEPOINT_ALTERNATIVES[function] when kprobes are missing.
    """

    function: str
    pid: int | None = None
    fallback: Literal["none", "tracepoint"] = "none"


@dataclass(frozen=True, slots=True)
class CallCount:
    """Calls seen from one process since attach.  ``hook`` is e.g. "kprobe:vfs_read"."""

    hook: str
    pid: int
    comm: str
    count: int


def _validate(opts: Options) -> None:
    if not _SYMBOL.match(opts.function):
        raise errors.InvalidArgumentError(
            "function", f"{opts.function!r} is not a kernel symbol name",
            hint="a name from /proc/kallsyms, e.g. do_sys_openat2")
    if opts.fallback not in ("none", "tracepoint"):
        raise errors.InvalidArgumentError("fallback", f"{opts.fallback!r}: use none or tracepoint")


def hooks(opts: Options) -> list[str]:
    """Where the counter attaches on this kernel: ["kprobe:<fn>"] or the tracepoints.

    Raises:
        UnsupportedError: no kprobes here and no (allowed) tracepoint alternative.
    """
    _validate(opts)
    if features.has_kprobes():
        return [f"kprobe:{opts.function}"]
    alt = TRACEPOINT_ALTERNATIVES.get(opts.function)
    if opts.fallback == "tracepoint" and alt:
        return list(alt)
    hint = base.VM_HINT
    if alt:
        hint += (f"; or count the syscall tracepoints instead: "
                 f"Options(function={opts.function!r}, fallback='tracepoint')")
    raise errors.UnsupportedError(
        "kprobes", "this kernel was built without CONFIG_KPROBES", hint=hint)


def render(opts: Options, hook_list: list[str] | None = None) -> str:
    """The BPF C program for ``opts`` (``hook_list`` defaults to ``hooks(opts)``)."""
    _validate(opts)
    hook_list = hooks(opts) if hook_list is None else hook_list
    pid = f"if (key.pid != {int(opts.pid)}) return 0;" if opts.pid is not None else ""
    return (BPF_TEXT.replace("PID_FILTER", pid)
            .replace("// HOOKS", "// attached to: " + ", ".join(hook_list)))


class CountProbe(base.BccProbe[CallCount]):
    """An attached kcount; ``read()`` returns running totals per process, largest first."""

    def __init__(self, bpf: object, hook_list: list[str]) -> None:
        super().__init__(bpf, TOOL)
        self.hooks = hook_list

    def read(self) -> list[CallCount]:
        label = ",".join(self.hooks)
        rows = [CallCount(hook=label, pid=int(k.pid), comm=base.c_string(bytes(k.comm)),
                          count=int(v.value))
                for k, v in self.bpf[b"counts"].items()]
        return sorted(rows, key=lambda r: (-r.count, r.pid))

    def total(self) -> int:
        """All calls counted so far, over every process."""
        return sum(r.count for r in self.read())

    def clear(self) -> None:
        """Start counting again from zero."""
        self.bpf[b"counts"].clear()


def attach(opts: Options) -> CountProbe:
    """Compile and attach kcount for ``opts.function``.

    Raises:
        UnsupportedError: no kprobes (and no tracepoint fallback asked for), no bcc, not root.
        NotFoundError: the function is not in /proc/kallsyms (inlined, static, or misspelt).
    """
    hook_list = hooks(opts)  # before compiling: fail fast on a kernel without kprobes
    base.require_root(TOOL)
    kprobe = hook_list[0].startswith("kprobe:")
    if kprobe and not features.kallsyms_has(opts.function):
        raise errors.NotFoundError(
            "kernel function", opts.function,
            hint="it must be a non-inlined text symbol listed in /proc/kallsyms")
    for tp in hook_list if not kprobe else []:
        cat, _, event = tp.partition(":")
        base.require_tracepoint(cat, event, TOOL)
    probe = CountProbe(base.load_bpf(render(opts, hook_list), TOOL), hook_list)
    try:
        for h in hook_list:
            if kprobe:
                try:
                    probe.bpf.attach_kprobe(event=opts.function.encode(), fn_name=b"count_call")
                except Exception as err:  # bcc raises bare Exception
                    raise errors.UnsupportedError(
                        TOOL, f"attaching a kprobe to {opts.function} failed: {err}",
                        hint="the function may be marked notrace or blacklisted for kprobes"
                    ) from err
            else:
                base.attach_tracepoint(probe.bpf, h, "count_call", TOOL)
    except BaseException:
        probe.close()
        raise
    return probe
