"""Notebook 08's lab "host": a network namespace with a labkit engine in it, both held by a
keeper process that removes them when the notebook closes the lab -- or dies.

Why a namespace of its own: the engine makes bridges (``lk0``, ``lk-<id>``), veth pairs and
an nftables table (``table inet labkit``); inside ``lk-nb8-<pid>`` they touch nothing of the
machine's, and deleting the namespace takes every one of them along.

Why a keeper process: nbval and Jupyter end a notebook's kernel with SIGKILL, so nothing
inside the kernel (atexit, finalizers) runs when a notebook fails midway.  The keeper
(``python -m labkit.lab.netlab NS TAG``, its own session) makes the namespace, starts the
engine in it, reports on stdout, then blocks reading stdin; ``NetLab.close()`` closes that
pipe, and the kernel's death closes it all the same.  On EOF the keeper stops the engine
(containers removed through the API, processes killed by pid, its temp dir unmounted and
deleted) and deletes the namespace.

The lab's tools run programs *inside* the lab namespace with ``nsenter --net`` (never ``ip
netns exec``, which remounts /sys) and the real Docker CLI against the lab engine.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from labkit import errors
from labkit.measure.peers import docker_cli
from labkit.measure.sandbox import LabEngine

__all__ = ["NetLab", "keeper_main"]


# -- the lab host ------------------------------------------------------------------------------

def _run(args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), env=env, capture_output=True, text=True, errors="replace",
                          timeout=timeout, check=False, input=stdin)


def _ip(*args: str) -> None:
    r = _run(["ip", *args])
    if r.returncode != 0:
        raise errors.LabkitError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def _read_line(stream: IO[str], timeout: float) -> str:
    """One line from a pipe, or '' after ``timeout`` seconds (select(2) on its fd)."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline().strip() if ready else ""


