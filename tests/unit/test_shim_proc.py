"""The shim's output path without root: a Proc fed from pipes writes the json-file log and
frames for attached clients; a slow client is dropped, never waited for."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from labkit.engine.logs import JsonFileWriter, read_logs
from labkit.engine.shim import proc as procmod
from labkit.engine.shim.proc import IoClient, Proc
from labkit.engine.shim.stdcopy import split as unframe


def pair() -> tuple[IoClient, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    c = IoClient(a)
    c.stdout = c.stderr = True
    return c, b


def test_output_goes_to_log_lines_and_frames(tmp_path: Path) -> None:
    p = Proc("")
    p.log = JsonFileWriter(str(tmp_path / "l"))
    c, peer = pair()
    p.clients.append(c)
    assert p.output(1, b"hel") == []
    assert p.output(1, b"lo\nwor") == []
    assert p.output(2, b"oops\n") == []
    p.drain()  # flushes the partial "wor" as its own record
    frames, rest = unframe(peer.recv(65536))
    assert frames == [(1, b"hel"), (1, b"lo\nwor"), (2, b"oops\n")] and rest == b""
    assert [(e.stream, e.log) for e in read_logs(str(tmp_path / "l"))] == [
        ("stdout", b"hello\n"), ("stderr", b"oops\n"), ("stdout", b"wor")]


def test_clients_choose_streams() -> None:
    p = Proc("e1")
    c, peer = pair()
    c.stderr = False
    p.clients.append(c)
    p.output(2, b"hidden")
    p.output(1, b"shown")
    assert unframe(peer.recv(65536))[0] == [(1, b"shown")]


def test_slow_client_is_buffered_then_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Proc("")
    c, peer = pair()
    p.clients.append(c)
    monkeypatch.setattr(procmod, "CLIENT_MAX", 1 << 16)
    bad = []
    for _ in range(64):
        bad += p.output(1, b"x" * 4096)  # the peer never reads
    assert c in bad and len(c.wbuf) > 0
    peer.close()


def test_read_out_eof_and_drain_from_pipe(tmp_path: Path) -> None:
    p = Proc("")
    r, w = os.pipe()
    p.outs = {r: 1}
    os.write(w, b"a\nb\n")
    os.close(w)
    data, bad = p.read_out(r)
    assert data == b"a\nb\n" and bad == []
    assert p.read_out(r) == (b"", [])
    p.close_fds()
    assert p.outs == {}


def test_close_stdin_closes_pipe() -> None:
    p = Proc("")
    r, w = os.pipe()
    p.stdin_w = w
    p.close_stdin()
    assert p.stdin_w is None and os.read(r, 10) == b""
    os.close(r)


def test_exit_dict_and_info() -> None:
    p = Proc("e2", terminal=True)
    p.pid, p.status, p.exit_status = 42, "stopped", 137
    info = p.info()
    assert info["exec_id"] == "e2" and info["exit_status"] == 137 and info["terminal"]
    assert p.exit_dict()["pid"] == 42


def test_status_is_typed_and_moves_only_along_the_runtime_machine() -> None:
    import json

    from labkit import errors
    from labkit.engine.runtime.state import Status

    init, ex = Proc(""), Proc("e1")
    assert init.status is Status.CREATED
    with pytest.raises(errors.InvalidStateError, match="container state transition from created to paused"):
        init.move(Status.PAUSED)  # a created init cannot be paused
    init.move(Status.RUNNING)
    init.move(Status.PAUSED)
    init.move(Status.STOPPED)
    with pytest.raises(errors.InvalidStateError, match="exec state transition from stopped to running"):
        ex.move(Status.STOPPED)
        ex.move(Status.RUNNING)  # an exec that failed to start never runs
    assert ex.status is Status.STOPPED
    # on the wire (control protocol, state.json) it is the plain word
    assert json.loads(json.dumps(init.info()))["status"] == "stopped"
