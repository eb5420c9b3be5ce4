"""A grouped bar chart of medians for the benchmarks' --png (matplotlib, Agg: no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["grouped_bars"]


def grouped_bars(path: Path, groups: Sequence[str], series: Sequence[str],
                 values: Mapping[tuple[str, str], float | None], *, ylabel: str, title: str,
                 labels: Sequence[str] | None = None) -> Path:
    """One group of bars per ``groups`` item, one bar per ``series`` item, height
    ``values[(group, series)]`` in ms; a missing figure (None) is marked "cannot run" on the
    axis instead of a bar.  ``labels``: the groups' axis labels (default the groups)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(groups)), 4.0))
    width = 0.8 / max(1, len(series))
    for k, name in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        vals = [values.get((g, name)) for g in groups]
        bars = ax.bar(xs, [v or 0.0 for v in vals], width, label=name)
        for x, v, bar in zip(xs, vals, bars, strict=True):
            ax.annotate("cannot run" if v is None else f"{v:.0f}", (x, bar.get_height()),
                        ha="center", va="bottom", fontsize=8,
                        rotation=90 if v is None else 0)
    ax.set_xticks(range(len(groups)), list(labels or groups), fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
