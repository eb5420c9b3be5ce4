"""labkit bench net, the report: rows, medians and p95, the bridge's own cost (bridge minus
none), the ratios labkit/dockerd and labkit/podman with the issue's target (labkit at least 5x
faster than both on the default bridge), and the outputs (a rich table, JSON, CSV, a bar chart).

Pure: no daemon, no process; labkit.measure.bench_net fills the rows.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.measure.bench_images_report import p95

__all__ = [
    "CSV_HEADER",
    "DAEMONS",
    "GOAL_SPEEDUP",
    "WORKLOADS",
    "NetRow",
    "NetTarget",
    "bridge_cost",
    "print_table",
    "render_table",
    "targets",
    "to_csv",
    "to_json",
    "write_png",
]

DAEMONS = ("labkit", "dockerd", "podman")
PEERS = DAEMONS[1:]
# name -> the Docker CLI's argv after `docker`; "bridge": no --network, so the daemon's default
# network (docker's and podman's default bridge; labkit's default network, whatever it is)
WORKLOADS: dict[str, tuple[str, ...]] = {
    "bridge": ("run", "--rm", "busybox", "true"),
    "none": ("run", "--rm", "--network", "none", "busybox", "true"),
}
GOAL_SPEEDUP = 5.0  # issue 10 item 6: labkit at least 5x faster than dockerd and podman


@dataclass(frozen=True, slots=True)
class NetRow:
    """One (workload, daemon) pair: its samples in ms, or why it could not run."""

    workload: str
    daemon: str
    samples_ms: tuple[float, ...] = ()
    error: str | None = None
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.samples_ms) if self.samples_ms and not self.error \
            else None

    @property
    def p95_ms(self) -> float | None:
        return p95(self.samples_ms) if self.samples_ms and not self.error else None

    @property
    def status(self) -> str:
        if self.error is not None:
            return f"cannot run: {self.error}"
        return "ok" if self.samples_ms else "not run"

    def as_dict(self) -> dict[str, Any]:
        return {"workload": self.workload, "daemon": self.daemon, "status": self.status,
                "n": self.n, "median_ms": self.median_ms, "p95_ms": self.p95_ms,
                "samples_ms": list(self.samples_ms), "error": self.error, "note": self.note}


@dataclass(frozen=True, slots=True)
class NetTarget:
    """labkit against one peer on one workload: ratio of medians labkit/peer and its inverse,
    how many times faster labkit is; ``goal`` only on the bridge workload (the issue's)."""

    workload: str
    peer: str
    ratio: float | None  # labkit median / peer median; None: one side has no figure
    goal: float | None

    @property
    def speedup(self) -> float | None:
        return 1.0 / self.ratio if self.ratio else None

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.speedup is None:
            return None
        return self.speedup >= self.goal

    def as_dict(self) -> dict[str, Any]:
        return {"workload": self.workload, "peer": self.peer,
                "ratio_labkit_over_peer": self.ratio, "labkit_speedup": self.speedup,
                "goal_speedup": self.goal, "met": self.met}


def targets(rows: list[NetRow]) -> list[NetTarget]:
    """Per workload and peer: the ratio of medians labkit/peer; the goal on "bridge"."""
    med = {(r.workload, r.daemon): r.median_ms for r in rows}
    out = []
    for wl in WORKLOADS:
        for peer in PEERS:
            if (wl, peer) not in med:
                continue
            lab, other = med.get((wl, "labkit")), med.get((wl, peer))
            out.append(NetTarget(wl, peer, lab / other if lab is not None and other else None,
                                 GOAL_SPEEDUP if wl == "bridge" else None))
    return out


def bridge_cost(rows: list[NetRow]) -> dict[str, float | None]:
    """Per daemon: median(bridge) - median(none), the default network's own cost."""
    med = {(r.workload, r.daemon): r.median_ms for r in rows}
    out: dict[str, float | None] = {}
    for d in DAEMONS:
        b, n = med.get(("bridge", d)), med.get(("none", d))
        out[d] = b - n if b is not None and n is not None else None
    return out


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _f(v: float | None, fmt: str = ".3f") -> str:
    return "" if v is None else format(v, fmt)


def to_json(rows: list[NetRow], goals: list[NetTarget], *, runs: int, warmup: int,
            setup: dict[str, str]) -> str:
    return json.dumps({"runs": runs, "warmup": warmup, "setup": setup,
                       "rows": [r.as_dict() for r in rows],
                       "bridge_minus_none_ms": bridge_cost(rows),
                       "targets": [g.as_dict() for g in goals]}, indent=2)


CSV_HEADER = ("workload", "daemon", "n", "median_ms", "p95_ms", "bridge_minus_none_ms",
              "ratio_labkit_over_daemon", "labkit_speedup", "goal_speedup", "target_met",
              "status", "note")


def to_csv(rows: list[NetRow], goals: list[NetTarget]) -> str:
    """One line per (workload, daemon); a peer's line carries labkit's ratio against it."""
    by = {(g.workload, g.peer): g for g in goals}
    cost = bridge_cost(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in rows:
        g = by.get((r.workload, r.daemon))
        met = "" if g is None or g.met is None else ("yes" if g.met else "no")
        w.writerow([r.workload, r.daemon, r.n, _f(r.median_ms), _f(r.p95_ms),
                    _f(cost.get(r.daemon)) if r.workload == "bridge" else "",
                    _f(g.ratio if g else None), _f(g.speedup if g else None),
                    _f(g.goal if g else None, ".1f"), met, r.status, r.note])
    return buf.getvalue()


LABELS = {"bridge": "default net", "none": "--network none"}


def render_table(rows: list[NetRow], goals: list[NetTarget], runs: int,
                 setup: dict[str, str] | None = None) -> list[Any]:
    """rich Tables: the timings with labkit's ratio on each peer's line, then the bridge's
    own cost per daemon."""
    from rich.table import Table

    by = {(g.workload, g.peer): g for g in goals}
    t = Table(title="labkit bench net: `docker run --rm [--network none] busybox true`, "
                    f"CLI fork to exit (runs={runs})",
              caption=f"ratio = labkit median / daemon median; x = daemon / labkit; target "
                      f"(issue 10): labkit >= {GOAL_SPEEDUP:.0f}x faster than dockerd and "
                      "podman on the default bridge; reported, never asserted")
    for col, just in (("workload", "left"), ("daemon", "left"), ("median ms", "right"),
                      ("p95 ms", "right"), ("n", "right"), ("ratio", "right"),
                      ("x faster", "right"), ("target", "left"), ("status", "left")):
        t.add_column(col, justify=just,  # type: ignore[arg-type]
                     no_wrap=col != "status")
    last = None
    for r in rows:
        g = by.get((r.workload, r.daemon))
        target = "" if g is None or g.goal is None else (
            "-" if g.met is None else "met" if g.met else "not met")
        t.add_row(LABELS[r.workload] if r.workload != last else "", r.daemon,
                  _ms(r.median_ms), _ms(r.p95_ms), str(r.n),
                  "" if g is None else "-" if g.ratio is None else f"{g.ratio:.2f}",
                  "" if g is None or g.speedup is None else f"{g.speedup:.2f}x", target,
                  r.status,
                  end_section=r.daemon == DAEMONS[-1])
        last = r.workload
    c = Table(title="the default network's own cost: median(default net) - median(none)")
    c.add_column("daemon")
    c.add_column("ms", justify="right")
    c.add_column("default network")
    nets = {d: (setup or {}).get(f"network {d}", "") for d in DAEMONS}
    for d, v in bridge_cost(rows).items():
        c.add_row(d, _ms(v), nets[d])
    return [t, c]


def print_table(rows: list[NetRow], goals: list[NetTarget], runs: int,
                setup: dict[str, str] | None = None) -> None:
    from rich.console import Console

    console = Console()
    for table in render_table(rows, goals, runs, setup):
        console.print(table)
    for k, v in (setup or {}).items():
        if not k.startswith("network "):
            console.print(f"{k}: {v}", highlight=False)


def write_png(rows: list[NetRow], goals: list[NetTarget], path: Path) -> Path:
    """Bars of the medians per workload, one per daemon; labkit's x-faster in the labels."""
    from labkit.measure._chart import grouped_bars

    by = {(g.workload, g.peer): g for g in goals}
    labels = []
    for wl in WORKLOADS:
        xs = [f"{p} {g.speedup:.1f}x" for p in PEERS
              if (g := by.get((wl, p))) is not None and g.speedup is not None]
        labels.append("\n".join([LABELS[wl], *xs]))
    return grouped_bars(path, list(WORKLOADS), DAEMONS,
                        {(r.workload, r.daemon): r.median_ms for r in rows},
                        ylabel="median wall time of the Docker CLI (ms)",
                        title="labkit bench net: docker run --rm (lower is better)",
                        labels=labels)
