"""A warm fork server for multi-threaded callers (a notebook kernel, the daemon).

STYLE C9 speed note: a fresh interpreter per spawn costs ~30 ms; forking from an
already-imported single-threaded server costs ~1 ms.  The server is
``python -m labkit.ns.child --server FD`` (labkit.ns.child.serve), started on first use,
one per calling process; it exits when this process closes its end of the control socket.

The caller passes stdio and pass_fds as SCM_RIGHTS (unix(7)), so the helper sees the same
fds Popen would give it.  Because the helper is the server's child, not ours, its exit
status comes back as an ``X`` frame on a per-spawn status socket (``H`` + helper pid first).
"""

from __future__ import annotations

import json
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Any

from labkit import errors
from labkit._sys import syscalls
from labkit.ns import apply
from labkit.ns._proc import Child, await_exec, helper_env
from labkit.ns.frames import Reader
from labkit.ns.spec import NamespaceSpec

__all__ = ["ServedProcess", "request", "shutdown", "spawn_served"]

_File = int | IO[Any] | None

_lock = threading.Lock()
_server: tuple[subprocess.Popen[bytes], socket.socket] | None = None


def _start() -> tuple[subprocess.Popen[bytes], socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-P", "-m", "labkit.ns.child", "--server",
             str(theirs.fileno())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),), env=helper_env())
    finally:
        theirs.close()
    return proc, ours


def request(req: dict[str, Any], fds: list[int]) -> None:
    """Send one spawn request to the server, starting (or restarting) it as needed."""
    global _server
    data = json.dumps(req).encode()
    with _lock:
        for attempt in (1, 2):
            if _server is None or _server[0].poll() is not None:
                _server = _start()
            try:
                socket.send_fds(_server[1], [data], fds)
                return
            except OSError as err:
                _server[1].close()
                _server[0].kill()
                _server[0].wait()
                _server = None
                if attempt == 2:
                    raise errors.from_errno(
                        err.errno or 32, "sendmsg", "labkit fork server",
                        hint="set labkit.ns._spawn.FORK_SERVER = False to use one helper "
                             "per spawn") from None


def server_pid() -> int | None:
    """The running fork server's pid, if any (tests leave it out of leftover checks)."""
    with _lock:
        return _server[0].pid if _server is not None else None


def shutdown() -> None:
    """Stop the server (tests; it also stops by itself when this process exits)."""
    global _server
    with _lock:
        if _server is not None:
            _server[1].close()
            _server[0].wait()
            _server = None


