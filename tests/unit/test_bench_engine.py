"""bench_engine's bookkeeping without engines: rows from fake candidates, targets as ratios."""

from __future__ import annotations

from labkit.measure import bench_engine as be


def test_measure_rows_and_failures() -> None:
    cands = [be.Candidate("docker CLI -> labkit", ["true"]),
             be.Candidate("labkit run -> labkit", ["false"]),
             be.Candidate("podman", None, note="not installed: apt-get install podman")]
    rows = {r.name: r for r in be._measure(cands, runs=3, warmup=1, progress=None)}
    ok = rows["docker CLI -> labkit"]
    assert ok.status == "ok" and ok.runs == 3 and ok.median_ms is not None
    assert ok.p10_ms is not None and ok.p90_ms is not None
    assert rows["labkit run -> labkit"].status.startswith("failed: exit 1")
    assert rows["podman"].status == "not installed" and "apt-get" in rows["podman"].note


def test_targets_are_ratios_of_medians() -> None:
    def row(name: str, med: float | None) -> be.EngineRow:
        return be.EngineRow(name, "ok" if med else "not installed", 1, med, med, med, "")

    goals = {g.target: g for g in be.targets([
        row("docker CLI -> labkit", 50.0), row("labkit run -> labkit", 80.0),
        row("docker CLI -> dockerd", 200.0), row("podman", None)])}
    d = goals["docker CLI -> dockerd / docker CLI -> labkit"]
    assert (d.ratio, d.met, d.goal) == (4.0, False, ">= 5.0")   # issue 7: 5x dockerd
    assert goals["podman / docker CLI -> labkit"].ratio is None
    lk = goals["labkit run / docker CLI -> labkit"]
    assert (lk.ratio, lk.met) == (1.6, False)
