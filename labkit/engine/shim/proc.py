"""One process the shim owns (the container's init or an exec) and its attached clients.

Output path (moby's stdcopy + json-file): bytes read from the process's stdout/stderr pipe
(or its pty master) are cut into lines for the log driver (init only, as Docker logs only
the container's main process) and framed for every attached io-socket client.  A client
that does not read is buffered up to CLIENT_MAX bytes, then dropped: a stuck `docker
attach` must never stall the container or its log.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any

from labkit.engine.logs.jsonfile import LineSplitter
from labkit.engine.runtime.state import Status, check_move
from labkit.engine.shim.stdcopy import encode as frame

if TYPE_CHECKING:
    from labkit.engine.logs.drivers import LogWriter

CLIENT_MAX = 16 << 20
STREAMS = {1: "stdout", 2: "stderr"}


class IoClient:
    """An attached io-socket connection (see supervisor.proto for the wire format)."""

    __slots__ = ("closing", "fd", "hdr", "proc", "sock", "stderr", "stdin", "stdout", "wbuf")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.hdr = b""  # the JSON header line, until complete
        self.proc: Proc | None = None
        self.stdin = self.stdout = self.stderr = False
        self.wbuf = bytearray()
        self.closing = False

    def queue(self, data: bytes) -> bool:
        """Send now what the socket takes, buffer the rest; False when over CLIENT_MAX."""
        if not self.wbuf:
            try:
                n = self.sock.send(data)
            except BlockingIOError:
                n = 0
            except OSError:
                return False
            data = data[n:]
        self.wbuf += data
        return len(self.wbuf) <= CLIENT_MAX

    def flush(self) -> bool:
        """Write buffered bytes; True when the buffer is empty."""
        try:
            n = self.sock.send(self.wbuf)
        except BlockingIOError:
            return False
        except OSError:
            self.wbuf.clear()
            return True
        del self.wbuf[:n]
        return not self.wbuf


class Proc:
    """The init (exec_id "") or an exec: pid, status, stdio fds, exit, waiters, clients."""

    def __init__(self, exec_id: str, *, terminal: bool = False, stdin_once: bool = False,
                 spec: dict[str, Any] | None = None, want_stdin: bool = False) -> None:
        self.exec_id = exec_id
        self.pid = 0
        self.status = Status.CREATED
        self.terminal = terminal
        self.stdin_once = stdin_once
        self.want_stdin = want_stdin
        self.spec = spec or {}
        self.stdin_w: int | None = None  # pipe write end, or the pty master
        self.outs: dict[int, int] = {}  # fd -> stream (1 stdout, 2 stderr)
        self.master: int | None = None
        self.winsize: tuple[int, int] | None = None  # (rows, cols) last asked for
        self.log: LogWriter | None = None  # the container's log driver (logs/drivers.py)
        self.split = {1: LineSplitter(), 2: LineSplitter()}
        self.clients: list[IoClient] = []
        self.waiters: list[Any] = []
        self.exit_status = 0
        self.exited_at = 0.0
        self.started_at = 0.0
        self.oom_killed = False
        self.error = ""

    # -- state --------------------------------------------------------------------------
    def move(self, to: Status) -> None:
        """Change status along the runtime's machine (state.TRANSITIONS), or raise
        InvalidStateError: the only place a shim process's status is set."""
        self.status = check_move(self.status, to, "exec" if self.exec_id else "container")

    # -- output -------------------------------------------------------------------------
    def output(self, stream: int, data: bytes) -> list[IoClient]:
        """Log ``data`` and copy it to every attached client; returns clients to drop."""
        if self.log is not None:
            now = time.time_ns()
            for msg in self.split[stream].feed(data):
                self.log.write(STREAMS[stream], msg, now)
        bad = []
        framed = None
        for c in self.clients:
            if (c.stdout if stream == 1 else c.stderr) and not c.closing:
                framed = framed or frame(stream, data)
                if not c.queue(framed):
                    bad.append(c)
        return bad

    def read_out(self, fd: int) -> tuple[bytes, list[IoClient]]:
        """Read once from ``fd``; (b"", []) at EOF (EIO from a pty whose slave closed)."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return b"-", []  # nothing now, not EOF
        except OSError:
            data = b""
        if not data:
            return b"", []
        return data, self.output(self.outs[fd], data)

    def drain(self) -> list[IoClient]:
        """At exit: read what the process left in its pipes (without waiting for EOF:
        a leftover grandchild may hold them), then end partial log lines."""
        bad: list[IoClient] = []
        for fd, stream in list(self.outs.items()):
            os.set_blocking(fd, False)
            while True:
                data, b = self.read_out(fd)
                bad += b
                if data in (b"", b"-"):
                    break
        if self.log is not None:
            for stream, sp in self.split.items():
                for msg in sp.flush():
                    self.log.write(STREAMS[stream], msg)
        return bad

    def close_fds(self) -> None:
        for fd in list(self.outs):
            if fd != self.master:
                os.close(fd)
        self.outs.clear()
        if self.stdin_w is not None and self.stdin_w != self.master:
            os.close(self.stdin_w)
        self.stdin_w = None
        if self.master is not None:
            os.close(self.master)
            self.master = None

        if self.log is not None:
            self.log.close()
            self.log = None

    def close_stdin(self) -> None:
        """EOF on the process's stdin; on a terminal, ^D (the line discipline's EOF)."""
        if self.master is not None:
            try:
                os.write(self.master, b"\x04")
            except OSError:
                pass
        elif self.stdin_w is not None:
            os.close(self.stdin_w)
            self.stdin_w = None

    def exit_dict(self) -> dict[str, Any]:
        return {"exec_id": self.exec_id, "pid": self.pid, "exit_status": self.exit_status,
                "exited_at": self.exited_at, "oom_killed": self.oom_killed, "error": self.error}

    def info(self) -> dict[str, Any]:
        return {"exec_id": self.exec_id, "pid": self.pid, "status": self.status,
                "terminal": self.terminal, "started_at": self.started_at, **(
                    self.exit_dict() if self.status == Status.STOPPED else {})}
