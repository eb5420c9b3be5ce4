"""labkit bench startup's pure parts: the ratio to the floor, the targets, CSV, JSON, the
chart, and the argument checks that refuse bad input before anything is started."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from labkit import errors
from labkit.cli import bench
from labkit.measure import bench_startup as bs
from labkit.measure import bench_startup_report as rep


def _rows() -> list[rep.StartupRow]:
    return [
        rep.StartupRow("fork+exec", "cold", (1.0, 1.0, 1.0)),
        rep.StartupRow(rep.FLOOR, "cold", (2.0, 4.0, 3.0)),
        rep.StartupRow(rep.FLOOR, "warm", (2.0, 2.0)),
        rep.StartupRow("labkit-runtime warm", "cold", (5.0, 7.0, 6.0)),
        rep.StartupRow("labkit-runtime warm", "warm", (3.0, 3.0)),
        rep.StartupRow("crun", "cold", (12.0, 12.0, 12.0)),
        rep.StartupRow("crun", "warm", (), "not installed: apt-get install crun"),
        rep.StartupRow(rep.PROBES_OFF, "cold", (10.0, 10.0)),
        rep.StartupRow(rep.PROBES_ON, "cold", (10.5, 10.5)),
    ]


def test_summarize_divides_each_median_by_the_floor_of_its_own_host() -> None:
    rows = {(r.candidate, r.host): r for r in rep.summarize(_rows())}
    assert rows[("fork+exec", "cold")].ratio_to_floor == pytest.approx(1 / 3)
    assert rows[(rep.FLOOR, "cold")].ratio_to_floor == pytest.approx(1.0)
    assert rows[("labkit-runtime warm", "cold")].ratio_to_floor == pytest.approx(2.0)
    assert rows[("labkit-runtime warm", "warm")].ratio_to_floor == pytest.approx(1.5)
    crun = rows[("crun", "warm")]
    assert crun.ratio_to_floor is None and crun.median_ms is None and crun.n == 0
    assert crun.status == "cannot run: not installed: apt-get install crun"


def test_summarize_without_a_floor_gives_no_ratio() -> None:
    out = rep.summarize([rep.StartupRow("runc", "cold", (5.0,))])
    assert out[0].ratio_to_floor is None and out[0].median_ms == 5.0 and out[0].p95_ms == 5.0


def test_p95_and_median() -> None:
    r = rep.StartupRow("x", "cold", tuple(float(i) for i in range(1, 21)))
    assert r.median_ms == 10.5 and r.n == 20
    assert 19.0 <= (r.p95_ms or 0) <= 20.0


def test_targets_ratios_and_verdicts() -> None:
    goals = {(g.target, g.host): g for g in rep.targets(rep.summarize(_rows()))}
    floor = goals[("labkit-runtime warm / hand-built floor", "cold")]
    assert floor.value == pytest.approx(2.0) and floor.met is True  # <= 2 holds at 2.0
    crun = goals[("labkit-runtime warm / crun", "cold")]
    assert crun.value == pytest.approx(0.5) and crun.met is True
    assert goals[("labkit-runtime warm / crun", "warm")].met is None  # crun has no figure
    probe = goals[("probe overhead (on / off - 1)", "cold")]
    assert probe.value == pytest.approx(0.05) and probe.met is True
    assert goals[("probe overhead (on / off - 1)", "warm")].value is None


def test_csv_has_one_line_per_row_and_empty_figures_for_a_row_that_cannot_run(
        tmp_path: Path) -> None:
    rows = rep.summarize(_rows())
    path = rep.write_csv(rows, tmp_path / "s.csv")
    lines = list(csv.reader(path.open()))
    assert tuple(lines[0]) == rep.CSV_HEADER
    body = [dict(zip(rep.CSV_HEADER, ln, strict=True)) for ln in lines[1:]]
    assert [(b["candidate"], b["host"]) for b in body] == [(r.candidate, r.host) for r in rows]
    lk = body[3]
    assert (lk["n"], lk["median_ms"], lk["ratio_to_floor"], lk["status"]) == (
        "3", "6.000", "2.000", "ok")
    crun = body[6]
    assert crun["median_ms"] == crun["p95_ms"] == crun["ratio_to_floor"] == ""
    assert crun["status"].startswith("cannot run: not installed")


def test_json_and_table_render(tmp_path: Path) -> None:
    from rich.console import Console

    rows = rep.summarize(_rows())
    doc = json.loads(rep.to_json(rows))
    assert len(doc["rows"]) == len(rows) and len(doc["targets"]) == 3 * 2
    console = Console(record=True, width=200)
    rep.print_table(rows, console)
    text = console.export_text()
    for word in ("hand-built floor", "x floor", "cannot run: not installed", "+5.0%", "targets"):
        assert word in text, word


def test_plot_on_an_axes_and_png(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    rows = rep.summarize(_rows())
    ax = Figure().subplots()
    assert rep.plot(rows, ax) is ax
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == list(
        dict.fromkeys(r.candidate for r in rows))
    png = rep.write_png(rows, tmp_path / "s.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("kwargs", "what"), [
    ({"runs": 0}, "runs/warmup"),
    ({"warmup": -1}, "runs/warmup"),
    ({"candidates": ["runc", "lxc"]}, "candidate"),
    ({"candidates": []}, "candidate"),
    ({"hosts": ["tepid"]}, "host"),
    ({"probes": ["../etc"]}, "probe"),
    ({"probes": ["nosuchprobe"]}, "probe"),
    ({"probes": ["base"]}, "probe"),  # a module without attach()
])
def test_run_refuses_bad_input_before_starting_anything(kwargs: dict[str, object],
                                                        what: str) -> None:
    with pytest.raises(errors.InvalidArgumentError) as info:
        bs.run(**kwargs)  # type: ignore[arg-type]
    assert what in str(info.value)


def test_available_names_every_candidate_with_none_or_a_reason() -> None:
    got = bs.available()
    assert set(got) == set(bs.CANDIDATES)
    assert got["fork+exec"] is None
    assert all(v is None or (isinstance(v, str) and v) for v in got.values())


def test_steps_counts_progress_calls() -> None:
    assert bs.steps(2, 1, 3, 2, probes=False) == 18
    assert bs.steps(2, 1, 3, 2, probes=True) == 18 + 8


@pytest.mark.parametrize("runs", [1, 2, 3, 7, 20])
def test_probe_plan_is_abba_cycles_with_runs_samples_per_state(runs: int) -> None:
    plan = bs.probe_plan(runs, cycles=4)
    assert sum(n for on, n in plan if on) == runs
    assert sum(n for on, n in plan if not on) == runs
    assert all(n > 0 for _, n in plan)
    # every "on" block sits between "off" blocks of the same cycle (one attach per cycle)
    assert sum(1 for on, _ in plan if on) == min(4, runs)
    assert plan[0][0] is False


def test_cli_parses_startup_options() -> None:
    args = bench.parser().parse_args(["startup", "-n", "5", "--candidates", "runc,crun",
                                      "--probes", "", "--hosts", "cold"])
    assert (args.runs, args.candidates, args.probes, args.hosts) == (5, "runc,crun", "",
                                                                     "cold")
    with pytest.raises(SystemExit):
        bench.parser().parse_args(["startup", "-n", "0"])
