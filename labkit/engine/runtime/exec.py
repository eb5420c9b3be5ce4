"""`labkit-runtime exec`: run one more process inside a running container (runc exec).

The new process joins what the container's init has: its cgroup, then each namespace the
config lists, through /proc/<init>/ns/<kind> (setns(2), user first and mnt last, by
labkit.ns.apply.child_enter; joining the mount namespace also moves root and cwd to the
container's root).  Joining a pid namespace applies to children only, so, as in create,
an intermediate forks the process that execs.  It then gets the container's process
attributes (config.json "process", overridden by --cwd/--env/--user/--tty or replaced by
--process FILE): rlimits, user, capabilities, no_new_privs, seccomp, and execve.
"""

from __future__ import annotations

import os
import signal
import sys

# typing costs ~1.5 ms to import; annotations are strings here (PEP 563), and mypy treats
# any name TYPE_CHECKING as true (the same trick as labkit.ns).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

from labkit import errors
from labkit._sys import consts, fastjson, syscalls
from labkit._sys.consts import OCI_NS_NAMES
from labkit._sys.seccomp import load_bpf
from labkit.engine.runtime import config as configmod
from labkit.engine.runtime import process as procmod
from labkit.engine.runtime import state as statemod
from labkit.engine.runtime.create import SYNC_TIMEOUT, _kill_reap, _read_frames, _unpickle
from labkit.engine.runtime.init import _controlling_tty, _report, join_cgroup, open_pty
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
    kinds = []
    for ent in (cfg.get("linux") or {}).get("namespaces") or []:
        kind = OCI_NS_NAMES.get(ent.get("type", ""))
        if kind is not None:
            kinds.append(kind)
    return NamespaceSpec(join={k: f"/proc/{init_pid}/ns/{k}" for k in kinds},
                         propagation="unchanged")


def container_pty(init_pid: int) -> tuple[int, int]:
    """A pty from the container's own devpts (/proc/PID/root/dev/ptmx resolves inside it,
    proc(5)), so ttyname() works in there; a host pty when it has no devpts."""
    try:
        return open_pty(f"/proc/{init_pid}/root/dev/ptmx")
    except errors.SyscallError:
        return os.openpty()


def _exec_child(proc: dict[str, Any], in_userns: bool, slave: int | None,
                bpf: tuple[bytes, int] | None, sync_w: int) -> NoReturn:
    try:
        if slave is not None:
            os.setsid()
            _controlling_tty(slave)
        if proc.get("rlimits"):
            procmod.set_rlimits(proc["rlimits"])
        nnp = bool(proc.get("noNewPrivileges"))
        if bpf is not None and not nnp:
            load_bpf(*bpf)
        procmod.switch_user(proc, in_userns)
        os.chdir(proc["cwd"])
        env = list(proc.get("env") or [])
        path = procmod.lookup(proc["args"][0], env, proc["cwd"])
        if nnp:
            procmod.no_new_privs()
        if bpf is not None and nnp:
            load_bpf(*bpf)
        send_frame(sync_w, b"R")
        os.close(sync_w)
    except BaseException as exc:  # noqa: BLE001 - reported to the runtime
        _report(sync_w, exc)
        os._exit(1)
    try:
        os.execve(path, proc["args"], dict(kv.split("=", 1) for kv in env if "=" in kv))
    except BaseException as exc:  # noqa: BLE001 - the runtime already returned "ready"
        print(f"labkit-runtime exec: {exc}", file=sys.stderr)
    os._exit(127)


def exec_process(root: str, container_id: str, args: list[str], *, process_file: str | None = None,
                 cwd: str | None = None, env: list[str] | None = None, user: str | None = None,
                 tty: bool = False, detach: bool = False, pid_file: str | None = None) -> int:
    """Run ``args`` in ``container_id``; returns its exit code (0 at once with ``detach``).

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
    if proc.get("terminal") and detach:
        raise errors.InvalidArgumentError("--tty", "a detached exec cannot have a terminal here",
                                          hint="drop --detach or --tty")
    spec = _join_spec(cfg, st.pid)
    bpf = None
    seccomp = (cfg.get("linux") or {}).get("seccomp")
    if seccomp:
        from labkit.engine.runtime.seccomp import load_flags, program

        bpf = (program(seccomp, os.path.join(root, ".seccomp-cache")), load_flags(seccomp))
    cg = None
    if st.cgroup:
        from labkit.cgroups import open_cgroup

        cg = open_cgroup(st.cgroup)
        if not cg.exists():
            cg = None
    master = slave = None
    if proc.get("terminal"):
        master, slave = container_pty(st.pid)
    syscalls.prctl(consts.PR_SET_CHILD_SUBREAPER, 1)
    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(sync_r)
            if cg is not None:
                join_cgroup(cg)
            child_enter(spec, -1)  # joins only: no id-map handshake, the socket is unused
            child = os.fork()
            if child == 0:
                _exec_child(proc, "user" in spec.join, slave, bpf, sync_w)
            send_frame(sync_w, b"P", str(child).encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the runtime
            _report(sync_w, exc)
        finally:
            os._exit(code)
    os.close(sync_w)
    if slave is not None:
        os.close(slave)
    try:
        frames = _read_frames(sync_r, SYNC_TIMEOUT)
    finally:
        os.close(sync_r)
        os.waitpid(pid, 0)
    child_pid = 0
    failure: BaseException | None = None
    ready = False
    for tag, payload in frames:
        if tag == b"P":
            child_pid = int(payload)
        elif tag == b"R":
            ready = True
        elif tag == b"E" and failure is None:
            failure = _unpickle(payload)
    if failure is not None or not ready:
        if child_pid:
            _kill_reap(child_pid)
        if master is not None:
            os.close(master)
        raise failure or errors.from_errno(32, "read", "exec sync pipe",
                                           hint="the process exited without reporting")
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
