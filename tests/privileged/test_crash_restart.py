"""SIGKILL the daemon and the supervisor at chosen moments of a container's birth, restart,
and the engine must answer, with every container coherent and nothing orphaned.

The moments (found by watching the shims' state dirs, layout.py): a shim being spawned (no
state.json yet), a shim inside the runtime's create (state.json without a pid), a task
created but not started, a `docker build` inside its RUN step, and a shim whose create
child is itself killed (the OOM killer's doing, say) -- the case that once left the
restarted daemon with "no answer on supervisor.sock after 15s": the shim sat in recv(2) for
ever (the container's init held the other end of its socketpair) and the new supervisor
waited on it before serving.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from labkit.measure.peers import docker_cli
from labkit.measure.sandbox import LabEngine

pytestmark = pytest.mark.privileged

POINTS = ("spawn", "create", "create-child-killed", "created", "build")
ROUNDS = 3  # x 5 points = 15 crashes (~1 min); each point hit every round (see phases())
DOCKERFILE = "FROM busybox\nRUN sleep 2\nRUN echo built > /built\n"


@pytest.fixture(scope="module")
def engine() -> Iterator[LabEngine]:
    eng = LabEngine("crsh").start()
    try:
        yield eng
    finally:
        eng.stop()


def docker(eng: LabEngine, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(eng.docker_env, DOCKER_BUILDKIT="0")
    return subprocess.run([docker_cli(), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def phases(eng: LabEngine) -> set[str]:
    """Which birth moments some shim is at now, read from its state dir."""
    out: set[str] = set()
    root = eng.run / "shims"
    for d in root.iterdir() if root.exists() else ():
        try:
            st = json.loads((d / "state.json").read_text())
        except FileNotFoundError:
            out.add("spawn")
            continue
        except (OSError, ValueError):
            continue
        if (d / "exit.json").exists():
            continue
        if not st.get("pid"):
            out.add("create")
        elif st.get("status") == "created":
            out.add("created")
    return out


def _children(pid: int) -> list[int]:
    try:  # proc(5) /proc/PID/task/TID/children: cheap enough to poll in a tight loop
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def create_children(eng: LabEngine) -> list[int]:
    """Pids of the forks shims made to run the runtime's create, caught in the window that
    once hung the shim: the container's init is the shim's child (its subreaper) already
    waiting on exec.fifo (proc(5) wchan wait_for_partner), holding the fork's socketpair
    end until its execve, and the fork has not replied yet (state.json has no pid)."""
    out = []
    for d in (eng.run / "shims").iterdir():
        try:
            st = json.loads((d / "state.json").read_text())
        except (OSError, ValueError):
            continue
        kids = sorted(_children(int(st.get("shim_pid") or 0)))
        if not st.get("pid") and len(kids) == 2:  # the fork (older) and init
            try:
                if Path(f"/proc/{kids[1]}/wchan").read_text() == "wait_for_partner":
                    out.append(kids[0])
            except OSError:
                continue
    return out


def crash_at(eng: LabEngine, point: str, ctx: Path) -> None:
    env = dict(eng.docker_env, DOCKER_BUILDKIT="0")
    argv = [[docker_cli(), "run", "-d", "busybox", "sleep", "1000"]] * 3
    if point == "build":
        argv.append([docker_cli(), "build", "-q", str(ctx)])
    clients = [subprocess.Popen(a, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for a in argv]
    want = "created" if point == "build" else point
    begun = time.monotonic()
    try:
        # give up after 15 s (a loaded machine): the crash then lands wherever it lands,
        # and every check below still holds
        while time.monotonic() - begun < 15:
            if point == "build" and time.monotonic() - begun < 1.0:
                pass  # past the first containers: into the build's RUN step
            elif point == "create-child-killed":
                if kids := create_children(eng):
                    for pid in kids:
                        with contextlib.suppress(ProcessLookupError):  # done meanwhile
                            os.kill(pid, signal.SIGKILL)
                    break
            elif want in phases(eng):
                break
            time.sleep(0.0005)
        eng.crash()
    finally:
        for c in clients:
            c.kill()
            c.wait()


def check_coherent(eng: LabEngine) -> None:
    ps = docker(eng, "ps", "-aq", "--no-trunc")
    assert ps.returncode == 0, ps.stderr
    ids = ps.stdout.split()
    states: dict[str, str] = {}
    if ids:
        ins = docker(eng, "inspect", *ids)
        assert ins.returncode == 0, ins.stderr
        for c in json.loads(ins.stdout):
            st = c["State"]
            states[c["Id"]] = st["Status"]
            assert st["Status"] in ("created", "running", "exited"), (c["Id"], st)
            if st["Status"] == "running":
                assert psutil.pid_exists(st["Pid"]), (c["Id"], st)
            else:
                assert st["Pid"] == 0, (c["Id"], st)
    # every live shim belongs to a container the daemon knows
    for d in (eng.run / "shims").iterdir():
        try:
            st = json.loads((d / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if psutil.pid_exists(st.get("shim_pid") or 0) and not (d / "exit.json").exists():
            assert d.name in states, f"orphan shim {st} for {d.name}"
    # no container init left waiting on its exec.fifo but for a created container (the
    # restart deletes a task created and never started, as containerd does)
    fifo_root = str(eng.run / "runtime")
    for pid in psutil.pids():  # /proc/PID/fd: init holds exec.fifo as an O_PATH fd
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                f = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if f.startswith(fifo_root) and f.endswith("/exec.fifo"):
                cid = Path(f).parent.name
                assert states.get(cid) == "created", f"init {pid} of {cid} left waiting"


@pytest.mark.parametrize("rnd", range(ROUNDS))
def test_crash_while_creating_then_restart(engine: LabEngine, tmp_path: Path, rnd: int) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    for point in POINTS:
        crash_at(engine, point, tmp_path)
        engine.start(timeout=45)  # the daemon waits on the supervisor: both answer
        check_coherent(engine)
        r = docker(engine, "run", "--rm", "busybox", "true")
        assert r.returncode == 0, (point, r.stderr)
    engine.remove_all()
