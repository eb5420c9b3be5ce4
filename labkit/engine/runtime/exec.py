"""Run one more process inside a running container (runc exec; `docker exec`).

One implementation for both callers: the shim calls spawn() in-process (as it calls the
runtime's create/start/kill/delete), and `labkit-runtime exec` (exec_process) wraps it.

    caller ──fork──> middle: join the container's cgroup (cgroups(7): before setns into its
                     cgroup namespace, so the namespace root is the container's cgroup), then
                     setns(2) into every namespace the config lists, through
                     /proc/<init>/ns/<kind> (labkit.ns.apply.child_enter: user first, mnt
                     last; joining the mount namespace also moves root and cwd to the
                     container's root), then fork ──> the exec'd process
                     (a joined pid namespace applies only to children, pid_namespaces(7))
    middle reports the pid and exits; the process re-parents to the caller (a subreaper).

The process then does what the container init does (runtime.process): rlimits, user and
capabilities, cwd, PATH lookup, no_new_privs, seccomp, execve.  Errors come back through a
CLOEXEC pipe as pickled labkit errors (the create frame format); the pipe reaching EOF
without an error means execve succeeded.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import termios

# typing costs ~1.5 ms to import; annotations are strings here (PEP 563), and mypy treats
# any name TYPE_CHECKING as true (the same trick as labkit.ns).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

from labkit import errors
from labkit._sys import consts, fastjson, syscalls
from labkit._sys.consts import OCI_NS_NAMES
from labkit._sys.seccomp import load_bpf
from labkit._sys.signals import reset_signals
from labkit.engine.runtime import config as configmod
from labkit.engine.runtime import process as procmod
from labkit.engine.runtime import state as statemod
from labkit.engine.runtime.create import (
    SYNC_TIMEOUT,
    _fork_intermediate,
    _kill_reap,
    _read_frames,
    _unpickle,
)
from labkit.engine.runtime.init import _cloexec_all, _report, join_cgroup, open_pty
from labkit.ns.apply import child_enter, send_frame
from labkit.ns.spec import NamespaceSpec


def build_process(cfg: dict[str, Any], args: list[str], *, process_file: str | None = None,
                  cwd: str | None = None, env: list[str] | None = None,
                  user: str | None = None, tty: bool = False) -> dict[str, Any]:
    """The process to exec: --process FILE, else the container's process with overrides."""
    if process_file is not None:
        try:
            with open(process_file, "rb") as f:
                data = f.read()
        except OSError as err:
            raise errors.InvalidArgumentError("--process", f"{process_file}: {err}") from None
        proc: dict[str, Any] = fastjson.loads(data, what=f"--process {process_file}")
        if not isinstance(proc, dict):
            raise errors.InvalidArgumentError("--process", "must hold a JSON object")
    else:
        if not args:
            raise errors.InvalidArgumentError("exec", "no command given",
                                              hint="labkit-runtime exec ID CMD [ARGS...]")
        proc = dict(cfg.get("process") or {})
        proc["args"] = list(args)
        proc["terminal"] = tty
        proc["env"] = list(proc.get("env") or []) + list(env or [])
        if cwd is not None:
            proc["cwd"] = cwd
        if user is not None:
            uid, _, gid = user.partition(":")
            if not uid.isdigit() or (gid and not gid.isdigit()):
                raise errors.InvalidArgumentError("--user", f"{user!r} is not UID[:GID]")
            proc["user"] = {**(proc.get("user") or {}), "uid": int(uid),
                            "gid": int(gid) if gid else 0, "additionalGids": []}
    proc.setdefault("cwd", "/")
    configmod._process(proc)
    return proc


def _join_spec(cfg: dict[str, Any], init_pid: int) -> NamespaceSpec:
    # Every namespace the config lists, new or joined by path: init is in all of them.
    kinds = []
    for ent in (cfg.get("linux") or {}).get("namespaces") or []:
        kind = OCI_NS_NAMES.get(ent.get("type", ""))
        if kind is not None:
            kinds.append(kind)
    return NamespaceSpec(join={k: f"/proc/{init_pid}/ns/{k}" for k in kinds},
                         propagation="unchanged")


def console_size(p: dict[str, Any]) -> tuple[int, int] | None:
    """(rows, cols) from process.consoleSize (config.md "consoleSize"), None when absent.

    InvalidArgumentError for anything but two integers in 0..65535 (struct winsize holds
    unsigned shorts, ioctl_tty(2))."""
    cs = p.get("consoleSize")
    if cs is None:
        return None
    if not isinstance(cs, dict):
        raise errors.InvalidArgumentError("process.consoleSize", "must be an object")
    out = []
    for key in ("height", "width"):
        v = cs.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFF:
            raise errors.InvalidArgumentError(f"process.consoleSize.{key}",
                                              f"{v!r} is not an integer in 0..65535")
        out.append(v)
    return out[0], out[1]


