"""labkit-supervisor against the real kernel: a supervisor subprocess in temp dirs, busybox
tasks created through the gRPC client, their logs, attach, exec, pause, stats and errors.

Each test's Harness removes every task, shim, runtime state, cgroup and dir it made.
"""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.logs import read_logs
from labkit.engine.runtime.process import ExecutableNotFoundError
from labkit.engine.supervisor.client import attach, read_frames
from labkit.engine.supervisor.harness import Harness
from labkit.engine.supervisor.records import ExitInfo, TaskEvent

pytestmark = pytest.mark.privileged


@pytest.fixture
def h() -> Iterator[Harness]:
    hs = Harness(Path(tempfile.mkdtemp(prefix="lk-sv-")))
    try:
        hs.start()
        yield hs
    finally:
        hs.cleanup()
        assert hs.leftover_cgroups() == []


def cgroup_exists(cid: str) -> bool:
    return any(Path(f"/sys/fs/cgroup/{c}/lk/{cid}").exists()
               for c in ("memory", "pids", "cpu", "freezer", "unified"))


def run(h: Harness, args: list[str], **kw: object) -> tuple[str, ExitInfo]:
    cid = h.new_id()
    h.client.create(cid, str(h.bundle(cid, args)), **kw)
    h.client.start(cid)
    return cid, h.client.wait(cid)


@pytest.mark.parametrize(("script", "code"), [("exit 0", 0), ("exit 3", 3), ("exit 255", 255)])
def test_exit_codes(h: Harness, script: str, code: int) -> None:
    cid, ex = run(h, ["sh", "-c", script])
    assert ex.exit_status == code
    assert ex.exited_at > 0 and not ex.oom_killed
    t = h.client.state(cid)
    assert t.status == "stopped" and t.exit_status == code
    assert h.client.delete(cid).exit_status == code
    assert not (h.shims / cid).exists()


def test_kill_running_task_is_137(h: Harness) -> None:
    cid = h.new_id()
    t = h.client.create(cid, str(h.bundle(cid, ["sleep", "1000"])))
    assert t.status == "created" and t.pid > 0 and t.shim_pid > 0
    h.client.start(cid)
    assert h.client.state(cid).status == "running"
    h.client.kill(cid, signal.SIGKILL)
    assert h.client.wait(cid).exit_status == 137
    h.client.delete(cid)
    assert not os.path.exists(f"/proc/{t.pid}")


def test_missing_command_is_127_and_leaves_nothing(h: Harness) -> None:
    cid = h.new_id()
    with pytest.raises(ExecutableNotFoundError) as ei:
        h.client.create(cid, str(h.bundle(cid, ["/no/such/program"])))
    assert ei.value.exit_code == 127
    assert not (h.shims / cid).exists()
    assert not (h.run / "runtime" / cid).exists()
    assert not cgroup_exists(cid)
    with pytest.raises(errors.NotFoundError):
        h.client.state(cid)


def test_output_reaches_log_and_attach_without_loss(h: Harness) -> None:
    n = 2000
    cid = h.new_id()
    script = f"i=0; while [ $i -lt {n} ]; do echo out$i; echo err$i >&2; i=$((i+1)); done"
    log = h.root / "logs" / f"{cid}.log"
    t = h.client.create(cid, str(h.bundle(cid, ["sh", "-c", script])), log_path=str(log))
    io = attach(t.io_socket, stdout=True, stderr=True)
    h.client.start(cid)
    frames = list(read_frames(io))  # the shim closes the socket after the last output
    io.close()
    assert h.client.wait(cid).exit_status == 0
    got = {1: b"", 2: b""}
    for stream, payload in frames:
        got[stream] += payload
    assert got[1] == b"".join(b"out%d\n" % i for i in range(n))
    assert got[2] == b"".join(b"err%d\n" % i for i in range(n))
    entries = read_logs(str(log))
    assert [e.log for e in entries if e.stream == "stdout"] == [b"out%d\n" % i for i in range(n)]
    assert [e.log for e in entries if e.stream == "stderr"] == [b"err%d\n" % i for i in range(n)]
    raw = json.loads(log.read_text().splitlines()[0])
    assert set(raw) == {"log", "stream", "time"} and raw["time"].endswith("Z")


