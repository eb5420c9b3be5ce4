"""labkit bench startup with runs=2 through the CLI: the rows have their structure, CSV and PNG
are written, a candidate that cannot run is a row with its reason (never a crash), the probe
rows are there, and nothing the run made is left: processes, cgroups, mounts, temp dirs,
network namespaces.  No timing is asserted."""

from __future__ import annotations

import csv
import os
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from labkit import errors
from labkit.cli import bench
from labkit.measure import bench_startup as bs
from labkit.measure import bench_startup_report as rep

pytestmark = pytest.mark.privileged

TINY = ["fork+exec", "clone+ns", "hand-built floor", "labkit-runtime warm", "runc", "crun"]


def _cgroups() -> set[str]:
    out = subprocess.run(["find", "/sys/fs/cgroup", "-maxdepth", "3", "-type", "d", "-name",
                          f"lk-bst*-{os.getpid()}*"], capture_output=True, text=True,
                         check=False).stdout
    return set(out.split())


def _mounts(made: set[str]) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [ln.split()[1] for ln in f if any(ln.split()[1].startswith(d) for d in made)]


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    return {ln.split()[0] for ln in out.splitlines() if ln.startswith("lk-bench-")}


def test_bench_startup_tiny_run_shape_outputs_reasons_and_cleanup(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    made: set[str] = set()
    real_mkdtemp = tempfile.mkdtemp

    def spy(*a: object, **kw: object) -> str:
        path = real_mkdtemp(*a, **kw)  # type: ignore[call-overload]
        made.add(str(path))
        return str(path)

    real_available = bs.available

    def runc_missing() -> dict[str, str | None]:
        return {**real_available(), "runc": "not installed: apt-get install runc"}

    def no_cc() -> Path:
        raise errors.UnsupportedError("the hand-built floor", "no C compiler (cc) on PATH")

    netns_before = _netns()
    # In the whole suite, other tests' long-lived engines are this process's children too:
    # only what the bench started counts.
    procs_before = {p.pid for p in psutil.Process().children(recursive=True)}
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps a narrow table's status column
    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    monkeypatch.setattr(bs, "available", runc_missing)
    out_csv, out_png = tmp_path / "s.csv", tmp_path / "s.png"
    try:
        rc = bench.run(["startup", "-n", "2", "--warmup", "0", "--candidates", ",".join(TINY),
                        "--probes", "execsnoop", "--csv", str(out_csv), "--png", str(out_png)])
        # the same run as the notebook calls it, with the compiler "missing"
        monkeypatch.setattr(bs, "floor_binary", no_cc)
        rows = bs.run(candidates=["fork+exec", "clone+ns"], runs=2, warmup=0, hosts=("cold",),
                      probes=())
    finally:
        monkeypatch.undo()
        leaked_procs = [f"{p.pid} {p.cmdline()}" for p in psutil.Process().children(
            recursive=True) if p.pid not in procs_before]
        leaked_cgroups, leaked_mounts = _cgroups(), _mounts(made)
        leaked_dirs = [d for d in made if os.path.exists(d)]
        leaked_netns = _netns() - netns_before
    assert rc == 0
    assert not leaked_procs, leaked_procs
    assert not leaked_cgroups, leaked_cgroups
    assert not leaked_mounts, leaked_mounts
    assert not leaked_dirs, leaked_dirs
    assert not leaked_netns, leaked_netns
    assert any(os.path.basename(d).startswith("lk-bst-") for d in made)

    table = capsys.readouterr().out
    for word in ("labkit bench startup", "hand-built floor", "x floor", "targets",
                 "probe overhead", "not installed: apt-get install runc"):
        assert word in table, word

    lines = list(csv.reader(out_csv.open()))
    assert tuple(lines[0]) == rep.CSV_HEADER
    body = [dict(zip(rep.CSV_HEADER, ln, strict=True)) for ln in lines[1:]]
    names = TINY + [rep.PROBES_OFF, rep.PROBES_ON]
    assert [(b["candidate"], b["host"]) for b in body] == [
        (n, h) for n in names for h in ("cold", "warm")]
    for b in body:
        if b["candidate"] == "runc":
            assert b["status"] == "cannot run: not installed: apt-get install runc", b
            assert b["n"] == "0" and b["median_ms"] == "", b
        elif b["candidate"] in ("fork+exec", "clone+ns", "hand-built floor",
                                "labkit-runtime warm", rep.PROBES_OFF):
            assert b["status"] == "ok" and b["n"] == "2" and float(b["median_ms"]) > 0, b
            assert float(b["p95_ms"]) >= float(b["median_ms"]), b
            assert float(b["ratio_to_floor"]) > 0, b
        else:  # crun (may be unusable), probes on (bcc may fail): a figure or a reason
            assert (b["status"] == "ok" and b["n"] == "2") or (
                b["status"].startswith("cannot run: ") and b["median_ms"] == ""), b
    floor = [b for b in body if b["candidate"] == "hand-built floor"]
    assert all(b["ratio_to_floor"] == "1.000" for b in floor)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert [(r.candidate, r.host) for r in rows] == [("fork+exec", "cold"), ("clone+ns", "cold")]
    assert rows[0].n == 2 and rows[0].ratio_to_floor is None
    assert rows[1].n == 0 and rows[1].status.startswith("cannot run: ")
    assert "no C compiler" in rows[1].status