class ServedProcess:
    """subprocess.Popen's waiting half for a helper forked by the server."""

    def __init__(
        self, helper_pid: int, status: socket.socket, frames: Any, args: list[str],
        stdin: IO[bytes] | None, stdout: IO[bytes] | None, stderr: IO[bytes] | None,
    ) -> None:
        self.pid = helper_pid
        self.args = args
        self.returncode: int | None = None
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self._status, self._frames = status, frames
        # pidfd_open(2) now, while the helper must still be alive (it waits for us), so that
        # wait() can also see it exit, as Popen.wait() does for a child of our own.
        try:
            self._pidfd: int | None = syscalls.pidfd_open(helper_pid)
        except errors.LabkitError:
            self._pidfd = None

    def _collect(self) -> None:
        frame = self._frames.next()
        # EOF without X: the helper itself was killed; argv died with it (PDEATHSIG).
        self.returncode = int(frame[1]) if frame is not None and frame[0] == b"X" else -9
        self._status.close()
        if self._pidfd is not None:
            # The helper exits right after its X frame: a pidfd polls readable at exit.
            select.select([self._pidfd], [], [], 5.0)
            os.close(self._pidfd)
            self._pidfd = None

    def poll(self) -> int | None:
        if self.returncode is None:
            sel = selectors.DefaultSelector()
            with sel:
                sel.register(self._status, selectors.EVENT_READ)
                if sel.select(0):
                    self._collect()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            sel = selectors.DefaultSelector()
            with sel:
                sel.register(self._status, selectors.EVENT_READ)
                if not sel.select(timeout):
                    raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            self._collect()
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the helper; argv follows through PR_SET_PDEATHSIG."""
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def communicate(
        self, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[bytes | None, bytes | None]:
        """Popen.communicate: write ``input``, read stdout/stderr to EOF, then wait."""
        deadline = None if timeout is None else time.monotonic() + timeout
        out: dict[int, list[bytes]] = {}
        sel = selectors.DefaultSelector()
        with sel:
            for f in (self.stdout, self.stderr):
                if f is not None:
                    out[f.fileno()] = []
                    sel.register(f.fileno(), selectors.EVENT_READ)
            pending = memoryview(input or b"")
            if self.stdin is not None:
                if pending:
                    sel.register(self.stdin.fileno(), selectors.EVENT_WRITE)
                else:
                    self.stdin.close()
            while sel.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
                for key, _ in sel.select(left):
                    fd = int(key.fd)
                    if fd in out:
                        chunk = os.read(fd, 1 << 16)
                        if chunk:
                            out[fd].append(chunk)
                        else:
                            sel.unregister(fd)
                    else:
                        try:
                            pending = pending[os.write(fd, pending[:1 << 16]):]
                        except BrokenPipeError:
                            pending = memoryview(b"")
                        if not pending:
                            sel.unregister(fd)
                            assert self.stdin is not None
                            self.stdin.close()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.wait(left)
        res = [b"".join(out[f.fileno()]) if f is not None else None
               for f in (self.stdout, self.stderr)]
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()
        return res[0], res[1]


def _stdio(
    spec: _File, target: int, opened: list[int], keep: list[IO[bytes]], mode: str,
    stdout_fd: int | None = None,
) -> tuple[int, IO[bytes] | None]:
    """The fd to send for one stdio argument (Popen's rules) and our end of a PIPE."""
    if spec is None:
        try:
            os.fstat(target)
            return target, None
        except OSError:
            spec = subprocess.DEVNULL  # the caller has no such fd: as Popen would fail-safe
    if spec == subprocess.PIPE:
        r, w = os.pipe()
        mine, theirs = (w, r) if mode == "wb" else (r, w)
        opened.append(theirs)
        f = open(mine, mode)  # noqa: SIM115 -- handed to the caller as Child.stdin/stdout
        keep.append(f)
        return theirs, f
    if spec == subprocess.DEVNULL:
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        opened.append(fd)
        return fd, None
    if spec == subprocess.STDOUT:
        if stdout_fd is None:
            raise errors.InvalidArgumentError("stderr", "STDOUT is only valid for stderr")
        return stdout_fd, None
    if isinstance(spec, int):
        return spec, None
    return spec.fileno(), None


def spawn_served(
    spec: NamespaceSpec, args: list[str], env: dict[str, str], cwd: str | None,
    stdio: tuple[_File, _File, _File], pass_fds: tuple[int, ...],
) -> Child:
    """spawn() through the fork server; same contract as labkit.ns.spawn."""
    opened: list[int] = []
    keep: list[IO[bytes]] = []
    ours, theirs = socket.socketpair()
    st_ours, st_theirs = socket.socketpair()
    try:
        fd0, f0 = _stdio(stdio[0], 0, opened, keep, "wb")
        fd1, f1 = _stdio(stdio[1], 1, opened, keep, "rb")
        fd2, f2 = _stdio(stdio[2], 2, opened, keep, "rb", stdout_fd=fd1)
        extra: list[int] = []
        if cwd is None:
            # Popen's child inherits our cwd, the server's is the one it started in: send
            # ours as an O_PATH fd; the helper fchdir(2)s to it before entering namespaces
            # (a path might not resolve, or be searchable, inside them).
            cwd_fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            opened.append(cwd_fd)
            extra.append(cwd_fd)
        req = {"spec": spec.to_dict(), "argv": args, "env": env, "cwd": cwd,
               "cwd_fd": bool(extra), "targets": [0, 1, 2, *pass_fds]}
        request(req, [theirs.fileno(), st_theirs.fileno(), *extra, fd0, fd1, fd2, *pass_fds])
    except BaseException:
        for f in keep:
            f.close()
        ours.close()
        st_ours.close()
        raise
    finally:
        theirs.close()  # our copies would hide the helper's EOF
        st_theirs.close()
        for fd in opened:
            os.close(fd)
    frames = Reader(st_ours.fileno(), "fork server status")
    with ours:
        first = frames.next()
        if first is None or first[0] != b"H":
            st_ours.close()
            for f in keep:
                f.close()
            raise errors.from_errno(32, "recv", "labkit fork server: no helper started",
                                    hint="see the notebook/daemon stderr for its traceback")
        proc = ServedProcess(int(first[1]), st_ours, frames, args, f0, f1, f2)
        try:
            apply.parent_serve(proc.pid, spec, ours.fileno())
            pid = await_exec(ours.fileno())
        except BaseException:
            proc.kill()
            proc.wait()
            for f in keep:
                f.close()
            raise
    return Child(proc, pid, args)
