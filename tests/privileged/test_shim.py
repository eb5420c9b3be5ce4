"""The shim on its own (no supervisor): started from a template, it owns the container.

Checks the process tree containerd's shim gives: the container's init is the shim's child
(subreaper), the shim is in a session of its own, and it outlives both the template that
forked it and the process that asked for it; the control protocol works directly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from labkit.engine.shim.protocol import decode, encode
from labkit.engine.supervisor.client import attach as attach_io
from labkit.engine.supervisor.client import read_frames
from labkit.engine.supervisor.harness import Harness

pytestmark = pytest.mark.privileged


@pytest.fixture
def h() -> Iterator[Harness]:
    hs = Harness(Path(tempfile.mkdtemp(prefix="lk-sh-")))
    try:
        yield hs
    finally:
        hs.cleanup()
        assert hs.leftover_cgroups() == []


def call(ctl: Path, req: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(ctl))
        s.sendall(encode(req))
        return decode(s.makefile("rb").readline())


# A throwaway parent: it starts a template, has it fork one shim, prints the shim's pid
# and then blocks; the test SIGKILLs it (and with it, by PDEATHSIG, the template).
PARENT = textwrap.dedent("""
    import json, sys, time
    from labkit.engine.shim.template import Template
    t = Template()
    print(t.pid, t.spawn(json.loads(sys.argv[1])), flush=True)
    time.sleep(1000)
""")


def test_shim_tree_and_survival(h: Harness) -> None:
    cid = h.new_id("sh")
    sdir = h.shims / cid
    cfg = {"id": cid, "dir": str(sdir), "bundle": str(h.bundle(cid, ["sleep", "1000"])),
           "runtime_root": str(h.run / "runtime"),
           "log": {"driver": "json-file", "path": str(h.base / "c.log")}}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, json.dumps(cfg)],
                              stdout=subprocess.PIPE, env=h.env)
    assert parent.stdout is not None
    tpl_pid, shim_pid = (int(x) for x in parent.stdout.readline().split())
    shim = psutil.Process(shim_pid)
    try:
        assert call(sdir / "ctl.sock", {"op": "create"})["ok"]
        init_pid = call(sdir / "ctl.sock", {"op": "start"})["pid"]
        init = psutil.Process(init_pid)
        assert init.ppid() == shim_pid  # re-parented to the subreaper shim
        assert shim.ppid() not in (parent.pid, tpl_pid)  # double-forked away
        assert os.getsid(shim_pid) not in (os.getsid(parent.pid), os.getsid(0))
        parent.kill()
        parent.wait()
        end = time.monotonic() + 10
        while psutil.pid_exists(tpl_pid) and psutil.Process(tpl_pid).status() != "zombie":
            assert time.monotonic() < end, "template outlived its parent"
            time.sleep(0.02)
        time.sleep(0.2)
        assert shim.is_running() and init.is_running()
        st = call(sdir / "ctl.sock", {"op": "state"})
        assert st["status"] == "running" and st["pid"] == init_pid
        assert call(sdir / "ctl.sock", {"op": "kill", "signal": 9})["ok"]
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sdir / "ctl.sock"))
            s.sendall(encode({"op": "wait"}))
            assert decode(s.makefile("rb").readline())["exit_status"] == 137
        assert call(sdir / "ctl.sock", {"op": "delete"})["ok"]
        shim.wait(10)
        assert not sdir.exists()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if shim.is_running() and shim.status() != "zombie":
            shim.send_signal(signal.SIGKILL)


def test_unknown_op_and_bad_json_get_typed_errors(h: Harness) -> None:
    h.start()
    cid = h.new_id("sh")
    h.client.create(cid, str(h.bundle(cid, ["sleep", "1000"])))
    ctl = Path(json.loads((h.shims / cid / "config.json").read_text())["ctl_sock"])
    rep = call(ctl, {"op": "frobnicate"})
    assert not rep["ok"] and rep["error"]["type"] == "labkit.errors:InvalidArgumentError"
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(ctl))
        s.sendall(b"{not json\n")
        rep = decode(s.makefile("rb").readline())
    assert not rep["ok"] and "not JSON" in rep["error"]["message"]
    assert call(ctl, {"op": "state"})["status"] == "created"  # the shim is unharmed


def test_docker_length_ids_under_a_long_run_dir() -> None:
    # 64-hex ids (Docker's) under a LABKIT_RUN of ~70 characters: <run>/shims/<id>/ctl.sock
    # would be ~150 bytes, past sun_path; the sockets live at <run>/s/<hash>-*.sock instead.
    base = Path(tempfile.mkdtemp(prefix="lk-sh-" + "x" * 50 + "-"))
    hs = Harness(base)
    try:
        hs.start()
        cid = "lk" + os.urandom(31).hex()
        hs.ids.append(cid)
        t = hs.client.create(cid, str(hs.bundle("long", ["sh", "-c", "echo long"])))
        assert len(str(hs.shims / cid / "ctl.sock")) > 108 and len(t.io_socket) < 108
        io = attach_io(t.io_socket)
        hs.client.start(cid)
        assert hs.client.wait(cid).exit_status == 0
        assert io.recv(100)[8:] == b"long\n"
        hs.client.delete(cid)
        assert not Path(t.io_socket).exists() and not (hs.shims / cid).exists()
    finally:
        hs.cleanup()
        assert hs.leftover_cgroups() == []


# A parent whose shims hold spawn() back until the exec'd process has *exited* (a zombie,
# unreaped: the shim is the one that would reap it).  Whatever the shim does with the pty
# after spawn() returns comes strictly after the process ran: only a size applied before
# the process was released can reach it.  This is the ordering a loaded host produced at
# random (issue 8: `stty size` printed an error instead of "20 90"), made certain.
SLOW_PTY_PARENT = textwrap.dedent("""
    import json, sys, time
    from labkit.engine.runtime import exec as rt_exec
    from labkit.engine.shim.template import Template

    real = rt_exec.spawn

    def spawn_then_wait_for_exit(*a, **kw):
        pid, master = real(*a, **kw)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    break
            time.sleep(0.01)
        return pid, master

    rt_exec.spawn = spawn_then_wait_for_exit
    t = Template()
    print(t.spawn(json.loads(sys.argv[1])), flush=True)
    time.sleep(1000)