def keeper_main(ns: str, tag: str) -> int:
    """The keeper process (see NetLab): make the namespace, start the engine in it, report
    on stdout as one JSON line, wait for EOF on stdin, then undo both."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)           # a notebook interrupt is not ours
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # runs the finally below
    eng: LabEngine | None = None
    made = False
    try:
        _ip("netns", "add", ns)
        made = True
        _ip("-n", ns, "link", "set", "lo", "up")
        eng = LabEngine(tag, netns=ns)
        eng.start()
        print(json.dumps({"base": str(eng.base), "socket": str(eng.socket),
                          "env": eng.docker_env}), flush=True)
        sys.stdin.read()  # until close(), or the notebook's kernel is gone
    except Exception as err:  # noqa: BLE001 - reported to the notebook, which raises it
        try:
            print(json.dumps({"error": f"{type(err).__name__}: {err}"}), flush=True)
        except OSError:
            pass  # nobody is listening any more
        return 1
    finally:
        try:
            if eng is not None:
                eng.stop()
        finally:
            if made:
                _run(["ip", "netns", "del", ns])
    return 0


_OPEN: dict[str, NetLab] = {}  # the labs this process has open, by namespace name


class NetLab:
    """A network namespace ``lk-<tag>-<pid>`` (lo up) with a LabEngine running inside it.

    Both belong to a *keeper* process (``python -m labkit.lab.netlab``, its own session):
    it makes them, reports the engine's socket on its stdout, then blocks reading its stdin.
    ``close()`` closes that pipe; so does the kernel dying in any way, SIGKILL included (which
    is how nbval and Jupyter end a kernel, so an atexit hook alone would never run).  On EOF
    the keeper stops the engine (containers removed through the API, processes killed by
    pid, temp dir unmounted and deleted) and deletes the namespace, taking the bridges, the
    veths and the nft table with it.
    """

    def __init__(self, tag: str = "nb8") -> None:
        self.ns = f"lk-{tag}-{os.getpid()}"
        self.tag = tag
        self.keeper: subprocess.Popen[str] | None = None
        self.base: Path | None = None
        self.socket: Path | None = None
        self._env: dict[str, str] | None = None

    # life cycle
    def start(self, timeout: float = 90) -> NetLab:
        """Start the keeper and wait for its engine; a lab of this process still open under
        the same name (the set-up cell run again) is closed first."""
        if (old := _OPEN.pop(self.ns, None)) is not None:
            old.close()
        if os.path.exists(f"/run/netns/{self.ns}"):
            raise errors.ConflictError(f"network namespace {self.ns} already exists "
                                       "(a previous lab of this kernel?): close() it first")
        # start_new_session: out of the kernel's process group, which Jupyter signals as a
        # whole on interrupt (jupyter_client's LocalProvisioner.send_signal uses killpg)
        self.keeper = subprocess.Popen(
            [sys.executable, "-m", "labkit.lab.netlab", self.ns, self.tag],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        atexit.register(self.close)
        assert self.keeper.stdout is not None
        line = _read_line(self.keeper.stdout, timeout)
        said: dict[str, Any]
        try:
            said = json.loads(line) if line else {"error": "the keeper said nothing"}
        except ValueError:
            said = {"error": f"the keeper said {line!r}"}
        if "error" in said:
            self.close()
            raise errors.LabkitError(f"the network lab did not start: {said['error']}")
        self.base, self.socket = Path(said["base"]), Path(said["socket"])
        self._env = dict(said["env"])
        _OPEN[self.ns] = self
        return self

    def close(self, timeout: float = 120) -> None:
        """End the keeper (it stops the engine and deletes the namespace) and wait for it.
        Safe to call twice, and before start()."""
        keeper, self.keeper = self.keeper, None
        self._env = None
        atexit.unregister(self.close)
        if _OPEN.get(self.ns) is self:
            del _OPEN[self.ns]
        if keeper is None:
            return
        try:
            if keeper.stdin is not None:
                keeper.stdin.close()
            keeper.wait(timeout)
        except subprocess.TimeoutExpired:
            keeper.kill()  # by its pid: we started it
            keeper.wait()
        finally:
            if keeper.stdout is not None:
                keeper.stdout.close()
            if os.path.exists(f"/run/netns/{self.ns}"):  # the keeper died before its cleanup
                _run(["ip", "netns", "del", self.ns])

    def __enter__(self) -> NetLab:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def docker_env(self) -> dict[str, str]:
        """DOCKER_HOST (and a private DOCKER_CONFIG) for the real Docker CLI."""
        if self._env is None:
            raise errors.InvalidStateError("closed", "use", what="the network lab")
        return self._env

    def left_over(self) -> dict[str, bool]:
        """What close() must have removed: the namespace and the engine's temp dir."""
        return {"netns": os.path.exists(f"/run/netns/{self.ns}"),
                "engine dir": self.base is not None and self.base.exists()}

    # tools
    def docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The real Docker CLI against the lab engine."""
        return _run([docker_cli(), *args], env=self.docker_env, timeout=timeout)

    def must(self, *args: str, timeout: float = 60) -> str:
        """``docker ARGS`` that must succeed: its stdout (else an error with its stderr)."""
        r = self.docker(*args, timeout=timeout)
        if r.returncode != 0:
            raise errors.LabkitError(f"docker {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def inspect(self, ref: str, kind: str = "container") -> dict[str, Any]:
        out: list[dict[str, Any]] = json.loads(self.must(kind, "inspect", ref))
        return out[0]

    def host(self, *cmd: str, timeout: float = 30, stdin: str | None = None
             ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` on the lab host: in its network namespace, nothing else changed."""
        return _run(["nsenter", f"--net=/run/netns/{self.ns}", *cmd], timeout=timeout,
                    stdin=stdin)

    def in_container_net(self, container: str, *cmd: str, timeout: float = 60,
                         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a host program (say python) in a running container's network namespace only:
        it sees the container's eth0 and routes, and the host's files and clocks."""
        pid = int(self.inspect(container)["State"]["Pid"])
        if pid <= 0:
            raise errors.InvalidStateError("not running", "enter", what=f"container {container}")
        return _run(["nsenter", f"--net=/proc/{pid}/ns/net", *cmd], timeout=timeout,
                    stdin=stdin)

    # what the lab host sees
    def nft_chain(self, chain: str) -> list[str]:
        """The rules of one chain of labkit's table (``nft list chain inet labkit CHAIN``)."""
        r = self.host("nft", "list", "chain", "inet", "labkit", chain)
        if r.returncode != 0:
            return []
        return [ln.strip() for ln in r.stdout.splitlines()
                if ln.strip() and not ln.strip().startswith(("table", "chain", "}", "type"))]

    def fetch(self, url: str, timeout: float = 5) -> str:
        """``busybox wget -qO- URL`` on the lab host; '' when nothing answered in time.
        (No ``-T``: Debian 12's busybox 1.35 wget segfaults with it; the timeout is ours.)"""
        try:
            r = self.host("busybox", "wget", "-qO-", url, timeout=timeout)
        except subprocess.TimeoutExpired:
            return ""
        return r.stdout if r.returncode == 0 else ""

    def wait_fetch(self, url: str, tries: int = 50) -> str:
        """fetch() until it answers (a container's httpd takes a moment to listen)."""
        for _ in range(tries):
            if out := self.fetch(url, timeout=2):
                return out
            time.sleep(0.1)
        return ""


if __name__ == "__main__":  # the keeper: python -m labkit.lab.netlab NS TAG
    sys.exit(keeper_main(sys.argv[1], sys.argv[2]))
