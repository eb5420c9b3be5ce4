"""Notebook 04's experiments as library calls: a traced request, counters for live-restore,
the process tree drawn, and the ephemeral-container lesson.  No logic the library lacks: each
helper drives labkit.engine.client and reads /proc through psutil.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit.engine.client import Client
from labkit.engine.client.streams import demux_all
from labkit.lab.engine import ProcRow

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "COUNTER",
    "Hop",
    "container_rows",
    "gaps",
    "log_counters",
    "plot_tree",
    "start_counters",
    "trace_run",
]

COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"


def wait_until(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check()`` every 50 ms until it returns something truthy; TimeoutError after."""
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met after {timeout:.0f} s")
        time.sleep(0.05)
    return got


@dataclass(frozen=True, slots=True)
class Hop:
    """One step of `run --rm busybox true`, timed from the client (ms), with who does it."""

    step: int
    call: str
    hops: str
    ms: float


def _supervisor_events(sock: str, out: list[Any], ready: threading.Event) -> Any:
    """Follow the supervisor's Events stream (gRPC) in a thread; returns its client."""
    from labkit.engine.supervisor.client import SupervisorClient

    sup = SupervisorClient(sock)

    def follow() -> None:
        try:
            stream = sup.events()
            ready.set()
            for ev in stream:
                out.append(ev)  # noqa: PERF402 - appended as they arrive
        except Exception:  # noqa: BLE001,S110 - the stream ends when we close the channel
            pass
        finally:
            ready.set()

    threading.Thread(target=follow, daemon=True).start()
    return sup


def trace_run(client: Client, image: str = "busybox", cmd: tuple[str, ...] = ("true",),
              supervisor_socket: str | None = None
              ) -> tuple[list[Hop], list[dict[str, Any]]]:
    """Time each API call of one `run --rm` from outside, plus the engine's own events: the
    daemon's (/events) and, given its socket, the supervisor's (gRPC Events), on one clock."""
    c = client.containers
    sup_events: list[Any] = []
    sup = None
    if supervisor_socket is not None:
        ready = threading.Event()
        sup = _supervisor_events(supervisor_socket, sup_events, ready)
        ready.wait(5)
        time.sleep(0.1)  # let the subscription reach the server before the run starts
    since = time.time()
    hops: list[Hop] = []

    def timed(call: str, path: str, fn: Any) -> Any:
        t0 = time.perf_counter_ns()
        out = fn()
        hops.append(Hop(len(hops) + 1, call, path, (time.perf_counter_ns() - t0) / 1e6))
        return out

    timed("GET /_ping", "client -> daemon -> client", client.system.ping)
    cid = timed("POST /containers/create",
                "client -> daemon (record, overlay rootfs, OCI bundle) -> supervisor Create -> "
                "shim -> runtime create", lambda: c.create(
                    {"Image": image, "Cmd": list(cmd),
                     "HostConfig": {"NetworkMode": "none"}})["Id"])
    waiter = c.wait(cid, "next-exit")
    timed("POST /containers/{id}/start", "daemon -> supervisor Start -> shim -> runtime start "
          "(exec fifo released) -> process execs", lambda: c.start(cid))
    status = timed("wait body", "process exits -> shim records status -> supervisor event -> "
                   "daemon -> wait answers", lambda: waiter.json())
    timed("DELETE /containers/{id}", "daemon -> supervisor Delete -> shim exits; unmount, "
          "remove state", lambda: c.remove(cid))
    assert status is not None
    until = time.time() + 0.2
    events = [e for e in client.system.events(since=f"{since:.6f}", until=f"{until:.6f}")
              if e.get("id") == cid]
    merged = [("daemon", str(e.get("Action")), e["timeNano"] / 1e9) for e in events]
    if sup is not None:
        sup.close()
        merged += [("supervisor", ev.topic, ev.timestamp) for ev in sup_events
                   if ev.id == cid and not ev.exec_id]
    merged.sort(key=lambda x: x[2])
    t0 = merged[0][2] if merged else 0.0
    rows = [{"source": src, "event": what, "ms_after_first": (t - t0) * 1e3}
            for src, what, t in merged]
    return hops, rows


