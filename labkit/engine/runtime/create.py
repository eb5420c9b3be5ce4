"""`labkit-runtime create`: bundle -> a container whose init waits on its exec fifo.

Order (runtime.md "Lifecycle" steps 1-4, runc's create):
1. validate config.json and compile the seccomp profile: nothing exists yet, so a refusal
   leaves nothing behind;
2. make the state dir and exec.fifo, the cgroup with its limits;
3. fork the intermediate (labkit.engine.runtime.init), serve its id maps, read the sync
   pipe to EOF: init's pid and "ready", or the first error;
4. record state "created" atomically; write --pid-file.
Any failure in 2-4 undoes what was done, in reverse: kill and reap the processes, remove
the cgroup and the state dir.  Mounts need no undo: they live in the container's mount
namespace, which vanishes with its last process.
"""

from __future__ import annotations

import errno
import os
import sys

# typing costs ~1.5 ms to import; annotations are strings here (PEP 563), and mypy treats
# any name TYPE_CHECKING as true (the same trick as labkit.ns).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from labkit import errors
from labkit._sys import consts, fastjson, syscalls, trace
from labkit.engine.runtime import config as configmod
from labkit.engine.runtime import devices as device_rules
from labkit.engine.runtime import hooks as hookmod
from labkit.engine.runtime import state as statemod
from labkit.ns.frames import Reader, read_to_eof

# How long the runtime waits for init to report (a live init answers in milliseconds; this
# only bounds one stuck in a mount or a fuse filesystem).
SYNC_TIMEOUT = 60.0


def _read_frames(fd: int, timeout: float) -> list[tuple[bytes, bytes]]:
    """Every frame init and the intermediate wrote, up to EOF (every writer exited)."""
    return read_to_eof(fd, timeout, "container init sync pipe")


def _unpickle(payload: bytes) -> BaseException:
    # Imported here: pickle pulls in re (~2 ms) and is needed only when setup failed.
    import pickle

    try:
        exc = pickle.loads(payload)
    except Exception as err:  # a broken frame must still become a typed error  # noqa: BLE001 - reported, never swallowed
        return errors.from_errno(errno.EPROTO, "read", f"container init error frame: {err}")
    if isinstance(exc, BaseException):
        return exc
    return errors.from_errno(errno.EPROTO, "read", "container init error frame")


def _kill_reap(pid: int) -> None:
    # The runtime is a child subreaper, so an orphaned init is *our* child: killing it
    # before reaping can never hit a recycled pid.
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class _Undo:
    """Cleanup actions run in reverse on failure (the "nothing left behind" guarantee)."""

    def __init__(self) -> None:
        self.steps: list[Any] = []

    def push(self, fn: Any, *args: Any) -> None:
        self.steps.append((fn, args))

    def run(self) -> None:
        for fn, args in reversed(self.steps):
            try:
                fn(*args)
            except Exception:  # noqa: BLE001, S110 - best effort; the original error is reported
                pass
        self.steps.clear()


def _rm_state_dir(d: str) -> None:
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


def create(root: str, container_id: str, bundle: str, *, pid_file: str | None = None,
           console_socket: str | None = None) -> statemod.State:
    """Create container ``container_id`` from ``bundle``; returns its State ("created").

    process.terminal needs ``console_socket``, a unix socket that receives the pty master
    (runc's --console-socket protocol: one SCM_RIGHTS message).

    Raises InvalidArgumentError (bad config), AlreadyExistsError (id taken), SyscallError
    from any setup step (with the failing call and target), ExecutableNotFoundError.
    """
    return create_with_tty(root, container_id, bundle, pid_file=pid_file,
                           console_socket=console_socket)[0]


