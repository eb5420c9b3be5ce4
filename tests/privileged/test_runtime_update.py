"""`labkit-runtime update` (runc update): new cgroup limits for a running container, read
back from the cgroup files and from inside the container; what it cannot apply is refused.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

# test_runtime.py's Bundle (the suite imports test files by path, --import-mode=importlib)
_spec = importlib.util.spec_from_file_location("lk_test_runtime",
                                               Path(__file__).with_name("test_runtime.py"))
assert _spec is not None and _spec.loader is not None
_rt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_rt)
Bundle, assert_nothing_left = _rt.Bundle, _rt.assert_nothing_left

pytestmark = pytest.mark.privileged


@pytest.fixture
def running(tmp_path: Path) -> Any:
    b = Bundle(tmp_path)
    b.set_args("sleep", "1000", terminal=False)
    cfg = b.config
    cfg["linux"]["resources"] = {**cfg["linux"].get("resources", {}),
                                 "memory": {"limit": 64 << 20}, "pids": {"limit": 100}}
    b.config = cfg
    cid = b.new_id()
    b.cli("run", "--bundle", str(b.dir), "--detach", cid, check=True)
    yield b, cid
    b.cleanup()
    assert_nothing_left(b, cid)


def cgroup_file(controller: str, cid: str, name: str) -> str:
    v1 = Path(f"/sys/fs/cgroup/{controller}/lk/{cid}/{name}")
    return v1.read_text().strip()


def inside(b: Bundle, cid: str, path: str) -> str:
    # the container's own view: its cgroup namespace root is its cgroup
    p = b.cli("exec", cid, "cat", path, check=True)
    return p.stdout.strip()


def test_update_flags_change_limits_seen_outside_and_inside(running: tuple[Bundle, str]) -> None:
    b, cid = running
    assert cgroup_file("memory", cid, "memory.limit_in_bytes") == str(64 << 20)
    b.cli("update", "--memory", "96m", "--pids-limit", "42", "--cpu-quota", "50000",
          "--cpu-period", "100000", cid, check=True)
    assert cgroup_file("memory", cid, "memory.limit_in_bytes") == str(96 << 20)
    assert cgroup_file("pids", cid, "pids.max") == "42"
    assert cgroup_file("cpu", cid, "cpu.cfs_quota_us") == "50000"
    assert inside(b, cid, "/sys/fs/cgroup/memory/memory.limit_in_bytes") == str(96 << 20)
    assert inside(b, cid, "/sys/fs/cgroup/pids/pids.max") == "42"
    # what the runtime keeps of the container's config says the same
    cfg = json.loads((b.root / cid / "config.json").read_text())
    assert cfg["linux"]["resources"]["memory"]["limit"] == 96 << 20
    assert cfg["linux"]["resources"]["pids"]["limit"] == 42


def test_update_from_resources_file_and_stdin(running: tuple[Bundle, str], tmp_path: Path) -> None:
    b, cid = running
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"memory": {"limit": 80 << 20}, "pids": {"limit": 33}}))
    b.cli("update", "-r", str(res), cid, check=True)
    assert cgroup_file("memory", cid, "memory.limit_in_bytes") == str(80 << 20)
    assert inside(b, cid, "/sys/fs/cgroup/pids/pids.max") == "33"
    with res.open() as f:
        res.write_text(json.dumps({"pids": {"limit": -1}}))
        b.cli("update", "-r", "-", cid, check=True, stdin=f)
    assert cgroup_file("pids", cid, "pids.max") == "max"
    assert cgroup_file("memory", cid, "memory.limit_in_bytes") == str(80 << 20)  # 0/absent: kept


@pytest.mark.parametrize(("args", "words"), [
    (["--memory", "lots"], "--memory"),
    (["--pids-limit", "1.5"], "--pids-limit"),
    (["--cpu-quota", "5"], "cpu_quota_us"),  # below the kernel's 1 ms minimum
    (["-r", "RES", "--memory", "1m"], "not both"),
    ([], "at least one"),
])
def test_bad_update_refused_and_nothing_changed(running: tuple[Bundle, str], tmp_path: Path,
                                                args: list[str], words: str) -> None:
    b, cid = running
    res = tmp_path / "r.json"
    res.write_text("{}")
    p = b.cli("update", *[str(res) if a == "RES" else a for a in args], cid)
    assert p.returncode != 0 and words in p.stderr, p.stderr
    assert cgroup_file("memory", cid, "memory.limit_in_bytes") == str(64 << 20)
    assert cgroup_file("pids", cid, "pids.max") == "100"


@pytest.mark.parametrize("res", [
    {"devices": [{"allow": True, "access": "rwm"}]},
    {"memory": {"limit": 1 << 30, "swappiness": 10}},
    {"unified": {"memory.high": "1G"}},
])
def test_resources_update_cannot_apply_are_refused_by_name(
        running: tuple[Bundle, str], tmp_path: Path, res: dict[str, Any]) -> None:
    b, cid = running
    f = tmp_path / "r.json"
    f.write_text(json.dumps(res))
    p = b.cli("update", "-r", str(f), cid)
    key = next(iter(res))
    assert p.returncode == 1 and f"linux.resources.{key}" in p.stderr, p.stderr
    assert cgroup_file("memory", cid, "memory.limit_in_bytes") == str(64 << 20)


def test_update_flag_on_another_command_is_refused(tmp_path: Path) -> None:
    b = Bundle(tmp_path)
    p = b.cli("create", "--memory", "1m", "--bundle", str(b.dir), "lk-rt-never")
    assert p.returncode == 2 and "--memory is an option of update only" in p.stderr
    assert not (b.root / "lk-rt-never").exists()


def test_ps_and_events_stats(running: tuple[Bundle, str]) -> None:
    b, cid = running
    pid = json.loads(b.cli("state", cid, check=True).stdout)["pid"]
    assert json.loads(b.cli("ps", "--format", "json", cid, check=True).stdout) == [pid]
    ev = json.loads(b.cli("events", "--stats", cid, check=True).stdout)
    assert ev["type"] == "stats" and ev["data"]["pids_current"] == 1
    assert ev["data"]["memory_max"] == 64 << 20


def test_update_of_a_stopped_container_is_refused(tmp_path: Path) -> None:
    b = Bundle(tmp_path)
    b.set_args("true", terminal=False)
    cid = b.new_id()
    b.cli("create", "--bundle", str(b.dir), cid, check=True)
    b.cli("start", cid, check=True)
    for _ in range(500):
        if json.loads(b.cli("state", cid).stdout)["status"] == "stopped":
            break
    p = b.cli("update", "--memory", "10m", cid)
    assert p.returncode == 1 and "stopped" in p.stderr, p.stderr
    b.cleanup()
    assert_nothing_left(b, cid)
