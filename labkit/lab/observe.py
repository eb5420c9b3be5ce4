"""Notebook 10's helpers: watch two containers from the kernel with labkit's probes.

``Observatory`` starts a network lab (labkit.lab.netlab: a namespace with a labkit engine in
it, removed when closed or when the kernel dies) and two busybox containers on its bridge;
``lk-two`` has a 16 MiB memory limit so that an OOM kill stays inside it.  Each container is
a ``labkit.probes.target.Target`` (its v2 cgroup id and namespace inodes, from its init's
pid) and has a host-side veth (``netio.veths``), which is how the probes are pointed at it.

``watch(obs, kind, container)`` attaches one probe aimed at one container, runs a small
workload in it (``WORKLOADS``), reads the probe and returns its records: what the notebook's
widgets show.  Every probe falls back to procfs/cgroup counters without bcc and says so
(``.mode``, ``.missing``).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit import errors, probes
from labkit.lab.netlab import NetLab
from labkit.probes import lifecycle, netio, oomkill, runqlat
from labkit.probes.target import Target, from_pid

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["KINDS", "WORKLOADS", "KernelRow", "Observatory", "Watch", "count_execs",
           "fallbacks", "kernel_state", "oom_in", "ping", "plot_net", "plot_runqlat",
           "probe_picker", "runq_both", "watch"]

NAMES = ("lk-one", "lk-two")
MEMORY_LIMIT = "16m"
N = 23  # pings and the like: a prime, so a doubled or dropped packet shows

# What each probe kind runs in the container while it watches (busybox sh).
WORKLOADS: dict[str, str] = {
    "lifecycle": "ls / > /dev/null; date > /dev/null; echo done",
    # docker exec's setns calls show; unshare(2) does not: the container's seccomp filter
    # refuses it before the sys_enter tracepoint fires (syscall_trace_enter runs seccomp first)
    "syscalls": "unshare -u true; true",
    "runqlat": "for i in 1 2 3; do (i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done) & "
               "done; wait",
    "net": f"ping -c {N} -i 0.05 -q PEER > /dev/null",
    "oomkill": "dd if=/dev/zero of=/dev/null bs=64M count=1",
}
KINDS = tuple(WORKLOADS)


class Observatory:
    """A network lab with two sleeping busybox containers (``lk-one``, ``lk-two``)."""

    def __init__(self, tag: str = "nb10") -> None:
        self.lab = NetLab(tag)
        self.targets: dict[str, Target] = {}
        self.veths: dict[str, str] = {}     # host-side veth -> container
        self.ips: dict[str, str] = {}

    def start(self) -> Observatory:
        self.lab.start()
        try:
            for name in NAMES:
                extra = ["-m", MEMORY_LIMIT, "--memory-swap", MEMORY_LIMIT] \
                    if name == "lk-two" else []
                self.lab.must("run", "-d", "--name", name, *extra, "busybox", "sleep", "3600")
                info = self.lab.inspect(name)
                self.targets[name] = from_pid(int(info["State"]["Pid"]), name)
                for dev in netio.veths(info):
                    self.veths[dev] = name
                self.ips[name] = str(info["NetworkSettings"]["Networks"]["bridge"]["IPAddress"])
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Remove the containers and the lab (its namespace and engine)."""
        self.lab.close()

    def left_over(self) -> dict[str, bool]:
        """What close() must have removed: the namespace, the engine dir, the cgroups."""
        out = self.lab.left_over()
        for name, t in self.targets.items():
            out[f"cgroup of {name}"] = t.cgroup_path is not None and \
                runqlat.cgroup_dir(t).exists()
        return out

    def sh(self, container: str, script: str, timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
        """``docker exec CONTAINER sh -c SCRIPT`` (the real Docker CLI, the lab's engine)."""
        return self.lab.docker("exec", container, "sh", "-c", script, timeout=timeout)

    def peer(self, container: str) -> str:
        """The other container's name."""
        return next(n for n in NAMES if n != container)

    def target(self, container: str) -> Target:
        try:
            return self.targets[container]
        except KeyError:
            raise errors.NotFoundError("container", container,
                                       hint=f"one of: {', '.join(self.targets)}") from None


@dataclass(frozen=True, slots=True)
class KernelRow:
    """One number the kernel knows a container by, as the probe's Target has it and as
    /proc says it (they must agree)."""

    container: str
    what: str
    target: str
    proc: str


def kernel_state(obs: Observatory) -> list[KernelRow]:
    """Each container's cgroup (v2 path and id) and namespace inodes: from its Target and,
    beside, read afresh from /proc/PID (cgroup line, ns links) and stat(2) of its cgroup."""
    rows = []
    for name, t in obs.targets.items():
        pid = t.pid
        assert pid is not None
        text = Path(f"/proc/{pid}/cgroup").read_text()
        line = next((ln for ln in text.splitlines() if ln.startswith("0::")), "0::?")
        rows.append(KernelRow(name, "cgroup v2 path", str(t.cgroup_path), line[3:]))
        rows.append(KernelRow(name, "cgroup id", str(t.cgroup_id),
                              str(os.stat(runqlat.cgroup_dir(t)).st_ino)))
        for kind in ("pid", "net", "mnt", "uts", "ipc"):
            link = os.readlink(f"/proc/{pid}/ns/{kind}")       # "net:[4026532291]"
            rows.append(KernelRow(name, f"ns {kind}", str(t.ns.get(kind)),
                                  link.split("[")[-1].rstrip("]")))
    return rows


@dataclass(frozen=True, slots=True)
class Watch:
    """What ``watch`` saw: the probe's mode and blind spots, the workload, the records."""

    kind: str
    container: str
    mode: str
    missing: tuple[str, ...]
    script: str
    rows: list[Any]


def _open(obs: Observatory, kind: str, t: Target) -> Any:
    """probes.open(kind) aimed at ``t``: eBPF, or the kind's procfs stand-in without it."""
    if kind not in KINDS:
        raise errors.InvalidArgumentError("probe", f"{kind!r} is not one of {', '.join(KINDS)}")
    opts: dict[str, Any] = {}
    if kind == "net":
        opts = {"devices": {d: n for d, n in obs.veths.items() if n == t.name},
                "netns": f"/run/netns/{obs.lab.ns}"}
    return probes.open(kind, [t], **opts)


def watch(obs: Observatory, kind: str, container: str) -> Watch:
    """Attach probe ``kind`` aimed at ``container``, run WORKLOADS[kind] in it, read."""
    t = obs.target(container)
    script = WORKLOADS.get(kind)
    if script is None:
        raise errors.InvalidArgumentError("probe", f"{kind!r} is not one of {', '.join(KINDS)}")
    script = script.replace("PEER", obs.ips[obs.peer(container)])
    with _open(obs, kind, t) as probe:
        obs.sh(container, script)
        time.sleep(0.2)  # the last records of an exit reach the perf buffer
        rows = probe.read()
    return Watch(kind, container, probe.mode, tuple(probe.missing), script, list(rows))


def ping(obs: Observatory, src: str, n: int = N) -> list[netio.NetRow]:
    """``ping -c n`` from ``src`` to the other container, netio watching both: its rows."""
    devs = dict(obs.veths)
    with netio.open_probe(netio.Options(devices=devs, targets=tuple(obs.targets.values()),
                                        netns=f"/run/netns/{obs.lab.ns}")) as probe:
        r = obs.sh(src, f"ping -c {n} -i 0.05 -q {obs.ips[obs.peer(src)]}")
        if r.returncode != 0:
            raise errors.LabkitError(f"ping in {src} failed: {r.stdout}{r.stderr}")
        return list(probe.read())


def oom_in(obs: Observatory, container: str = "lk-two") -> tuple[list[Any], int, int]:
    """An OOM kill in the memory-limited container, seen by the probe: (records, the probe's
    count for it, the memory cgroup's own oom_kill counter, which must be the same)."""
    t = obs.target(container)
    before = oomkill.cgroup_oom_kills(str(t.cgroup_path))
    with oomkill.open_probe(oomkill.Options(targets=(t,))) as probe:
        obs.sh(container, WORKLOADS["oomkill"])
        rows: list[Any] = []
        for _ in range(50):          # the victim's exit record follows its kill
            rows += probe.read()
            if any(getattr(r, "attributed_by", "") == "exit" or hasattr(r, "kills")
                   for r in rows):
                break
            time.sleep(0.05)
    seen = sum(getattr(r, "kills", 0) for r in rows) if rows and hasattr(rows[0], "kills") \
        else oomkill.kill_count(rows, container)
    return rows, seen, oomkill.cgroup_oom_kills(str(t.cgroup_path)) - before


def count_execs(obs: Observatory, container: str, script: str) -> tuple[int, list[str]]:
    """Run ``sh -c script`` in ``container`` with the lifecycle probe aimed at it: how many
    execs it saw there, and the files they ran."""
    with lifecycle.attach(lifecycle.Options(targets=(obs.target(container),))) as probe:
        r = obs.sh(container, script)
        time.sleep(0.2)
        events = probe.read()
    if r.returncode != 0:
        raise errors.LabkitError(f"sh -c {script!r} in {container} failed: {r.stderr}")
    execs = [e for e in events if e.kind == "exec" and e.container == container]
    return len(execs), [e.filename for e in execs]


def plot_runqlat(rows: Sequence[runqlat.RunqRow], ax: Axes | None = None) -> Axes:
    """One bar series per container: waits per log2 bucket of microseconds."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(len(rows), 1)
    slots = sorted({lo for r in rows for lo, _, _ in r.buckets})
    for i, r in enumerate(rows):
        counts = {lo: n for lo, _, n in r.buckets}
        ax.bar([j + i * width for j in range(len(slots))], [counts.get(s, 0) for s in slots],
               width=width, label=f"{r.target} (p50 {r.p50_us or 0:.0f} us)")
    ax.set_xticks(range(len(slots)), [str(s) for s in slots], rotation=45)
    ax.set_xlabel("run-queue wait, us (log2 bucket start)")
    ax.set_ylabel("waits")
    ax.legend()
    return ax


def probe_picker(obs: Observatory, show: Callable[[Watch], Any] | None = None) -> Any:
    """Two dropdowns (probe, container) over an output: each choice runs ``watch`` once
    and shows its records as a table (the defaults run once when the widget is built)."""
    import ipywidgets as w
    from IPython.display import display

    from labkit import lab

    probe = w.Dropdown(options=list(KINDS), value="lifecycle", description="probe")
    ctr = w.Dropdown(options=list(obs.targets), value=NAMES[0], description="container")

    def run(kind: str, container: str) -> None:
        got = watch(obs, kind, container)
        print(f"{kind} on {container} ({got.mode} mode; cannot see: "
              f"{', '.join(got.missing) or 'nothing'})\n$ sh -c {got.script!r}")
        display(show(got) if show else  # type: ignore[no-untyped-call]
                lab.show_table(got.rows) if got.rows else "no records")

    out = w.interactive_output(run, {"kind": probe, "container": ctr})
    return w.VBox([w.HBox([probe, ctr]), out])


def runq_both(obs: Observatory, busy: str = "lk-one") -> list[runqlat.RunqRow]:
    """runqlat on both containers at once: three busy loops in ``busy`` while the other
    naps 23 times; one row per container (the histogram the notebook plots)."""
    targets = tuple(obs.targets.values())
    with runqlat.open_probe(runqlat.Options(targets=targets)) as probe:
        naps = subprocess.Popen(
            [_docker(), "exec", obs.peer(busy), "sh", "-c",
             f"for i in $(seq {N}); do sleep 0.02; done"], env=obs.lab.docker_env)
        obs.sh(busy, WORKLOADS["runqlat"])
        naps.wait(timeout=60)
        return list(probe.read())


def _docker() -> str:
    from labkit.measure.peers import docker_cli

    return docker_cli()


def plot_net(rows: Sequence[netio.NetRow], ax: Axes | None = None) -> Axes:
    """Bytes each container received and sent, from its host-side veth (netio.per_target)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    view = netio.per_target(rows)
    names = sorted(view)
    for i, d in enumerate(("rx_bytes", "tx_bytes")):
        ax.bar([j + i * 0.4 for j in range(len(names))], [view[n][d] for n in names],
               width=0.4, label=d.replace("_", " "))
    ax.set_xticks([j + 0.2 for j in range(len(names))], names)
    ax.set_ylabel("bytes (host-side veth)")
    ax.legend()
    return ax


def fallbacks(obs: Observatory) -> list[dict[str, str]]:
    """The same three measurements without eBPF (what a host without bcc gets): each
    fallback's mode, what it cannot see, and one reading of it."""
    one, two = obs.target("lk-one"), obs.target("lk-two")
    rows = []
    with runqlat.procfs(runqlat.Options(targets=(one,))) as rq:
        # read while the busy loops run: schedstat dies with its task, so after they
        # exit the fallback would have nothing left to sum (what eBPF keeps, it loses)
        busy = subprocess.Popen([_docker(), "exec", "lk-one", "sh", "-c",
                                 WORKLOADS["runqlat"].replace("30000", "200000")],
                                env=obs.lab.docker_env)
        for _ in range(200):  # until the loops are in the container (init + sh + 3)
            if len(runqlat.cgroup_tasks(runqlat.cgroup_dir(one))) >= 5:
                break
            time.sleep(0.02)
        time.sleep(0.3)
        r = rq.read()[0]
        busy.wait(timeout=60)
    rows.append({"probe": "runqlat", "mode": rq.mode, "cannot see": ", ".join(rq.missing),
                 "reading": f"lk-one: {r.count} slices, mean wait {r.mean_us:.0f} us"})
    devs = {d: n for d, n in obs.veths.items() if n == "lk-one"}
    with netio.procfs(netio.Options(devices=devs, netns=f"/run/netns/{obs.lab.ns}")) as nt:
        obs.sh("lk-one", f"ping -c {N} -i 0.05 -q {obs.ips['lk-two']} > /dev/null")
        got = {x.direction: x for x in nt.read()}
    rows.append({"probe": "net", "mode": nt.mode, "cannot see": ", ".join(nt.missing),
                 "reading": f"lk-one's veth: {got['rx'].packets} packets in, "
                            f"{got['tx'].packets} out (all protocols)"})
    with oomkill.procfs(oomkill.Options(targets=(two,))) as om:
        kills = om.counts()
    rows.append({"probe": "oomkill", "mode": om.mode, "cannot see": ", ".join(om.missing),
                 "reading": f"lk-two: {kills['lk-two']} kills since open"})
    return rows
