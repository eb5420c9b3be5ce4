"""labkit bench images, the report: rows, medians and p95, the issue's target (labkit/dockerd
<= 1 per operation) and the outputs (a rich table, JSON, CSV, a matplotlib bar chart).

Pure: no daemon, no process; labkit.measure.bench_images fills the rows.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit import errors

__all__ = [
    "CSV_HEADER",
    "DAEMONS",
    "OPS",
    "ImageRow",
    "ImageTarget",
    "cli_error",
    "p95",
    "print_table",
    "render_table",
    "targets",
    "to_csv",
    "to_json",
    "write_png",
]

DAEMONS = ("labkit", "dockerd")
BUILD_OPS = ("build cold", "build cached")
PUSH_PULL_OPS = ("push", "pull", "re-pull (layers present)")
OPS = BUILD_OPS + PUSH_PULL_OPS


@dataclass(frozen=True, slots=True)
class ImageRow:
    """One (operation, daemon) pair: its samples in ms, or why it could not run."""

    op: str
    daemon: str
    samples_ms: tuple[float, ...] = ()
    error: str | None = None  # the daemon's error message: "cannot run: ..." in the table
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
        return {"op": self.op, "daemon": self.daemon, "status": self.status, "n": self.n,
                "median_ms": self.median_ms, "p95_ms": self.p95_ms,
                "samples_ms": list(self.samples_ms), "error": self.error, "note": self.note}


@dataclass(frozen=True, slots=True)
class ImageTarget:
    """The issue's target for one operation: labkit's median no more than dockerd's."""

    op: str
    ratio: float | None  # labkit median / dockerd median; None: one side has no figure
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "ratio_labkit_over_dockerd": self.ratio, "goal": "<= 1.0",
                "met": self.met}


def p95(samples: Iterable[float]) -> float:
    """The 95th percentile, linear interpolation between closest ranks (statistics.quantiles'
    "inclusive" method, so it stays within the samples; one sample is its own p95)."""
    xs = sorted(samples)
    if not xs:
        raise errors.InvalidArgumentError("p95", "no samples")
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=20, method="inclusive")[18]


def targets(rows: list[ImageRow]) -> list[ImageTarget]:
    """Per operation, in OPS order: the ratio of medians labkit/dockerd and whether <= 1."""
    med = {(r.op, r.daemon): r.median_ms for r in rows}
    out = []
    for op in OPS:
        if (op, "labkit") not in med and (op, "dockerd") not in med:
            continue
        lab, dk = med.get((op, "labkit")), med.get((op, "dockerd"))
        ratio = lab / dk if lab is not None and dk else None
        out.append(ImageTarget(op, ratio, None if ratio is None else ratio <= 1.0))
    return out


def _met(t: ImageTarget | None) -> str:
    if t is None or t.met is None:
        return "-"
    return "met" if t.met else "not met"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def to_json(rows: list[ImageRow], goals: list[ImageTarget], *, runs: int, warmup: int) -> str:
    return json.dumps({"runs": runs, "warmup": warmup, "rows": [r.as_dict() for r in rows],
                       "targets": [g.as_dict() for g in goals]}, indent=2)


CSV_HEADER = ("operation", "daemon", "n", "median_ms", "p95_ms", "ratio_labkit_over_dockerd",
              "target_met", "status", "note")


def to_csv(rows: list[ImageRow], goals: list[ImageTarget]) -> str:
    """One line per (operation, daemon); the operation's ratio and target on both of its lines."""
    by_op = {g.op: g for g in goals}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in rows:
        g = by_op.get(r.op)
        w.writerow([r.op, r.daemon, r.n,
                    "" if r.median_ms is None else f"{r.median_ms:.3f}",
                    "" if r.p95_ms is None else f"{r.p95_ms:.3f}",
                    "" if g is None or g.ratio is None else f"{g.ratio:.3f}",
                    "" if g is None or g.met is None else ("yes" if g.met else "no"),
                    r.status, r.note])
    return buf.getvalue()


def render_table(rows: list[ImageRow], goals: list[ImageTarget], runs: int) -> Any:
    """A rich Table: one line per (operation, daemon), ratio and target on the labkit line."""
    from rich.table import Table

    by_op = {g.op: g for g in goals}
    t = Table(title=f"labkit bench images: Docker CLI wall time, fork to exit (runs={runs})",
              caption="ratio = labkit median / dockerd median; target (issue 9): labkit no "
                      "slower than dockerd, ratio <= 1.00 per operation; reported, never "
                      "asserted")
    for col, just in (("operation", "left"), ("daemon", "left"), ("median ms", "right"),
                      ("p95 ms", "right"), ("n", "right"), ("ratio", "right"),
                      ("target", "left"), ("status / note", "left")):
        t.add_column(col, justify=just,  # type: ignore[arg-type]
                     no_wrap=col not in ("operation", "status / note"))
    last = None
    for r in rows:
        g = by_op.get(r.op) if r.daemon == "labkit" else None
        ratio = "" if r.daemon != "labkit" else (
            "-" if g is None or g.ratio is None else f"{g.ratio:.2f}")
        status = "; ".join(x for x in (r.status, r.note) if x)
        t.add_row(r.op if r.op != last else "", r.daemon, _ms(r.median_ms), _ms(r.p95_ms),
                  str(r.n), ratio, _met(g) if r.daemon == "labkit" else "", status,
                  end_section=r.daemon == DAEMONS[-1])
        last = r.op
    return t


def print_table(rows: list[ImageRow], goals: list[ImageTarget], runs: int) -> None:
    from rich.console import Console

    Console().print(render_table(rows, goals, runs))


def write_png(rows: list[ImageRow], goals: list[ImageTarget], path: Path) -> Path:
    """A grouped bar chart of the medians (ms) per operation, labkit beside dockerd; an
    operation a daemon cannot run is marked on the axis instead of a bar."""
    from labkit.measure._chart import grouped_bars

    ops = [op for op in OPS if any(r.op == op for r in rows)]
    by_op = {g.op: g for g in goals}
    labels = []
    for op in ops:
        g = by_op.get(op)
        labels.append(op if g is None or g.ratio is None else f"{op}\n{g.ratio:.2f}x")
    return grouped_bars(path, ops, DAEMONS, {(r.op, r.daemon): r.median_ms for r in rows},
                        ylabel="median wall time of the Docker CLI (ms)",
                        title="labkit bench images: labkit's daemon vs dockerd (lower is "
                              "better)", labels=labels)


def cli_error(stderr: str) -> str:
    """The daemon's error message as the CLI printed it: the last line that is not the
    classic builder's deprecation banner (docker CLI 23+ prints it on every DOCKER_BUILDKIT=0
    build)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("DEPRECATED:", "BuildKit is currently",
                                                      "environment-variable", "Install the"))]
    last = (keep or lines or ["no message"])[-1]
    # the CLI's own prefix (cli/command: "Error response from daemon: %s"): what follows is
    # the daemon's message
    return last.removeprefix("Error response from daemon: ")[:240]
