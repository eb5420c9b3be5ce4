"""``python -m labkit.ns.child FD``: the small single-threaded helper behind labkit.ns.spawn.

STYLE C9: a notebook kernel is multi-threaded, so namespaces are entered here, in a fresh
interpreter, never in the caller (runc nsenter plus its init pipe; youki's closed Message
set).  Frames on FD (see labkit.ns.apply for the framing):

    caller -> helper  S + JSON {"spec", "argv", "env", "cwd"}
    helper <-> caller M / K / E        the id-map handshake (apply.child_enter/parent_serve)
    helper -> caller  E + pickle       setup failed (a SyscallError with errno and hint)
    helper -> caller  P + pid          argv's process, as the caller's pid namespace sees it
    argv   -> caller  E + pickle       execve failed; EOF instead means exec succeeded (FD is
                                       close-on-exec, the helper closed its copy)

When the spec needs one more fork (new pid/time namespace, joined pid namespace) the helper
stays as argv's parent, reaps it and exits with the same status (re-raising a fatal signal on
itself), so the caller's Popen.wait() reports argv's status.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from labkit import errors
from labkit._sys import consts, syscalls
from labkit.ns import apply
from labkit.ns.spec import NamespaceSpec

TYPE_CHECKING = False  # not typing's: typing costs ~8 ms of the helper's start-up
if TYPE_CHECKING:
    from typing import Any, NoReturn


def _exec(req: dict[str, Any], sock: int) -> NoReturn:
    argv: list[str] = req["argv"]
    try:
        if req.get("cwd") is not None:
            try:
                os.chdir(req["cwd"])
            except OSError as err:
                raise errors.from_errno(err.errno or 5, "chdir", req["cwd"]) from None
        # SIGPIPE and friends back to default: Python set SIGPIPE to ignored, and an ignored
        # signal stays ignored across execve(2).
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvpe(argv[0], argv, req["env"])
        except OSError as err:
            raise errors.from_errno(err.errno or 5, "execve", argv[0]) from None
    except BaseException as exc:  # noqa: BLE001 -- any failure must reach the caller
        try:
            apply.send_frame(sock, b"E", apply.error_payload(exc))
        finally:
            os._exit(127)


def exit_like(status: int) -> NoReturn:
    """Exit with the wait status of our child: the same code, or killed by the same signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        # Re-raise the signal so our parent sees -sig.  No core file from the helper itself.
        try:
            import resource
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ImportError, ValueError, OSError):
            pass
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # a signal that does not kill (should not happen)
    os._exit(os.waitstatus_to_exitcode(status))


def _apply_and_exec(req: dict[str, Any], sock: int, status: int | None) -> NoReturn:
    """child_enter, then exec argv here or in one more child that we wait for.

    With ``status`` (fork-server mode) we always fork, wait, and report argv's exit code on
    it as an ``X`` frame, because our own exit status goes to the server, not the caller.
    """
    try:
        spec = NamespaceSpec.from_dict(req["spec"])
        apply.child_enter(spec, sock)
    except BaseException as exc:  # noqa: BLE001 -- any failure must reach the caller
        try:
            apply.send_frame(sock, b"E", apply.error_payload(exc))
        except errors.SyscallError:
            pass  # the caller is gone, or it raised this error itself (a refused id map)
        os._exit(1)

    if not spec.needs_fork and status is None:
        apply.send_frame(sock, b"P", str(os.getpid()).encode())
        _exec(req, sock)

    pid = os.fork()
    if pid == 0:
        # prctl(2) PR_SET_PDEATHSIG: argv dies if the helper is killed, so nothing outlives it.
        syscalls.prctl(consts.PR_SET_PDEATHSIG, signal.SIGKILL)
        _exec(req, sock)
    # Signals meant for a foreground job (Ctrl-C) reach argv; the helper just waits for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        apply.send_frame(sock, b"P", str(pid).encode())
    except errors.SyscallError:
        pass  # caller gone: PDEATHSIG will not fire (we live), so wait for argv as usual
    os.close(sock)
    while True:
        try:
            _, wstatus = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(1)
    if status is None:
        exit_like(wstatus)
    try:
        apply.send_frame(status, b"X", str(os.waitstatus_to_exitcode(wstatus)).encode())
    finally:
        os._exit(0)


def main(args: list[str]) -> NoReturn:
    if args and args[0] == "--server":
        serve(int(args[1]))
    sock = int(args[0])
    # Close-on-exec: argv must not inherit the handshake socket (its EOF is the exec signal).
    os.set_inheritable(sock, False)
    try:
        tag, payload = apply.recv_frame(sock, timeout=None)
        if tag != b"S":
            os._exit(2)
        req = json.loads(payload)
    except BaseException:  # noqa: BLE001 -- the caller is gone or broken: nothing to run
        os._exit(2)
    _apply_and_exec(req, sock, None)


# -- fork server (STYLE C9 speed note) ----------------------------------------------------

def serve(ctl_fd: int) -> NoReturn:
    """Fork one helper per request from this warm, single-threaded process.

    A request on the SOCK_SEQPACKET ``ctl_fd`` is JSON (as for the helper, plus "targets"
    and "cwd_fd") with SCM_RIGHTS fds: [handshake sock, status sock, the caller's cwd if
    "cwd_fd", then one fd for each target: 0, 1, 2, pass_fds...].  EOF on
    ``ctl_fd`` (the caller exited) ends the server.
    """
    import socket

    ctl = socket.socket(fileno=ctl_fd)
    # Helpers are reaped by the kernel (SIGCHLD ignored); each helper restores SIG_DFL.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(ctl, 1 << 21, 256)
        except InterruptedError:
            continue
        except OSError:
            os._exit(1)
        if not msg:
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                req = json.loads(msg)
                if req.get("cwd_fd"):
                    cwd_fd = fds.pop(2)
                    os.fchdir(cwd_fd)
                    os.close(cwd_fd)
                sock, status = _place_fds(fds, req["targets"])
                apply.send_frame(status, b"H", str(os.getpid()).encode())
                _apply_and_exec(req, sock, status)
            finally:
                os._exit(1)
        for fd in fds:
            os.close(fd)


def _place_fds(fds: list[int], targets: list[int]) -> tuple[int, int]:
    """Put fds[2:] at ``targets`` (Popen's stdio and pass_fds), close every other fd."""
    import fcntl

    # Above every target first, so no dup2 below overwrites a fd still to be moved.
    base = max([*targets, *fds, 2]) + 1
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base) for fd in fds]
    for fd in fds:
        os.close(fd)
    for src, dst in zip(high[2:], targets, strict=True):
        os.dup2(src, dst, inheritable=True)
    keep = {high[0], high[1], *targets}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listdir fd itself
    return high[0], high[1]


if __name__ == "__main__":
    main(sys.argv[1:])
