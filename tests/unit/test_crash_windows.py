"""Two waits that a crash at the wrong moment once made endless (tests/privileged/
test_crash_restart.py drives the whole engine through those moments):

- the shim reading its create fork's reply: the fork dies without a word while a process
  it forked (the container's init, until its execve) still holds the socketpair's end;
- the supervisor's restore() meeting a shim that accepts but does not answer (one busy in
  a create): it must return, and adopt that shim later.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

from labkit.engine.shim.ops import _read_reply
from labkit.engine.supervisor.service import TasksService


def test_read_reply_stops_when_the_fork_dies_while_its_child_holds_the_socket() -> None:
    a, b = socket.socketpair()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the create fork: forks an "init" that keeps b open, dies without a word
        a.close()
        os.close(hold_w)
        if os.fork() == 0:
            os.read(hold_r, 1)  # until the test closes hold_w
            os._exit(0)
        os._exit(1)
    b.close()
    os.close(hold_r)
    try:
        buf, fds = _read_reply(a, pid)  # hung in recv(2) before: b is still open
        assert (buf, fds) == (b"", [])
    finally:
        a.close()
        os.close(hold_w)  # the "init" exits
        os.waitpid(pid, 0)


def test_read_reply_returns_what_the_fork_sent_before_exiting() -> None:
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        b.sendall(b'{"ok": true, "pid": 7}\n')
        os._exit(0)
    b.close()
    try:
        assert _read_reply(a, pid) == (b'{"ok": true, "pid": 7}\n', [])
    finally:
        a.close()
        os.waitpid(pid, 0)


def test_restore_does_not_wait_for_a_shim_that_does_not_answer(tmp_path: Path) -> None:
    shims_root = tmp_path / "shims"
    cid = "busy1"
    (shims_root / cid).mkdir(parents=True)
    ctl = tmp_path / "ctl.sock"
    cfg = {"id": cid, "dir": str(shims_root / cid), "ctl_sock": str(ctl),
           "io_sock": str(tmp_path / "io.sock"), "bundle": str(tmp_path)}
    (shims_root / cid / "config.json").write_text(json.dumps(cfg))
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deaf.bind(str(ctl))
    deaf.listen(8)  # connections queue; nothing is ever read or answered

    async def run() -> None:
        svc = TasksService(None, str(shims_root), str(tmp_path / "rt"),  # type: ignore[arg-type]
                           str(tmp_path / "c"))
        # the guard only turns a hang into a failure; restore's own bound is 5 s per shim
        assert await asyncio.wait_for(svc.restore(), 60) == [cid]
        assert cid in svc.records and svc.records[cid].gone is None
        assert len(svc.adopting) == 1  # it keeps trying in the background
        for t in svc.adopting:
            t.cancel()

    try:
        asyncio.run(run())
    finally:
        deaf.close()
