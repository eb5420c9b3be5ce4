"""eBPF probes built with bcc, tracepoint-first (STYLE C14).

Each module is one tool in the shape of a bcc tool: ``render(opts)`` gives the BPF C text,
``attach(opts)`` loads it and returns a Probe with ``.read()`` and ``.close()``.

* ``execsnoop``: every exec (sched:sched_process_exec)
* ``oomkill``: every OOM kill (oom:mark_victim)
* ``kcount``: calls of a kernel function (kprobe), or of a syscall tracepoint instead
* ``proctree``: each process's fork, exec, exit and on-CPU time (sched tracepoints)
* ``nscount``: unshare/setns/clone/clone3 calls of one process tree, by flags
* ``selftest``: one tiny tracepoint program, used by ``labkit doctor``

Submodules are imported on demand: ``from labkit.probes import execsnoop``.
"""

__all__ = ["base", "execsnoop", "kcount", "nscount", "oomkill", "proctree", "selftest"]
