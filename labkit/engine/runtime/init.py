"""The two processes `create` forks: the intermediate and the container init.

runc's model (libcontainer/nsenter, standard_init_linux.go), without a fresh interpreter:

    labkit-runtime ──fork──> intermediate: join the cgroup, then the namespaces
                                 (labkit.ns.apply.child_enter; the runtime writes the
                                 id maps), then fork ──> init (pid 1 of the new pid ns)
                             reports init's pid and exits
    init: rootfs (mounts, pivot_root), process attributes, seccomp, "ready";
          then blocks opening exec.fifo until `start` opens the other end; then execve.

The cgroup is joined *before* unsharing the cgroup namespace so that the container's cgroup
is the root of its cgroup namespace (cgroup_namespaces(7)).

Both report to the runtime through one pipe with frames (tag, length, payload):
``P`` init's pid (from the intermediate), ``R`` ready (from init), ``E`` a pickled
labkit.errors exception (from either).  The runtime reads until EOF, so a process that dies
without a word is noticed, never waited for.  Between fork and execve only system calls and
already-imported code run (STYLE C9): after pivot_root, our own files and the stdlib are
out of reach, so every module init needs is imported at the top of this file.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
import sys
import termios

# typing costs ~1.5 ms to import; annotations are strings here (PEP 563), and mypy treats
# any name TYPE_CHECKING as true (the same trick as labkit.ns).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

from labkit import errors
from labkit._sys import consts, syscalls, trace
from labkit._sys.libc import libc
from labkit._sys.seccomp import load_bpf
from labkit._sys.signals import reset_signals
from labkit.engine.runtime import config as configmod
from labkit.engine.runtime import hooks, process, rootfs
from labkit.ns.apply import child_enter, error_payload, send_frame


class InitArgs:
    """Everything the two children need, prepared by `create` before fork."""

    __slots__ = (
        "cfg",
        "console_sock",
        "fifo_fd",
        "hooks_fd",
        "host_cgroups",
        "pty",
        "seccomp",
        "sync_w",
    )

    def __init__(self, cfg: Any, sync_w: int, fifo_fd: int, pty: bool,
                 console_sock: int | None, seccomp: Any, host_cgroups: bool,
                 hooks_fd: int | None = None) -> None:
        self.cfg = cfg
        self.sync_w = sync_w
        self.fifo_fd = fifo_fd
        self.pty = pty
        self.console_sock = console_sock
        self.seccomp = seccomp
        self.host_cgroups = host_cgroups
        self.hooks_fd = hooks_fd


def _report(fd: int, exc: BaseException) -> None:
    try:
        send_frame(fd, b"E", error_payload(exc))
    except BaseException:  # the runtime is gone: stderr is all that is left  # noqa: BLE001 - reported, never swallowed
        print(f"labkit-runtime init: {exc}", file=sys.stderr)


def join_cgroup(cgroup: Any) -> None:
    """Put the calling (single-threaded) process into ``cgroup``.

    A backend may offer ``add_self()``: on cgroup v1, a thread moving *itself* through the
    "tasks" file skips the global cgroup_threadgroup_rwsem and its RCU grace period
    (kernel/cgroup/cgroup.c, cgroup_procs_write_start), ~12 ms -> ~0.4 ms here.  Without it,
    the generic add(pid) is used.
    """
    add_self = getattr(cgroup, "add_self", None)
    if add_self is not None:
        add_self()
    else:
        cgroup.add(os.getpid())


# netdevice(7): SIOCGIFFLAGS / SIOCSIFFLAGS take a struct ifreq (16-byte name, short flags;
# sizeof 40 on 64-bit).
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = struct.Struct("16sh22x")


def loopback_up() -> None:
    """Bring ``lo`` up in the caller's (new) network namespace.

    A new network namespace starts with ``lo`` down (network_namespaces(7)).  runc does
    this for every new network namespace (specconv gives it a "loopback" network) and so
    does crun: Docker's "none" is exactly that, an empty namespace with lo up.  Here, right
    after unshare(2), it costs two ioctls instead of a setns(2) round trip by the engine.
    """
    # Any socket of the namespace takes these ioctls, whatever its family (netdevice(7)):
    # an AF_UNIX pair from labkit._sys spares the socket module's import (labkit-runtime
    # keeps its start path light, tests/unit/test_import_cost.py).
    a, b = syscalls.socketpair()
    try:
        flags = _IFREQ.unpack(fcntl.ioctl(a, SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0)))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(a, SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | IFF_UP))
    except OSError as err:
        raise errors.from_errno(err.errno or 1, "ioctl SIOCSIFFLAGS", "lo",
                                hint="bringing up the new network namespace's loopback") from None
    finally:
        os.close(a)
        os.close(b)


def intermediate(a: InitArgs, cgroup: Any, ns_sock: int) -> NoReturn:
    """The intermediate child: cgroup, namespaces, fork init, report its pid, exit."""
    code = 1
    try:
        trace.mark("runtime.clone")
        if cgroup is not None:
            join_cgroup(cgroup)
        trace.mark("runtime.cgroup")
        child_enter(a.cfg.namespaces, ns_sock)
        trace.mark("runtime.ns")
        os.close(ns_sock)
        if "net" in a.cfg.namespaces.new:
            loopback_up()
        pid = os.fork()
        if pid == 0:
            container_init(a)
        send_frame(a.sync_w, b"P", str(pid).encode())
        code = 0
    except BaseException as exc:  # noqa: BLE001 - reported, never swallowed
        _report(a.sync_w, exc)
    finally:
        os._exit(code)


# close_range(2): the same number on every architecture (asm-generic/unistd.h).
_NR_CLOSE_RANGE, _CLOSE_RANGE_CLOEXEC = 436, 1 << 2


def _cloexec_all(keep: int = 2) -> None:
    # runc closes (marks CLOEXEC) every fd it did not mean to pass: whatever the caller
    # leaked must not reach the container.
    try:
        names = os.listdir("/proc/self/fd")
    except FileNotFoundError:
        # No /proc here (an exec into a chroot container): close_range(2) with
        # CLOSE_RANGE_CLOEXEC (Linux 5.11) marks them all without listing them.
        c_long = ctypes.c_long
        if libc().syscall(c_long(_NR_CLOSE_RANGE), c_long(keep + 1), c_long(0xFFFFFFFF),
                          c_long(_CLOSE_RANGE_CLOEXEC)) != 0:
            raise errors.from_errno(ctypes.get_errno(), "close_range", "CLOSE_RANGE_CLOEXEC") from None
        return
    for name in names:
        fd = int(name)
        if fd > keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listdir fd itself, already closed


# ioctl_tty(2) numbers (asm-generic/ioctls.h): unlock a pty master, open its peer.
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441


def open_pty(ptmx: str = "/dev/ptmx", dir_fd: int | None = None) -> tuple[int, int]:
    """(master, slave) of a new pty from the devpts behind ``ptmx``, both close-on-exec.

    Inside the container "/dev/ptmx" is its own devpts instance (newinstance), so the slave
    is /dev/pts/N *there* and ttyname() works; TIOCGPTPEER opens the slave from the master
    without a path lookup (Linux 4.13, ioctl_tty(2)).  ``dir_fd``: resolve a relative
    ``ptmx`` there (openat(2)), e.g. from a /dev opened before setns(2) into another mount
    namespace.
    """
    try:
        master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as err:
        raise errors.from_errno(err.errno or 5, "open", ptmx,
                                hint="process.terminal needs a devpts mount at /dev/pts") from None
    try:
        fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        os.close(master)
        raise errors.from_errno(err.errno or 5, "ioctl TIOCGPTPEER", ptmx) from None
    return master, slave


def _console(slave: int, own_mounts: bool = True) -> None:
    # runc: the container's terminal is also its /dev/console (a bind of /dev/pts/N).
    # Not without a mount namespace of its own: the bind would land on the host.
    if not own_mounts:
        return
    target = "/dev/console"
    if not os.path.exists(target):
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    syscalls.mount(os.ttyname(slave), target, None, consts.MS_BIND, None)


def _terminal_from_console_socket(sock: int, own_mounts: bool = True) -> None:
    """A pty in the container's devpts: master over ``sock`` (SCM_RIGHTS), slave as our tty."""
    import socket

    master, slave = open_pty()
    s = socket.socket(fileno=sock)
    try:
        socket.send_fds(s, [b"/dev/ptmx"], [master])
    finally:
        s.detach()
        os.close(sock)
        os.close(master)
    _console(slave, own_mounts)
    _controlling_tty(slave)


