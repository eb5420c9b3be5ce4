"""The shim's control operations (protocol.py), one method per op, on top of server.Shim.

Each op returns its reply dict, or None when the reply comes later (`wait`) or never
(`subscribe`: the connection becomes an event stream).  State rules follow the runtime's
machine (runtime.state.TRANSITIONS) and containerd's process states: a created init can be
started or deleted, a running one paused, killed or (forced) deleted, a stopped one deleted.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

from labkit import errors
from labkit._sys import trace
from labkit._sys.signals import reset_signals
from labkit.engine.runtime import create as rt_create
from labkit.engine.runtime import delete as rt_delete
from labkit.engine.runtime import exec as rt_exec
from labkit.engine.runtime import kill as rt_kill
from labkit.engine.runtime import pause as rt_pause
from labkit.engine.runtime import start as rt_start
from labkit.engine.runtime import stats as rt_stats
from labkit.engine.runtime import update as rt_update
from labkit.engine.runtime.state import Status
from labkit.engine.shim import layout
from labkit.engine.shim.proc import Proc
from labkit.engine.shim.protocol import check_reply, decode, encode, reply_error

if TYPE_CHECKING:
    from labkit.engine.shim.server import CtlConn


def _read_reply(a: socket.socket, pid: int) -> tuple[bytes, list[int]]:
    """The create child's one-line reply (and the pty master it passes) on ``a``.

    Not "read until EOF": the container's init is forked by that child and inherits its
    end of the socketpair, which stays open until init's execve(2) (close-on-exec only
    acts there, and init waits on exec.fifo until `start`).  A child killed before it
    replied would leave us blocked in recv(2) for ever -- this shim single-threaded and
    deaf to its control socket, and a restarted supervisor waiting on it.  So we also
    watch the child itself through a pidfd (pidfd_open(2): readable once it exits) and
    stop at its exit, after draining what it sent before dying."""
    pidfd = os.pidfd_open(pid)
    a.setblocking(False)
    watch = select.poll()
    watch.register(a.fileno(), select.POLLIN)
    watch.register(pidfd, select.POLLIN)
    buf, fds, exited = b"", [], False
    try:
        while not buf.endswith(b"\n"):
            try:
                data, more, _, _ = socket.recv_fds(a, 1 << 16, 1)
            except BlockingIOError:
                if exited:
                    break
                exited = any(fd == pidfd for fd, _ in watch.poll())
                continue
            fds += more
            buf += data
            if not data:
                break
    finally:
        os.close(pidfd)
    return buf, fds


def _default_signals() -> None:
    """Undo the shim's signal setup in a child that goes on to the container: ignored
    dispositions survive execve (signal(7)), and a container must not ignore SIGTERM."""
    reset_signals()


class Ops:
    """Mixed into server.Shim, which provides the state and loop methods declared here."""

    cfg: dict[str, Any]
    id: str
    dir: str
    runtime_root: str
    procs: dict[str, Proc]
    by_pid: dict[int, Proc]
    quit: bool
    subscribers: list[CtlConn]

    def save_state(self) -> None:
        raise NotImplementedError

    def emit(self, topic: str, proc: Proc, **extra: Any) -> None:
        raise NotImplementedError

    def exited(self, proc: Proc, code: int, error: str = "") -> None:
        raise NotImplementedError

    def watch_output(self, p: Proc) -> None:
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------
    def proc(self, req: dict[str, Any]) -> Proc:
        eid = str(req.get("exec_id") or "")
        p = self.procs.get(eid)
        if p is None:
            raise errors.NotFoundError("exec", eid) if eid else errors.NotFoundError(
                "container", self.id)
        return p

    def _pipes(self, p: Proc) -> tuple[int, int, int]:
        """Create the process's stdio; return the three child ends."""
        if p.want_stdin:
            r, w = os.pipe2(os.O_CLOEXEC)
            p.stdin_w = w
        else:
            r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        o_r, o_w = os.pipe2(os.O_CLOEXEC)
        e_r, e_w = os.pipe2(os.O_CLOEXEC)
        p.outs = {o_r: 1, e_r: 2}
        return r, o_w, e_w

    # -- lifecycle -----------------------------------------------------------------------
    def op_create(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any]:
        init = self.procs[""]
        trace.mark("shim.create.begin", self.id)
        if init.pid:
            raise errors.AlreadyExistsError("container", self.id)
        log = self.cfg.get("log") or {}
        try:
            if log.get("path"):
                from labkit.engine.logs.drivers import open_writer

                init.log = open_writer(log.get("driver") or "json-file", log["path"],
                                       log.get("options") or {})
        except BaseException:
            self.quit = True  # a shim whose create failed ends (see below)
            raise
        child = self._pipes(init)
        try:
            pid, master = self._create_in_child(child)
        except BaseException:
            init.close_fds()
            self.quit = True  # a failed create leaves nothing: the supervisor removes the dir
            raise
        finally:
            for fd in child:
                os.close(fd)
        if master is not None:  # process.terminal: the pty master replaces the pipes
            for fd in init.outs:
                os.close(fd)
            if init.stdin_w is not None:
                os.close(init.stdin_w)
            init.outs, init.master, init.stdin_w = {master: 1}, master, master
            init.terminal = True
            if init.winsize is not None:  # asked for before create: init waits for start
                rt_exec.set_winsize(master, *init.winsize)
        init.pid = pid
        self.by_pid[pid] = init
        self.watch_output(init)
        self.save_state()
        trace.mark("shim.create.end", self.id)
        self.emit("/tasks/create", init)
        return {"ok": True, "pid": pid}

    def _create_in_child(self, stdio: tuple[int, int, int]) -> tuple[int, int | None]:
        """Run the runtime's create in a fork of the shim; return (init pid, pty master).

        Why a child: create loads the config, compiles seccomp and builds cgroup objects,
        which writes to megabytes of the heap the shim shares copy-on-write with its
        template; in a child those pages are thrown away with it.  init still ends up
        ours: the child exits, and an orphan re-parents to its nearest subreaper, the shim.
        The pty master (process.terminal) comes back over a socketpair (SCM_RIGHTS).
        """
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                a.close()
                _default_signals()
                # The runtime's init inherits fds 0-2 of its caller (runtime.init keeps
                # only those across execve): put the container's stdio there.
                for i, fd in enumerate(stdio):
                    os.dup2(fd, i)
                st, master = rt_create.create_with_tty(self.runtime_root, self.id,
                                                       self.cfg["bundle"], foreground=True)
                socket.send_fds(b, [encode({"ok": True, "pid": st.pid})],
                                [master] if master is not None else [])
                code = 0
            except BaseException as exc:  # noqa: BLE001 -- any failure must reach the shim
                try:
                    b.sendall(encode(reply_error(exc)))
                except BaseException:  # noqa: BLE001,S110 -- the shim is gone
                    pass
            finally:
                os._exit(code)
        b.close()
        try:
            buf, fds = _read_reply(a, pid)
        finally:
            a.close()
            os.waitpid(pid, 0)
        if not buf.endswith(b"\n"):
            for fd in fds:
                os.close(fd)
            # The child died mid-create (SIGKILLed, OOM-killed): nobody undid what the
            # runtime had made, and an init it forked would wait on exec.fifo for ever.
            # containerd deletes a task whose create did not finish; so do we (force: the
            # init is SIGKILLed, its cgroup and state dir go).  Only here: a typed error
            # reply means the runtime already cleaned up after itself.
            try:
                rt_delete.delete(self.runtime_root, self.id, force=True)
            except errors.LabkitError:
                pass
            raise errors.from_errno(32, "create", self.id, hint="the runtime died (see shim.log)")
        msg = check_reply(decode(buf))
        return int(msg["pid"]), (fds[0] if fds else None)

    def op_start(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any]:
        p = self.proc(req)
        if p.status != Status.CREATED:
            raise errors.InvalidStateError(p.status, Status.RUNNING,
                                           "exec" if p.exec_id else "container")
        if p.exec_id:
            self._start_exec(p)
        else:
            trace.mark("shim.start.begin", self.id)
            rt_start.start(self.runtime_root, self.id)
            trace.mark("shim.start.end", self.id)
        p.move(Status.RUNNING)
        p.started_at = time.time()
        if not p.exec_id:
            self.save_state()
        self.emit("/tasks/exec-started" if p.exec_id else "/tasks/start", p)
        return {"ok": True, "pid": p.pid}

    def _start_exec(self, p: Proc) -> None:
        init = self.procs[""]
        if init.status not in (Status.RUNNING, Status.PAUSED):
            raise errors.InvalidStateError(init.status, "exec",
                                           hint="the container is not running")
        stdio = None if p.terminal else self._pipes(p)
        spec = p.spec
        if p.terminal and p.winsize is not None:
            # The runtime sizes the pty before the process exists (OCI consoleSize): a
            # resize applied after spawn() returns would race the process's first ioctl.
            spec = {**spec, "consoleSize": {"height": p.winsize[0], "width": p.winsize[1]}}
        try:
            p.pid, master = rt_exec.spawn(self.runtime_root, self.id, spec, stdio,
                                          tty=p.terminal)
        except errors.LabkitError as exc:
            p.close_fds()
            code = getattr(exc, "exit_code", None)
            if code is not None:  # Docker: exec of a missing program ends with 126/127
                p.move(Status.STOPPED)
                p.exit_status, p.error, p.exited_at = code, str(exc), time.time()
            raise
        finally:
            for fd in stdio or ():
                os.close(fd)
        if master is not None:
            p.master, p.outs, p.stdin_w = master, {master: 1}, master
        self.by_pid[p.pid] = p
        self.watch_output(p)

    def op_exec(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any]:
        eid = str(req.get("exec_id") or "")
        if not eid:
            raise errors.InvalidArgumentError("exec_id", "must not be empty")
        if eid in self.procs:
            raise errors.AlreadyExistsError("exec", eid)
        spec = req.get("process")
        if not isinstance(spec, dict) or not spec.get("args"):
            raise errors.InvalidArgumentError("process", "an OCI process object with args")
        if self.procs[""].status not in (Status.RUNNING, Status.PAUSED):
            raise errors.InvalidStateError(self.procs[""].status, "exec",
                                           hint="the container is not running")
        p = Proc(eid, terminal=bool(req.get("terminal") or spec.get("terminal")), spec=spec,
                 want_stdin=bool(req.get("stdin")), stdin_once=True)
        self.procs[eid] = p
        self.emit("/tasks/exec-added", self.procs[eid])
        return {"ok": True, "pid": 0}

    def op_kill(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any]:
        p = self.proc(req)
        sig = int(req.get("signal") or signal.SIGTERM)
        if p.status == Status.STOPPED or not p.pid:
            raise errors.InvalidStateError(p.status, "signalled",
                                           hint="the process is not running")
        if p.exec_id:
            os.kill(p.pid, sig)
        else:  # (SIGKILL to a paused container thaws it: the runtime's kill does that)
            rt_kill.kill(self.runtime_root, self.id, sig, all=bool(req.get("all")))
        return {"ok": True}

    def op_wait(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any] | None:
        p = self.proc(req)
        if p.status == Status.STOPPED:
            return {"ok": True, **p.exit_dict()}
        p.waiters.append(conn)
        return None

    def op_state(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any]:
        init = self.procs[""]
        return {"ok": True, "id": self.id, "shim_pid": os.getpid(), **init.info(),
                "execs": [p.info() for k, p in self.procs.items() if k]}

    def op_subscribe(self, req: dict[str, Any], conn: CtlConn) -> None:
        self.subscribers.append(conn)
        conn.send({"ok": True})

    # -- io ------------------------------------------------------------------------------
    def op_resize(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any]:
        p = self.proc(req)
        rows, cols = int(req.get("height") or 24), int(req.get("width") or 80)
        if not (0 <= rows <= 0xFFFF and 0 <= cols <= 0xFFFF):
            raise errors.InvalidArgumentError("resize", f"{rows}x{cols} is not a terminal size")
        if not p.terminal or p.status == Status.STOPPED:
            raise errors.InvalidStateError("no terminal" if not p.terminal else p.status,
                                           "resize", "process")
        # Remembered in any case: a pty made later (an exec's, at start; the init's, at
        # create) gets the last size asked for before its process runs.
        p.winsize = (rows, cols)
        if p.master is not None:
            rt_exec.set_winsize(p.master, rows, cols)
        return {"ok": True}

    def op_close_stdin(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any]:
        self.proc(req).close_stdin()
        return {"ok": True}

    # -- the runtime's other verbs ------------------------------------------------------
    def op_pids(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any]:
        return {"ok": True, "pids": rt_stats.pids(self.runtime_root, self.id)}

    def op_stats(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any]:
        return {"ok": True, **rt_stats.stats(self.runtime_root, self.id)}

    def op_pause(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any]:
        init = self.procs[""]
        if init.status != Status.RUNNING:
            raise errors.InvalidStateError(init.status, Status.PAUSED)
        rt_pause.pause(self.runtime_root, self.id)
        init.move(Status.PAUSED)
        self.save_state()
        self.emit("/tasks/paused", init)
        return {"ok": True}

    def op_resume(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any]:
        init = self.procs[""]
        if init.status != Status.PAUSED:
            raise errors.InvalidStateError(init.status, Status.RUNNING)
        rt_pause.resume(self.runtime_root, self.id)
        init.move(Status.RUNNING)
        self.save_state()
        self.emit("/tasks/resumed", init)
        return {"ok": True}

    def op_update(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any]:
        res = req.get("resources")
        rt_update.update(self.runtime_root, self.id, res if res is not None else {})
        return {"ok": True}

    # -- teardown ------------------------------------------------------------------------
    def op_delete(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any] | None:
        p = self.proc(req)
        force = bool(req.get("force"))
        if p.status in (Status.RUNNING, Status.PAUSED) and not force:
            raise errors.InvalidStateError(p.status, "deleted",
                                           "exec" if p.exec_id else "container",
                                           hint="stop it first, or force")
        if p.exec_id:
            if p.status != Status.STOPPED and p.pid:
                os.kill(p.pid, signal.SIGKILL)
                self._wait_for(p)
            if p.status == Status.CREATED:
                p.close_fds()  # never started: its pty or pipes are all that exists
            self.procs.pop(p.exec_id, None)
            return {"ok": True, **p.exit_dict()}
        if p.pid and p.status != Status.STOPPED:
            try:
                rt_kill.kill(self.runtime_root, self.id, signal.SIGKILL)  # thaws a paused one
            except errors.InvalidStateError:
                pass  # it died meanwhile (its exit is still ours to reap below)
            except errors.NotFoundError:  # no runtime state left: our child all the same
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._wait_for(p)
        for e in [e for k, e in self.procs.items() if k and e.status != Status.STOPPED]:
            self._wait_for(e, kill=True)
        try:
            rt_delete.delete(self.runtime_root, self.id, force=True)
        except errors.NotFoundError:
            pass  # create failed half-way, or someone ran `labkit-runtime delete`
        self.emit("/tasks/delete", p)
        layout.remove_sockets(self.cfg)  # before the reply: once Delete returns, nothing
        layout.remove_dir(self.dir)  # is left (the shim's open sockets keep working)
        conn.send({"ok": True, **p.exit_dict()})
        self.quit = True
        return None

    def _wait_for(self, p: Proc, kill: bool = False) -> None:
        if kill:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            _, status = os.waitpid(p.pid, 0)
        except ChildProcessError:
            status = 9  # already reaped elsewhere: report it as killed by SIGKILL
        if self.by_pid.pop(p.pid, None) is not None:
            code = os.waitstatus_to_exitcode(status)
            self.exited(p, 128 - code if code < 0 else code)

    def op_shutdown(self, req: dict[str, Any], conn: CtlConn) -> dict[str, Any] | None:
        init = self.procs[""]
        if init.status != Status.STOPPED and init.pid and not req.get("force"):
            raise errors.InvalidStateError(init.status, "shutdown", "shim")
        conn.send({"ok": True})
        self.quit = True
        return None
