"""lab.widgets: a knob carries a picture of its run, and the CPU knob draws a no-quota baseline."""

from __future__ import annotations

import base64
from typing import Any

import matplotlib
import pytest

from labkit.lab import widgets

matplotlib.use("Agg")


def test_a_knob_offers_its_figure_as_png() -> None:
    import matplotlib.pyplot as plt

    seen: list[int] = []
    box = widgets.knob(lambda v: (seen.append(v), plt.plot([0, v])), "v", 0, 10, 1, 3, "v")
    bundle = box._repr_mimebundle_()
    assert seen == [3]  # ran once, at the default
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")


@pytest.mark.parametrize("given", [True, False])
def test_cpu_knob_plots_a_baseline_beside_the_quota(monkeypatch: pytest.MonkeyPatch,
                                                    given: bool) -> None:
    runs: list[Any] = []
    plotted: list[list[str]] = []

    def fake_run(name: str, res: Any, argv: Any) -> str:
        runs.append(res.cpu_quota_us)
        return f"run{len(runs)}"

    monkeypatch.setattr(widgets.workloads, "run_limited", fake_run)
    monkeypatch.setattr(widgets.plots, "plot_cpu_runs", lambda d: plotted.append(list(d)))
    widgets.cpu_quota_knob(20, baseline="given" if given else None)  # type: ignore[arg-type]
    assert plotted == [["no quota", "quota 20%"]]
    assert runs == ([20_000] if given else [-1, 20_000])
