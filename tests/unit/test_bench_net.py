"""labkit bench net, the pure parts: targets (labkit/peer ratios, the 5x goal on the bridge
only), the bridge's own cost, CSV/JSON/table/PNG output, the network probe's parser, the
CLI's arguments and the peer daemons' refusals."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from labkit import errors
from labkit.cli.bench import parser
from labkit.measure import bench_net as bn
from labkit.measure.peer_daemons import BenchNetns


def _rows() -> list[bn.NetRow]:
    return [
        bn.NetRow("bridge", "labkit", (50.0, 60.0, 55.0), note="default network: lo only"),
        bn.NetRow("bridge", "dockerd", (300.0, 310.0, 290.0)),
        bn.NetRow("bridge", "podman", error="not installed: apt-get install podman"),
        bn.NetRow("none", "labkit", (40.0, 45.0, 50.0)),
        bn.NetRow("none", "dockerd", (250.0,)),
        bn.NetRow("none", "podman", error="not installed: apt-get install podman"),
    ]


def test_targets_ratio_speedup_and_goal_only_on_the_bridge() -> None:
    goals = {(g.workload, g.peer): g for g in bn.targets(_rows())}
    assert set(goals) == {(w, p) for w in bn.WORKLOADS for p in ("dockerd", "podman")}
    g = goals[("bridge", "dockerd")]
    assert g.ratio == pytest.approx(55.0 / 300.0)
    assert g.speedup == pytest.approx(300.0 / 55.0)
    assert g.goal == 5.0 and g.met is True
    assert goals[("bridge", "podman")].ratio is None and goals[("bridge", "podman")].met is None
    none = goals[("none", "dockerd")]
    assert none.goal is None and none.met is None and none.speedup == pytest.approx(250 / 45)
    slow = bn.targets([bn.NetRow("bridge", "labkit", (100.0,)),
                       bn.NetRow("bridge", "dockerd", (400.0,))])
    assert slow[0].met is False  # 4x is short of 5x


def test_bridge_cost_is_the_difference_of_medians() -> None:
    cost = bn.bridge_cost(_rows())
    assert cost == {"labkit": pytest.approx(10.0), "dockerd": pytest.approx(50.0),
                    "podman": None}


def test_row_status_and_figures() -> None:
    r = _rows()
    assert r[0].status == "ok" and r[0].n == 3 and r[0].median_ms == 55.0
    assert r[0].p95_ms is not None and 55.0 < r[0].p95_ms <= 60.0
    assert r[2].status.startswith("cannot run: not installed") and r[2].median_ms is None
    assert bn.NetRow("bridge", "labkit").status == "not run"
    # an error wins over samples taken before it: no figure is reported
    assert bn.NetRow("bridge", "labkit", (1.0,), error="boom").median_ms is None


def test_csv_shape() -> None:
    rows = _rows()
    text = bn.to_csv(rows, bn.targets(rows))
    lines = list(csv.reader(io.StringIO(text)))
    assert tuple(lines[0]) == bn.CSV_HEADER
    body = [dict(zip(bn.CSV_HEADER, ln, strict=True)) for ln in lines[1:]]
    assert [(b["workload"], b["daemon"]) for b in body] == [
        (w, d) for w in bn.WORKLOADS for d in bn.DAEMONS]
    dk = body[1]
    assert dk["median_ms"] == "300.000" and dk["bridge_minus_none_ms"] == "50.000"
    assert dk["target_met"] == "yes" and dk["goal_speedup"] == "5.0"
    assert body[0]["ratio_labkit_over_daemon"] == ""  # labkit's own line has no ratio
    assert body[2]["status"].startswith("cannot run:") and body[2]["median_ms"] == ""
    assert body[4]["bridge_minus_none_ms"] == "" and body[4]["target_met"] == ""


def test_json_and_table_and_png(tmp_path: Path) -> None:
    rows = _rows()
    goals = bn.targets(rows)
    setup = {"cli": "/usr/bin/docker", "netns": "lk-bnet-1", "network labkit": "lo only"}
    d = json.loads(bn.to_json(rows, goals, runs=3, warmup=1, setup=setup))
    assert d["runs"] == 3 and d["setup"] == setup and len(d["rows"]) == 6
    assert d["bridge_minus_none_ms"]["podman"] is None
    console = Console(record=True, width=160)
    for t in bn.render_table(rows, goals, 3, setup):
        console.print(t)
    out = console.export_text()
    assert "not met" not in out and "met" in out and "cannot run: not installed" in out
    assert "lo only" in out
    png = bn.write_png(rows, goals, tmp_path / "net.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("output", "want"), [
    (("1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
      "1: lo    inet6 ::1/128 scope host \\       valid_lft forever\n"
      "7: eth0    inet 172.17.0.2/16 brd 172.17.255.255 scope global eth0\n"),
     "eth0 172.17.0.2/16"),
    ("1: lo    inet 127.0.0.1/8 scope host lo\n", "lo only (no network interface)"),
    ("", "lo only (no network interface)"),
])
def test_describe_network(output: str, want: str) -> None:
    assert bn.describe_network(output) == want


def test_steps_counts_every_slot() -> None:
    assert bn.steps(3, 1) == 4 * len(bn.WORKLOADS) * len(bn.DAEMONS)


def test_cli_arguments(tmp_path: Path) -> None:
    args = parser().parse_args(["net", "--runs", "4", "--warmup", "0", "--csv", "x.csv"])
    assert (args.bench, args.runs, args.warmup, args.csv, args.cli) == ("net", 4, 0, "x.csv",
                                                                       None)
    with pytest.raises(SystemExit):
        parser().parse_args(["net", "--runs", "0"])


def test_run_refuses_bad_counts() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="runs/warmup"):
        bn.run(0, 1)
    with pytest.raises(errors.InvalidArgumentError, match="runs/warmup"):
        bn.run(1, -1)


def test_bench_netns_must_be_lk_prefixed() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="lk-"):
        BenchNetns("bench")
