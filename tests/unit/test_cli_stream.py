"""The hijack pump on a socketpair: frames to fds 1/2, stdin up with a half-close, detach keys."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from labkit import errors
from labkit.cli import _stream
from labkit.engine.client.transport import Hijack
from labkit.engine.shim.stdcopy import encode as frame


def test_pump_demuxes_and_half_closes(capfd: pytest.CaptureFixture[str]) -> None:
    ours, daemon = socket.socketpair()
    got = bytearray()

    def daemon_side() -> None:
        daemon.sendall(frame(1, b"out\n") + frame(2, b"err\n"))
        while data := daemon.recv(100):  # EOF: the client half-closed (no stdin)
            got.extend(data)
        daemon.sendall(frame(1, b"after-eof\n"))
        daemon.close()

    t = threading.Thread(target=daemon_side)
    t.start()
    assert _stream.pump(Hijack(ours, b""), tty=False, stdin=False) == "eof"
    t.join()
    out = capfd.readouterr()
    assert (out.out, out.err, bytes(got)) == ("out\nafter-eof\n", "err\n", b"")


def test_pump_sends_stdin_then_eof(capfd: pytest.CaptureFixture[str]) -> None:
    r, w = os.pipe()
    os.write(w, b"typed\n")
    os.close(w)
    saved = os.dup(0)
    os.dup2(r, 0)
    os.close(r)
    ours, daemon = socket.socketpair()
    got = bytearray()

    def daemon_side() -> None:
        while data := daemon.recv(100):
            got.extend(data)
        daemon.sendall(b"raw tty bytes")
        daemon.close()

    t = threading.Thread(target=daemon_side)
    t.start()
    try:
        assert _stream.pump(Hijack(ours, b""), tty=True, stdin=True) == "eof"
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    t.join()
    assert bytes(got) == b"typed\n" and capfd.readouterr().out == "raw tty bytes"


def test_detach_keys_end_the_session_and_go_on_to_the_daemon() -> None:
    r, w = os.pipe()
    os.write(w, b"ls\r\x10\x11")
    saved = os.dup(0)
    os.dup2(r, 0)
    os.close(r)
    ours, daemon = socket.socketpair()
    try:
        assert _stream.pump(Hijack(ours, b""), tty=True, stdin=True) == "detached"
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(w)
    daemon.settimeout(1)
    assert daemon.recv(100) == b"ls\r\x10\x11"


@pytest.mark.parametrize(("spec", "keys"), [(None, b"\x10\x11"), ("ctrl-a,x", b"\x01x"),
                                            ("ctrl-p,ctrl-q", b"\x10\x11")])
def test_parse_detach_keys(spec: str | None, keys: bytes) -> None:
    assert _stream.parse_detach_keys(spec) == keys


def test_bad_detach_keys() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="--detach-keys"):
        _stream.parse_detach_keys("ctrl-pq")
