"""ContainerSampler on the real kernel: psutil's sums against the cgroup's own counters.

Tolerances (stated, not timed): threads == pids.current exactly while nothing forks; CPU
seconds within 15 % (psutil has clock-tick resolution, 10 ms per process); anonymous memory
within 10 % (RssAnon vs memory.stat rss: the interpreter's own anon pages are in both, page
tables and kernel stacks in neither); O_DIRECT write bytes within 2 % (psutil also counts the
temp file's metadata writes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit import errors
from labkit.cgroups import open_cgroup
from labkit.measure import csampler
from labkit.measure.workloads import start_in

pytestmark = pytest.mark.privileged


def _lk_cgroups(prefix: str) -> list[str]:
    return [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{prefix}*")]


def test_sums_agree_with_the_cgroup_counters() -> None:
    name = f"lk-test-cs-{os.getpid()}"
    rows = csampler.sample_run(csampler.busy_workload(0.6, mib=32, write_mib=4), name=name,
                               interval=0.05)
    busy = csampler.last_alive(rows)
    assert busy.ps_procs == 2  # the workload and its child
    assert busy.ps_threads == busy.cg_pids_current == 2
    assert busy.cg_cpu_s is not None and busy.cg_cpu_s > 0
    assert abs(busy.ps_cpu_s / busy.cg_cpu_s - 1) < 0.15, busy
    assert busy.cg_anon is not None and busy.ps_anon >= 64 << 20
    assert abs(busy.ps_anon / busy.cg_anon - 1) < 0.10, busy
    assert busy.cg_write_bytes == 8 << 20  # 2 processes x 4 MiB, O_DIRECT: exact
    assert abs(busy.ps_write_bytes / busy.cg_write_bytes - 1) < 0.02, busy
    assert [r.t for r in rows] == sorted(r.t for r in rows)
    assert rows[-1].ps_procs == 0  # sampled to the end
    assert _lk_cgroups(name) == []


def test_a_runtime_container_id_names_its_cgroup(tmp_path: Path) -> None:
    # labkit-runtime's state.json records the container's cgroup; the sampler follows it.
    name = f"lk-test-cs-rt-{os.getpid()}"
    cid = f"lk-cs-{os.getpid()}"
    (tmp_path / cid).mkdir()
    (tmp_path / cid / "state.json").write_text(json.dumps(
        {"id": cid, "bundle": "/nonexistent", "status": "running", "pid": 1, "cgroup": name}))
    cg = open_cgroup(name)
    cg.create(exist_ok=False)
    proc = None
    try:
        proc = start_in(cg, [sys.executable, "-c", "import time; time.sleep(30)"])
        assert csampler.cgroup_of(cid, runtime_root=str(tmp_path)).name == name
        with csampler.ContainerSampler(cid, 0.05, runtime_root=str(tmp_path)) as s:
            pass
        assert s.rows[-1].ps_procs == 1 and s.rows[-1].cg_pids_current == 1
        assert csampler.cgroup_of(name).name == name  # a cgroup name works too
        with pytest.raises(errors.NotFoundError):
            csampler.cgroup_of(f"lk-test-none-{os.getpid()}", runtime_root=str(tmp_path))
    finally:
        cg.kill()
        cg.remove()
        if proc is not None:
            proc.wait()
    assert _lk_cgroups(name) == []


def test_host_view_separates_host_values_from_the_containers() -> None:
    name = f"lk-test-hv-{os.getpid()}"
    rows = {r.call: r for r in csampler.host_view(name)}
    assert rows["virtual_memory().total"].reports == "host"
    assert rows["virtual_memory().total"].limit == str(64 << 20)
    assert rows["boot_time()"].reports == "host"
    assert rows["disk_usage('/').total"].reports == "host"
    assert rows["len(Process().cpu_affinity())"].reports == "limit"
    assert rows["len(pids())"].inside == "1"  # psutil alone in its pid namespace
    assert rows["len(net_if_addrs())"].inside == "1"  # lo only
    assert rows["platform.node()"].inside == "lk-hostview"
    assert _lk_cgroups(name) == []


def test_a_real_labkit_runtime_container(tmp_path: Path) -> None:
    # A busybox container run detached by labkit-runtime, sampled by its id: the sampler
    # finds lk/<id> through state.json and sees the container's busy shell.
    from labkit.engine.images.busybox import build_rootfs

    repo = Path(__file__).resolve().parents[2]
    root, bundle = tmp_path / "state", tmp_path / "bundle"
    bundle.mkdir()
    build_rootfs(bundle / "rootfs")
    rt = [sys.executable, "-m", "labkit.engine.runtime", "--root", str(root)]

    def cli(*args: str) -> None:
        with open(tmp_path / "out", "w") as out:  # a file: the detached init inherits it
            subprocess.run([*rt, *args], cwd=repo, stdout=out, stderr=out, timeout=120,
                           check=True, stdin=subprocess.DEVNULL)

    cli("spec", "--bundle", str(bundle))
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", "while :; do :; done"]
    (bundle / "config.json").write_text(json.dumps(cfg))
    cid = f"lk-cs-rt-{os.getpid()}"
    try:
        cli("run", "--bundle", str(bundle), "--detach", cid)
        with csampler.ContainerSampler(cid, 0.1, runtime_root=str(root)) as s:
            # Until the container has used 0.5 s of CPU (clock-tick resolution is 10 ms), or
            # 30 s passed on a very busy machine: a condition, not a timing.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (
                    not s.rows or (s.rows[-1].cg_cpu_s or 0) < 0.5):
                time.sleep(0.1)
        last = s.rows[-1]
        assert last.ps_procs == 1 and last.ps_threads == last.cg_pids_current == 1
        assert last.cg_cpu_s is not None and last.cg_cpu_s > 0.05
        assert abs(last.ps_cpu_s / last.cg_cpu_s - 1) < 0.15, last
        assert s.cgroup.name.endswith(cid)
    finally:
        if (root / cid).exists():
            cli("delete", "--force", cid)
    assert not list(Path("/sys/fs/cgroup").glob(f"*/lk/{cid}"))