def test_default_log_path_is_under_containers(h: Harness) -> None:
    cid, _ = run(h, ["echo", "hi"])
    log = h.root / "containers" / cid / f"{cid}-json.log"
    assert [e.log for e in read_logs(str(log))] == [b"hi\n"]


def test_stdin_once_attach(h: Harness) -> None:
    cid = h.new_id()
    t = h.client.create(cid, str(h.bundle(cid, ["sh", "-c", "cat; echo done"])),
                        stdin=True, stdin_once=True)
    io = attach(t.io_socket, stdin=True, stdout=True, stderr=True)
    h.client.start(cid)
    io.sendall(b"line1\nline2\n")
    io.shutdown(2 - 1)  # SHUT_WR: stdin EOF
    out = b"".join(p for s, p in read_frames(io) if s == 1)
    assert out == b"line1\nline2\ndone\n"
    assert h.client.wait(cid).exit_status == 0


def test_terminal_output_is_one_stream(h: Harness) -> None:
    cid = h.new_id()
    t = h.client.create(cid, str(h.bundle(cid, ["sh", "-c", "echo out; echo err >&2; tty; stty size"],
                                          terminal=True)), terminal=True)
    assert t.terminal
    io = attach(t.io_socket)
    h.client.resize(cid, "", 100, 30)
    h.client.start(cid)
    frames = list(read_frames(io))
    assert {s for s, _ in frames} == {1}
    text = b"".join(p for _, p in frames)
    # the tty is the runtime's pty slave (as /dev/console, as runc does, or its devpts name)
    assert re.fullmatch(rb"out\r\nerr\r\n/dev/(console|pts/\d+)\r\n30 100\r\n", text), text
    assert h.client.wait(cid).exit_status == 0


def test_exec_exit_code_output_and_missing(h: Harness) -> None:
    cid = h.new_id()
    t = h.client.create(cid, str(h.bundle(cid, ["sleep", "1000"])))
    h.client.start(cid)
    p = h.client.exec(cid, "e1", h.process(["sh", "-c", "echo in-$(hostname); exit 5"]))
    assert p.status == "created"
    io = attach(t.io_socket, "e1")
    started = h.client.start(cid, "e1")
    assert started.pid > 0
    out = b"".join(pl for s, pl in read_frames(io))
    assert h.client.wait(cid, "e1").exit_status == 5
    assert out.startswith(b"in-")
    # the exec ran in the container's pid namespace: it saw init as pid 1
    p2 = h.client.exec(cid, "e2", h.process(["sh", "-c", "cat /proc/1/cmdline"]))
    io2 = attach(p2.io_socket, "e2")
    h.client.start(cid, "e2")
    assert b"".join(pl for _, pl in read_frames(io2)) == b"sleep\x001000\x00"
    h.client.exec(cid, "e3", h.process(["nosuchcmd"]))
    with pytest.raises(ExecutableNotFoundError):
        h.client.start(cid, "e3")
    assert h.client.wait(cid, "e3").exit_status == 127
    with pytest.raises(errors.AlreadyExistsError):
        h.client.exec(cid, "e1", h.process(["true"]))
    assert h.client.delete(cid, exec_id="e1").exit_status == 5
    with pytest.raises(errors.NotFoundError):
        h.client.wait(cid, "e1")
    assert h.client.state(cid).status == "running"


def test_pause_resume_stats_pids_update(h: Harness) -> None:
    cid = h.new_id()
    t = h.client.create(cid, str(h.bundle(cid, ["sleep", "1000"])))
    h.client.start(cid)
    assert h.client.pids(cid) == [t.pid]
    s = h.client.stats(cid)
    assert s.id == cid and s.memory_usage > 0 and s.pids_current == 1
    assert s.system_cpu_ns > 0 and s.online_cpus >= 1
    h.client.update(cid, {"pids": {"limit": 42}})
    assert h.client.stats(cid).pids_limit == 42
    h.client.pause(cid)
    assert h.client.state(cid).status == "paused"
    assert Path(f"/proc/{t.pid}/status").read_text().count("State:\tD") + \
        Path(f"/proc/{t.pid}/status").read_text().count("State:\tS") == 1
    with pytest.raises(errors.InvalidStateError):
        h.client.pause(cid)
    h.client.resume(cid)
    assert h.client.state(cid).status == "running"
    with pytest.raises(errors.InvalidStateError):
        h.client.resume(cid)
    h.client.pause(cid)
    ex = h.client.delete(cid, force=True)  # a frozen task must still die
    assert ex.exit_status == 137


