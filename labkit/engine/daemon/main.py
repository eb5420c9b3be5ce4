"""`labkit daemon`: serve the Docker Engine API v1.41 on a unix socket (dockerd's job).

Start-up: make the state dirs, make sure the busybox image exists, connect to the supervisor
on paths.supervisor_socket() (starting ``python -m labkit.engine.supervisor`` in its own
session when none answers, as dockerd starts containerd), restore the container records
(adopting running tasks: live-restore), then listen.  The daemon never parents a container:
SIGTERM/SIGINT stop the API server only, and a SIGKILL loses nothing but open requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine import paths

__all__ = ["main", "serve", "socket_answers", "start_supervisor"]

log = logging.getLogger("labkit.daemon")
_children: list[subprocess.Popen[bytes]] = []  # supervisors we started: reaped by supervise()


def socket_answers(path: Path) -> bool:
    """True when something accepts connections on the unix socket ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def start_supervisor() -> int:
    """Spawn the supervisor in its own session (it must outlive us); returns its pid."""
    exe = shutil.which("labkit-supervisor")
    argv = [exe] if exe else [sys.executable, "-m", "labkit.engine.supervisor"]
    paths.make_dir(paths.run(), paths.ROOT_MODE)
    # 0600 from open(2) itself: the log may quote a task's config; handed to the child
    logf = os.fdopen(os.open(paths.run() / "supervisor.log",
                             os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                             paths.SECRET_FILE_MODE), "ab")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                            start_new_session=True, close_fds=True)
    logf.close()
    _children.append(proc)
    # so tests and `labkit system` can find (and only ever kill) this very process
    (paths.run() / "supervisor.pid").write_text(f"{proc.pid}\n")
    return proc.pid


async def connect_supervisor(timeout: float = 15.0):  # type: ignore[no-untyped-def]
    from labkit.engine.supervisor.client import TasksClient
    sock = paths.supervisor_socket()
    if not socket_answers(sock):
        pid = start_supervisor()
        log.info("started supervisor pid %d", pid)
    tasks = TasksClient(sock)
    if not await tasks.ready(timeout):
        raise errors.UnsupportedError(
            "supervisor", f"no answer on {sock} after {timeout:.0f}s",
            hint=f"see {paths.run() / 'supervisor.log'}")
    return tasks


async def supervise(tasks: object, stop: asyncio.Event, period: float = 1.0) -> None:
    """Start the supervisor again when it dies while we run (dockerd does so for
    containerd); the shims keep the containers meanwhile and the new supervisor finds them,
    and the engine's pending Wait calls retry until it answers."""
    sock = paths.supervisor_socket()
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), period)
        for child in list(_children):
            if child.poll() is not None:  # reap it: no zombie under the daemon
                _children.remove(child)
        if stop.is_set() or await loop.run_in_executor(None, socket_answers, sock):
            continue
        log.warning("supervisor not answering on %s; starting it again", sock)
        start_supervisor()
        ready = getattr(tasks, "ready", None)
        if ready is not None:
            await ready(15.0)


async def start_swarm(engine: Any) -> Any:
    """The daemon's swarm membership (engine.swarm), brought back from disk: a manager
    starts its etcd member, a worker heartbeats, an autolocked manager waits locked."""
    from labkit.engine.daemon.serialize import version
    from labkit.engine.swarm.node import SwarmNode

    swarm = SwarmNode(engine_version=str(version().get("Version", "")))
    swarm.bind_engine(engine)  # issue 13: every active node runs its tasks on this engine
    await swarm.start()
    engine.swarm = swarm
    from labkit.engine.swarm import attach

    # a removed container's swarm addresses go back at once (rm, prune and --rm alike)
    engine.containers.removed_hooks.append(functools.partial(attach.container_removed, engine))
    return swarm


def _init_binary() -> str | None:
    for cand in ("/usr/bin/tini-static", "/usr/bin/docker-init"):
        if os.path.exists(cand):
            return cand
    return None


async def serve(sock: Path, ready: asyncio.Event | None = None,
                config_file: Path | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT."""
    from aiohttp import web

    from labkit.engine.containers.engine import Engine
    from labkit.engine.containers.logconfig import check_daemon_default
    from labkit.engine.daemon.app import make_app
    from labkit.engine.daemonconfig import load
    from labkit.engine.images.store import ensure_busybox

    config = load(config_file)  # first: a bad daemon.json stops the start, as in dockerd
    check_daemon_default(config.log_driver, config.log_opts)  # so does a bad default driver
    paths.secure_state()  # 0711 roots, 0700 state dirs: also fixes an older install's modes
    if sock.exists() or sock.is_symlink():
        if socket_answers(sock):
            raise errors.AlreadyExistsError("daemon", str(sock), hint="another labkit daemon "
                                            "answers there; stop it or set LABKIT_SOCKET")
        sock.unlink()
    try:
        await asyncio.get_running_loop().run_in_executor(None, ensure_busybox)
    except errors.LabkitError as err:  # the API still serves; `run busybox` will 404
        log.warning("no busybox image: %s (hint: %s)", err, err.hint)
    tasks = await connect_supervisor()
    engine = Engine(tasks, init_binary=_init_binary(), config=config, networking=True)
    await engine.restore()
    swarm = await start_swarm(engine)
    from labkit.engine.build.recovery import sweep as sweep_builds
    await sweep_builds(engine)  # a build killed with the daemon: its container goes
    runner = web.AppRunner(make_app(engine), access_log=None, handler_cancellation=False)
    await runner.setup()
    # open waits/attach/log streams are cut after 1 s at shutdown: clients see EOF, the
    # containers go on (live-restore)
    site = web.UnixSite(runner, str(sock), shutdown_timeout=1.0)
    await site.start()
    os.chmod(sock, 0o660)
    (paths.run() / "labkit-daemon.pid").write_text(f"{os.getpid()}\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("labkit daemon listening on %s", sock)
    watchdog = asyncio.create_task(supervise(tasks, stop))
    if ready is not None:
        ready.set()
    await stop.wait()
    await watchdog
    await runner.cleanup()  # containers keep running: live-restore
    with contextlib.suppress(Exception):
        await swarm.close()  # the etcd member stops with us; the swarm state stays on disk
    engine.close()
    with contextlib.suppress(Exception):
        await engine.aclose()
    with contextlib.suppress(Exception):
        await tasks.close()


def parser(prog: str = "labkit daemon") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Serve the Docker Engine API v1.41 "
                                "on a unix socket (DOCKER_HOST=unix://<socket>).")
    p.add_argument("--socket", "-H", default=None,
                   help=f"unix socket path (default {paths.daemon_socket()})")
    p.add_argument("--debug", "-D", action="store_true", help="log every request")
    p.add_argument("--config-file", type=Path, default=None,
                   help="daemon.json to read (default $LABKIT_CONFIG or /etc/labkit/daemon.json)")
    return p


def main(argv: list[str] | None = None, prog: str = "labkit daemon") -> int:
    args = parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sock = Path((args.socket or str(paths.daemon_socket())).removeprefix("unix://"))
    try:
        asyncio.run(serve(sock, config_file=args.config_file))
    except errors.LabkitError as err:
        print(f"labkit daemon: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
