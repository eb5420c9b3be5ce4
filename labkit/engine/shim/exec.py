"""Run an extra process inside a running container (`docker exec`; runc exec's setns path).

labkit-runtime has no exec verb, so the shim does it with the runtime's own parts:

    shim ──fork──> middle: join the container's cgroup (cgroups(7): before setns into its
                   cgroup namespace, so the namespace root is the container's cgroup), then
                   setns(2) into every namespace init has (labkit.ns.apply.child_enter:
                   user first, mnt last; setns into a mount namespace also moves root and
                   cwd to that namespace's root), then fork ──> the exec'd process
                   (a joined pid namespace applies only to children, pid_namespaces(7))
    middle reports the pid and exits; the process re-parents to the shim (a subreaper).

The process then does what the container init does (runtime.process): rlimits, user and
capabilities, cwd, PATH lookup, no_new_privs, seccomp, execve.  Errors come back through a
CLOEXEC pipe as pickled labkit errors (the runtime's frame format); the pipe reaching EOF
without an error means execve succeeded.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pickle
import socket
import termios
from typing import Any, NoReturn

from labkit import errors
from labkit._sys.seccomp import load_bpf
from labkit._sys.signals import reset_signals
from labkit.engine.runtime import process
from labkit.ns.apply import child_enter, error_payload, send_frame
from labkit.ns.spec import NamespaceSpec


def _read_all(fd: int) -> bytes:
    buf = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            return buf
        buf += chunk


def _frames(buf: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    while len(buf) >= 5:
        n = int.from_bytes(buf[1:5], "big")
        out.append((buf[:1], buf[5:5 + n]))
        buf = buf[5 + n:]
    return out


def _report(fd: int, exc: BaseException) -> None:
    try:
        send_frame(fd, b"E", error_payload(exc))
    except BaseException:  # noqa: BLE001,S110 -- the shim is gone; nothing left to tell
        pass


def _child(p: dict[str, Any], stdio: tuple[int, int, int], tty: bool, filt: Any,
           sync_w: int, in_userns: bool) -> NoReturn:
    try:
        # Ignored dispositions survive execve (signal(7)): start the exec from defaults.
        reset_signals()
        os.setsid()
        for i, fd in enumerate(stdio):
            os.dup2(fd, i)
        if tty:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd != sync_w:
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass
        if p.get("rlimits"):
            process.set_rlimits(p["rlimits"])
        nnp = bool(p.get("noNewPrivileges"))
        if filt is not None and not nnp:
            load_bpf(*filt)  # needs CAP_SYS_ADMIN without no_new_privs: before caps drop
        process.switch_user(p, in_userns)
        cwd = p.get("cwd") or "/"
        os.chdir(cwd)
        env = list(p.get("env") or [])
        path = process.lookup(p["args"][0], env, cwd)
        if nnp:
            process.no_new_privs()
        if filt is not None and nnp:
            load_bpf(*filt)
        os.execve(path, p["args"], dict(kv.split("=", 1) for kv in env if "=" in kv))
    except BaseException as exc:  # noqa: BLE001 -- any failure must reach the shim
        _report(sync_w, exc)
    os._exit(127)


def _prepare(bundle: str, cid: str, runtime_root: str, init_pid: int, p: dict[str, Any]
             ) -> tuple[NamespaceSpec, Any, Any, bool]:
    """In the middle child: the namespaces to join, the cgroup, the seccomp filter."""
    from labkit.cgroups import open_cgroup
    from labkit.engine.runtime import config as rt_config
    from labkit.engine.runtime import state as rt_state

    cfg = rt_config.load(bundle, cid)
    kinds = cfg.namespaces.new
    join = {k: f"/proc/{init_pid}/ns/{k}" for k in kinds}
    st = rt_state.load(runtime_root, cid)
    cgroup = open_cgroup(st.cgroup) if st.cgroup else None
    filt = None
    if cfg.linux.get("seccomp"):
        from labkit.engine.runtime.seccomp import load_flags, program

        # The runtime caches the compiled BPF under its state root: the same program
        # the container's init loaded, without libseccomp's ~10 ms.
        profile = cfg.linux["seccomp"]
        filt = (program(profile, os.path.join(runtime_root, ".seccomp-cache")), load_flags(profile))
    return NamespaceSpec(join=join, propagation="unchanged"), cgroup, filt, "user" in kinds


def spawn(init_pid: int, bundle: str, cid: str, runtime_root: str, p: dict[str, Any],
          stdio: tuple[int, int, int] | None, *, tty: bool = False) -> tuple[int, int | None]:
    """Start process ``p`` (an OCI process object) in container ``cid`` (init ``init_pid``).

    The bundle's config.json says which namespaces to join and the seccomp profile; the
    runtime's state gives the cgroup.  ``stdio``: the three fds the process gets; with
    ``tty`` it is None and the middle child opens a pty *in the container's devpts* (after
    joining its mount namespace), so that ttyname(3) works inside, and sends the master
    back over a socketpair (SCM_RIGHTS, as runc's --console-socket does).  Everything that
    allocates runs in the forked middle child, so the shim's memory stays as it was.
    Returns (host pid, pty master or None).
    Raises ExecutableNotFoundError (127), InvalidStateError (not running), SyscallError.
    """
    if not p.get("args"):
        raise errors.InvalidArgumentError("process.args", "must name a program")
    if not os.path.exists(f"/proc/{init_pid}/ns"):
        raise errors.InvalidStateError("stopped", "exec", hint="the container is not running")
    r, w = os.pipe2(os.O_CLOEXEC)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) if tty else (None, None)
    mid = os.fork()
    if mid == 0:
        code = 1
        try:
            os.close(r)
            spec, cgroup, filt, in_userns = _prepare(bundle, cid, runtime_root, init_pid, p)
            if cgroup is not None:
                cgroup.add(os.getpid())
            child_enter(spec, -1)
            if theirs is not None:
                ptm, slave = os.openpty()  # /dev/ptmx of the container's mount ns
                socket.send_fds(theirs, [b"m"], [ptm])
                os.close(ptm)
                stdio = (slave, slave, slave)
            assert stdio is not None
            pid = os.fork()
            if pid == 0:
                _child(p, stdio, tty, filt, w, in_userns)
            send_frame(w, b"P", str(pid).encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 -- any failure must reach the shim
            _report(w, exc)
        finally:
            os._exit(code)
    os.close(w)
    master: int | None = None
    try:
        data = _read_all(r)
        if ours is not None:
            assert theirs is not None
            theirs.close()
            ours.setblocking(False)  # the master was sent before the pid: no wait needed
            try:
                _, fds, _, _ = socket.recv_fds(ours, 16, 1)
                master = fds[0] if fds else None
            except BlockingIOError:
                master = None
    finally:
        os.close(r)
        os.waitpid(mid, 0)
        if ours is not None:
            ours.close()
    pid = 0
    for tag, payload in _frames(data):
        if tag == b"P":
            pid = int(payload)
        elif tag == b"E":
            try:
                failure = pickle.loads(payload)
            except Exception:  # noqa: BLE001 -- a broken frame still becomes a typed error
                failure = errors.from_errno(errno.EPROTO, "exec", "error frame")
            if pid:  # the process failed before execve: it is our child now; reap it
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
            if master is not None:
                os.close(master)
            raise failure
    if not pid or (tty and master is None):
        raise errors.from_errno(errno.EPIPE, "exec", f"container of pid {init_pid}",
                                hint="the helper died without reporting")
    return pid, master