def start_counters(client: Client, n: int, prefix: str) -> list[str]:
    """``n`` detached containers that print 0, 1, 2, ... every 0.1 s; their IDs."""
    ids = []
    for i in range(n):
        cid = str(client.containers.create(
            {"Image": "busybox", "Cmd": ["sh", "-c", COUNTER],
             "HostConfig": {"NetworkMode": "none"}}, name=f"{prefix}-{i}")["Id"])
        client.containers.start(cid)
        ids.append(cid)
    return ids


def container_rows(client: Client, ids: list[str]) -> list[dict[str, Any]]:
    """name, status, pid (from inspect) and whether that pid is alive (psutil)."""
    import psutil

    listed = {c["Id"]: c for c in client.containers.list(all=True)}
    rows = []
    for cid in ids:
        info = client.containers.inspect(cid)
        pid = int(info["State"].get("Pid") or 0)
        rows.append({"name": info["Name"].lstrip("/"), "listed": cid in listed,
                     "status": info["State"]["Status"], "pid": pid,
                     "pid alive": bool(pid) and psutil.pid_exists(pid)})
    return rows


def pids_alive(pids: list[int]) -> dict[int, bool]:
    """{pid: running?} for the given pids (psutil), zombies counted as gone."""
    import psutil

    out = {}
    for pid in pids:
        try:
            out[pid] = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            out[pid] = False
    return out


def log_counters(client: Client, cid: str) -> list[int]:
    """The numbers a counter container printed, read back from its log (GET /logs)."""
    body = client.containers.logs(cid).read()
    out, _ = demux_all(body)
    return [int(x) for x in re.findall(rb"^(\d+)$", out, re.MULTILINE)]


def gaps(numbers: list[int]) -> list[int]:
    """Missing values in what should be 0, 1, 2, ...: [] when no line was lost."""
    want = set(range(numbers[-1] + 1)) if numbers else set()
    return sorted(want - set(numbers))


def plot_tree(rows: list[ProcRow], ax: Axes | None = None) -> Axes:
    """The process tree as boxes by depth (parent -> child arrows), coloured by role."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(11, 4.5))
    by_pid = {r.pid: r for r in rows}
    depth: dict[int, int] = {}

    def d(pid: int) -> int:
        if pid not in depth:
            ppid = by_pid[pid].ppid
            depth[pid] = d(ppid) + 1 if ppid in by_pid else 0
        return depth[pid]

    levels: dict[int, list[ProcRow]] = {}
    for r in rows:
        levels.setdefault(d(r.pid), []).append(r)
    colours = {"client": "#9ecae1", "daemon": "#fdae6b", "supervisor": "#a1d99b",
               "shim template": "#d9d9d9", "shim": "#bcbddc", "container": "#fc9272"}
    pos: dict[int, tuple[float, float]] = {}
    width = max(len(v) for v in levels.values())
    for lvl, items in levels.items():
        for i, r in enumerate(items):
            pos[r.pid] = ((i + 0.5) * width / len(items), -lvl)
    for r in rows:
        if r.ppid in pos:
            (x0, y0), (x1, y1) = pos[r.ppid], pos[r.pid]
            ax.annotate("", (x1, y1 + 0.15), (x0, y0 - 0.15),
                        arrowprops={"arrowstyle": "->", "color": "grey"})
        x, y = pos[r.pid]
        ax.text(x, y, f"{r.role}\npid {r.pid} (sid {r.sid})\n{r.cmdline.split('/')[-1][:22]}",
                ha="center", va="center", fontsize=7,
                bbox={"boxstyle": "round", "fc": colours.get(r.role, "white")})
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-max(levels) - 0.6, 0.6)
    ax.axis("off")
    ax.set_title("who is whose parent: sessions show which processes are detached")
    return ax
