"""The networking suite's daemons: every test runs once against dockerd, once against labkit.

``netdaemon`` (module scope, params "dockerd" and "labkit") starts one daemon inside a
network namespace made here (``lk-nt-<kind>-<pid>``), which is the containers' "host":

* dockerd: Debian's docker.io with its own --data-root/--exec-root/--pidfile/-H in a short
  temp dir (containerd's socket must fit sun_path), the default bridge and iptables ON,
  --live-restore, so the behaviour under test is Docker's stock one, only in our netns.
  nsenter --net, never `ip netns exec` (it remounts /sys; dockerd then finds no cgroups).
* labkit: labkit.measure.sandbox.LabEngine(tag, netns=NAME).

Next to the daemon's netns a peer netns ``lk-nt-p<kind>-<pid>`` hangs on a veth pair
(daemon side lkntd<pid> 10.231.0.1/24, peer 10.231.0.2/24, the peer's default route back via
10.231.0.1): "the outside world" for --internal and DNS-forwarding tests.  Every netns,
link, mount and process is removed at teardown, also when a test failed.

Run (root): ``.venv/bin/python -m pytest --privileged tests/blackbox/net`` (``-k dockerd`` or
``-k labkit`` for one daemon).  Without dockerd installed its param skips.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.measure.peers import docker_cli

PEER_HOST_ADDR = "10.231.0.1"
PEER_ADDR = "10.231.0.2"
_counter = itertools.count()


def _sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check,
                          timeout=timeout)


def _wait_sock(sock: Path, proc: subprocess.Popen[bytes] | None, log: Path,
               timeout: float = 60.0) -> None:
    from labkit.engine.client.launch import wait_ready

    wait_ready(sock, timeout, proc=proc, log=log)


class NetDaemon:
    """One daemon in its own netns, driven with the real Docker CLI and docker-py."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        pid = os.getpid()
        self.netns = f"lk-nt-{kind[:2]}-{pid}"
        self.peer_netns = f"lk-nt-p{kind[:2]}-{pid}"
        self.peer_link = f"lkntd{pid}"[:15]
        self.dir = Path(tempfile.mkdtemp(prefix="lk-nt-", dir="/tmp"))
        self.sock = self.dir / "docker.sock"
        self.env: dict[str, str] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.lab: Any = None
        self.cli = docker_cli()

    # ---- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        _sh("ip", "netns", "add", self.netns)
        _sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        self._peer_up()
        if self.kind == "dockerd":
            self._start_dockerd()
            self._load_busybox()
        else:
            from labkit.measure.sandbox import LabEngine

            self.lab = LabEngine("nt", netns=self.netns)
            self.lab.start()
            self.sock = self.lab.socket
            self.env = dict(self.lab.docker_env)
        self.env["DOCKER_CONFIG"] = str(self.dir / "docker-config")

    def _peer_up(self) -> None:
        p, ns = self.peer_link, self.netns
        _sh("ip", "netns", "add", self.peer_netns)
        _sh("ip", "-n", ns, "link", "add", p, "type", "veth", "peer", "name", "eth0",
            "netns", self.peer_netns)
        _sh("ip", "-n", ns, "addr", "add", f"{PEER_HOST_ADDR}/24", "dev", p)
        _sh("ip", "-n", ns, "link", "set", p, "up")
        _sh("ip", "-n", self.peer_netns, "addr", "add", f"{PEER_ADDR}/24", "dev", "eth0")
        _sh("ip", "-n", self.peer_netns, "link", "set", "eth0", "up")
        _sh("ip", "-n", self.peer_netns, "link", "set", "lo", "up")
        _sh("ip", "-n", self.peer_netns, "route", "add", "default", "via", PEER_HOST_ADDR)

    def _dockerd_cmd(self) -> list[str]:
        d = self.dir
        return ["nsenter", f"--net=/run/netns/{self.netns}", "dockerd",
                "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
                "--pidfile", str(d / "dockerd.pid"), "-H", f"unix://{self.sock}",
                "--live-restore"]

    def _start_dockerd(self) -> None:
        if shutil.which("dockerd") is None:
            pytest.skip("dockerd is not installed (apt-get install docker.io)")
        log = open(self.dir / "dockerd.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(self._dockerd_cmd(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log, start_new_session=True)
        log.close()
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")
        _wait_sock(self.sock, self.proc, self.dir / "dockerd.log")

    def _load_busybox(self) -> None:
        from labkit.engine.images.busybox import pack_rootfs_layer

        tar = self.dir / "busybox.tar"
        pack_rootfs_layer(tar, compression="none")
        r = self.docker("import", "--change", 'CMD ["sh"]', str(tar), "busybox:latest",
                        timeout=300)
        tar.unlink()
        assert r.returncode == 0, r.stderr

    def restart(self, between: Callable[[], None] | None = None) -> None:
        """Stop the daemon the way live-restore survives and start it again; ``between``
        runs while no daemon is up."""
        if self.kind == "dockerd":
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
            if between is not None:
                between()
            self._start_dockerd()
        else:
            self.lab.crash()
            if between is not None:
                between()
            self.lab.start()

    def stop(self) -> None:
        try:
            with contextlib.suppress(Exception):
                names = self.docker("ps", "-aq", timeout=30).stdout.split()
                if names:
                    self.docker("rm", "-f", *names, timeout=120)
                self.docker("network", "prune", "-f", timeout=60)
            if self.kind == "dockerd":
                self._stop_dockerd()
            elif self.lab is not None:
                self.lab.stop()
        finally:
            for m in _mounts_under(self.dir):
                _sh("umount", "-l", m, check=False)
            _sh("ip", "netns", "delete", self.peer_netns, check=False)
            _sh("ip", "netns", "delete", self.netns, check=False)
            shutil.rmtree(self.dir, ignore_errors=True)

    def _stop_dockerd(self) -> None:
        if self.proc is None:
            return
        # stop() removed every container first; SIGTERM lets dockerd tidy its links and
        # rules.  With --live-restore its containerd child may outlive it: any process
        # whose command line names our temp dir (containerd, a shim) is ours to end.
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in _pids_with_arg(str(self.dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # ---- clients ----------------------------------------------------------------------------
    def docker(self, *args: str, input: str | None = None, timeout: float = 60,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The real Docker CLI against this daemon (text mode)."""
        return subprocess.run([self.cli, *args], env={**self.env, **(env or {})}, input=input,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def ok(self, *args: str, **kw: Any) -> str:
        """docker(...) that must exit 0; its stdout."""
        r = self.docker(*args, **kw)
        assert r.returncode == 0, f"docker {' '.join(args)}: {r.returncode} {r.stderr}"
        return r.stdout

    def py(self) -> Any:
        import docker

        return docker.DockerClient(base_url=f"unix://{self.sock}", timeout=60)

    def host(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A command in the daemon's netns (the containers' host)."""
        return _sh("nsenter", f"--net=/run/netns/{self.netns}", *cmd, check=False,
                   timeout=timeout)

    def peer(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A command in the peer netns (the outside world)."""
        return _sh("nsenter", f"--net=/run/netns/{self.peer_netns}", *cmd, check=False,
                   timeout=timeout)

    def links(self) -> list[str]:
        """`ip -br link` of the daemon's netns, veth peers' ifindex suffix dropped."""
        out = _sh("ip", "-n", self.netns, "-br", "link").stdout
        return sorted(line.split()[0].split("@")[0] for line in out.splitlines() if line)

    def addrs(self) -> str:
        # name and addresses, not the operstate column: a bridge's carrier follows its
        # ports through the kernel's linkwatch, which runs up to a second later
        # (net/core/link_watch.c), so UP/DOWN says when the state was read, not what it is
        out = _sh("ip", "-n", self.netns, "-br", "addr").stdout
        return "\n".join(" ".join([w[0], *w[2:]]) for w in (ln.split() for ln in
                                                            out.splitlines()) if w)

    def ruleset(self) -> str:
        """`nft list ruleset` of the daemon's netns, rule counters zeroed (traffic moves them)."""
        out = self.host("nft", "list", "ruleset").stdout
        return re.sub(r"counter packets \d+ bytes \d+", "counter", out)

    def state(self) -> tuple[list[str], str, str]:
        """What a refused request must leave as it was: links, addresses, nft rules."""
        return self.links(), self.addrs(), self.ruleset()

    def name(self, what: str = "c") -> str:
        """A unique name; fixed width, so no name is a prefix of another (name filters match
        substrings)."""
        return f"lk-nt-{what}-{next(_counter):03d}"

    def inspect(self, kind: str, name: str) -> Any:
        return json.loads(self.ok(kind, "inspect", name))[0]


def _mounts_under(base: Path) -> list[str]:
    with open("/proc/self/mounts") as f:
        found = [ln.split()[1] for ln in f if ln.split()[1].startswith(str(base))]
    return sorted(found, key=len, reverse=True)


def _pids_with_arg(arg: str) -> list[int]:
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if any(arg in a for a in (p.info["cmdline"] or [])) and p.pid != os.getpid():
            out.append(p.pid)
    return out


@pytest.fixture(scope="module", params=["dockerd", "labkit"])
def netdaemon(request: pytest.FixtureRequest) -> Iterator[NetDaemon]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = NetDaemon(request.param)
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture
def nd(netdaemon: NetDaemon) -> Iterator[NetDaemon]:
    """The module's daemon; containers and networks a test made are removed after it."""
    # not ok(): a daemon without the networks API still runs the tests that need none
    before = set(netdaemon.docker("network", "ls", "-q").stdout.split())
    yield netdaemon
    ids = netdaemon.docker("ps", "-aq").stdout.split()
    if ids:
        netdaemon.docker("rm", "-f", *ids, timeout=120)
    left = set(netdaemon.docker("network", "ls", "-q").stdout.split()) - before
    if left:
        netdaemon.docker("network", "rm", *left)


def until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``check`` until truthy (bounded; no timing is asserted)."""
    deadline = time.monotonic() + timeout
    while True:
        if got := check():
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.1)


@pytest.fixture
def wait() -> Callable[..., Any]:
    return until