def _controlling_tty(slave: int) -> None:
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def _set_joined_uts_names(cfg: Any) -> None:
    """hostname/domainname in a UTS namespace joined by path (a new one got them in
    child_enter): the config names them for the container, wherever its namespace came from."""
    hostname, domainname = configmod.joined_uts_names(cfg)
    hint = "the joined UTS namespace must be owned by the container's user namespace"
    try:
        if hostname is not None:
            syscalls.sethostname(hostname)
        if domainname is not None:
            syscalls.setdomainname(domainname)
    except errors.SyscallPermissionError as err:
        raise errors.from_errno(err.errno or 1, err.syscall, err.filename, hint=hint) from None


def _read_to_eof(fd: int) -> bytes:
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


def _create_hooks(a: InitArgs) -> bytes:
    """Mounts are made, pivot_root is next: let the runtime run prestart and createRuntime,
    then run createContainer here (runtime.md "Lifecycle" steps 4-6).  Returns the state
    for startContainer (b"" without hooks)."""
    if a.hooks_fd is None:
        return b""
    send_frame(a.sync_w, b"H")
    data = _read_to_eof(a.hooks_fd)
    os.close(a.hooks_fd)
    creating, sep, created = data.partition(b"\n")
    if not sep:
        raise errors.from_errno(errno.EPIPE, "read", "hooks pipe",
                                hint="the runtime gave up before createContainer (a hook failed?)")
    hooks.run_phase(a.cfg.hooks, "createContainer", creating)
    return created


