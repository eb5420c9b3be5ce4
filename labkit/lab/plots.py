"""Notebook plots for the workload records of labkit.measure.workloads (matplotlib).

Each function draws on a new figure (or the given axes) and returns the axes, so a notebook
cell ends with the call and the figure shows once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from labkit.measure.workloads import LimitedRun, Timing

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_cpu_runs", "plot_memory_run", "plot_timings", "plot_writes"]

MIB = 1 << 20


def plot_memory_run(run: LimitedRun, ax: Axes | None = None) -> Axes:
    """Cgroup memory usage and the process rss (MiB) over time, the limit dashed, an X at the peak."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    t = [s.t for s in run.samples if s.memory_current is not None]
    mem = [s.memory_current / MIB for s in run.samples if s.memory_current is not None]
    ax.plot(t, mem, marker=".", label="cgroup memory usage")
    if run.process_samples:  # psutil's view of the same process: its resident set
        ax.plot([p.t for p in run.process_samples], [p.rss / MIB for p in run.process_samples],
                linestyle=":", color="tab:green", label="process rss (psutil)")
    limit = run.resources.memory_max
    if limit is not None and limit > 0:
        ax.axhline(limit / MIB, linestyle="--", color="grey", label="memory limit")
    # The peak sample before usage fell: the moment the OOM killer struck.
    if mem:
        k = max(range(len(mem)), key=mem.__getitem__)
        ax.plot(t[k], mem[k], "x", color="red", markersize=10,
                label=f"exit {run.returncode}, oom_kills {run.oom_kills}")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("MiB")
    ax.set_title(f"cgroup {run.cgroup}: a memory hog under a {(limit or 0) // MIB} MiB limit")
    ax.legend(loc="upper left")
    return ax


def plot_cpu_runs(runs: Mapping[str, LimitedRun], ax: Sequence[Axes] | None = None) -> Sequence[Axes]:
    """Two bar charts side by side: CPU used (% of one CPU) and periods throttled, per run."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        ax = list(axes)
    labels = list(runs)
    pct = [runs[k].cpu_percent for k in labels]
    thr = [runs[k].throttled for k in labels]
    bars = ax[0].bar(labels, pct, color="tab:blue")
    ax[0].bar_label(bars, fmt="%.0f%%")
    ax[0].set_ylabel("% of one CPU (cpu usage / wall)")
    ax[0].set_title("CPU used")
    bars = ax[1].bar(labels, thr, color="tab:orange")
    ax[1].bar_label(bars)
    ax[1].set_ylabel("nr_throttled (periods)")
    ax[1].set_title("periods throttled")
    return ax


def plot_timings(rows: Sequence[Timing], title: str = "", ax: Axes | None = None,
                 log: bool = False) -> Axes:
    """A box plot of Timing rows per label (ms), every repetition drawn as a dot."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    labels = list(dict.fromkeys(r.label for r in rows))
    data = [[r.ms for r in rows if r.label == label] for label in labels]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    for i, d in enumerate(data, start=1):
        ax.plot([i] * len(d), d, ".", alpha=0.5, color="tab:blue")
    ax.set_ylabel("milliseconds")
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title)
    return ax


def plot_writes(rows: Sequence[Timing], title: str = "", ax: Axes | None = None) -> Axes:
    """Grouped bars per label: the first write (i=0) beside later ones (i>0, their median), ms, log scale."""
    import statistics

    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    labels = list(dict.fromkeys(r.label for r in rows))
    first = [next(r.ms for r in rows if r.label == lb and r.i == 0) for lb in labels]
    later = [statistics.median([r.ms for r in rows if r.label == lb and r.i > 0] or [0.0])
             for lb in labels]
    xs = range(len(labels))
    b1 = ax.bar([x - 0.2 for x in xs], first, 0.4, label="first write", color="tab:red")
    b2 = ax.bar([x + 0.2 for x in xs], later, 0.4, label="next write", color="tab:blue")
    ax.bar_label(b1, fmt="%.2g")
    ax.bar_label(b2, fmt="%.2g")
    ax.set_xticks(list(xs), labels)
    ax.set_yscale("log")
    ax.set_ylim(top=max([*first, *later, 1e-3]) * 30)  # headroom for the legend and labels
    ax.set_ylabel("milliseconds (log)")
    ax.legend(loc="upper left", ncol=2)
    if title:
        ax.set_title(title)
    return ax