def create_with_tty(root: str, container_id: str, bundle: str, *, pid_file: str | None = None,
                    console_socket: str | None = None,
                    foreground: bool = False) -> tuple[statemod.State, int | None]:
    """create(); with ``foreground`` (`run` without --detach) and process.terminal but no
    console socket, init opens a pty in the container's devpts and makes it its controlling
    terminal; the master is returned for the caller to pump (else None)."""
    statemod.check_id(container_id)
    trace.mark("runtime.create", container_id, scope=True)  # its forks mark under this id
    cfg = configmod.load(bundle, container_id)
    if cfg.terminal and console_socket is None and not foreground:
        raise errors.InvalidArgumentError(
            "process.terminal", "a terminal needs --console-socket when the runtime detaches",
            hint="pass --console-socket, set process.terminal false, or use `run` in the foreground")
    if console_socket is not None and not os.path.exists(console_socket):
        raise errors.NotFoundError("console socket", console_socket)
    from labkit.cgroups import Resources, open_cgroup

    resources = Resources.from_oci(cfg.linux.get("resources"))
    from labkit.cgroups._oci import warnings as resource_warnings

    for msg in resource_warnings(cfg.linux.get("resources")):
        print(f"labkit-runtime: warning: {msg}", file=sys.stderr)  # runc warns, and goes on
    device_rules.rules(cfg.linux.get("resources"))  # validate now, apply after mkdir
    filt = None
    if cfg.linux.get("seccomp"):
        from labkit.engine.runtime.seccomp import load_flags, program

        profile = cfg.linux["seccomp"]
        filt = (program(profile, os.path.join(root, ".seccomp-cache")), load_flags(profile))
    cg = open_cgroup(cfg.cgroup_name)

    undo = _Undo()
    try:
        return _create(root, container_id, cfg, cg, resources, filt, undo, pid_file,
                       console_socket, cfg.terminal and console_socket is None)
    except BaseException as exc:
        undo.run()
        if isinstance(exc, hookmod.HookError):
            # runtime.md "Lifecycle": a failed create-time hook destroys the container
            # (step 12, the undo above), then the poststop hooks run (step 13).
            hookmod.run_phase(cfg.hooks, "poststop",
                              hookmod.state_json(hook_state(container_id, cfg, statemod.STOPPED, 0)))
        raise


