"""The peers' daemons as the benchmarks run them: a network namespace of the bench's own,
dockerd and podman's Docker-compatible API service inside it, every one with its state in a
temp dir and stopped by pid.

* ``BenchNetns``: ``ip netns add lk-...``, loopback up; ``delete()`` removes it (and with it
  every link, route and iptables/nftables table a daemon made in it: they live in the netns,
  ip-netns(8), so nothing of the host's network is touched).
* ``Dockerd``: Debian's docker.io dockerd (nsenter --net, not ``ip netns exec``: the latter
  remounts /sys for the netns, which hides /sys/fs/cgroup and dockerd stops with "Devices
  cgroup isn't mounted").  ``bridge=False`` (the engine and images benches): ``--bridge=none
  --iptables=false --ip-masq=false``.  ``bridge=True``: dockerd's own defaults, docker0 and its
  iptables rules, which land in the bench's netns.
* ``PodmanService``: ``podman system service`` (podman-system-service(1)) on a unix socket,
  with ``--root``/``--runroot``/``--tmpdir`` and a containers.conf of its own
  (CONTAINERS_CONF, containers.conf(5)): runtime runc (crun refuses this hybrid cgroup host),
  cgroupfs, file events, default ulimits nofile/nproc 1024 (root here lacks
  CAP_SYS_RESOURCE, so podman's default of raising them fails), and its default network
  "podman" as Debian ships it (/etc/cni/net.d/87-podman-bridge.conflist: bridge cni-podman0,
  10.88.0.0/16, portmap, firewall, tuning) written into its own network_config_dir with the
  host-local IPAM's dataDir in the temp dir, so the host's /var/lib/cni/networks is not used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from labkit import errors

__all__ = ["BenchNetns", "Dockerd", "PodmanService", "install_docker_io", "kill_by_marker",
           "unmount_under"]

DEBIAN_PODMAN_CNI = Path("/etc/cni/net.d/87-podman-bridge.conflist")
# podman's built-in default network when Debian's file is absent (the same values:
# libpod's default "podman" network, 10.88.0.0/16 on cni-podman0)
_DEFAULT_CNI: dict[str, object] = {
    "cniVersion": "0.4.0", "name": "podman",
    "plugins": [{"type": "bridge", "bridge": "cni-podman0", "isGateway": True, "ipMasq": True,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                          "ranges": [[{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]]}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "firewall"}, {"type": "tuning"}]}


def unmount_under(base: Path) -> None:
    """umount -l every mount below ``base``, deepest first."""
    with open("/proc/self/mounts") as f:
        mounts = [ln.split()[1] for ln in f if ln.split()[1].startswith(str(base))]
    for m in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False, capture_output=True)


def kill_by_marker(marker: str) -> list[int]:
    """SIGKILL every process whose command line names ``marker`` (a temp dir this bench made,
    so only processes it started, conmon say, match); returns their pids."""
    import psutil

    killed = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.pid != os.getpid() and marker in " ".join(p.info["cmdline"] or []):
            try:
                p.kill()
                killed.append(p)
            except psutil.Error:
                continue
    psutil.wait_procs(killed, timeout=5)
    return [p.pid for p in killed]


def install_docker_io() -> str:
    """Debian's docker.io without starting its services; "" on success, else the reason."""
    script = Path(__file__).with_name("install-docker-io.sh")
    p = subprocess.run([str(script)], capture_output=True, text=True, check=False)
    return "" if p.returncode == 0 else (p.stderr.strip().splitlines() or ["?"])[-1]


class BenchNetns:
    """A network namespace the bench makes (``lk``-prefixed name) and deletes."""

    def __init__(self, name: str) -> None:
        if not name.startswith("lk"):
            raise errors.InvalidArgumentError("netns", f"{name!r}: a bench's netns is lk-...")
        self.name = name
        self.made = False

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def create(self) -> BenchNetns:
        p = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True,
                           check=False)
        if p.returncode != 0:
            raise errors.LabkitError(f"ip netns add {self.name}: {p.stderr.strip()}")
        self.made = True
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=False,
                       capture_output=True)
        return self

    def delete(self) -> None:
        if self.made:
            subprocess.run(["ip", "netns", "delete", self.name], check=False,
                           capture_output=True)
            self.made = False


