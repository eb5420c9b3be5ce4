"""labkit bench engine smoke test: -n 2 against labkit only; everything it starts is gone after."""

from __future__ import annotations

import glob
import os
import tempfile

import pytest

from labkit.measure import bench_engine

pytestmark = pytest.mark.privileged


def test_bench_engine_smoke_labkit_only() -> None:
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "lk-bn-*")))
    rows, goals = bench_engine.run(runs=2, warmup=0, with_dockerd=False, podman=False)
    by_name = {r.name: r for r in rows}
    assert by_name["labkit run -> labkit"].status == "ok"
    assert by_name["docker CLI -> dockerd"].status == "not installed"
    assert "--with-dockerd" in by_name["docker CLI -> dockerd"].note
    assert by_name["podman"].status == "not installed"
    for r in rows:
        if r.status == "ok":
            assert r.runs == 2 and len(r.samples_ms) == 2
            assert r.median_ms is not None and r.median_ms > 0
    goal = {g.target: g for g in goals}["labkit run / docker CLI -> labkit"]
    if by_name["docker CLI -> labkit"].status == "ok":
        assert goal.ratio is not None and goal.ratio > 0
    # Its throw-away engine dir (/tmp/lk-bn-*) is gone.
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "lk-bn-*"))) <= before


def test_breakdown_puts_every_room_of_a_run_on_the_table() -> None:
    """proctree traces two real runs: each of labkit's rooms used CPU, every phase is cut."""
    from labkit.measure import breakdown as bd

    summary = bench_engine.breakdown(2)
    cpu = summary["cpu_ms"]
    for room in ("docker CLI", "daemon", "supervisor", "shim", "runtime", "container"):
        assert cpu[room] is not None and cpu[room] > 0, (room, cpu)
    assert cpu["labkit"] == pytest.approx(sum(cpu[r] for r in bd.LABKIT_ROOMS), rel=0.5)
    phases = summary["phase_ms"]
    assert all(v is not None and v >= 0 for v in phases.values()), phases
    wall = summary["wall_ms"]["run"]
    assert wall is not None and sum(v for v in phases.values() if v) <= wall * 1.01
