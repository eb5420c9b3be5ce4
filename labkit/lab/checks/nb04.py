"""Checks of notebook 04's exercises: the learner's engine calls on a fresh lk container."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from labkit.lab.exercises import Namespace, defined, exercise, fail, need

SPIN = ["sh", "-c", "while :; do :; done"]


def frozen(pid: int) -> bool | None:
    """Is ``pid``'s cgroup frozen?  v1: freezer.state FROZEN; v2: cgroup.events frozen 1.
    None when the process is in no freezer."""
    lines = [ln.split(":", 2) for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    for _, ctrls, path in lines:
        if "freezer" in ctrls.split(","):
            state = Path(f"/sys/fs/cgroup/freezer{path}/freezer.state").read_text().strip()
            return state == "FROZEN"
    for hid, _, path in lines:
        events = Path(f"/sys/fs/cgroup{path}/cgroup.events")
        if hid == "0" and events.exists():
            return "frozen 1" in events.read_text()
    return None


def cpu_s(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


@exercise("04.pause")
def pause(ns: Namespace) -> str:
    fn = defined(ns, "pause_and_prove")
    client: Any = defined(ns, "client", "the engine client (run the set-up cells first)")
    cid = str(client.containers.create(
        {"Image": "busybox", "Cmd": SPIN, "HostConfig": {"NetworkMode": "none"}},
        name=f"lk-ex-pause-{os.getpid()}")["Id"])
    try:
        client.containers.start(cid)
        pid = int(client.containers.inspect(cid)["State"]["Pid"])
        deadline = time.monotonic() + 10
        while cpu_s(pid) < 0.05 and time.monotonic() < deadline:
            time.sleep(0.02)  # let it spin a little: a frozen process should have run
        evidence = fn(client, cid)
        state = client.containers.inspect(cid)["State"]
        need(state.get("Paused") and state.get("Status") == "paused",
             f"the container is {state.get('Status')!r} after your function: pause it "
             "(POST /containers/{id}/pause, client.containers.pause)")
        need(frozen(pid) is True, f"the engine says paused, but pid {pid}'s freezer is not "
                                  "FROZEN")
        c0 = cpu_s(pid)
        time.sleep(0.3)
        c1 = cpu_s(pid)
        need(c1 == c0, f"the container's CPU time still advanced ({c0} -> {c1} s)")
        if not (isinstance(evidence, tuple) and len(evidence) == 2
                and all(isinstance(x, int | float) for x in evidence)):
            fail(f"pause_and_prove returned {evidence!r}; return (cpu seconds, cpu seconds) of "
                 "the container's process, read twice a moment apart while it is paused")
        need(evidence[0] == evidence[1] > 0,
             f"your evidence {evidence} does not show a frozen process: read its CPU time "
             "(psutil.Process(pid).cpu_times()) twice, after pausing")
    finally:
        if client.containers.inspect(cid)["State"].get("Paused"):
            client.containers.unpause(cid)
        client.containers.remove(cid, force=True)
    return (f"paused: freezer FROZEN, CPU time stuck at {c0:.2f} s, and your evidence "
            f"{evidence[0]:.2f} == {evidence[1]:.2f}")


LIMIT = 48 << 20  # what the check's container is given (docker run --memory 48m)


def _limit_in(d: Path) -> int | None:
    for name in ("memory.limit_in_bytes", "memory.max"):  # cgroup v1, v2
        f = d / name
        if f.is_file():
            text = f.read_text().strip()
            return None if text == "max" else int(text)
    return None


@exercise("04.memory_cgroup")
def memory_cgroup(ns: Namespace) -> str:
    fn = defined(ns, "memory_cgroup_dir")
    client: Any = defined(ns, "client", "the engine client (run the set-up cells first)")
    cid = str(client.containers.create(
        {"Image": "busybox", "Cmd": ["sleep", "60"],
         "HostConfig": {"NetworkMode": "none", "Memory": LIMIT}},
        name=f"lk-ex-memcg-{os.getpid()}")["Id"])
    try:
        client.containers.start(cid)
        got = fn(client, cid)
        need(isinstance(got, str | Path), f"memory_cgroup_dir returned {got!r}; return the "
                                          "directory's path, e.g. '/sys/fs/cgroup/memory/...'")
        d = Path(got)
        need(d.is_dir(), f"{d} is not a directory: join the cgroup mount (/sys/fs/cgroup/memory "
                         "on v1, /sys/fs/cgroup on v2) and the path from /proc/PID/cgroup")
        limit = _limit_in(d)
        need(limit is not None, f"{d} has no memory.limit_in_bytes or memory.max: is it the "
                                "memory controller's hierarchy?")
        need(limit == LIMIT, f"{d} limits memory to {limit}, not the container's {LIMIT}: "
                             "that is another cgroup (the host's, or a parent)")
    finally:
        client.containers.remove(cid, force=True)
    return f"{d} holds the container's --memory 48m as {LIMIT} bytes"
