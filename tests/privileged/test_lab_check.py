"""labkit lab check on real notebooks, and the checks of notebooks 01-03 against the kernel
objects they make: worked answers pass, wrong ones get a hint, nothing is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.cgroups import Resources
from labkit.lab import exercises
from labkit.ns import NamespaceSpec

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parents[2]


def lk_leftovers() -> set[str]:
    """Everything named like the checks' objects: netns, cgroups, temp dirs, mounts."""
    found = {f"netns:{n}" for n in os.listdir("/run/netns") if n.startswith("lk-ex-")} \
        if os.path.isdir("/run/netns") else set()
    for d in Path("/sys/fs/cgroup").glob("*/lk-ex-*"):
        found.add(f"cgroup:{d}")
    found |= {f"tmp:{p}" for p in Path("/tmp").glob("lk-ex-03-*")}
    with open("/proc/self/mountinfo") as f:
        found |= {f"mount:{ln.split()[4]}" for ln in f if "lk-ex-" in ln.split()[4]}
    return found


@pytest.fixture(autouse=True)
def nothing_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(exercises.STRICT_ENV, raising=False)
    before = lk_leftovers()
    yield
    assert lk_leftovers() - before == set()


def lab_check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != exercises.STRICT_ENV}
    return subprocess.run([sys.executable, "-m", "labkit.cli", "lab", "check", *args],
                          capture_output=True, text=True, env=env, timeout=600, check=False)


def blank_exercises(src: Path, dst: Path) -> None:
    """A copy of ``src`` whose "Your turn" cells are emptied, as a learner starts."""
    nb: dict[str, Any] = json.loads(src.read_text())
    for cell in nb["cells"]:
        if "exercise" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = ["# Your turn\n"]
    dst.write_text(json.dumps(nb))


def test_lab_check_03_passes_every_check() -> None:
    r = lab_check("03")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS [03.whiteout]" in r.stdout and "PASS [03.copy_up]" in r.stdout, r.stdout
    assert "2/2 checks passed" in r.stdout


def test_lab_check_of_a_blanked_notebook_hints_and_exits_1(tmp_path: Path) -> None:
    nb = tmp_path / "03_union_filesystem.ipynb"
    blank_exercises(REPO / "notebooks/03_union_filesystem.ipynb", nb)
    r = lab_check(str(nb))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "HINT [03.whiteout]: define a function named 'predict_whiteout'" in r.stdout, r.stdout
    assert "HINT [03.copy_up]" in r.stdout and "Traceback" not in r.stdout + r.stderr
    # The final assert cell fails (the checks did not pass); the clean-up cells still ran,
    # which the autouse fixture checks (no lk-ex-* or lk-nb-03-* left).
    assert "0/2 checks passed" in r.stdout
    assert not list(Path("/tmp").glob("lk-nb-03-*"))


# The checks themselves, on the kernel objects they make.

def bring_up_lo(netns_path: str) -> None:
    subprocess.run(["nsenter", f"--net={netns_path}", "ip", "link", "set", "lo", "up"], check=True)


def test_01_lo_up() -> None:
    assert exercises.check("01.lo_up", {"bring_up_lo": bring_up_lo}).passed
    assert "lo is still DOWN" in exercises.check("01.lo_up", {"bring_up_lo": lambda p: None}).message


def test_01_box_spec() -> None:
    good = NamespaceSpec(new=frozenset({"pid", "uts", "net", "mnt"}), hostname="lk-ex-box")
    assert exercises.check("01.box_spec", {"box_spec": lambda h: good}).passed
    no_pid = NamespaceSpec(new=frozenset({"uts", "net", "mnt"}), hostname="lk-ex-box")
    assert "ask for a new pid namespace" in exercises.check(
        "01.box_spec", {"box_spec": lambda h: no_pid}).message
    no_net = NamespaceSpec(new=frozenset({"pid", "uts", "mnt"}), hostname="lk-ex-box")
    assert "a new net namespace has only lo" in exercises.check(
        "01.box_spec", {"box_spec": lambda h: no_net}).message


def test_02_pids_cap_counts_the_forks() -> None:
    r = exercises.check("02.pids_cap", {"cap_fork_bomb": lambda n: Resources(pids_max=n)})
    assert r.passed and "after 6 children" in r.message, r


def test_03_predictions() -> None:
    assert exercises.check("03.whiteout", {"predict_whiteout": lambda n: (n, "char", (0, 0))}).passed
    assert "an OCI layer tar" in exercises.check(
        "03.whiteout", {"predict_whiteout": lambda n: (f".wh.{n}", "char", (0, 0))}).message
    assert "device numbers (1, 3)" in exercises.check(
        "03.whiteout", {"predict_whiteout": lambda n: (n, "char", (1, 3))}).message
    assert exercises.check("03.copy_up", {"predict_upper_size": lambda s, a: s + a}).passed
    assert "copies the whole file up" in exercises.check(
        "03.copy_up", {"predict_upper_size": lambda s, a: a}).message


def pause_and_prove(client: Any, cid: str) -> tuple[float, float]:
    import time

    import psutil

    client.containers.pause(cid)
    proc = psutil.Process(client.containers.inspect(cid)["State"]["Pid"])
    first = proc.cpu_times()
    time.sleep(0.2)
    second = proc.cpu_times()
    return first.user + first.system, second.user + second.system


def memory_cgroup_dir(client: Any, cid: str) -> str:
    pid = client.containers.inspect(cid)["State"]["Pid"]
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return f"/sys/fs/cgroup/memory{path}"
    return f"/sys/fs/cgroup{path}"


def test_04_checks_on_a_live_engine() -> None:
    from labkit.lab.engine import LabEngine

    with LabEngine("exck").start() as eng:
        client = eng.client()
        r = exercises.check("04.pause", {"client": client, "pause_and_prove": pause_and_prove})
        assert r.passed, r
        r = exercises.check("04.pause", {"client": client, "pause_and_prove": lambda c, i: (1, 1)})
        assert "pause it" in r.message, r
        r = exercises.check("04.memory_cgroup", {"client": client,
                                                 "memory_cgroup_dir": memory_cgroup_dir})
        assert r.passed, r
        r = exercises.check("04.memory_cgroup", {"client": client,
                                                 "memory_cgroup_dir": lambda c, i: "/sys/fs/cgroup/memory"})
        assert "that is another cgroup" in r.message, r
        assert [c for c in client.containers.list(all=True)] == []
