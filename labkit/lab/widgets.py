"""Notebook knobs (ipywidgets): a slider that re-runs one labkit.measure.workloads experiment.

The experiment runs once with the slider's default when the widget is built (so a headless
run, e.g. nbval, executes it exactly once) and again each time the slider is released
(``continuous_update=False``: dragging does not start a run per pixel).

A saved notebook keeps the widget state, but a viewer without a widget manager (GitHub,
nbviewer, a JupyterLab that has not run the cell) shows only the widget's text repr.  So each
knob also offers, in its display bundle, the PNG of its latest run when it is displayed (for a
cell that ends with the call: the run at the slider's default).  Front ends that can render
the widget pick the widget; the others show the picture of what the slider does.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable
from typing import Any

from labkit.cgroups import Resources
from labkit.lab import plots
from labkit.measure import workloads

__all__ = ["cpu_quota_knob", "knob", "memory_limit_knob"]

MIB = 1 << 20


def _knob_box(children: list[Any], last: dict[str, bytes]) -> Any:
    """A VBox whose display bundle also carries ``last["png"]`` (the latest run's figure)."""
    import ipywidgets as w

    class KnobBox(w.VBox):  # type: ignore[misc]
        def _repr_mimebundle_(self, **kw: Any) -> Any:
            bundle = super()._repr_mimebundle_(**kw)
            if bundle is not None and "png" in last:
                bundle["image/png"] = base64.b64encode(last["png"]).decode()
            return bundle

    return KnobBox(children)


def knob(fn: Callable[[int], object], name: str, lo: int, hi: int, step: int, value: int,
         description: str) -> Any:
    """An IntSlider wired to ``fn(value)`` through ipywidgets.interactive_output.

    Returns a VBox (slider over output) for the cell to display.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt

    slider = w.IntSlider(value=value, min=lo, max=hi, step=step, description=description,
                         continuous_update=False, style={"description_width": "initial"},
                         layout=w.Layout(width="60%"))
    last: dict[str, bytes] = {}

    def show(**kw: int) -> None:
        fn(kw[name])
        buf = io.BytesIO()
        plt.gcf().savefig(buf, format="png", bbox_inches="tight")
        last["png"] = buf.getvalue()
        plt.show()

    out = w.interactive_output(show, {name: slider})
    return _knob_box([slider, out], last)


def memory_limit_knob(value_mib: int = 48, prefix: str = "lk-nb-knob-mem") -> Any:
    """Slider: memory limit (MiB); each run starts a memory hog under it and plots its memory."""
    def run(mib: int) -> None:
        limit = mib * MIB
        r = workloads.run_limited(f"{prefix}-{os.getpid()}",
                                  Resources(memory_max=limit, memory_swap_max=limit),
                                  workloads.memory_hog())
        plots.plot_memory_run(r)

    return knob(run, "mib", 16, 256, 16, value_mib, "memory limit (MiB)")


def cpu_quota_knob(value_pct: int = 20, seconds: float = 1.0,
                   prefix: str = "lk-nb-knob-cpu",
                   baseline: workloads.LimitedRun | None = None) -> Any:
    """Slider: CPU quota (% of one CPU); each run burns CPU under it, plotted beside a run
    with no quota (``baseline``, e.g. one the notebook already made; else run once here)."""
    period = 100_000
    base: dict[str, workloads.LimitedRun] = {}
    if baseline is not None:
        base["no quota"] = baseline

    def run(pct: int) -> None:
        if not base:  # the first run only: the baseline does not depend on the slider
            base["no quota"] = workloads.run_limited(
                f"{prefix}-{os.getpid()}", Resources(cpu_quota_us=-1, cpu_period_us=period),
                workloads.cpu_burner(seconds))
        quota = max(1000, period * pct // 100)
        r = workloads.run_limited(f"{prefix}-{os.getpid()}",
                                  Resources(cpu_quota_us=quota, cpu_period_us=period),
                                  workloads.cpu_burner(seconds))
        plots.plot_cpu_runs({**base, f"quota {pct}%": r})

    return knob(run, "pct", 5, 100, 5, value_pct, "CPU quota (% of one CPU)")