def _create(root: str, cid: str, cfg: configmod.Config, cg: Any, resources: Any, filt: Any,
            undo: _Undo, pid_file: str | None, console_socket: str | None,
            pty: bool) -> tuple[statemod.State, int | None]:
    from labkit.engine.runtime.init import InitArgs, intermediate
    from labkit.ns.apply import parent_serve

    os.makedirs(root, mode=0o711, exist_ok=True)
    sdir = statemod.container_dir(root, cid)
    try:
        os.mkdir(sdir, 0o700)  # init reopens exec.fifo through /proc/self/fd, not this path
    except FileExistsError:
        raise errors.AlreadyExistsError("container", cid,
                                        hint=f"`labkit-runtime delete {cid}` first") from None
    undo.push(_rm_state_dir, sdir)
    # The config as created, for `exec` (runc keeps it in its state too): the bundle may
    # change or vanish while the container runs.
    # 0600: the config holds the process's Env (passwords, tokens).
    with os.fdopen(os.open(os.path.join(sdir, statemod.CONFIG_COPY),
                           os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb") as f:
        f.write(fastjson.dumps(cfg.raw).encode())
    fifo = os.path.join(sdir, statemod.EXEC_FIFO)
    os.mkfifo(fifo, 0o622)
    os.chmod(fifo, 0o622)  # mkfifo's mode went through our umask
    fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    undo.push(os.close, fifo_fd)

    if cg.exists():
        raise errors.ConflictError(f"cgroup {cfg.cgroup_name} already exists",
                                   hint="a container of that name was not deleted: delete --force")
    cg.create()
    undo.push(cg.remove)
    undo.push(cg.kill)
    cg.set(resources)
    if not device_rules.apply(cg, cfg.linux.get("resources")):
        raise errors.UnsupportedError(
            "linux.resources.devices", f"cgroup {cfg.cgroup_name} has no devices controller "
            "to enforce the device rules with; refusing to start the container",
            hint="mount the v1 devices hierarchy, or use cgroup v2 (eBPF device filter)")

    console_fd = None
    if console_socket is not None:
        import socket

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(console_socket)
        except OSError as err:
            s.close()
            raise errors.from_errno(err.errno or errno.EIO, "connect", console_socket) from None
        console_fd = s.detach()
        undo.push(os.close, console_fd)

    # Orphaned init processes re-parent to us, not to the host's pid 1 (prctl(2)).
    syscalls.prctl(consts.PR_SET_CHILD_SUBREAPER, 1)
    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    ns_parent, ns_child = syscalls.socketpair()
    # Hooks before pivot_root need a way back to init: it sends "H" once its mounts are
    # made and waits on this pipe for the state the hooks read (with init's host pid, which
    # it cannot see from inside its pid namespace); EOF without it means "give up".
    hooks_r = hooks_w = None
    if hookmod.has(cfg.hooks, "prestart", "createRuntime", "createContainer", "startContainer"):
        hooks_r, hooks_w = os.pipe2(os.O_CLOEXEC)
    uses_cgroupfs = any(m.get("type") == "cgroup" for m in cfg.raw.get("mounts") or [])
    args = InitArgs(cfg, sync_w, fifo_fd, pty, console_fd, filt, uses_cgroupfs, hooks_r)
    pid, join = _fork_intermediate(cg)
    if pid == 0:
        os.close(sync_r)
        os.close(ns_parent)
        if hooks_w is not None:
            os.close(hooks_w)  # else init would never see EOF on hooks_r
        intermediate(args, join, ns_child)
    os.close(sync_w)
    os.close(ns_child)
    if hooks_r is not None:
        os.close(hooks_r)
    map_error: BaseException | None = None
    try:
        parent_serve(pid, cfg.namespaces, ns_parent)
    except errors.LabkitError as exc:
        map_error = exc
    finally:
        os.close(ns_parent)
    init_pid = 0
    failure: BaseException | None = None
    ready = False
    master_no: int | None = None
    reader = Reader(sync_r, "container init sync pipe")
    timeout: float | None = SYNC_TIMEOUT
    hooks_asked = False
    try:
        while True:
            frame = reader.next(timeout)
            if frame is None:
                break
            tag, payload = frame
            if tag == b"P":
                init_pid = int(payload)
                undo.push(_kill_reap, init_pid)
            elif tag == b"R":
                ready = True
                master_no = int(payload) if payload else None
            elif tag == b"E" and failure is None:
                failure = _unpickle(payload)
            elif tag == b"H":
                hooks_asked = True
            # The intermediate sends "P" right after forking init, but init may say "H"
            # first: the hooks need init's pid, so they wait for both.
            if hooks_asked and init_pid and hooks_w is not None and map_error is None:
                w, hooks_w = hooks_w, None  # _create_hooks closes it, success or not
                _create_hooks(cid, cfg, init_pid, w)
                timeout = _container_hooks_timeout(cfg.hooks)
    finally:
        os.close(sync_r)
        if hooks_w is not None:
            os.close(hooks_w)
        os.waitpid(pid, 0)
    # A refused id map is the root cause; the child's EPIPE/handshake error follows from it.
    if map_error is not None:
        raise map_error
    if failure is not None:
        raise failure
    if not ready or not init_pid:
        raise errors.from_errno(errno.EPIPE, "read", "container init sync pipe",
                                hint="init exited without reporting (see stderr)")
    master = None
    if pty and master_no is not None:
        # init opened the pty in its own devpts; take a copy of the master from it.
        pidfd = os.pidfd_open(init_pid)
        try:
            master = syscalls.pidfd_getfd(pidfd, master_no)
        finally:
            os.close(pidfd)
        undo.push(os.close, master)
    start = statemod.proc_start_time(init_pid)
    st = statemod.State(
        id=cid, bundle=cfg.bundle, pid=init_pid, rootfs=cfg.rootfs, cgroup=cfg.cgroup_name,
        annotations=dict(cfg.raw.get("annotations") or {}), created=statemod.now_rfc3339(),
        init_start=start[0] if start else 0, owner="root" if os.geteuid() == 0 else str(os.geteuid()),
        dir=sdir, kernel_ids=statemod.kernel_ids(init_pid, _v2_dir(cg), "/" + cfg.cgroup_name))
    st.transition(statemod.CREATED)
    st.save()
    if pid_file:
        _write_pid_file(pid_file, init_pid)
    undo.steps.clear()
    return st, master


def _fork_intermediate(cg: Any) -> tuple[int, Any]:
    """fork(2) the intermediate; returns (pid, the cgroup it still has to join).

    On a hybrid host the child is born in the cgroup's unified mirror (clone3 with
    CLONE_INTO_CGROUP, labkit._sys.clone3): joining it by writing cgroup.procs would wait
    6-11 ms for an RCU grace period on every start.  It then joins only the v1 hierarchies
    (through "tasks", cheap).  Where clone3 cannot (older kernel, seccomp, threads), a plain
    fork and the full join."""
    d = getattr(cg, "unified_dir", None)
    if d is None:
        return os.fork(), cg
    try:
        fd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return os.fork(), cg  # the join below names the problem
    from labkit._sys.clone3 import fork_into_cgroup

    try:
        pid = fork_into_cgroup(fd)
    except errors.LabkitError:
        return os.fork(), cg
    finally:
        os.close(fd)
    return pid, (cg.without_unified() if pid == 0 else cg)


def _v2_dir(cg: Any) -> str | None:
    """The container's cgroup directory in the v2 hierarchy, whose inode is its cgroup id:
    the hybrid mirror of a V1Cgroup (None on a legacy host), or a V2Cgroup itself."""
    d: str | None = cg.unified_dir if hasattr(cg, "unified_dir") else os.fspath(cg.path)
    return d


def hook_state(cid: str, cfg: configmod.Config, status: str, pid: int) -> dict[str, Any]:
    """The state a hook reads before state.json exists (runtime.md "State")."""
    return {"ociVersion": statemod.OCI_VERSION, "id": cid, "status": status, "pid": pid,
            "bundle": cfg.bundle, "annotations": dict(cfg.raw.get("annotations") or {})}


def _create_hooks(cid: str, cfg: configmod.Config, init_pid: int, hooks_w: int) -> None:
    """Run prestart and createRuntime here (the runtime's namespaces), then hand init the
    state for createContainer and startContainer, and close the pipe (init reads to EOF)."""
    try:
        creating = hookmod.state_json(hook_state(cid, cfg, statemod.CREATING, init_pid))
        # runtime.md: prestart hooks run in the create operation, before createRuntime.
        hookmod.run_phase(cfg.hooks, "prestart", creating)
        hookmod.run_phase(cfg.hooks, "createRuntime", creating)
        created = hookmod.state_json(hook_state(cid, cfg, statemod.CREATED, init_pid))
        data = creating + b"\n" + created  # compact JSON holds no raw newline
        while data:
            data = data[os.write(hooks_w, data):]
    finally:
        os.close(hooks_w)


def _container_hooks_timeout(hooks: dict[str, Any]) -> float | None:
    # init now runs the createContainer hooks before it reports: wait for as long as their
    # timeouts allow, and without a limit when one of them has none (config.md: optional).
    total = SYNC_TIMEOUT
    for h in hooks.get("createContainer") or []:
        if h.get("timeout") is None:
            return None
        total += h["timeout"]
    return total


def _write_pid_file(path: str, pid: int) -> None:
    # runc writes the pid file atomically too: temp in the same directory, then rename.
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)
