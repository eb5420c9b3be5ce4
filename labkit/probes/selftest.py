"""selftest: prove that eBPF works end to end here (compile, load, attach, count, read).

Hook: tracepoint syscalls:sys_enter_getpid, filtered in the kernel to our own process.
We call getpid(2) ``n`` times (a prime, per bcc's CONTRIBUTING-SCRIPTS.md) and read back
how many calls the program counted; ``labkit doctor`` runs it.  Python's os.getpid() is a
real system call every time (glibc stopped caching getpid in 2.25).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from labkit.probes import base

__all__ = ["BPF_TEXT", "SelfTest", "render", "run"]

TOOL = "bpf selftest"
TRACEPOINT = ("syscalls", "sys_enter_getpid")

BPF_TEXT = r"""
BPF_ARRAY(hits, u64, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET_PID)
        return 0;
    int zero = 0;
    u64 *v = hits.lookup(&zero);
    if (v)
        __sync_fetch_and_add(v, 1);
    return 0;
}
"""


@dataclass(frozen=True, slots=True)
class SelfTest:
    """How many getpid calls we made, and how many the program counted."""

    calls: int
    counted: int

    @property
    def ok(self) -> bool:
        return self.calls == self.counted


def render(pid: int) -> str:
    """The program, counting only calls made by ``pid``."""
    return BPF_TEXT.replace("TARGET_PID", str(int(pid)))


def run(n: int = 23) -> SelfTest:
    """Attach, make ``n`` getpid calls, read the count, detach.

    Raises:
        UnsupportedError: bcc missing, not root, the tracepoint missing, or compile failure.
    """
    base.require_root(TOOL)
    base.require_tracepoint(*TRACEPOINT, tool=TOOL)
    bpf = base.load_bpf(render(os.getpid()), TOOL)
    try:
        for _ in range(n):
            os.getpid()
        counted = sum(int(v.value) for v in bpf[b"hits"].values())
    finally:
        bpf.cleanup()
    return SelfTest(calls=n, counted=counted)
