"""A throw-away labkit engine for notebooks, tests and benchmarks: daemon + supervisor in temp dirs.

``LabEngine.start()`` makes ``/tmp/lk-<tag>-*/{root,run}``, points LABKIT_ROOT, LABKIT_RUN and
LABKIT_SOCKET there, starts ``labkit daemon`` (which starts its supervisor, as dockerd starts
containerd) and waits for ``_ping``.  ``stop()`` removes every container through the API, then
kills the daemon, the supervisor and any shim left by pid (never by name), unmounts what is left
under the temp dir and deletes it.  ``crash()`` is the live-restore experiment's SIGKILL of
daemon and supervisor; ``start()`` again adopts the running containers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine.client import Client
from labkit.engine.client.launch import DAEMON_CMD, spawn_daemon, wait_ready
from labkit.measure import parentcg

__all__ = ["LabEngine", "ProcRow", "process_rows"]


@dataclass(frozen=True, slots=True)
class ProcRow:
    """One process of the engine's tree (psutil), with its role."""

    pid: int
    ppid: int
    sid: int
    role: str
    name: str
    cmdline: str
    rss_kib: int


def _role(cmd: str, container_pids: set[int], pid: int) -> str:
    if pid in container_pids:
        return "container"
    for key, role in (("labkit.engine.daemon", "daemon"), ("labkit daemon", "daemon"),
                      ("labkit.engine.supervisor", "supervisor"),
                      ("labkit-supervisor", "supervisor"), ("labkit.engine.shim", "shim"),
                      ("labkit-shim", "shim"), ("labkit-runtime", "runtime")):
        if key in cmd:
            return role
    return "container" if container_pids else "process"


