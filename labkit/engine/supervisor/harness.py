"""A supervisor in a sandbox: temp LABKIT_RUN/LABKIT_ROOT, busybox bundles, full cleanup.

For privileged tests, the benchmark and notebooks (the live-restore demonstration):

    h = Harness(Path(tempfile.mkdtemp(prefix="lk-sv-")))
    h.start()                                   # labkit-supervisor as a subprocess
    b = h.bundle("counter", ["sh", "-c", "..."])
    h.client.create(h.new_id(), str(b)); ...
    h.kill_supervisor()                         # SIGKILL: the containers must not notice
    h.start()                                   # live-restore
    h.cleanup()                                 # every task, shim, runtime state, cgroup, dir

Cleanup kills only what it can prove it started: shims by the pid in their state dir,
containers through the runtime state under its own LABKIT_RUN.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from labkit import errors

_n = itertools.count()


class Harness:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.run = base / "run"
        self.root = base / "root"
        self.env = dict(os.environ, LABKIT_RUN=str(self.run), LABKIT_ROOT=str(self.root))
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: Any = None
        self.ids: list[str] = []
        self._rootfs: Path | None = None

    @property
    def socket(self) -> Path:
        return self.run / "supervisor.sock"

    @property
    def shims(self) -> Path:
        return self.run / "shims"

    def new_id(self, tag: str = "sv") -> str:
        cid = f"lk-{tag}-{os.getpid()}-{next(_n)}"
        self.ids.append(cid)
        return cid

    # -- supervisor ----------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Start labkit-supervisor and wait until it answers."""
        from labkit.engine.supervisor.client import SupervisorClient

        if self.socket.exists():
            self.socket.unlink()
        log = self._log()
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "labkit.engine.supervisor"],
                                         env=self.env, stdin=subprocess.DEVNULL, stderr=log)
        finally:
            os.close(log)
        end = time.monotonic() + timeout
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise errors.ConflictError(
                    f"supervisor did not start: {(self.base / 'supervisor.log').read_text()[-2000:]}")
            time.sleep(0.02)
        if self.client is not None:
            self.client.close()
        self.client = SupervisorClient(self.socket)

    def _log(self) -> int:
        # an fd the child inherits; ours is closed right after Popen copied it
        return os.open(self.base / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def kill_supervisor(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
            self.proc = None

    # -- bundles -------------------------------------------------------------------------
    def rootfs(self) -> Path:
        if self._rootfs is None:
            from labkit.engine.images.busybox import build_rootfs

            self._rootfs = build_rootfs(self.base / "rootfs")
        return self._rootfs

    def bundle(self, name: str, args: list[str], *, terminal: bool = False,
               env: list[str] | None = None) -> Path:
        """A bundle dir whose config.json (labkit-runtime spec) runs ``args`` on busybox."""
        from labkit.engine.runtime.spec import default_config

        d = self.base / "bundles" / name
        d.mkdir(parents=True, exist_ok=True)
        cfg = default_config()
        cfg["root"]["path"] = str(self.rootfs())
        cfg["process"]["args"] = args
        cfg["process"]["terminal"] = terminal
        if env is not None:
            cfg["process"]["env"] = env
        (d / "config.json").write_text(json.dumps(cfg))
        return d

    def process(self, args: list[str], **over: Any) -> dict[str, Any]:
        """An OCI process object for Exec (the spec's defaults, these args)."""
        from labkit.engine.runtime.spec import default_config

        p: dict[str, Any] = default_config()["process"]
        p.update({"args": args, "terminal": False, **over})
        return p

    # -- cleanup -------------------------------------------------------------------------
    def leftover_cgroups(self, root: Path = Path("/sys/fs/cgroup")) -> list[str]:
        """Cgroups lk/<id> of this harness's ids that still exist (after cleanup: none)."""
        return [f"{c.name}/lk/{cid}" for cid in self.ids for c in root.iterdir()
                if (c / "lk" / cid).is_dir()]

    def shim_pids(self) -> dict[str, int]:
        out = {}
        for d in self.shims.glob("*"):
            try:
                out[d.name] = int(json.loads((d / "state.json").read_text())["shim_pid"])
            except (OSError, ValueError, KeyError):
                pass
        return out

    def cleanup(self) -> None:
        """Delete every task, stop the supervisor, kill leftover shims and containers."""
        if self.client is not None and self.proc is not None:
            try:
                for t in self.client.list():
                    try:
                        self.client.delete(t.id, force=True)
                    except errors.LabkitError:
                        pass
            except (errors.LabkitError, OSError):
                pass
        self.kill_supervisor(signal.SIGTERM)
        if self.client is not None:
            self.client.close()
        for cid, pid in self.shim_pids().items():
            if _is_shim(pid, cid):
                os.kill(pid, signal.SIGKILL)
        rt = self.run / "runtime"
        if rt.exists():
            from labkit.engine.runtime.delete import delete

            for d in rt.iterdir():
                try:
                    delete(str(rt), d.name, force=True)
                except errors.LabkitError:
                    pass
        shutil.rmtree(self.base, ignore_errors=True)


def _is_shim(pid: int, cid: str) -> bool:
    """True when ``pid`` still is the shim of ``cid`` (its cwd-independent cmdline and
    the open control socket say so), so a recycled pid is never killed."""
    try:
        links = os.listdir(f"/proc/{pid}/fd")
        return any(cid in os.readlink(f"/proc/{pid}/fd/{fd}") for fd in links)
    except OSError:
        return False
