"""One ``docker run`` as the kernel saw it: the chain of processes from the client to the container.

Input: the fork/exec/exit events of ``labkit.probes.proctree`` (sched tracepoints: the execs
execsnoop reports, plus the forks that link them) recorded around one run, and the engine's
long-running processes (pid -> role, ppid) from ``LabEngine.processes()``.  The container is
the process that exec'd ``leaf`` and descends from the engine; walking its fork parents up
to the engine names each hop (shim, runtime, ...).  The client is not a parent of anything
in the chain (it talks to the daemon over a socket), so it is found as the exec of the
docker CLI by the notebook's own process.

A machine shared with other engines (dockerd, containerd, runc) shows their processes in the
same tracepoints; only the chain that reaches *this* engine is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labkit import errors
from labkit.probes.proctree import Event

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["Hop", "exec_chain", "plot_chain"]

# Below the engine's shim template, the forked hops in order: the template forks twice to
# detach the shim (labkit/engine/shim/template.py: fork, setsid, fork), the shim forks a
# child for the runtime's create (shim/ops.py), which forks the intermediate that joins the
# cgroup and the namespaces and forks the container's init (runtime/create.py, init.py).
FORKED_ROLES = ("shim (setsid fork)", "shim", "runtime create", "runtime intermediate")


@dataclass(frozen=True, slots=True)
class Hop:
    """One process of the chain.  Times are ms after the client's exec; None = not seen
    (it started before the probe, or had not ended when it was read)."""

    role: str
    pid: int
    ppid: int | None
    comm: str
    started: str          # "exec <file>", "fork", or "already running"
    start_ms: float | None
    exec_ms: float | None
    exit_ms: float | None


def _client(events: Sequence[Event], client_ppid: int) -> Event:
    parent = {e.child: e.pid for e in events if e.kind == "fork"}
    for e in events:
        if e.kind == "exec" and e.filename.endswith("/docker") and parent.get(e.pid) == client_ppid:
            return e
    raise errors.NotFoundError("exec", "the docker CLI",
                               hint=f"no exec of .../docker by a child of pid {client_ppid}")


def exec_chain(events: Sequence[Event], engine: Mapping[int, tuple[str, int]],
               client_ppid: int, leaf: str = "/bin/true") -> list[Hop]:
    """The hops of one run: client, the engine's processes, the forked ones, the container.

    ``engine``: pid -> (role, ppid) of the engine processes running before the run.

    Raises:
        NotFoundError: no exec of ``leaf`` descending from the engine, or no client exec.
    """
    parent = {e.child: e.pid for e in events if e.kind == "fork"}
    fork_ts = {e.child: e.ts_ns for e in events if e.kind == "fork"}
    exec_ev = {e.pid: e for e in events if e.kind == "exec"}
    exit_ts = {e.pid: e.ts_ns for e in events if e.kind == "exit"}
    comm = {e.child: e.comm for e in events if e.kind == "fork"} | {
        e.pid: e.comm for e in events if e.kind in ("exec", "exit")}
    client = _client(events, client_ppid)
    t0 = client.ts_ns

    def ms(ts: int | None) -> float | None:
        return None if ts is None else (ts - t0) / 1e6

    for e in events:
        if e.kind != "exec" or e.filename != leaf or e.ts_ns < t0:
            continue
        path, p = [e.pid], e.pid
        while p in parent and p not in engine:
            p = parent[p]
            path.append(p)
        if p in engine:
            break
    else:
        raise errors.NotFoundError("exec", leaf, hint="no exec of it descends from the engine")
    forked = list(reversed(path[:-1]))  # from just below the engine down to the container
    top: list[int] = [p]
    while engine[top[-1]][1] in engine:
        top.append(engine[top[-1]][1])
    hops = [Hop("client", client.pid, client_ppid, client.comm, f"exec {client.filename}",
                ms(fork_ts.get(client.pid)), ms(client.ts_ns), ms(exit_ts.get(client.pid)))]
    for q in reversed(top):
        role, ppid = engine[q]
        hops.append(Hop(role, q, ppid, comm.get(q, "python"), "already running", None, None,
                        ms(exit_ts.get(q))))
    for k, q in enumerate(forked):
        last = k == len(forked) - 1
        known = len(forked) == len(FORKED_ROLES) + 1  # else a layout this module predates
        role = "container" if last else (FORKED_ROLES[k] if known else f"forked {k + 1}")
        ex = exec_ev.get(q)
        hops.append(Hop(role, q, parent.get(q), comm.get(q, "?"),
                        f"exec {ex.filename}" if ex else "fork", ms(fork_ts.get(q)),
                        ms(ex.ts_ns) if ex else None, ms(exit_ts.get(q))))
    return hops


def plot_chain(hops: Sequence[Hop], ax: Axes | None = None) -> Axes:
    """Each hop's life as a bar (fork to exit, ms after the client's exec), execs marked."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.45 * len(hops) + 1))
    end = max([h.exit_ms or 0.0 for h in hops] + [h.exec_ms or 0.0 for h in hops]) * 1.05
    for y, h in enumerate(hops):
        start = h.start_ms if h.start_ms is not None else 0.0
        stop = h.exit_ms if h.exit_ms is not None else end
        colour = "lightgrey" if h.started == "already running" else "tab:blue"
        ax.barh(y, stop - start, left=start, color=colour, height=0.5)
        if h.exec_ms is not None:
            ax.plot(h.exec_ms, y, "v", color="tab:red")
    ax.plot([], [], "v", color="tab:red", label="exec")
    ax.set_yticks(range(len(hops)), [f"{h.role} ({h.comm})" for h in hops])
    ax.invert_yaxis()
    ax.set_xlabel("ms after the docker CLI's exec (grey: running before, to the end)")
    ax.set_title("docker run --rm busybox /bin/true, from the sched tracepoints")
    ax.legend(loc="lower right")
    return ax