class LabEngine:
    """One daemon + supervisor pair with its own state and sockets."""

    def __init__(self, tag: str = "lab", config: dict[str, Any] | None = None, *,
                 netns: str | None = None) -> None:
        # Keep the tag short: the shims' unix sockets live under LABKIT_RUN, and a socket
        # path must fit in sun_path (108 bytes, unix(7)).
        if len(tag) > 4:
            raise ValueError(f"tag {tag!r}: at most 4 characters (unix socket path limit)")
        self.base = Path(tempfile.mkdtemp(prefix=f"lk-{tag}-", dir="/tmp"))
        self.root, self.run = self.base / "root", self.base / "run"
        self.socket = self.run / "labkit.sock"
        self.env = dict(os.environ, LABKIT_ROOT=str(self.root), LABKIT_RUN=str(self.run),
                        LABKIT_SOCKET=str(self.socket))
        # Always our own daemon.json (empty by default): a lab daemon never picks up the
        # machine's /etc/labkit/daemon.json, and a test states the config it relies on.
        self.config_file = self.base / "daemon.json"
        # netns: a network namespace the caller made (/run/netns/NAME); the daemon and its
        # supervisor run in it, so they reach what listens on that netns's loopback (a
        # registry, say) and nothing of the host's.  Its bridges and nft table live there.
        self.netns = netns
        self.set_config(config or {})
        self.env["LABKIT_CONFIG"] = str(self.config_file)
        self.daemon_pid: int | None = None
        # every engine process we ever saw, with its start time: killed at stop only if the
        # pid still names the same process (pids are reused)
        self.known_pids: dict[int, float] = {}
        # The containers' shared parent cgroup outlives them; a lab engine that caused it
        # removes it again at stop (measure.parentcg).
        self._made_parent = parentcg.missing()

    def set_config(self, config: dict[str, Any]) -> None:
        """Write the daemon.json the next start() reads (a running daemon keeps its own).

        Without a netns of its own, a lab daemon shares the machine's network namespace:
        it then runs with ``"bridge": "none"`` unless the config says otherwise, so no lab
        engine makes bridges or nftables rules in the machine's own namespace."""
        if self.netns is None and "bridge" not in config:
            config = {**config, "bridge": "none"}
        self.config_file.write_text(json.dumps(config, indent=1) + "\n")

    @property
    def docker_env(self) -> dict[str, str]:
        """Environment for the real Docker CLI: DOCKER_HOST on our socket, no user config."""
        env = dict(self.env, DOCKER_HOST=f"unix://{self.socket}")
        env["DOCKER_CONFIG"] = str(self.base / "docker-config")
        return env

    def client(self) -> Client:
        return Client(self.socket)

    def start(self, timeout: float = 60.0) -> LabEngine:
        """Start (or restart) the daemon; returns self once it answers _ping."""
        for d in (self.root, self.run):
            d.mkdir(parents=True, exist_ok=True)
        first = self.daemon_pid is None
        cmd = None
        if self.netns:
            # nsenter execs the daemon in place (the pid stays the daemon's); not `ip netns
            # exec`, which also remounts /sys and hides /sys/fs/cgroup from the daemon
            cmd = ["nsenter", f"--net=/run/netns/{self.netns}", *DAEMON_CMD]
        proc = spawn_daemon(self.env, log=self.run / "daemon.log", cmd=cmd)
        self.daemon_pid = proc.pid
        try:
            wait_ready(self.socket, timeout, proc=proc, log=self.run / "daemon.log")
        except errors.LabkitError as err:
            log = (self.run / "daemon.log").read_text(errors="replace")[-2000:]
            err.add_note(f"the lab daemon's log ends:\n{log}")
            if first:  # nothing of ours is running yet: leave nothing behind
                self.stop()
            raise
        self._remember()
        return self

    def _remember(self) -> None:
        for pids in self.engine_pids().values():
            for pid in pids:
                if (t := _start_time(pid)) is not None:
                    self.known_pids[pid] = t

    def _shim_pids(self) -> set[int]:
        """Shim pids from their state files (shims/<id>/state.json "shim_pid")."""
        import json

        out: set[int] = set()
        for state in (self.run / "shims").glob("*/state.json"):
            try:
                pid = json.loads(state.read_text()).get("shim_pid")
            except (OSError, ValueError):
                continue
            if isinstance(pid, int) and pid > 0:
                out.add(pid)
        return out

    def engine_pids(self) -> dict[str, list[int]]:
        """{role: [pid...]}: daemon, supervisor, shim template, shim (found by LABKIT_RUN)."""
        import psutil

        shims = self._shim_pids()
        mine: dict[int, tuple[int, str]] = {}
        for p in psutil.process_iter(["pid", "ppid", "cmdline"]):
            try:
                env = p.environ()
            except (psutil.Error, OSError):
                continue
            if env.get("LABKIT_RUN") == str(self.run):
                mine[p.pid] = (p.info["ppid"], " ".join(p.info["cmdline"] or []))
        out: dict[str, list[int]] = {}
        for pid, (ppid, cmd) in sorted(mine.items()):
            role = _role(cmd, set(), pid)
            if pid in shims:
                role = "shim"
            elif role == "supervisor":
                role = _supervisor_kin(pid, ppid, mine, shims)
            if role in ("daemon", "supervisor", "shim", "shim template"):
                out.setdefault(role, []).append(pid)
        return out

    def processes(self, extra: dict[str, int] | None = None) -> list[ProcRow]:
        """The engine's processes: ``extra`` (e.g. {"client": pid}), daemon, supervisor, shims
        and the containers below the shims, with pid, parent, session and RSS (psutil)."""
        import psutil

        pids = self.engine_pids()
        rows: list[ProcRow] = []
        seen: set[int] = set()
        groups = [(k, [v]) for k, v in (extra or {}).items()] + [
            (role, pids.get(role, [])) for role in ("daemon", "supervisor", "shim template",
                                                    "shim")]
        for role, group in groups:
            for pid in group:
                try:
                    top = psutil.Process(pid)
                    procs = [top] + (top.children(recursive=True) if role == "shim" else [])
                except psutil.Error:
                    continue
                for p in procs:
                    if p.pid in seen:
                        continue
                    seen.add(p.pid)
                    try:
                        cmd = " ".join(p.cmdline())
                        rows.append(ProcRow(p.pid, p.ppid(), os.getsid(p.pid),
                                            role if p.pid == pid else "container", p.name(),
                                            cmd[:80], p.memory_info().rss // 1024))
                    except (psutil.Error, OSError):
                        continue
        return rows

    def crash(self) -> list[int]:
        """SIGKILL the daemon and the supervisor (not the shims); returns the pids killed."""
        pids = self.engine_pids()
        killed = pids.get("daemon", []) + pids.get("supervisor", [])
        killed += pids.get("shim template", [])
        for pid in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _wait_gone(killed)
        return killed

    def remove_all(self) -> None:
        """Remove every container through the API (force), as `docker rm -f $(docker ps -aq)`."""
        c = self.client().containers
        for item in c.list(all=True):
            try:
                c.remove(item["Id"], force=True)
            except Exception:  # noqa: BLE001,S110 - best effort; the kill below is the backstop
                pass

    def stop(self) -> None:
        """Remove all containers, kill our processes by pid, unmount and delete the temp dirs."""
        try:
            self.remove_all()
        except Exception:  # noqa: BLE001,S110 - the daemon may already be gone
            pass
        self._remember()
        pids = self.engine_pids()
        order = (pids.get("daemon", []) + pids.get("supervisor", [])
                 + pids.get("shim template", []) + pids.get("shim", []))
        stale = [p for p, t in self.known_pids.items()
                 if p not in order and _start_time(p) == t]
        for pid in order + stale:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _wait_gone(order)
        _unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        if self._made_parent:
            parentcg.remove()  # another engine's container still inside: it stays theirs

    def __enter__(self) -> LabEngine:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sid(pid: int) -> int:
    try:
        return os.getsid(pid)
    except OSError:
        return -1


def _supervisor_kin(pid: int, ppid: int, mine: dict[int, tuple[int, str]],
                    shims: set[int]) -> str:
    """Which of the processes that run the supervisor's code ``pid`` is.

    The template, the shims and the shims' own short-lived children (the fork that runs
    the runtime's create, the runtime's intermediate) are all forks of the supervisor, with
    its command line.  Told apart by the tree: the supervisor leads its own session (the
    daemon starts it with setsid); the template is its child in that session; anything
    below a shim is the container's business (crash() must never kill it: a create child
    killed there is no supervisor crash); the rest is a shim that has not yet written its
    state.json (or the template's setsid child about to exit)."""
    def runs_supervisor(p: int) -> bool:
        return p in mine and _role(mine[p][1], set(), p) == "supervisor"

    if _sid(pid) == pid and not runs_supervisor(ppid):
        return "supervisor"
    if runs_supervisor(ppid) and ppid not in shims and _sid(ppid) == ppid == _sid(pid):
        return "shim template"  # the pre-imported process shims are forked from
    up, seen = ppid, {pid}
    while up in mine and up not in seen:
        if up in shims:
            return "shim child"
        seen.add(up)
        up = mine[up][0]
    return "shim"


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _wait_gone(pids: list[int], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            try:  # reap it if it is our child
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.01)


def _unmount_under(base: Path) -> None:
    """umount2(MNT_DETACH) every mount below ``base``, deepest first (mount(8) --lazy)."""
    import subprocess

    with open("/proc/self/mounts") as f:
        targets = [line.split()[1] for line in f if line.split()[1].startswith(str(base))]
    for t in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", t], check=False, capture_output=True)


def process_rows(engine: LabEngine) -> list[ProcRow]:
    """Rows for a table: the engine's processes, daemon first."""
    return engine.processes()
