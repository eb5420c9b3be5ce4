"""The shim: one per container, parent of its processes, owner of their stdio and exit status.

containerd-shim-runc-v2's job in one single-threaded poll(2) loop:
* it is a child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER) in its own session, so the
  container's init -- forked by the runtime's intermediate, which exits -- re-parents to it,
  and neither the supervisor nor the daemon dying can take it down (no PDEATHSIG, no
  shared session or pipes);
* it runs labkit-runtime's create/start/kill/delete in-process (the runtime forks directly;
  no interpreter start per verb), and `docker exec` through exec.py;
* it pumps stdout/stderr to the json-file log and to attached io-socket clients, feeds
  stdin from one, reaps every child on SIGCHLD and writes the exit status (128+signal) and
  the OOM verdict atomically to its state dir before anyone is told;
* it answers the control protocol (protocol.py) on ctl.sock.
"""

from __future__ import annotations

import functools
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from labkit import errors
from labkit._sys import trace
from labkit.engine.runtime import stats as rt_stats
from labkit.engine.runtime.state import Status
from labkit.engine.shim import layout
from labkit.engine.shim.ops import Ops
from labkit.engine.shim.proc import IoClient, Proc
from labkit.engine.shim.protocol import MAX_LINE, decode, encode, reply_error

IN, OUT, HUP = select.POLLIN, select.POLLOUT, select.POLLHUP | select.POLLERR


class CtlConn:
    __slots__ = ("buf", "sock", "subscribed")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.subscribed = False

    def send(self, msg: dict[str, Any]) -> bool:
        try:
            self.sock.sendall(encode(msg))
            return True
        except OSError:
            return False