def set_winsize(fd: int, rows: int, cols: int) -> None:
    """TIOCSWINSZ (ioctl_tty(2)): struct winsize {rows, cols, xpixel, ypixel}, u16 each."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _container_pty(host_dev: int) -> tuple[int, int]:
    """A pty from the container's own devpts (we are in its mount namespace now), so that
    ttyname(3) works inside; a host pty (through ``host_dev``, the host's /dev opened before
    setns) when the container has no devpts."""
    try:
        return open_pty("/dev/ptmx")
    except errors.SyscallError:
        return open_pty("ptmx", dir_fd=host_dev)


def _exec_child(p: dict[str, Any], stdio: tuple[int, int, int], tty: bool,
                bpf: tuple[bytes, int] | None, sync_w: int, in_userns: bool) -> NoReturn:
    try:
        # Ignored dispositions survive execve (signal(7)): start the exec from defaults.
        reset_signals()
        os.setsid()
        for i, fd in enumerate(stdio):
            os.dup2(fd, i)
        if tty:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        _cloexec_all()  # sync_w is CLOEXEC already: EOF tells the caller execve worked
        if p.get("rlimits"):
            procmod.set_rlimits(p["rlimits"])
        nnp = bool(p.get("noNewPrivileges"))
        if bpf is not None and not nnp:
            load_bpf(*bpf)  # needs CAP_SYS_ADMIN without no_new_privs: before caps drop
        procmod.switch_user(p, in_userns)
        cwd = p.get("cwd") or "/"
        os.chdir(cwd)
        env = list(p.get("env") or [])
        path = procmod.lookup(p["args"][0], env, cwd)
        if nnp:
            procmod.no_new_privs()
        if bpf is not None and nnp:
            load_bpf(*bpf)
        os.execve(path, p["args"], dict(kv.split("=", 1) for kv in env if "=" in kv))
    except BaseException as exc:  # noqa: BLE001 -- any failure must reach the caller
        _report(sync_w, exc)
    os._exit(127)


def _middle(root: str, container_id: str, p: dict[str, Any],
            stdio: tuple[int, int, int] | None, console: socket.socket | None,
            sync_w: int, join: Any = None) -> None:
    """In the middle child: read the state and config, join, fork the process.  ``join``:
    the cgroup left to join when the middle was forked into part of it (_fork_middle)."""
    st = statemod.load(root, container_id)
    if not st.pid or not os.path.exists(f"/proc/{st.pid}/ns"):
        raise errors.InvalidStateError("stopped", "exec", hint="the container is not running")
    with open(os.path.join(st.dir, statemod.CONFIG_COPY), "rb") as f:
        cfg = fastjson.loads(f.read(), what=f.name)
    spec = _join_spec(cfg, st.pid)
    bpf = None
    seccomp = (cfg.get("linux") or {}).get("seccomp")
    if seccomp:
        from labkit.engine.runtime.seccomp import load_flags, program

        # The compiled BPF cached under the state root: the same program the container's
        # init loaded, without libseccomp's ~10 ms.
        bpf = (program(seccomp, os.path.join(root, ".seccomp-cache")), load_flags(seccomp))
    if join is not None:
        join_cgroup(join)
    elif st.cgroup:
        from labkit.cgroups import open_cgroup

        cg = open_cgroup(st.cgroup)
        if cg.exists():
            join_cgroup(cg)
    host_dev = os.open("/dev", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if console else -1
    child_enter(spec, -1)  # joins only: no id-map handshake, the socket is unused
    if "mnt" not in spec.join:
        # No mount namespace of its own: the container is a chroot (config.py); follow it.
        os.chroot(f"/proc/{st.pid}/root")
        os.chdir("/")
    if console is not None:
        master, slave = _container_pty(host_dev)
        os.close(host_dev)
        size = console_size(p)
        if size is not None:
            # Before the process exists: its first TIOCGWINSZ (`stty size`) must see the
            # size asked for before start, not 0x0 (a resize after spawn() races it).
            set_winsize(master, *size)
        socket.send_fds(console, [b"m"], [master])  # runc's --console-socket, SCM_RIGHTS
        os.close(master)
        stdio = (slave, slave, slave)
    assert stdio is not None
    pid = os.fork()
    if pid == 0:
        _exec_child(p, stdio, console is not None, bpf, sync_w, "user" in spec.join)
    send_frame(sync_w, b"P", str(pid).encode())


def _fork_middle(root: str, container_id: str) -> tuple[int, Any]:
    """fork(2) the middle child: (pid, the cgroup it still has to join, or None).

    On a hybrid host the middle is born in the container's unified mirror (clone3
    CLONE_INTO_CGROUP, as create's intermediate is), so neither it nor the process it forks
    pays the 6-11 ms RCU wait of a cgroup.procs write; it then joins only the v1
    hierarchies.  None: the middle finds the cgroup in the state itself (and reports a
    container that is gone)."""
    try:
        st = statemod.load(root, container_id)
    except errors.LabkitError:
        return os.fork(), None
    if not st.cgroup:
        return os.fork(), None
    from labkit.cgroups import open_cgroup

    cg = open_cgroup(st.cgroup)
    if getattr(cg, "unified_dir", None) is None or not cg.exists():
        return os.fork(), None
    return _fork_intermediate(cg)


def spawn(root: str, container_id: str, p: dict[str, Any],
          stdio: tuple[int, int, int] | None, *, tty: bool = False) -> tuple[int, int | None]:
    """Start process ``p`` (an OCI process object) in running container ``container_id``.

    The runtime's state under ``root`` gives init's pid, the cgroup and the config (which
    namespaces to join, the seccomp profile).  ``stdio``: the three fds the process gets;
    with ``tty`` it is None and the middle child opens a pty *in the container's devpts*
    (after joining its mount namespace), so that ttyname(3) works inside, and sends the
    master back over a socketpair.  Everything that allocates runs in the forked middle
    child, so the caller's memory (a long-lived shim's) stays as it was.  The caller must
    be a child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER): the process becomes its child.
    With ``tty``, ``p["consoleSize"]`` is applied to the pty before the process is forked.
    Returns (host pid, pty master or None).
    Raises ExecutableNotFoundError (127), ExecutablePermissionError (126),
    InvalidStateError (not running), InvalidArgumentError, SyscallError.
    """
    if not p.get("args"):
        raise errors.InvalidArgumentError("process.args", "must name a program")
    console_size(p)  # refuse a bad size here, not in the middle child
    r, w = os.pipe2(os.O_CLOEXEC)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) if tty else (None, None)
    mid, join = _fork_middle(root, container_id)
    if mid == 0:
        code = 1
        try:
            os.close(r)
            _middle(root, container_id, p, stdio, theirs, w, join)
            code = 0
        except BaseException as exc:  # noqa: BLE001 -- any failure must reach the caller
            _report(w, exc)
        finally:
            os._exit(code)
    os.close(w)
    master: int | None = None
    try:
        try:
            frames = _read_frames(r, SYNC_TIMEOUT)
        except BaseException:
            _kill_reap(mid)  # stuck before reporting: do not wait for it forever
            raise
        os.waitpid(mid, 0)
        if ours is not None:
            ours.setblocking(False)  # the master was sent before the pid: no wait needed
            try:
                _, fds, _, _ = socket.recv_fds(ours, 16, 1)
                master = fds[0] if fds else None
            except BlockingIOError:
                master = None
    finally:
        os.close(r)
        for s in (ours, theirs):
            if s is not None:
                s.close()
    pid = 0
    for tag, payload in frames:
        if tag == b"P":
            pid = int(payload)
        elif tag == b"E":
            if pid:  # the process failed before execve and exited: reap it (our child now)
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
            if master is not None:
                os.close(master)
            raise _unpickle(payload)
    if not pid or (tty and master is None):
        if master is not None:
            os.close(master)
        raise errors.from_errno(32, "exec", f"container {container_id}",
                                hint="the helper died without reporting")
    return pid, master


def exec_process(root: str, container_id: str, args: list[str], *, process_file: str | None = None,
                 cwd: str | None = None, env: list[str] | None = None, user: str | None = None,
                 tty: bool = False, detach: bool = False, pid_file: str | None = None) -> int:
    """`labkit-runtime exec`: run ``args`` in ``container_id``; returns its exit code (0 at
    once with ``detach``).

    Raises InvalidStateError unless the container is running, InvalidArgumentError for a bad
    process, SyscallError from joining or setting up, ExecutableNotFoundError (127).
    """
    st = statemod.load(root, container_id)
    if st.refresh() != statemod.RUNNING:
        raise errors.InvalidStateError(st.status, "exec", hint="exec needs a running container")
    with open(os.path.join(st.dir, statemod.CONFIG_COPY), "rb") as f:
        cfg = fastjson.loads(f.read(), what=f.name)
    proc = build_process(cfg, args, process_file=process_file, cwd=cwd, env=env, user=user,
                         tty=tty)
    terminal = bool(proc.get("terminal"))
    if terminal and detach:
        raise errors.InvalidArgumentError("--tty", "a detached exec cannot have a terminal here",
                                          hint="drop --detach or --tty")
    syscalls.prctl(consts.PR_SET_CHILD_SUBREAPER, 1)
    # Without a terminal the process gets our own stdin/stdout/stderr.
    child_pid, master = spawn(root, container_id, proc, None if terminal else (0, 1, 2),
                              tty=terminal)
    if pid_file:
        from labkit.engine.runtime.create import _write_pid_file

        _write_pid_file(pid_file, child_pid)
    if detach:
        return 0
    from labkit.engine.runtime.run import FORWARDED, _pump, exit_code

    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: os.kill(child_pid, s))
    if master is not None:
        try:
            _pump(master, child_pid)
        finally:
            os.close(master)
    _, status = os.waitpid(child_pid, 0)
    return exit_code(status)