def test_update_pause_and_kill_go_through_the_runtime(h: Harness) -> None:
    cid = h.new_id()
    h.client.create(cid, str(h.bundle(cid, ["sleep", "1000"])))
    h.client.start(cid)
    h.client.update(cid, {"memory": {"limit": 48 << 20}, "pids": {"limit": 17}})
    assert Path(f"/sys/fs/cgroup/memory/lk/{cid}/memory.limit_in_bytes").read_text() == \
        f"{48 << 20}\n"
    p = h.client.exec(cid, "m1", h.process(["cat", "/sys/fs/cgroup/pids/pids.max"]))
    io = attach(p.io_socket, "m1")  # before start: an exec's output is not logged
    h.client.start(cid, "m1")
    assert b"".join(pl for _, pl in read_frames(io)) == b"17\n"
    # what update cannot apply is refused by name, typed, and nothing changes
    with pytest.raises(errors.UnsupportedError, match="linux.resources.memory.swappiness"):
        h.client.update(cid, {"memory": {"limit": 64 << 20, "swappiness": 10}})
    assert h.client.stats(cid).pids_limit == 17
    # the runtime's own record follows pause/resume (its verbs ran, not a cgroup write)
    runtime_state = h.run / "runtime" / cid / "state.json"
    h.client.pause(cid)
    assert json.loads(runtime_state.read_text())["status"] == "paused"
    h.client.resume(cid)
    assert json.loads(runtime_state.read_text())["status"] == "running"
    h.client.pause(cid)
    h.client.kill(cid, signal.SIGKILL)  # the runtime's kill thaws a frozen task to let it die
    assert h.client.wait(cid).exit_status == 137


def test_errors_are_typed(h: Harness) -> None:
    with pytest.raises(errors.NotFoundError):
        h.client.state("lk-nosuch")
    with pytest.raises(errors.NotFoundError):
        h.client.create(h.new_id(), str(h.base / "nobundle"))
    with pytest.raises(errors.InvalidArgumentError):
        h.client.create("bad/id", str(h.base))
    cid = h.new_id()
    h.client.create(cid, str(h.bundle(cid, ["sleep", "1000"])))
    with pytest.raises(errors.AlreadyExistsError):
        h.client.create(cid, str(h.bundle(cid, ["sleep", "1000"])))
    with pytest.raises(errors.NotFoundError):
        h.client.start(cid, "no-such-exec")
    h.client.start(cid)
    with pytest.raises(errors.InvalidStateError):
        h.client.start(cid)
    with pytest.raises(errors.InvalidStateError):
        h.client.delete(cid)
    h.client.kill(cid, 9)
    h.client.wait(cid)
    with pytest.raises(errors.InvalidStateError):
        h.client.kill(cid, 9)
    with pytest.raises(errors.InvalidStateError):
        h.client.exec(cid, "x", h.process(["true"]))


def test_events_stream_and_concurrent_waiters(h: Harness) -> None:
    seen: list[TaskEvent] = []
    stream = h.client.events()

    def read() -> None:
        try:
            seen.extend(stream)
        except OSError:
            pass  # the supervisor stopped at teardown: the stream ends with UNAVAILABLE

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.2)  # the stream is registered on the server (no event can be missed after)
    cid = h.new_id()
    h.client.create(cid, str(h.bundle(cid, ["sh", "-c", "read x; exit 7"])), stdin=True)
    h.client.start(cid)
    results: list[int] = []
    waiters = [threading.Thread(target=lambda: results.append(h.client.wait(cid).exit_status))
               for _ in range(8)]
    for w in waiters:
        w.start()
    time.sleep(0.2)
    h.client.close_stdin(cid)
    for w in waiters:
        w.join(30)
    assert results == [7] * 8
    h.client.delete(cid)
    end = time.monotonic() + 10
    while time.monotonic() < end and "/tasks/delete" not in [e.topic for e in seen]:
        time.sleep(0.05)
    topics = [e.topic for e in seen if e.id == cid]
    assert topics == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    assert [e.exit_status for e in seen if e.topic == "/tasks/exit"] == [7]