""")


def test_resize_before_exec_start_applies_before_the_process_runs(h: Harness) -> None:
    cid = h.new_id("sh")
    sdir = h.shims / cid
    cfg = {"id": cid, "dir": str(sdir), "bundle": str(h.bundle(cid, ["sleep", "1000"])),
           "runtime_root": str(h.run / "runtime"),
           "log": {"driver": "json-file", "path": str(h.base / "c.log")}}
    parent = subprocess.Popen([sys.executable, "-c", SLOW_PTY_PARENT, json.dumps(cfg)],
                              stdout=subprocess.PIPE, env=h.env)
    assert parent.stdout is not None
    shim = psutil.Process(int(parent.stdout.readline()))
    ctl = sdir / "ctl.sock"
    try:
        assert call(ctl, {"op": "create"})["ok"] and call(ctl, {"op": "start"})["ok"]
        proc = {"args": ["stty", "size"], "cwd": "/", "terminal": True,
                "env": ["PATH=/bin:/usr/bin"], "user": {"uid": 0, "gid": 0}}
        assert call(ctl, {"op": "exec", "exec_id": "t1", "process": proc, "terminal": True})["ok"]
        assert call(ctl, {"op": "resize", "exec_id": "t1", "width": 90, "height": 20})["ok"]
        # a second resize before start: the last one asked for wins
        assert call(ctl, {"op": "resize", "exec_id": "t1", "width": 91, "height": 21})["ok"]
        io = attach_io(str(sdir / "io.sock"), "t1")
        assert call(ctl, {"op": "start", "exec_id": "t1"})["ok"]
        out = b"".join(pl for _, pl in read_frames(io))
        assert out == b"21 91\r\n", out
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(ctl))
            s.sendall(encode({"op": "wait", "exec_id": "t1"}))
            assert decode(s.makefile("rb").readline())["exit_status"] == 0
        assert call(ctl, {"op": "delete", "force": True})["ok"]
        shim.wait(10)
    finally:
        parent.kill()
        parent.wait()
        if shim.is_running() and shim.status() != "zombie":
            shim.send_signal(signal.SIGKILL)