class Shim(Ops):
    """The loop and its bookkeeping; the control operations live in ops.Ops."""

    def __init__(self, cfg: dict[str, Any], sdir: str, ctl: socket.socket) -> None:
        self.cfg = cfg
        self.id: str = cfg["id"]
        self.dir = sdir
        self.runtime_root: str = cfg["runtime_root"]
        self.poll = select.poll()
        self.handlers: dict[int, Callable[[int, int], None]] = {}
        self.procs: dict[str, Proc] = {"": Proc("", terminal=bool(cfg.get("terminal")),
                                               stdin_once=bool(cfg.get("stdin_once")),
                                               want_stdin=bool(cfg.get("stdin")))}
        self.by_pid: dict[int, Proc] = {}
        self.subscribers: list[CtlConn] = []
        self.quit = False
        self.ctl = ctl
        self.io = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        io_path = layout.sockets(cfg)[1]
        if os.path.exists(io_path):
            os.unlink(io_path)
        self.io.bind(io_path)
        self.io.listen(64)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup fd does the work
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(s, signal.SIG_IGN)  # only `shutdown`/`delete` end a shim
        self.watch(ctl.fileno(), IN, self._accept_ctl)
        self.watch(self.io.fileno(), IN, self._accept_io)
        self.watch(self.wake_r, IN, self._on_signal)

    # -- plumbing ------------------------------------------------------------------------
    def watch(self, fd: int, mask: int, fn: Callable[[int, int], None]) -> None:
        self.handlers[fd] = fn
        self.poll.register(fd, mask)

    def unwatch(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            self.poll.unregister(fd)

    def save_state(self) -> None:
        init = self.procs[""]
        layout.write_atomic(os.path.join(self.dir, layout.STATE), {
            "status": init.status, "pid": init.pid, "shim_pid": os.getpid(),
            "started_at": init.started_at})

    def emit(self, topic: str, proc: Proc, **extra: Any) -> None:
        ev = {"topic": topic, "id": self.id, "exec_id": proc.exec_id, "pid": proc.pid,
              "timestamp": time.time(), **extra}
        self.subscribers = [c for c in self.subscribers if c.send(ev)]

    def run(self) -> None:
        """Serve until `delete` or `shutdown`."""
        while not self.quit:
            try:
                events = self.poll.poll()
            except InterruptedError:
                continue
            for fd, ev in events:
                fn = self.handlers.get(fd)
                if fn is not None:
                    fn(fd, ev)

    # -- signals and exits ---------------------------------------------------------------
    def _on_signal(self, fd: int, _ev: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass
        self.reap()

    def reap(self) -> None:
        """waitpid(2) every exited child: ours, and orphans re-parented to us."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.by_pid.pop(pid, None)
            if proc is not None:
                code = os.waitstatus_to_exitcode(status)
                self.exited(proc, 128 - code if code < 0 else code)

    def exited(self, proc: Proc, code: int, error: str = "") -> None:
        """Record an exit: drain output, persist, answer waiters, close clients, emit."""
        trace.mark("shim.exit", self.id if not proc.exec_id else "")
        for c in proc.drain():
            self.drop_client(c)
        for fd in list(proc.outs):
            self.unwatch(fd)
        proc.close_fds()
        proc.exit_status, proc.exited_at, proc.error = code, time.time(), error
        proc.move(Status.STOPPED)
        if proc.exec_id == "":
            proc.oom_killed = self._oom_kills() > 0
            # exit.json alone marks the stop (state.json is not rewritten: one fsync less
            # between the exit and the waiters' answer).
            layout.write_atomic(os.path.join(self.dir, layout.EXIT), proc.exit_dict())
            if proc.oom_killed:
                self.emit("/tasks/oom", proc)
        for w in proc.waiters:
            w.send({"ok": True, **proc.exit_dict()})
        proc.waiters.clear()
        for c in list(proc.clients):
            c.closing = True
            if not c.wbuf:
                self.drop_client(c)
        self.emit("/tasks/exit", proc, exit_status=code)

    def _oom_kills(self) -> int:
        try:
            return rt_stats.oom_kills(self.runtime_root, self.id)
        except errors.LabkitError:
            return 0

    # -- control socket ------------------------------------------------------------------
    def _accept_ctl(self, _fd: int, _ev: int) -> None:
        sock, _ = self.ctl.accept()
        sock.setblocking(True)
        conn = CtlConn(sock)
        self.watch(sock.fileno(), IN, lambda fd, ev: self._read_ctl(conn))

    def _read_ctl(self, conn: CtlConn) -> None:
        try:
            data = conn.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.unwatch(conn.sock.fileno())
            if conn in self.subscribers:
                self.subscribers.remove(conn)
            for p in self.procs.values():
                if conn in p.waiters:
                    p.waiters.remove(conn)
            conn.sock.close()
            return
        conn.buf += data
        while b"\n" in conn.buf:
            line, conn.buf = conn.buf.split(b"\n", 1)
            self.dispatch(conn, line)
        if len(conn.buf) > MAX_LINE:
            conn.send(reply_error(errors.InvalidArgumentError("shim request", "line too long")))
            conn.buf = b""

    def dispatch(self, conn: CtlConn, line: bytes) -> None:
        try:
            req = decode(line)
            op = str(req.get("op", ""))
            fn = getattr(self, "op_" + op, None) if op.isidentifier() else None
            if fn is None:
                raise errors.InvalidArgumentError("op", f"unknown shim operation {op!r}")
            reply = fn(req, conn)
        except Exception as exc:  # noqa: BLE001 -- every failure becomes a typed reply, never a dead shim
            reply = reply_error(exc)
        if reply is not None:
            conn.send(reply)

    # -- io socket -----------------------------------------------------------------------
    def _accept_io(self, _fd: int, _ev: int) -> None:
        sock, _ = self.io.accept()
        sock.setblocking(False)
        c = IoClient(sock)
        self.watch(c.fd, IN, lambda fd, ev: self._io_event(c, ev))

    def _io_event(self, c: IoClient, ev: int) -> None:
        if ev & OUT and c.flush():
            if c.closing:
                self.drop_client(c)
                return
            self.poll.modify(c.fd, IN)
        if not ev & (IN | HUP):
            return
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if c.proc is None:
            self._io_header(c, data)
            return
        p = c.proc
        if not data:  # half-close: stdin EOF for StdinOnce (supervisor.proto)
            if c.stdin and p.stdin_once:
                p.close_stdin()
            if c.closing or not (c.stdout or c.stderr):
                self.drop_client(c)
            else:
                self.poll.modify(c.fd, OUT if c.wbuf else 0)
            return
        if c.stdin and p.stdin_w is not None:
            try:
                os.write(p.stdin_w, data)  # blocking: stdin is back-pressured, as in Docker
            except OSError:
                pass

    def _io_header(self, c: IoClient, data: bytes) -> None:
        c.hdr += data
        if not data or b"\n" in c.hdr or len(c.hdr) > 4096:
            line, _, rest = c.hdr.partition(b"\n")
            try:
                h = decode(line)
                p = self.procs[str(h.get("exec_id", ""))]
            except (errors.LabkitError, KeyError):
                self.drop_client(c)
                return
            c.stdin, c.stdout, c.stderr = (bool(h.get(k)) for k in ("stdin", "stdout", "stderr"))
            c.proc = p
            p.clients.append(c)
            if p.status == Status.STOPPED:
                self.drop_client(c)
            elif rest:
                self._io_event_data(c, rest)

    def _io_event_data(self, c: IoClient, data: bytes) -> None:
        if c.stdin and c.proc is not None and c.proc.stdin_w is not None:
            os.write(c.proc.stdin_w, data)

    def drop_client(self, c: IoClient) -> None:
        self.unwatch(c.fd)
        if c.proc is not None and c in c.proc.clients:
            c.proc.clients.remove(c)
        c.sock.close()

    def watch_output(self, p: Proc) -> None:
        for fd in p.outs:
            os.set_blocking(fd, False)
            self.watch(fd, IN, functools.partial(self._on_output_event, p))

    def _on_output_event(self, p: Proc, fd: int, _ev: int) -> None:
        data, bad = p.read_out(fd)
        for c in bad:
            self.drop_client(c)
        for c in p.clients:
            if c.wbuf:
                self.poll.modify(c.fd, IN | OUT)
        if data == b"":
            self.unwatch(fd)  # EOF; the fd is closed at exit
