"""Live-restore at the supervisor level: SIGKILL the supervisor while containers print, start
it again, and every container is still there, still running, its log without a gap.

The counters print every 0.1 s; after the restart each log must hold 0, 1, 2, ... with
nothing lost or duplicated, and wait / exec / kill / delete must work on restored tasks.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from labkit.engine.logs import read_logs
from labkit.engine.supervisor.client import attach, read_frames
from labkit.engine.supervisor.harness import Harness
from labkit.engine.supervisor.records import TaskEvent, TaskInfo

pytestmark = pytest.mark.privileged

COUNTER = ["sh", "-c", "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"]


@pytest.fixture
def h() -> Iterator[Harness]:
    hs = Harness(Path(tempfile.mkdtemp(prefix="lk-lr-")))
    try:
        hs.start()
        yield hs
    finally:
        hs.cleanup()
        assert hs.leftover_cgroups() == []


def counts(h: Harness, cid: str) -> list[int]:
    log = h.root / "containers" / cid / f"{cid}-json.log"
    return [int(e.log) for e in read_logs(str(log))]


def start_counters(h: Harness, n: int) -> dict[str, TaskInfo]:
    b = h.bundle("counter", COUNTER)
    tasks = {}
    for _ in range(n):
        cid = h.new_id("lr")
        tasks[cid] = h.client.create(cid, str(b))
        h.client.start(cid)
    return tasks


def kill_and_restore(h: Harness, tasks: dict[str, TaskInfo], pause: float) -> dict[str, int]:
    """SIGKILL the supervisor, let the containers print on alone, start it again.

    Returns, per container, how many lines its log held before the restart: each of them
    printed at least two lines with no supervisor at all (waited for, not timed), so a log
    that later holds fewer lost something.
    """
    shims = {cid: psutil.Process(t.shim_pid) for cid, t in tasks.items()}
    sup_pid = h.proc.pid if h.proc else 0
    before = {cid: len(counts(h, cid)) for cid in tasks}
    h.kill_supervisor(signal.SIGKILL)
    assert not psutil.pid_exists(sup_pid) or psutil.Process(sup_pid).status() == "zombie"
    time.sleep(pause)  # the containers keep printing with no supervisor at all
    deadline = time.monotonic() + 30
    during = {cid: len(counts(h, cid)) for cid in tasks}
    while any(during[c] < before[c] + 2 for c in tasks) and time.monotonic() < deadline:
        time.sleep(0.05)
        during = {cid: len(counts(h, cid)) for cid in tasks}
    for cid, t in tasks.items():
        assert during[cid] >= before[cid] + 2, f"{cid}: no output while the supervisor was down"
        assert shims[cid].is_running() and shims[cid].status() != "zombie", cid
        assert psutil.Process(t.pid).status() != "zombie", cid
    h.start()
    return during


def check_restored(h: Harness, tasks: dict[str, TaskInfo]) -> None:
    listed = {t.id: t for t in h.client.list()}
    assert set(listed) == set(tasks)
    for cid, t in tasks.items():
        assert listed[cid].status == "running", cid
        assert listed[cid].pid == t.pid and listed[cid].shim_pid == t.shim_pid


def stop_and_check_logs(h: Harness, tasks: dict[str, TaskInfo], seen: dict[str, int]) -> None:
    """Stop every counter; its log must count 0, 1, 2, ... with no gap or repeat, and hold
    at least the ``seen`` lines that were there before the last restart."""
    for cid in tasks:
        h.client.kill(cid, signal.SIGKILL)
    for cid in tasks:
        assert h.client.wait(cid).exit_status == 137
    for cid in tasks:
        got = counts(h, cid)
        assert got == list(range(len(got))), f"{cid}: gap or duplicate in {got}"
        assert len(got) >= seen[cid] > 0, f"{cid}: {len(got)} lines, {seen[cid]} seen before"
        assert h.client.delete(cid).exit_status == 137
    assert h.client.list() == []
    assert list(h.shims.iterdir()) == []


def test_kill_supervisor_with_5_printing_containers(h: Harness) -> None:
    tasks = start_counters(h, 5)
    time.sleep(0.8)
    seen = kill_and_restore(h, tasks, pause=1.0)
    check_restored(h, tasks)
    first = next(iter(tasks))
    # attach to a restored task: the live output keeps coming through the shim
    io = attach(tasks[first].io_socket)
    # exec in a restored task
    h.client.exec(first, "e1", h.process(["sh", "-c", "exit 4"]))
    h.client.start(first, "e1")
    assert h.client.wait(first, "e1").exit_status == 4
    time.sleep(0.5)
    stop_and_check_logs(h, tasks, seen)
    live = [int(x) for s, p in read_frames(io) for x in p.split()]
    assert live and live == list(range(live[0], live[0] + len(live)))


def test_restore_twice_and_exit_while_down(h: Harness) -> None:
    tasks = start_counters(h, 2)
    b = h.bundle("short", ["sh", "-c", "sleep 0.3; exit 9"])
    short = h.new_id("lr")
    h.client.create(short, str(b))
    h.client.start(short)
    time.sleep(0.3)
    kill_and_restore(h, tasks, pause=0.6)  # `short` exits while no supervisor runs
    ex = h.client.wait(short)
    assert ex.exit_status == 9
    assert h.client.state(short).status == "stopped"
    h.client.delete(short)
    seen = kill_and_restore(h, tasks, pause=0.3)
    check_restored(h, tasks)
    stop_and_check_logs(h, tasks, seen)


def test_dead_shim_is_reported_and_cleaned(h: Harness) -> None:
    cid = h.new_id("lr")
    t = h.client.create(cid, str(h.bundle(cid, ["sleep", "1000"])))
    h.client.start(cid)
    h.kill_supervisor(signal.SIGKILL)
    os.kill(t.shim_pid, signal.SIGKILL)  # the shim dies too; its container lives on
    os.kill(t.pid, signal.SIGKILL)  # (as an orphan of init); we end it ourselves
    h.start()
    st = h.client.state(cid)
    assert st.status == "stopped"
    ex = h.client.wait(cid)
    assert ex.exit_status == 255 and "shim died" in ex.error
    h.client.delete(cid)
    assert not (h.shims / cid).exists()
    assert not (h.run / "runtime" / cid).exists()


def test_20_containers_survive_supervisor_sigkill(h: Harness) -> None:
    tasks = start_counters(h, 20)
    time.sleep(0.8)
    lines = kill_and_restore(h, tasks, pause=1.0)
    check_restored(h, tasks)
    # the restored supervisor has re-subscribed to every shim: exits reach its event stream
    seen: list[TaskEvent] = []
    stream = h.client.events()

    def read() -> None:
        try:
            seen.extend(stream)
        except OSError:
            pass  # the stream ends when the supervisor stops at teardown

    threading.Thread(target=read, daemon=True).start()
    time.sleep(0.5)
    stop_and_check_logs(h, tasks, lines)
    end = time.monotonic() + 10
    while time.monotonic() < end and len({e.id for e in seen if e.topic == "/tasks/exit"}) < 20:
        time.sleep(0.05)
    assert {e.id for e in seen if e.topic == "/tasks/exit"} == set(tasks)
