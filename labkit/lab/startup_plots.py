"""Plots of container-start timelines (labkit.measure.timeline), matplotlib.

Each function draws on the given axes (or a new figure) and returns the axes, so a notebook
cell ends with the call and the figure shows once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from labkit.measure.timeline import StartTimeline, off_chain_marks, to_dataframe

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_distribution", "plot_waterfall"]

SOURCE_COLOURS = {"mark": "tab:blue", "ebpf": "tab:orange", "harness": "tab:grey"}


def plot_waterfall(timeline: StartTimeline, ax: Axes | None = None) -> Axes:
    """One start: a horizontal bar per phase at its offset (ms), coloured by the source of
    its end point (labkit's mark or the kernel's event), its duration written beside it."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    phases = timeline.phases
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.28 * len(phases) + 1.2))
    t0 = timeline.start_ns
    for i, p in enumerate(phases):
        left = (p.start_ns - t0) / 1e6
        ax.barh(i, p.ms, left=left, color=SOURCE_COLOURS.get(p.source, "tab:grey"))
        ax.text(left + p.ms, i, f" {p.ms:.2f}", va="center", fontsize=7)
    ax.set_yticks(range(len(phases)), [p.name for p in phases], fontsize=8)
    ax.invert_yaxis()  # the first phase on top
    # Marks off the causal chain (the daemon's answer to start, the shim's end of start):
    # they happen beside the phases, not between them, so they are drawn as lines.
    for m in off_chain_marks(timeline):
        x = (m.ts_ns - t0) / 1e6
        ax.axvline(x, linestyle=":", color="tab:green", linewidth=0.8)
        ax.text(x, len(phases) - 0.6, f"{m.phase} ", rotation=90, fontsize=6,
                color="tab:green", va="bottom", ha="right")
    ax.set_xlabel("ms since the start's first point")
    ax.set_title(f"one start via the {timeline.via}: {timeline.total_ms:.1f} ms "
                 f"({timeline.key[:12]})")
    used = sorted({p.source for p in phases})
    ax.legend(handles=[Patch(color=SOURCE_COLOURS.get(s, "tab:grey"), label=f"end from {s}")
                       for s in used], fontsize=7, loc="upper right")
    return ax


def plot_distribution(timelines: Iterable[StartTimeline], ax: Axes | None = None) -> Axes:
    """Many starts: per phase a box of its durations (ms) with every start as a dot."""
    import matplotlib.pyplot as plt

    df = to_dataframe(timelines)
    order = list(df.groupby("phase", sort=False)["order"].median().sort_values().index)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.3 * len(order) + 1.2))
    data = [df.loc[df["phase"] == name, "ms"].to_numpy() for name in order]
    ax.boxplot(data, orientation="horizontal", widths=0.6, showfliers=False)
    for i, values in enumerate(data, start=1):
        jitter = [i + 0.15 * ((k % 5) - 2) / 2 for k in range(len(values))]
        ax.plot(values, jitter, ".", color="tab:blue", alpha=0.6, markersize=4)
    ax.set_yticks(range(1, len(order) + 1), order, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(0, 1.5 * float(df["ms"].max()) if len(df) else 1.0)
    ax.set_xlabel("ms (log scale above 1 ms)")
    ax.set_title(f"{df['start'].nunique()} starts: time per phase")
    return ax
