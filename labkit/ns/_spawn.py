"""spawn / run / enter: start a command in new or joined namespaces, from a fresh child.

STYLE C9: namespaces are never entered in the caller (a Jupyter kernel is multi-threaded:
unshare(CLONE_NEWUSER) and setns(2) into user/mnt namespaces fail with EINVAL there).  The
child that does it comes from one of three places, same contract for all:

* direct: a single-threaded caller forks itself (Popen + preexec_fn), ~5 ms;
* fork server: a multi-threaded caller asks a warm ``python -m labkit.ns.child --server``
  (labkit.ns._forkserver), ~5 ms;
* helper: a ``python -m labkit.ns.child`` per spawn, the spec as JSON on an inherited
  socket, ~30 ms (the fallback when FORK_SERVER is off).

In each, the child applies the spec (labkit.ns.apply.child_enter) while this process writes
the id maps (parent_serve), then execs argv, forking once more when pid/time are new.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any, NoReturn

from labkit import errors
from labkit._sys import consts, syscalls
from labkit.ns import apply, inspect
from labkit.ns._proc import Child, await_exec, helper_env
from labkit.ns.child import exit_like
from labkit.ns.spec import KINDS, NamespaceSpec

__all__ = ["Child", "enter", "run", "spawn"]

_File = int | IO[Any] | None


def spawn(
    spec: NamespaceSpec,
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdin: _File = None,
    stdout: _File = None,
    stderr: _File = None,
    pass_fds: Iterable[int] = (),
) -> Child:
    """clone(2)-like: start ``argv`` in ``spec``'s namespaces, from a fresh child process.

    Returns once argv has been exec'd.  ``cwd`` is entered after the namespaces (inside a
    joined mount namespace); ``env`` defaults to os.environ; stdio arguments as for
    subprocess.Popen (PIPE works).

    Raises InvalidArgumentError for an empty argv; the child's SyscallError (errno, syscall,
    hint; e.g. setns EINVAL, execve ENOENT) or the parent's ``write uid_map`` error if the
    kernel refused a map.  On error, nothing is left running.

    Example::

        with spawn(NamespaceSpec(new={"uts"}, hostname="lk-demo"), ["sleep", "60"]) as c:
            print(inspect.namespaces(c.pid)["uts"])
    """
    if not argv:
        raise errors.InvalidArgumentError("argv", "empty command")
    args = [os.fspath(a) for a in argv]
    env_d = dict(env if env is not None else os.environ)
    cwd_s = os.fspath(cwd) if cwd is not None else None
    stdio = (stdin, stdout, stderr)
    if DIRECT_FORK and not spec.wants_maps and _single_threaded():
        return _spawn_direct(spec, args, env_d, cwd_s, stdio, tuple(pass_fds))
    if FORK_SERVER:
        from labkit.ns._forkserver import spawn_served

        return spawn_served(spec, args, env_d, cwd_s, stdio, tuple(pass_fds))
    return _spawn_helper(spec, args, env_d, cwd_s, stdio, tuple(pass_fds))


# STYLE C9 speed note: a single-threaded caller (a script, the test suite, a CLI) may fork
# directly, skipping the helper's interpreter start (~30 ms -> ~5 ms).  Tests turn this
# off to exercise the other paths.  Specs with id maps never fork directly: the map
# handshake would need a second thread in the caller while Popen blocks.
DIRECT_FORK = True
# Multi-threaded callers (a notebook kernel, the daemon) hand the fork to a warm server
# (labkit.ns._forkserver, ~5 ms) instead of starting a helper interpreter per spawn (~30 ms).
FORK_SERVER = True


def _single_threaded() -> bool:
    # /proc/self/task counts every thread, including ones C extensions started, which
    # threading.active_count() misses.
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _cleanup(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()


def _spawn_helper(
    spec: NamespaceSpec, args: list[str], env: dict[str, str], cwd: str | None,
    stdio: tuple[_File, _File, _File], pass_fds: tuple[int, ...],
) -> Child:
    req = {"spec": spec.to_dict(), "argv": args, "env": env, "cwd": cwd}
    ours, theirs = socket.socketpair()
    try:
        # -S: no site (the helper needs only the stdlib and labkit, found via PYTHONPATH);
        # -P: never import from the cwd.  Together they save ~10 ms of start-up.
        cmd = [sys.executable, "-S", "-P", "-m", "labkit.ns.child", str(theirs.fileno())]
        proc = subprocess.Popen(
            cmd, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2],
            pass_fds=(theirs.fileno(), *pass_fds), env=helper_env())
    finally:
        theirs.close()  # else our copy hides the helper's EOF
    with ours:
        fd = ours.fileno()
        try:
            apply.send_frame(fd, b"S", json.dumps(req).encode())
            apply.parent_serve(proc.pid, spec, fd)
            pid = await_exec(fd)
        except BaseException:
            # The helper holds no one else's resources: SIGKILL is safe; a forked argv
            # follows it through PR_SET_PDEATHSIG.
            _cleanup(proc)
            raise
    return Child(proc, pid, args)


def _spawn_direct(
    spec: NamespaceSpec, args: list[str], env: dict[str, str], cwd: str | None,
    stdio: tuple[_File, _File, _File], pass_fds: tuple[int, ...],
) -> Child:
    ours, theirs = socket.socketpair()
    tfd = theirs.fileno()

    def preexec() -> None:
        # In the forked child (single-threaded, stdio already in place), before execve.
        try:
            os.set_inheritable(tfd, False)
            apply.child_enter(spec, tfd)
            if spec.needs_fork:
                pid = os.fork()
                if pid != 0:
                    _reaper(pid, tfd)
                syscalls.prctl(consts.PR_SET_PDEATHSIG, signal.SIGKILL)
            else:
                apply.send_frame(tfd, b"P", str(os.getpid()).encode())
            if cwd is not None:
                try:
                    os.chdir(cwd)
                except OSError as err:
                    raise errors.from_errno(err.errno or 5, "chdir", cwd) from None
        except BaseException as exc:  # Popen would only say "preexec_fn failed": send it

            apply.send_frame(tfd, b"E", apply.error_payload(exc))
            raise

    try:
        try:
            proc = subprocess.Popen(
                args, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], env=env,
                pass_fds=(tfd, *pass_fds),
                preexec_fn=preexec)  # noqa: PLW1509 -- only when single-threaded
        finally:
            theirs.close()
    except subprocess.SubprocessError:
        with ours:
            pid = await_exec(ours.fileno())  # raises the child's error
        raise  # not reached: the child always sends E before failing
    except OSError as err:
        ours.close()
        if isinstance(err, errors.LabkitError):
            raise
        # Popen reports the child's execve failure with the program as filename; anything
        # else failed in fork/pipe here.
        call = "execve" if err.filename is not None else "fork"
        raise errors.from_errno(err.errno or 5, call, args[0]) from None
    with ours:
        try:
            pid = await_exec(ours.fileno())
        except BaseException:
            _cleanup(proc)
            raise
    return Child(proc, pid, args)


def _reaper(pid: int, sock: int) -> NoReturn:
    """The middle process of the direct path: report argv's pid, then wait and mirror it."""
    try:
        apply.send_frame(sock, b"P", str(pid).encode())
    finally:
        # Drop every inherited fd (Popen's errpipe among them, whose EOF tells the caller
        # that argv was exec'd) but stdio; this process only waits.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                os._exit(1)
            except InterruptedError:
                continue
        exit_like(status)


