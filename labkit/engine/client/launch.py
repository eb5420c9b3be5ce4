"""Start a labkit daemon when none answers, as Docker Desktop's CLI wakes its engine.

The daemon runs detached: its own session (setsid(2), so the terminal's SIGINT/SIGHUP do not
reach it), stdin from /dev/null, stdout and stderr appended to ``paths.run()/daemon.log``.
Readiness is the same check the Docker CLI makes first: ``GET /_ping`` answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from labkit import errors
from labkit.engine.client.transport import DaemonUnavailable, Transport

__all__ = ["DAEMON_CMD", "ensure_daemon", "ping", "spawn_daemon", "wait_ready"]

# The daemon's entry point (labkit.engine.daemon.main:main), run by this interpreter so that
# the same virtualenv serves both sides.
DAEMON_CMD = [sys.executable, "-c",
              "import sys; from labkit.engine.daemon.main import main; sys.exit(main())"]


def ping(socket_path: str | Path, timeout: float = 2.0) -> bool:
    """True when something answers ``GET /_ping`` with 200 on the socket."""
    try:
        resp = Transport(socket_path, timeout=timeout).request("GET", "/_ping")
        resp.read()
        return resp.status == 200
    except (OSError, errors.LabkitError):
        return False


def wait_ready(socket_path: str | Path, timeout: float = 30.0,
               proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Poll _ping until it answers; raise if the daemon died or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not ping(socket_path, timeout=1.0):
        if proc is not None and proc.poll() is not None:
            raise DaemonUnavailable(str(socket_path),
                                    f"the daemon exited with status {proc.returncode}"
                                    + (f"; see {log}" if log else ""))
        if time.monotonic() > deadline:
            raise DaemonUnavailable(str(socket_path), f"no answer to _ping after {timeout:.0f} s"
                                    + (f"; see {log}" if log else ""))
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def spawn_daemon(env: Mapping[str, str] | None = None, log: Path | None = None,
                 cmd: list[str] | None = None) -> subprocess.Popen[bytes]:
    """Start the daemon detached (own session), output to ``log``; returns its Popen."""
    from labkit.engine import paths

    full_env = dict(os.environ if env is None else env)
    if log is None:
        saved = os.environ.copy()
        os.environ.update(full_env)
        try:
            log = paths.run() / "daemon.log"
        finally:
            os.environ.clear()
            os.environ.update(saved)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out, open(os.devnull, "rb") as devnull:
        return subprocess.Popen(cmd or DAEMON_CMD, stdin=devnull, stdout=out, stderr=out,
                                env=full_env, start_new_session=True, close_fds=True)


def ensure_daemon(socket_path: str | Path, timeout: float = 30.0, quiet: bool = False) -> bool:
    """Make sure a daemon answers on ``socket_path``; start one if not.  True if started."""
    if ping(socket_path):
        return False
    from labkit.engine import paths

    log = paths.run() / "daemon.log"
    proc = spawn_daemon(log=log)
    if not quiet:
        print(f"labkit: no daemon answered on unix://{socket_path}; started one "
              f"(pid {proc.pid}, log {log})", file=sys.stderr)
    wait_ready(socket_path, timeout, proc=proc, log=log)
    return True