def test_exec_with_terminal_and_stdin(h: Harness) -> None:
    cid = h.new_id()
    h.client.create(cid, str(h.bundle(cid, ["sleep", "1000"])))
    h.client.start(cid)
    p = h.client.exec(cid, "t1", h.process(["sh", "-c", "stty size; tty; read x; echo got-$x; exit 6"],
                                           terminal=True), terminal=True, stdin=True)
    io = attach(p.io_socket, "t1", stdin=True)
    h.client.resize(cid, "t1", 90, 20)
    h.client.start(cid, "t1")
    io.sendall(b"abc\n")
    text = b"".join(pl for s, pl in read_frames(io))
    assert h.client.wait(cid, "t1").exit_status == 6
    assert b"20 90\r\n" in text and b"got-abc\r\n" in text
    assert re.search(rb"/dev/pts/\d+\r\n", text), text  # ttyname works inside


def test_exec_stdin_pipe_half_close(h: Harness) -> None:
    cid = h.new_id()
    h.client.create(cid, str(h.bundle(cid, ["sleep", "1000"])))
    h.client.start(cid)
    p = h.client.exec(cid, "s1", h.process(["sh", "-c", "wc -c; exit 2"]), stdin=True)
    io = attach(p.io_socket, "s1", stdin=True)
    h.client.start(cid, "s1")
    io.sendall(b"x" * 100_000)
    io.shutdown(1)  # SHUT_WR: stdin EOF (exec stdin is StdinOnce, as in Docker)
    out = b"".join(pl for s, pl in read_frames(io) if s == 1)
    assert out.strip() == b"100000"
    assert h.client.wait(cid, "s1").exit_status == 2