def run(
    spec: NamespaceSpec,
    argv: Sequence[str | os.PathLike[str]],
    *,
    input: str | bytes | None = None,
    capture_output: bool = True,
    text: bool = True,
    check: bool = False,
    timeout: float | None = None,
    **kw: Any,
) -> subprocess.CompletedProcess[Any]:
    """subprocess.run for spawn(): run argv in ``spec``'s namespaces and wait for it.

    stdout/stderr are captured (as text) unless ``capture_output=False``.  ``kw`` goes to
    spawn() (env, cwd, stdin, stdout, stderr, pass_fds).

    Example: ``run(NamespaceSpec(new={"uts"}, hostname="lk-demo"), ["hostname"]).stdout``
    is ``"lk-demo\\n"``.

    Raises what spawn() raises; subprocess.TimeoutExpired (argv is killed first);
    subprocess.CalledProcessError when ``check`` and the status is not 0.
    """
    if capture_output:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
    data = input.encode() if isinstance(input, str) else input
    if data is not None:
        kw["stdin"] = subprocess.PIPE
    with spawn(spec, argv, **kw) as child:
        try:
            out, err = child.communicate(data, timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise
        code = child.wait()
    res_out: str | bytes | None = out
    res_err: str | bytes | None = err
    if text:
        res_out = out.decode(errors="replace") if out is not None else None
        res_err = err.decode(errors="replace") if err is not None else None
    result = subprocess.CompletedProcess([os.fspath(a) for a in argv], code, res_out, res_err)
    if check:
        result.check_returncode()
    return result


def enter(
    pid: int,
    kinds: Iterable[str] | None = None,
    argv: Sequence[str | os.PathLike[str]] = ("sh",),
    **kw: Any,
) -> subprocess.CompletedProcess[Any]:
    """nsenter(1) -t PID: run argv in the namespaces of process ``pid`` and wait for it.

    ``kinds`` defaults to every kind whose namespace differs from ours.  Joining ``mnt``
    puts argv at the root of that mount namespace (setns(2)); joining ``user`` keeps our
    uid, which shows as 65534 there unless it is mapped.  ``kw`` goes to run().

    Raises NotFoundError if ``pid`` does not exist, InvalidArgumentError for an unknown
    kind, and what run() raises.
    """
    theirs = inspect.namespaces(pid)
    ours = inspect.namespaces("self")
    if kinds is None:
        chosen = [k for k in KINDS if k in theirs and k in ours and theirs[k] != ours[k]]
    else:
        chosen = list(kinds)
        for k in chosen:
            if k not in KINDS:
                raise errors.InvalidArgumentError(
                    "kinds", f"unknown namespace kind {k!r}", hint=f"one of: {', '.join(KINDS)}")
    join = {k: f"/proc/{pid}/ns/{k}" for k in chosen}
    return run(NamespaceSpec(join=join), argv, **kw)
