"""`labkit-runtime run`: create + start, then (in the foreground) wait, and delete.

The foreground runtime is the container's parent (a child subreaper, see create), so it
reaps init and exits with its status: the code, or 128+signal when killed (runc, sh).
Signals sent to the runtime are forwarded to init.  With process.terminal and no console
socket, the runtime owns the pty master: our stdin goes in (raw mode when it is a tty), the
container's output comes out, and window size changes follow SIGWINCH.
"""

from __future__ import annotations

import os
import select
import signal

from labkit.engine.runtime import state as statemod
from labkit.engine.runtime.create import create_with_tty
from labkit.engine.runtime.delete import delete
from labkit.engine.runtime.start import start

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)


def exit_code(status: int) -> int:
    """wait(2) status -> shell-style exit code: the code, or 128+signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _copy_winsize(src: int, dst: int) -> None:
    import fcntl
    import termios

    try:
        ws = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, ws)
    except OSError:
        pass


def _pump(master: int, pid: int) -> None:
    """Copy stdin -> pty master and master -> stdout until init exits."""
    pidfd = os.pidfd_open(pid)
    stdin_open = True
    master_open = True
    saved = None
    if os.isatty(0):
        import termios
        import tty

        saved = termios.tcgetattr(0)
        tty.setraw(0)
        _copy_winsize(0, master)
        signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(0, master))
    try:
        while True:
            fds = [pidfd] + ([master] if master_open else []) + ([0] if stdin_open else [])
            ready, _, _ = select.select(fds, [], [])
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    _write_all(master, data)
                else:
                    stdin_open = False
            if master in ready:
                try:
                    out = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed
                    out = b""
                if out:
                    _write_all(1, out)
                else:
                    master_open = False
            if pidfd in ready:
                break
        # init is gone; what it wrote last may still sit in the pty buffer.
        os.set_blocking(master, False)
        while master_open:
            try:
                out = os.read(master, 65536)
            except OSError:
                break
            if not out:
                break
            _write_all(1, out)
    finally:
        os.close(pidfd)
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def run(root: str, container_id: str, bundle: str, *, detach: bool = False,
        pid_file: str | None = None, console_socket: str | None = None,
        keep: bool = False) -> int:
    """Run ``container_id`` from ``bundle``; returns the exit code to exit with.

    ``detach``: return 0 once it runs.  ``keep``: leave the stopped container (and its
    cgroup, so its OOM count can be read) for a later `delete`; the exit code is then also
    recorded in its annotations as "org.labkit.exit-code".
    """
    st, master = create_with_tty(root, container_id, bundle, pid_file=pid_file,
                                 console_socket=console_socket, foreground=not detach)
    pid = st.pid
    if not detach:
        for sig in FORWARDED:
            signal.signal(sig, lambda s, _f: os.kill(pid, s))
    try:
        start(root, container_id)
    except BaseException:
        # A failed startContainer hook has already destroyed it (start.py).
        if os.path.isdir(statemod.container_dir(root, container_id)):
            delete(root, container_id, force=True)
        raise
    if detach:
        return 0
    if master is not None:
        try:
            _pump(master, pid)
        finally:
            os.close(master)
    _, status = os.waitpid(pid, 0)
    code = exit_code(status)
    if keep:
        st = statemod.load(root, container_id)
        st.annotations["org.labkit.exit-code"] = str(code)
        st.refresh()
        st.save()
    else:
        delete(root, container_id, force=True)
    return code
