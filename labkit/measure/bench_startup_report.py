"""labkit bench startup, the report: rows (one per candidate and host condition), the ratio of
each median to the hand-built floor's, the issue's speed targets, and the outputs (a rich
table, JSON, CSV, a bar chart on a matplotlib Axes or in a PNG).

Pure: no process, no kernel object; labkit.measure.bench_startup fills the rows.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.measure.bench_images_report import p95

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "CSV_HEADER",
    "FLOOR",
    "PROBES_OFF",
    "PROBES_ON",
    "StartupRow",
    "Target",
    "plot",
    "print_table",
    "render_table",
    "summarize",
    "targets",
    "to_csv",
    "to_json",
    "write_csv",
    "write_png",
]

FLOOR = "hand-built floor"  # what "x floor" divides by (same host condition)
WARM = "labkit-runtime warm"
PROBES_OFF = "labkit-runtime warm, probes off"  # the probe-overhead phase's two rows
PROBES_ON = "labkit-runtime warm, probes on"
GOAL_FLOOR = 2.0  # issue 11: warm labkit-runtime within 2x of the hand-built floor
GOAL_PROBES = 0.10  # issue 11 item 7: probes add under 10 % to a start


@dataclass(frozen=True, slots=True)
class StartupRow:
    """One candidate in one host condition ("cold" or "warm"): its samples in ms, or why it
    could not run (``error``); ``ratio_to_floor`` is filled by summarize()."""

    candidate: str
    host: str
    samples_ms: tuple[float, ...] = ()
    error: str | None = None
    note: str = ""
    ratio_to_floor: float | None = None

    @property
    def n(self) -> int:
        return len(self.samples_ms) if self.error is None else 0

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.samples_ms) if self.n else None

    @property
    def p95_ms(self) -> float | None:
        return p95(self.samples_ms) if self.n else None

    @property
    def status(self) -> str:
        if self.error is not None:
            return f"cannot run: {self.error}"
        return "ok" if self.samples_ms else "not run"

    def as_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "host": self.host, "status": self.status,
                "n": self.n, "median_ms": self.median_ms, "p95_ms": self.p95_ms,
                "ratio_to_floor": self.ratio_to_floor, "samples_ms": list(self.samples_ms),
                "error": self.error, "note": self.note}


def summarize(rows: Sequence[StartupRow]) -> list[StartupRow]:
    """The rows with ``ratio_to_floor`` = median / the hand-built floor's median in the same
    host condition (None where either has no figure)."""
    floor = {r.host: r.median_ms for r in rows if r.candidate == FLOOR}
    out = []
    for r in rows:
        f, m = floor.get(r.host), r.median_ms
        out.append(dataclasses.replace(r, ratio_to_floor=m / f if m is not None and f else None))
    return out


@dataclass(frozen=True, slots=True)
class Target:
    """One speed target of the issue in one host condition, with this run's figure."""

    target: str
    host: str
    value: float | None  # the ratio measured; None: a side has no figure
    goal: str
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def targets(rows: Sequence[StartupRow]) -> list[Target]:
    """Per host: warm labkit-runtime / hand-built floor (<= 2), warm labkit-runtime / crun
    (< 1), probes on / probes off - 1 (< 0.10).  Reported, never asserted."""
    med = {(r.candidate, r.host): r.median_ms for r in rows}
    out = []
    for host in dict.fromkeys(r.host for r in rows):
        def ratio(a: str, b: str, h: str = host) -> float | None:
            x, y = med.get((a, h)), med.get((b, h))
            return x / y if x is not None and y else None

        r = ratio(WARM, FLOOR)
        out.append(Target(f"{WARM} / {FLOOR}", host, r, f"<= {GOAL_FLOOR:.0f}",
                          None if r is None else r <= GOAL_FLOOR))
        r = ratio(WARM, "crun")
        out.append(Target(f"{WARM} / crun", host, r, "< 1", None if r is None else r < 1.0))
        r = ratio(PROBES_ON, PROBES_OFF)
        over = None if r is None else r - 1.0
        out.append(Target("probe overhead (on / off - 1)", host, over,
                          f"< {GOAL_PROBES:.0%}", None if over is None else over < GOAL_PROBES))
    return out


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def render_table(rows: Sequence[StartupRow], goals: Sequence[Target] | None = None
                 ) -> list[Table]:
    """Two rich Tables: the timings (median, p95, n, x floor) and the targets."""
    from rich.table import Table

    n = max((r.n for r in rows), default=0)
    t = Table(title=f"labkit bench startup: container start latency, busybox /bin/true (n={n})",
              caption=f"x floor = median / the {FLOOR}'s median in the same host condition")
    for col, just in (("candidate", "left"), ("host", "left"), ("median ms", "right"),
                      ("p95 ms", "right"), ("n", "right"), ("x floor", "right"),
                      ("status", "left"), ("note", "left")):
        t.add_column(col, justify=just, no_wrap=col in ("candidate", "host"))  # type: ignore[arg-type]
    for r in rows:
        colour = "green" if r.error is None else "yellow"
        t.add_row(r.candidate, r.host, _ms(r.median_ms), _ms(r.p95_ms), str(r.n),
                  "-" if r.ratio_to_floor is None else f"{r.ratio_to_floor:.2f}",
                  f"[{colour}]{r.status}[/{colour}]", r.note)
    g = Table(title="targets (issue 11; reported, never asserted)")
    for col in ("target", "host", "measured", "goal", "met"):
        g.add_column(col)
    for x in goals if goals is not None else targets(rows):
        value = "-" if x.value is None else (
            f"{x.value:+.1%}" if x.target.startswith("probe") else f"{x.value:.2f}")
        g.add_row(x.target, x.host, value, x.goal,
                  "-" if x.met is None else ("yes" if x.met else "no"))
    return [t, g]


