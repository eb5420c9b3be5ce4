"""Notebook 11's plots and tables for labkit.measure.limits / csampler / isolation records.

Each plot draws on a new figure (or the given axes) and returns the axes; each table returns
a pandas DataFrame for the notebook to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from labkit.lab import plots
from labkit.measure.csampler import ContainerSample, agreement
from labkit.measure.limits import CpuQuotaRun, IoRun, MemoryLimitRun, PidsRun

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    from matplotlib.axes import Axes

__all__ = ["agreement_table", "limits_summary", "plot_cpu_quota", "plot_forks", "plot_io",
           "plot_oom", "plot_psutil_vs_cgroup"]

MIB = 1 << 20


def plot_oom(m: MemoryLimitRun, ax: Axes | None = None) -> Axes:
    """notebook 02's memory plot, with the OOM kill marked: the probe's stamp (solid red),
    the cgroup's OOM notification (dashed orange) and the first sample whose oom_kill
    counter went up (dotted red)."""
    ax = plots.plot_memory_run(m.run, ax)
    if m.t_oom_probe is not None:
        ax.axvline(m.t_oom_probe, color="red", label=f"OOM kill, probe: t={m.t_oom_probe:.3f} s")
    if m.t_oom_event is not None:
        ax.axvline(m.t_oom_event, color="darkorange", linestyle="--",
                   label=f"cgroup OOM notification: t={m.t_oom_event:.3f} s")
    if m.t_oom_cgroup is not None:
        ax.axvline(m.t_oom_cgroup, color="red", linestyle=":",
                   label=f"oom_kill counter seen: t={m.t_oom_cgroup:.3f} s")
    ax.legend(loc="upper left", fontsize="small")
    return ax


def plot_cpu_quota(c: CpuQuotaRun, ax: Axes | None = None) -> Axes:
    """CPU achieved per sampling interval (% of one CPU) for the quota run and the baseline,
    the quota dashed."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    for label in dict.fromkeys(p.label for p in c.points):
        pts = [p for p in c.points if p.label == label]
        ax.plot([p.t for p in pts], [p.percent for p in pts], marker=".", label=label)
    ax.axhline(c.quota_pct, linestyle="--", color="grey", label=f"quota {c.quota_pct:g}%")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("% of one CPU")
    ax.set_ylim(bottom=0)
    ax.set_title(f"achieved {c.achieved_pct:.1f}% under a {c.quota_pct:g}% quota")
    ax.legend(loc="upper right", fontsize="small")
    return ax


def plot_forks(runs: Sequence[PidsRun], ax: Axes | None = None) -> Axes:
    """Per run: fork attempts that succeeded and that failed (EAGAIN), the pids.max limit
    as a tick; one bar group per limit."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    xs = range(len(runs))
    ok = ax.bar([x - 0.2 for x in xs], [r.ok for r in runs], 0.4, label="forks ok")
    bad = ax.bar([x + 0.2 for x in xs], [r.eagain for r in runs], 0.4, color="tab:red",
                 label="forks failed (EAGAIN)")
    ax.bar_label(ok)
    ax.bar_label(bad)
    ax.hlines([r.limit for r in runs], [x - 0.45 for x in xs], [x + 0.45 for x in xs],
              colors="black", linestyles="--", label="pids.max")
    ax.set_ylim(top=1.35 * max([r.limit for r in runs] + [r.eagain for r in runs] + [1]))
    ax.set_xticks(list(xs), [f"pids.max={r.limit}\n{len(r.attempts)} tries" for r in runs])
    ax.set_ylabel("forks")
    ax.legend(loc="upper left", fontsize="small")
    return ax


def plot_io(io: IoRun, ax: Axes | None = None) -> Axes:
    """MiB/s written per interval under the write-bps limit (dashed) and without it."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    for label in dict.fromkeys(p.label for p in io.points):
        pts = [p for p in io.points if p.label == label]
        ax.plot([p.t for p in pts], [p.bytes_per_s / MIB for p in pts], marker=".", label=label)
    ax.axhline(io.wbps / MIB, linestyle="--", color="grey", label="write limit")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("MiB/s (cgroup counter)")
    ax.set_title(f"{io.nbytes // MIB} MiB O_DIRECT to {io.device}: {io.limited_s:.2f} s "
                 f"limited, {io.baseline_s:.3f} s without")
    ax.legend(loc="upper right", fontsize="small")
    return ax


def plot_psutil_vs_cgroup(rows: Sequence[ContainerSample],
                          ax: Sequence[Axes] | None = None) -> Sequence[Axes]:
    """Two panels over time: CPU % (psutil's sum vs the cgroup's counter) and anonymous
    memory (MiB, psutil's sum of RssAnon vs memory.stat)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.2))
        ax = list(axes)
    t = [r.t for r in rows]
    ax[0].plot(t, [r.ps_cpu_percent for r in rows], marker=".", label="psutil (sum)")
    ax[0].plot(t, [r.cg_cpu_percent or 0.0 for r in rows], linestyle="--", label="cgroup cpuacct")
    ax[0].set_ylabel("% of one CPU")
    ax[0].set_title("CPU")
    ax[1].plot(t, [r.ps_anon / MIB for r in rows], marker=".", label="psutil rss-shared (sum)")
    ax[1].plot(t, [(r.cg_anon or 0) / MIB for r in rows], linestyle="--",
               label="cgroup memory.stat anon")
    ax[1].set_ylabel("MiB")
    ax[1].set_title("anonymous memory")
    for a in ax:
        a.set_xlabel("seconds since start")
        a.legend(fontsize="small")
    return ax


def agreement_table(row: ContainerSample) -> pd.DataFrame:
    """csampler.agreement of one sample as a table (quantity, psutil, cgroup, ratio)."""
    import pandas as pd

    return pd.DataFrame([{"quantity": a.quantity, "psutil": a.psutil, "cgroup": a.cgroup,
                          "psutil/cgroup": None if a.ratio is None else round(a.ratio, 3)}
                         for a in agreement(row)]).set_index("quantity")


def limits_summary(mem: MemoryLimitRun, cpu: CpuQuotaRun, pids: Sequence[PidsRun],
                   io: IoRun | None) -> pd.DataFrame:
    """One row per limit: what was set, what the workload achieved, how the kernel said no."""
    import pandas as pd

    rows = [
        {"limit": "memory", "set": f"{mem.limit // MIB} MiB",
         "achieved": f"peak {(mem.run.after.memory_peak or 0) / MIB:.1f} MiB",
         "kernel's answer": f"OOM kill (exit {mem.run.returncode}), oom_kill +{mem.cgroup_kills}"},
        {"limit": "cpu", "set": f"{cpu.quota_pct:g}% of one CPU",
         "achieved": f"{cpu.achieved_pct:.1f}%",
         "kernel's answer": f"throttled in {cpu.limited.throttled} periods"},
    ]
    for p in pids:
        rows.append({"limit": "pids", "set": f"pids.max {p.limit}",
                     "achieved": f"{p.ok} forks ok of {len(p.attempts)}",
                     "kernel's answer": f"{p.eagain} x EAGAIN, pids.events max {p.pids_events_max}"})
    if io is not None:
        rows.append({"limit": "io", "set": f"write {io.wbps // 1024} KiB/s on {io.device}",
                     "achieved": f"{io.achieved_bps / 1024:.0f} KiB/s",
                     "kernel's answer": "writes delayed (blk-throttle)"})
    return pd.DataFrame(rows).set_index("limit")