def _stop_pid(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds (nsenter execs the daemon, so the Popen
    pid is the daemon's own)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Dockerd:
    """dockerd in a netns (the given one, or one of its own), state in a temp dir."""

    def __init__(self, tmp: Path, netns: str | None = None, *, bridge: bool = False) -> None:
        self.dir = tmp / "dockerd"
        self.dir.mkdir()
        self._own = BenchNetns(f"lk-bench-{os.getpid()}") if netns is None else None
        self.netns = netns or f"lk-bench-{os.getpid()}"
        self.bridge = bridge
        self.sock = self.dir / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment for the Docker CLI: DOCKER_HOST on this dockerd, a config of its own."""
        return dict(os.environ, DOCKER_HOST=f"unix://{self.sock}",
                    DOCKER_CONFIG=str(self.dir / "docker-config"))

    def start(self, timeout: float = 60.0) -> None:
        from labkit.engine.client.launch import wait_ready

        if self._own is not None:
            self._own.create()
        d = self.dir
        net = [] if self.bridge else ["--iptables=false", "--ip-masq=false", "--bridge=none"]
        log = open(d / "dockerd.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}", "dockerd", "--data-root", str(d / "data"),
             "--exec-root", str(d / "exec"), "--pidfile", str(d / "dockerd.pid"),
             "-H", f"unix://{self.sock}", *net], stdin=subprocess.DEVNULL, stdout=log,
            stderr=log, start_new_session=True)
        log.close()
        wait_ready(self.sock, timeout, proc=self.proc, log=d / "dockerd.log")

    def stop(self) -> None:
        # SIGTERM lets dockerd stop its containerd child; SIGKILL after 20 s
        _stop_pid(self.proc, 20.0)
        if self._own is not None:
            self._own.delete()
        unmount_under(self.dir)


class PodmanService:
    """``podman system service`` inside ``netns``, everything of it under ``tmp/podman``."""

    def __init__(self, tmp: Path, netns: str) -> None:
        self.dir = tmp / "podman"
        self.dir.mkdir()
        self.netns = netns
        self.sock = self.dir / "podman.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runtime = "runc" if shutil.which("runc") else "crun"
        self._env: dict[str, str] = dict(os.environ)

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, DOCKER_HOST=f"unix://{self.sock}",
                    DOCKER_CONFIG=str(self.dir / "docker-config"))

    def _podman(self) -> list[str]:
        d = self.dir
        return ["podman", "--root", str(d / "root"), "--runroot", str(d / "runroot"),
                "--tmpdir", str(d / "tmp")]

    def _write_config(self) -> dict[str, str]:
        d = self.dir
        cni = d / "cni"
        cni.mkdir()
        try:
            conf = json.loads(DEBIAN_PODMAN_CNI.read_text())
        except (OSError, ValueError):
            conf = json.loads(json.dumps(_DEFAULT_CNI))
        conf["plugins"][0].setdefault("ipam", {})["dataDir"] = str(d / "cni-ipam")
        (cni / "87-podman-bridge.conflist").write_text(json.dumps(conf, indent=1))
        (d / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            "[engine]\n"
            f'runtime = "{self.runtime}"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'tmp_dir = "{d / "tmp"}"\n'
            "[network]\n"
            f'network_config_dir = "{cni}"\n')
        return dict(os.environ, CONTAINERS_CONF=str(d / "containers.conf"))

    def network_backend(self) -> str:
        p = subprocess.run([*self._podman(), "info", "--format", "{{.Host.NetworkBackend}}"],
                           env=self._env, capture_output=True, text=True, check=False)
        return p.stdout.strip() or "?"

    def start(self, timeout: float = 60.0) -> None:
        from labkit.engine.client.launch import wait_ready

        if shutil.which("podman") is None:
            raise errors.UnsupportedError("podman", "not installed",
                                          hint="apt-get install podman")
        self._env = self._write_config()
        log = open(self.dir / "podman.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}", *self._podman(), "system", "service",
             "--time=0", f"unix://{self.sock}"], env=self._env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        wait_ready(self.sock, timeout, proc=self.proc, log=self.dir / "podman.log")

    def stop(self) -> None:
        if self.proc is not None:
            # containers left by a failed run (conmon outlives the service): removed first
            # (in the netns: the network teardown of a running one removes its veth there)
            subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", *self._podman(), "rm",
                            "-fa", "-t", "0"], env=self._env,
                           capture_output=True, check=False, timeout=120)
        _stop_pid(self.proc, 10.0)
        kill_by_marker(str(self.dir))
        unmount_under(self.dir)