def print_table(rows: Sequence[StartupRow], console: Console | None = None) -> None:
    """Print the timings and the targets (to ``console``, or a new rich Console)."""
    from rich.console import Console

    console = console or Console()
    for table in render_table(rows):
        console.print(table)


def to_json(rows: Sequence[StartupRow]) -> str:
    return json.dumps({"rows": [r.as_dict() for r in rows],
                       "targets": [g.as_dict() for g in targets(rows)]}, indent=2)


CSV_HEADER = ("candidate", "host", "n", "median_ms", "p95_ms", "ratio_to_floor", "status",
              "note")


def to_csv(rows: Sequence[StartupRow]) -> str:
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in rows:
        w.writerow([r.candidate, r.host, r.n,
                    *("" if v is None else f"{v:.3f}"
                      for v in (r.median_ms, r.p95_ms, r.ratio_to_floor)),
                    r.status, r.note])
    return buf.getvalue()


def write_csv(rows: Sequence[StartupRow], path: str | Path) -> Path:
    """The rows as CSV (CSV_HEADER columns; a row that could not run has empty figures)."""
    path = Path(path)
    path.write_text(to_csv(rows))
    return path


def plot(rows: Sequence[StartupRow], ax: Axes | None = None) -> Axes:
    """Horizontal bars of the medians with p95 whiskers, log scale, one colour per host
    condition, each bar labelled with its ratio to the floor; a candidate that could not
    run is listed with "cannot run".  Draws on ``ax`` (a new figure when None)."""
    import matplotlib.pyplot as plt

    if ax is None:
        names = list(dict.fromkeys(r.candidate for r in rows))
        _, ax = plt.subplots(figsize=(8.0, 0.5 * len(names) + 1.5))
    names = list(dict.fromkeys(r.candidate for r in rows))
    hosts = list(dict.fromkeys(r.host for r in rows))
    height = 0.8 / max(1, len(hosts))
    by = {(r.candidate, r.host): r for r in rows}
    for k, host in enumerate(hosts):
        ys, meds, lo, hi, labels = [], [], [], [], []
        for i, name in enumerate(names):
            r = by.get((name, host))
            y = i + (k - (len(hosts) - 1) / 2) * height
            if r is None or r.median_ms is None:
                if r is not None:
                    ax.annotate("cannot run", (1.0, y), xycoords=("axes fraction", "data"),
                                ha="right", va="center", fontsize=7, color="grey")
                continue
            ys.append(y)
            meds.append(r.median_ms)
            lo.append(0.0)
            hi.append(max(0.0, (r.p95_ms or r.median_ms) - r.median_ms))
            labels.append("" if r.ratio_to_floor is None else f"{r.ratio_to_floor:.1f}x")
        ax.barh(ys, meds, height, xerr=[lo, hi], capsize=2, label=host)
        for y, m, h, text in zip(ys, meds, hi, labels, strict=True):
            # past the whisker's end (log axis: a factor, not an offset)
            ax.annotate(text, ((m + h) * 1.08, y), va="center", fontsize=7)
    ax.set_xscale("log")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("start to exit, median ms (whisker: p95; label: x the hand-built floor)")
    ax.set_title("labkit bench startup (lower is better)")
    ax.legend(title="host", fontsize=8)
    return ax


def write_png(rows: Sequence[StartupRow], path: str | Path) -> Path:
    """plot() into a PNG file, on a Figure of its own (no pyplot state, no backend switch:
    safe from a notebook too)."""
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(r.candidate for r in rows))
    fig = Figure(figsize=(8.0, 0.5 * len(names) + 1.5))
    plot(rows, fig.subplots())
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
