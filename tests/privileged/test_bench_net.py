"""labkit bench net with --runs 1 through the CLI (`labkit bench net`): the table, the CSV and
the chart have their shape, dockerd's and podman's rows are figures taken on their default
bridge (an eth0 in the container), labkit's a figure or its reason, and every netns, process,
mount and temp dir the run made is gone afterwards.  No timing is asserted."""

from __future__ import annotations

import csv
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from labkit.cli import bench
from labkit.measure import bench_net as bn

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(shutil.which("dockerd") is None or shutil.which("podman") is None,
                       reason="needs Debian's docker.io and podman"),
]


def _netns() -> set[str]:
    """The bench's netns (lk-bnet-*) and podman's per-container ones (netns-<uuid>): other
    tests on the machine make their own lk-* ones meanwhile, which are not this run's."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    names = {ln.split()[0] for ln in out.splitlines() if ln.strip()}
    return {n for n in names if n.startswith(("lk-bnet-", "netns-"))}


def _ours(made: set[str]) -> list[str]:
    """Processes whose command line or environment names one of the run's temp dirs
    (dockerd, containerd, podman, conmon, labkit's daemon, supervisor and shims)."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            text = " ".join(p.info["cmdline"] or []) + " ".join(
                f"{k}={v}" for k, v in (p.info["environ"] or {}).items())
        except psutil.Error:
            continue
        if p.pid != os.getpid() and any(d in text for d in made):
            out.append(f"{p.pid}: {text[:120]}")
    return out


def _mounts(made: set[str]) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [ln.split()[1] for ln in f if any(ln.split()[1].startswith(d) for d in made)]


def test_bench_net_one_round_shape_and_cleanup(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    netns_before = _netns()
    made: set[str] = set()
    real_mkdtemp = tempfile.mkdtemp

    def spy(*a: object, **kw: object) -> str:
        path = real_mkdtemp(*a, **kw)  # type: ignore[call-overload]
        made.add(str(path))
        return str(path)

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    out_csv, out_png = tmp_path / "net.csv", tmp_path / "net.png"
    try:
        rc = bench.run(["net", "--runs", "1", "--warmup", "0", "--csv", str(out_csv),
                        "--png", str(out_png)])
    finally:
        monkeypatch.undo()
        leaked_netns = _netns() - netns_before
        leaked_procs, leaked_mounts = _ours(made), _mounts(made)
        leaked_dirs = [d for d in made if os.path.exists(d)]
    assert rc == 0
    # everything the run made is gone: its netns (and podman's per-container ones), the
    # daemons and their children, mounts and temp dirs
    assert not leaked_netns, leaked_netns
    assert not leaked_procs, leaked_procs
    assert not leaked_mounts, leaked_mounts
    assert not leaked_dirs, leaked_dirs
    assert any(os.path.basename(d).startswith("lk-bnet-") for d in made)
    assert any(os.path.basename(d).startswith("lk-bnt-") for d in made)
    assert not glob.glob(f"/run/netns/lk-bnet-{os.getpid()}")

    table = capsys.readouterr().out
    for word in ("default net", "--network none", "labkit", "dockerd", "podman",
                 "default network's own cost", "cli: /", "netns: lk-bnet-"):
        assert word in table, word

    lines = list(csv.reader(out_csv.open()))
    assert tuple(lines[0]) == bn.CSV_HEADER
    body = [dict(zip(bn.CSV_HEADER, ln, strict=True)) for ln in lines[1:]]
    assert [(b["workload"], b["daemon"]) for b in body] == [
        (w, d) for w in bn.WORKLOADS for d in bn.DAEMONS]
    for b in body:
        if b["daemon"] == "labkit":  # a figure, or the daemon's own words for why not
            assert (b["status"] == "ok" and b["n"] == "1" and float(b["median_ms"]) > 0) or (
                b["status"].startswith("cannot run: ") and b["median_ms"] == ""), b
        else:
            # the peers really ran on their default bridge: the container had an eth0
            assert b["status"] == "ok" and b["n"] == "1" and float(b["median_ms"]) > 0, b
            assert b["p95_ms"] == b["median_ms"]
            if b["workload"] == "bridge":
                assert b["note"].startswith("default network: eth0 "), b
            lab = body[0 if b["workload"] == "bridge" else 3]
            assert (b["ratio_labkit_over_daemon"] == "") == (lab["median_ms"] == ""), b
    bridge = {b["daemon"]: b for b in body if b["workload"] == "bridge"}
    for d in ("dockerd", "podman"):
        assert bridge[d]["goal_speedup"] == "5.0"
        assert bridge[d]["bridge_minus_none_ms"] != ""
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_net_a_peer_that_cannot_start_is_a_row_with_its_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.measure import peer_daemons

    netns_before = _netns()
    made: set[str] = set()
    real_mkdtemp = tempfile.mkdtemp

    def spy(*a: object, **kw: object) -> str:
        path = real_mkdtemp(*a, **kw)  # type: ignore[call-overload]
        made.add(str(path))
        return str(path)

    real = peer_daemons.PodmanService._podman

    def broken(self: peer_daemons.PodmanService) -> list[str]:
        return ["/nonexistent/lk-podman", *real(self)[1:]]

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    monkeypatch.setattr(peer_daemons.PodmanService, "_podman", broken)
    try:
        rows, setup = bn.run(1, 0)
    finally:
        monkeypatch.undo()
        leaked = (_netns() - netns_before, _ours(made), _mounts(made),
                  [d for d in made if os.path.exists(d)])
    assert leaked == (set(), [], [], []), leaked
    pod = [r for r in rows if r.daemon == "podman"]
    assert len(pod) == len(bn.WORKLOADS)
    for r in pod:
        assert r.median_ms is None and r.n == 0
        # nsenter's own words for the binary it could not run, from the service's log
        assert r.status.startswith("cannot run: ") and "lk-podman" in r.status, r.status
    assert all(r.status == "ok" for r in rows if r.daemon == "dockerd"), rows
    goals = {(g.workload, g.peer): g for g in bn.targets(rows)}
    assert goals[("bridge", "podman")].met is None
    assert "network podman" not in setup
