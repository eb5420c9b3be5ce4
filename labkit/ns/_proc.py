"""What spawn() returns, and the frame reading its helpers share (labkit.ns._spawn, _forkserver)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import labkit
from labkit import errors
from labkit.ns import apply
from labkit.ns.frames import Reader

if TYPE_CHECKING:
    from labkit.ns._forkserver import ServedProcess

__all__ = ["Child", "await_exec", "helper_env"]

# Where the labkit package lives, so the helper imports this very copy of it even when the
# caller's sys.path came from a notebook's cwd rather than an installed distribution.
_ROOT = str(Path(labkit.__file__).resolve().parent.parent)


class Child:
    """A command running in its namespaces (subprocess.Popen's shape, for argv's process).

    ``pid`` is argv's pid as this process sees it, so /proc/<pid>/ns/* can be inspected.
    When the spec needed one more fork, the helper (``helper_pid``) is argv's parent and
    exits with argv's status; wait()/returncode report that status (-N for signal N).
    """

    def __init__(
        self, proc: subprocess.Popen[bytes] | ServedProcess, pid: int, argv: list[str]
    ) -> None:
        self._proc = proc
        self.pid = pid
        self.helper_pid = proc.pid
        self.args = argv
        self.stdin = proc.stdin
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def returncode(self) -> int | None:
        """argv's exit status once reaped (poll()), else None."""
        return self._proc.poll()

    def poll(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for argv to exit; returns its status (-N if killed by signal N).

        Raises subprocess.TimeoutExpired after ``timeout`` seconds.
        """
        return self._proc.wait(timeout)

    def communicate(
        self, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[bytes | None, bytes | None]:
        """Popen.communicate: feed stdin, read stdout/stderr to EOF, wait."""
        out, err = self._proc.communicate(input, timeout)
        return out, err

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """kill(2) argv's process.  No-op once it has been reaped.

        pid_namespaces(7): as pid 1 of a new pid namespace, argv ignores signals it has no
        handler for, except SIGKILL and SIGSTOP sent from an ancestor namespace.
        """
        if self._proc.poll() is not None:
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill(signal.SIGKILL)
        self._proc.wait()
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                f.close()

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} argv={self.args!r} returncode={self.returncode}>"


def helper_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _ROOT if not path else f"{_ROOT}{os.pathsep}{path}"
    return env


def await_exec(fd: int) -> int:
    """Read P+pid, then EOF (exec happened) or E (setup or execve failed: raise it)."""
    frames = Reader(fd, "spawn helper")
    pid: int | None = None
    while (frame := frames.next()) is not None:
        tag, payload = frame
        if tag == b"E":
            apply._raise_pickled(payload)
        elif tag == b"P":
            pid = int(payload)
    if pid is None:
        raise errors.from_errno(
            32, "recv", "spawn: the helper exited before starting the command",
            hint="see the helper's stderr (python -m labkit.ns.child)")
    return pid


