"""The "labkit-runtime warm" candidate of ``labkit bench startup``: a long-lived process that
starts containers as a shim forked from the shim template does, one per request.

    python -m labkit.measure.bench_startup_warm ROOT BUNDLE

It imports what the template imports (labkit.engine.shim.template.warm_up, which runs
labkit.engine.runtime.warm.warm_up) and freezes its heap (gc.freeze, as the template does),
becomes a child subreaper (as a shim is), then serves one container id per stdin line:

1. create, through the shim's own in-process path: ``Ops._create_in_child`` forks a child
   that runs labkit.engine.runtime.create.create_with_tty and reports init's pid; init
   re-parents to us when that child exits;
2. start (runtime.start.start), wait(2) for init, delete (runtime.delete.delete, force);

and answers ``ok`` or ``err <message>`` on one stdout line.  The bench times the request
from its side, so a sample is what a warm engine pays per container, create to delete,
plus one pipe round trip (tens of microseconds).
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

from labkit._sys import consts, syscalls


def _serve(root: str, bundle: str) -> None:
    from labkit.engine.runtime import delete as rt_delete
    from labkit.engine.runtime import start as rt_start
    from labkit.engine.shim.ops import Ops

    class _Starter(Ops):
        """Only what Ops._create_in_child reads: the runtime root, the id, the bundle."""

        def __init__(self, cid: str) -> None:
            self.runtime_root = root
            self.id = cid
            self.cfg: dict[str, Any] = {"bundle": bundle}

    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    out = os.fdopen(os.dup(1), "w", buffering=1)
    for line in sys.stdin:
        cid = line.strip()
        if not cid:
            continue
        try:
            init_pid, _ = _Starter(cid)._create_in_child((null, null, null))
            try:
                rt_start.start(root, cid)
                os.waitpid(init_pid, 0)
            finally:
                rt_delete.delete(root, cid, force=True)
            out.write("ok\n")
        except Exception as exc:  # noqa: BLE001 -- reported to the bench, which shows it
            msg = " ".join(str(exc).split())[:200]
            out.write(f"err {type(exc).__name__}: {msg}\n")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m labkit.measure.bench_startup_warm ROOT BUNDLE", file=sys.stderr)
        return 2
    from labkit.engine.shim.template import warm_up

    warm_up()
    gc.collect()
    gc.freeze()  # as the template does: later collections leave the warm heap alone
    # prctl(2): the container's init re-parents to us when the create child exits.
    syscalls.prctl(consts.PR_SET_CHILD_SUBREAPER, 1)
    print("ready", flush=True)
    _serve(argv[0], argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
