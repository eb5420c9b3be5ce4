"""Pump a hijacked attach/exec connection to the local terminal (what `docker run` does).

One select(2) loop, no threads: output from the socket is demultiplexed (8-byte frames without
a tty, raw with one) onto fds 1 and 2; with ``-i`` the local stdin goes up the socket and its
EOF becomes shutdown(SHUT_WR), the half-close the daemon expects.  With ``-t`` the local
terminal is put in raw mode (termios(3) cfmakeraw, restored on the way out), SIGWINCH is
forwarded as a resize, and the detach keys (ctrl-p ctrl-q by default) leave the container
running.
"""

from __future__ import annotations

import os
import select
import selectors
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from labkit import errors
from labkit.engine.client.transport import Hijack
from labkit.engine.shim.stdcopy import Decoder

__all__ = ["DEFAULT_DETACH", "parse_detach_keys", "pump", "raw_terminal", "terminal_size"]

DEFAULT_DETACH = b"\x10\x11"  # ctrl-p ctrl-q, Docker's default


def parse_detach_keys(spec: str | None) -> bytes:
    """Docker's --detach-keys syntax: "ctrl-p,ctrl-q", "ctrl-a,x" -> bytes."""
    if not spec:
        return DEFAULT_DETACH
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if key.startswith("ctrl-") and len(key) == 6:
            out.append(ord(key[5].lower()) & 0x1F)
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise errors.InvalidArgumentError("--detach-keys", f"invalid key {key!r}",
                                              hint="e.g. ctrl-p,ctrl-q or ctrl-a,x")
    return bytes(out)


def terminal_size(fd: int = 1) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on ``fd``, None when it is not a terminal."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


@contextmanager
def raw_terminal(fd: int = 0) -> Iterator[None]:
    """Raw mode on ``fd`` when it is a terminal (termios(3)); the old mode is always restored."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    old = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)  # TCSAFLUSH (the default) would drop typed-ahead input
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            continue
        data = data[n:]


def _drain(h: Hijack, dec: Decoder, tty: bool, seconds: float) -> None:
    """Copy output until the daemon closes the stream or ``seconds`` pass."""
    import time

    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([h.sock], [], [], left)
        if not ready:
            return
        data = h.sock.recv(65536)
        if not data:
            return
        if tty:
            _write_all(1, data)
        else:
            for stream, payload in dec.feed(data):
                _write_all(2 if stream == 2 else 1, payload)


def pump(h: Hijack, tty: bool, stdin: bool, detach: bytes = DEFAULT_DETACH,
         on_resize: Callable[[int, int], Any] | None = None) -> str:
    """Copy both ways until the daemon closes the stream: "eof", or "detached" on the keys."""
    sel = selectors.DefaultSelector()
    sel.register(h.sock, selectors.EVENT_READ, "out")
    if stdin:
        sel.register(0, selectors.EVENT_READ, "in")
    else:
        h.close_write()  # nothing to send: tell the daemon at once, as the Docker CLI does
    dec = Decoder()
    old_winch: Any = None
    if tty and on_resize is not None and hasattr(signal, "SIGWINCH"):
        def winch(_sig: int, _frm: Any) -> None:
            if (size := terminal_size()) is not None:
                try:
                    on_resize(*size)
                except (OSError, errors.LabkitError):  # a lost resize must not end the session
                    pass
        old_winch = signal.signal(signal.SIGWINCH, winch)
    matched = 0
    pending = h.initial
    h.initial = b""
    try:
        while True:
            if pending:
                events = [(None, "out")]
            else:
                events = [(None, key.data) for key, _ in sel.select()]
            for _, what in events:
                if what == "out":
                    data = pending or h.sock.recv(65536)
                    pending = b""
                    if not data:
                        return "eof"
                    if tty:
                        _write_all(1, data)
                    else:
                        for stream, payload in dec.feed(data):
                            _write_all(2 if stream == 2 else 1, payload)
                else:
                    data = os.read(0, 4096)
                    if not data:
                        sel.unregister(0)
                        h.close_write()
                        continue
                    if tty and detach:
                        for i, byte in enumerate(data):
                            matched = matched + 1 if byte == detach[matched] else (
                                1 if byte == detach[0] else 0)
                            if matched == len(detach):
                                # Detaching is the daemon's job in Docker (the attach's
                                # detachKeys): send the keys on, let the daemon end the
                                # stream, and give it a moment before hanging up ourselves
                                # (a plain hang-up closes a StdinOnce container's stdin).
                                h.sendall(data[:i + 1])
                                _drain(h, dec, tty, 2.0)
                                return "detached"
                    h.sendall(data)
    finally:
        sel.close()
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        sys.stdout.flush()