def _start_hooks(cfg_hooks: dict[str, Any], state: bytes, fifo: int) -> None:
    """startContainer, in the container just before execve; on failure tell `start` why
    through the exec fifo ("1" + message instead of "0") and exit: the container stops."""
    if not cfg_hooks.get("startContainer"):
        return
    try:
        # Not dumpable while the container's hook runs: /proc/1 (fds, mem, environ) of
        # its init is then out of its reach (ptrace access mode checks, proc(5)); the
        # execve of the program restores it (prctl(2) PR_SET_DUMPABLE).
        syscalls.prctl(consts.PR_SET_DUMPABLE, 0)
        hooks.run_phase(cfg_hooks, "startContainer", state)
    except BaseException as exc:  # noqa: BLE001 - reported to `start`, never swallowed
        msg = str(exc).encode()[:4000]
        os.write(fifo, b"1" + msg)
        os.close(fifo)
        os._exit(1)


def container_init(a: InitArgs) -> NoReturn:
    """pid 1 of the container: set everything up, say ready, wait for start, execve."""
    try:
        cfg = a.cfg
        p = cfg.process
        # Ignored signals survive execve (signal(7)): whatever ignored what in the chain
        # that started us (Python ignores SIGPIPE and SIGXFSZ), the container starts clean.
        reset_signals()
        os.setsid()
        _cloexec_all()
        _set_joined_uts_names(cfg)
        own = configmod.own_mounts(cfg)
        if own:
            cgroupns = "cgroup" in cfg.namespaces.new or "cgroup" in cfg.namespaces.join
            cgroup_dirs = rootfs.host_cgroup_dirs(cgroupns=cgroupns) if a.host_cgroups else {}
            rootfs.prepare(cfg, cgroup_dirs)
        trace.mark("runtime.mounts")
        started = _create_hooks(a)
        # The host's /proc, kept open across pivot_root, to reopen exec.fifo by its fd
        # without depending on the container mounting a /proc of its own.
        hostproc = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if own:
            rootfs.pivot(cfg.rootfs)
            rootfs.finalize(cfg)
        else:
            rootfs.enter_chroot(cfg)
        trace.mark("runtime.pivot_root")
        ready = b""
        if a.pty:
            # The runtime takes the master with pidfd_getfd(2): the number is in "R".
            master, slave = open_pty()
            _console(slave, own)
            _controlling_tty(slave)
            ready = str(master).encode()
        elif a.console_sock is not None:
            _terminal_from_console_socket(a.console_sock, own)
        if own:
            rootfs.apply_propagation(cfg)  # last mount change: after the /dev/console bind
        if p.get("rlimits"):
            process.set_rlimits(p["rlimits"])
        if p.get("oomScoreAdj") is not None:
            process.set_oom_score_adj(p["oomScoreAdj"])
        nnp = bool(p.get("noNewPrivileges"))
        if a.seccomp is not None and not nnp:
            load_bpf(*a.seccomp)  # needs CAP_SYS_ADMIN without no_new_privs: before caps drop
        in_userns = "user" in cfg.namespaces.new or "user" in cfg.namespaces.join
        process.switch_user(p, in_userns)
        cwd = p.get("cwd", "/")
        os.chdir(cwd)
        env = list(p.get("env") or [])
        path = process.lookup(p["args"][0], env, cwd)
        if nnp:
            process.no_new_privs()
        if a.seccomp is not None and nnp:
            load_bpf(*a.seccomp)  # last: the filter must allow only what execve needs from here
        trace.mark("runtime.ready")
        send_frame(a.sync_w, b"R", ready)
        os.close(a.sync_w)
    except BaseException as exc:  # noqa: BLE001 - reported, never swallowed
        _report(a.sync_w, exc)
        os._exit(1)
    try:
        # Blocks until `start` opens the fifo for reading (fifo(7)), then tells it we go.
        fd = os.open(f"self/fd/{a.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC, dir_fd=hostproc)
        # The host's /proc must be gone before any container code runs (a startContainer
        # hook is the container's own binary): through /proc/1/fd it would reach
        # /proc/1/root of the host.
        os.close(hostproc)
        os.close(a.fifo_fd)
        _start_hooks(cfg.hooks, started, fd)
        os.write(fd, b"0")
        os.close(fd)
        envd = dict(kv.split("=", 1) for kv in env if "=" in kv)
        trace.mark("runtime.exec")
        os.execve(path, p["args"], envd)
    except BaseException as exc:  # noqa: BLE001 - reported, never swallowed
        print(f"labkit-runtime init: exec {p['args'][0]!r} failed: {exc}", file=sys.stderr)
    os._exit(127)