def test_oom_kill_is_recorded_and_announced(h: Harness) -> None:
    seen: list[TaskEvent] = []
    stream = h.client.events()

    def read() -> None:
        try:
            seen.extend(stream)
        except OSError:
            pass

    threading.Thread(target=read, daemon=True).start()
    time.sleep(0.2)
    cid = h.new_id()
    b = h.bundle(cid, ["sh", "-c", "a=$(head -c 200000000 /dev/zero | tr '\\0' x); echo survived"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["linux"].setdefault("resources", {})["memory"] = {"limit": 32 << 20, "swap": 32 << 20}
    (b / "config.json").write_text(json.dumps(cfg))
    h.client.create(cid, str(b))
    h.client.start(cid)
    ex = h.client.wait(cid)
    assert ex.exit_status == 137 and ex.oom_killed
    assert h.client.state(cid).oom_killed
    exit_json = json.loads((h.shims / cid / "exit.json").read_text())
    assert exit_json["oom_killed"] and exit_json["exit_status"] == 137
    end = time.monotonic() + 10
    while time.monotonic() < end and "/tasks/exit" not in [e.topic for e in seen if e.id == cid]:
        time.sleep(0.05)
    assert [e.topic for e in seen if e.id == cid][-2:] == ["/tasks/oom", "/tasks/exit"]


def test_container_processes_ignore_no_signals(h: Harness) -> None:
    # The shim ignores SIGTERM/SIGHUP/SIGPIPE for itself; ignored dispositions survive
    # execve (signal(7)), so a leak would make `docker stop` fail on the container's children.
    cid = h.new_id()
    t = h.client.create(cid, str(h.bundle(cid, ["sh", "-c", "cat /proc/self/status; sleep 1000"])))
    io = attach(t.io_socket)
    h.client.start(cid)
    p = h.client.exec(cid, "st", h.process(["cat", "/proc/self/status"]))
    io2 = attach(p.io_socket, "st")
    h.client.start(cid, "st")
    exec_status = b"".join(pl for _, pl in read_frames(io2))
    h.client.kill(cid, signal.SIGKILL)
    init_status = b"".join(pl for _, pl in read_frames(io))
    for text in (init_status, exec_status):
        ign = re.search(rb"SigIgn:\s*([0-9a-f]+)", text)
        assert ign is not None and int(ign.group(1), 16) == 0, text


def test_concurrent_lifecycles(h: Harness) -> None:
    b = h.bundle("conc", ["sh", "-c", "echo hi; exit 2"])
    ids = [h.new_id() for _ in range(12)]
    codes: dict[str, int] = {}

    def one(cid: str) -> None:
        h.client.create(cid, str(b))
        h.client.start(cid)
        codes[cid] = h.client.wait(cid).exit_status
        h.client.delete(cid)

    threads = [threading.Thread(target=one, args=(c,)) for c in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert codes == {c: 2 for c in ids}
    assert h.client.list() == []
    for cid in ids:
        log = h.root / "containers" / cid / f"{cid}-json.log"
        assert [e.log for e in read_logs(str(log))] == [b"hi\n"]


def test_log_config_refused_early_and_rotation(h: Harness) -> None:
    cid = h.new_id()
    b = h.bundle(cid, ["sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done"])
    with pytest.raises(errors.UnsupportedError, match="journald"):
        h.client.create(cid, str(b), log_driver="journald")
    with pytest.raises(errors.InvalidArgumentError, match="max-size"):
        h.client.create(cid, str(b), log_options={"max-size": "ten"})
    with pytest.raises(errors.InvalidArgumentError, match="log-opt"):
        h.client.create(cid, str(b), log_options={"frobs": "1"})
    assert not (h.shims / cid).exists() and h.client.list() == []
    log = h.root / "rot" / "c-json.log"
    h.client.create(cid, str(b), log_path=str(log), log_options={"max-size": "2k", "max-file": "3"})
    h.client.start(cid)
    assert h.client.wait(cid).exit_status == 0
    assert sorted(p.name for p in log.parent.iterdir()) == ["c-json.log", "c-json.log.1",
                                                           "c-json.log.2"]
    got = [int(e.log.split(b"-")[1]) for e in read_logs(str(log))]
    assert got == list(range(got[0], 300))  # the newest lines, in order, none lost between files
    cid2 = h.new_id()
    h.client.create(cid2, str(h.bundle(cid2, ["echo", "quiet"])), log_driver="none",
                    log_path=str(h.root / "none.log"))
    h.client.start(cid2)
    h.client.wait(cid2)
    assert not (h.root / "none.log").exists()


def test_rootfs_mounts_are_made_and_undone(h: Harness) -> None:
    from labkit.engine.images.mounts import Mount

    cid = h.new_id()
    b = h.bundle(cid, ["sh", "-c", "echo written > /proof; cat /proof"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["root"] = {"path": "rootfs", "readonly": False}
    (b / "config.json").write_text(json.dumps(cfg))
    upper, work = h.base / f"{cid}-upper", h.base / f"{cid}-work"
    for d in (b / "rootfs", upper, work):
        d.mkdir()
    ovl = Mount("overlay", "overlay", options=(f"lowerdir={h.rootfs()}", f"upperdir={upper}",
                                                f"workdir={work}"))
    t = h.client.create(cid, str(b), rootfs=[ovl])
    assert os.path.ismount(b / "rootfs")
    io = attach(t.io_socket)
    h.client.start(cid)
    assert b"".join(p for _, p in read_frames(io)) == b"written\n"
    assert h.client.wait(cid).exit_status == 0
    assert (upper / "proof").read_text() == "written\n"  # the write went to the upper layer
    h.client.delete(cid)
    assert not os.path.ismount(b / "rootfs")
    # a failed create unmounts what it mounted
    cid2 = h.new_id()
    b2 = h.bundle(cid2, ["/no/such"])
    cfg["process"]["args"] = ["/no/such"]
    (b2 / "config.json").write_text(json.dumps(cfg))
    (b2 / "rootfs").mkdir()
    with pytest.raises(ExecutableNotFoundError):
        h.client.create(cid2, str(b2), rootfs=[ovl])
    assert not os.path.ismount(b2 / "rootfs")
