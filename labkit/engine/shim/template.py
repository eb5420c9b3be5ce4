"""Starting shims: a warm, single-threaded template process forks them (STYLE C9's fork server).

A fresh interpreter plus the runtime's modules costs ~70 ms and ~8 MB of private memory per
shim.  Instead the supervisor forks, before it starts any thread (gRPC's), one template that
has imported the shim and the runtime and frozen its heap (gc.freeze(): the collector then
never writes to those objects, so their pages stay shared copy-on-write).  For each shim
the template forks twice, containerd-shim's daemonizing dance:

    template ──fork──> child: setsid(2)  ──fork──> shim (session member, not leader)
    child exits at once, so the shim is orphaned and re-parents to init (or the nearest
    subreaper); the template reaps the child and answers with the shim's pid.

The template dies with the supervisor (PR_SET_PDEATHSIG), the shims do not: prctl(2)
clears the parent-death signal in every fork child.  The control socket is bound and
listening *before* the fork, so the supervisor can connect as soon as it has the pid.

``python -m labkit.engine.shim CONFIG_JSON`` does the same without a template.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
from typing import Any

from labkit import errors
from labkit._sys import consts, syscalls
from labkit.engine.shim import layout
from labkit.engine.shim.protocol import check_reply, decode, encode, reply_error


def _close_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _shim_main(cfg: dict[str, Any], sdir: str, ctl: socket.socket) -> None:
    from labkit.engine.shim.server import Shim

    _close_fds({ctl.fileno()})
    null = os.open(os.devnull, os.O_RDWR)
    log = os.open(os.path.join(sdir, layout.LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    os.umask(0o022)
    # prctl(2): orphans in our subtree (the container's init once the runtime's
    # intermediate exits) re-parent to us, so we can wait(2) for them.
    syscalls.prctl(consts.PR_SET_CHILD_SUBREAPER, 1)
    shim = Shim(cfg, sdir, ctl)
    shim.save_state()
    shim.run()
    layout.remove_sockets(cfg)
    layout.remove_dir(sdir)


def spawn_shim(cfg: dict[str, Any]) -> int:
    """Make the shim's dir and control socket, fork the shim; return its pid.

    ``cfg``: id, dir, bundle, runtime_root, terminal, stdin, stdin_once, log, labels,
    rootfs (what CreateTaskRequest carries).  AlreadyExistsError when the dir exists.
    """
    sdir = str(cfg["dir"])
    os.makedirs(os.path.dirname(sdir), mode=0o711, exist_ok=True)
    try:
        os.mkdir(sdir, 0o700)
    except FileExistsError:
        raise errors.AlreadyExistsError("shim", cfg["id"], hint=f"state dir {sdir} exists") from None
    try:
        layout.write_atomic(os.path.join(sdir, layout.CONFIG), cfg)
        ctl_path = layout.sockets(cfg)[0]
        os.makedirs(os.path.dirname(ctl_path), mode=0o711, exist_ok=True)
        if os.path.exists(ctl_path):
            os.unlink(ctl_path)  # a dead shim's of the same id: the dir check above passed
        ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ctl.bind(ctl_path)
        ctl.listen(64)
    except BaseException:
        layout.remove_dir(sdir)
        raise
    r, w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    os.close(r)
                    os.close(w)
                    _shim_main(cfg, sdir, ctl)
                except BaseException:  # noqa: BLE001 -- logged to shim.log, exit 1
                    import traceback

                    traceback.print_exc()
                    code = 1
                os._exit(code)
            os.write(w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(w)
    ctl.close()
    try:
        data = os.read(r, 32)
    finally:
        os.close(r)
        os.waitpid(child, 0)
    if not data:
        layout.remove_dir(sdir)
        layout.remove_sockets(cfg)
        raise errors.from_errno(32, "fork", "shim", hint="the shim's parent died before reporting")
    return int(data)


def serve(sock: socket.socket) -> None:
    """The template's loop: one JSON config per line in, {"ok", "pid"} per line out."""
    gc.freeze()
    f = sock.makefile("rb")
    for line in f:
        try:
            reply = {"ok": True, "pid": spawn_shim(decode(line))}
        except Exception as exc:  # noqa: BLE001 -- the supervisor gets every failure typed
            reply = reply_error(exc)
        sock.sendall(encode(reply))


# What a shim runs, imported in the supervisor *before* the template is forked: the pages
# are then shared by supervisor, template and every shim, and creating a container imports
# nothing.  Only what a shim runs: every resident page of the template is mapped by every
# shim and counts in its PSS, used or not (issue 3).  The runtime's own lazy imports are
# the runtime's to list (runtime/warm.py).
WARM = ("labkit.engine.shim.server", "labkit.engine.shim.ops", "labkit.engine.logs.jsonfile",
        "encodings.ascii", "pickle", "tty")

# Warmed in the supervisor only, *after* the template is forked: layout.short_sockets (the
# supervisor names each shim's sockets) needs hashlib, whose OpenSSL start-up leaves ~0.5 MB
# of heap (measured) that no shim uses.
SUPERVISOR_WARM = ("hashlib",)


def warm_up() -> None:
    """Import WARM and what the runtime imports lazily on the create path.

    Anything imported later is imported in every shim (or its create child) again: it costs
    milliseconds on the start path and private memory in each shim (found by diffing
    sys.modules around a create; an strace of a shim shows such imports as stat() storms).
    """
    import importlib

    from labkit.engine.runtime import warm

    for name in WARM:
        importlib.import_module(name)
    warm.warm_up()


class Template:
    """The supervisor's handle on its template process (use from one thread at a time)."""

    def __init__(self) -> None:
        warm_up()
        # Freeze here too, in the supervisor: its own collections would otherwise write to
        # the GC headers of every warm object, breaking the sharing of those pages with the
        # template and the shims (each shim's PSS counts shared pages / sharers).
        gc.collect()
        gc.freeze()
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the template
            try:
                a.close()
                syscalls.prctl(consts.PR_SET_PDEATHSIG, signal.SIGKILL)
                null = os.open(os.devnull, os.O_RDWR)
                for i in (0, 1):
                    os.dup2(null, i)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                _close_fds({b.fileno(), 2})
                serve(b)
            finally:
                os._exit(0)
        b.close()
        import importlib

        for name in SUPERVISOR_WARM:
            importlib.import_module(name)
        self.pid = pid
        self.sock = a
        self.rfile = a.makefile("rb")

    def spawn(self, cfg: dict[str, Any]) -> int:
        """Ask the template for a shim; returns its pid or raises the template's error."""
        self.sock.sendall(encode(cfg))
        line = self.rfile.readline()
        if not line:
            raise errors.from_errno(32, "read", "shim template", hint="the template died")
        return int(check_reply(decode(line))["pid"])

    def close(self) -> None:
        self.sock.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
