"""One etcd member process, as a swarm manager's daemon runs it (Debian's etcd 3.4).

Every manager runs one member: peers on https://IP:2380, clients on https://IP:2379 and
https://127.0.0.1:2379, the node's swarm certificate on both sides, the swarm root CA as the
only trust, client certificates required on both (SWARM12.md, "Cluster store").

The process must not outlive its daemon: it is exec'd through ``setpriv --pdeathsig TERM``
(util-linux), so the kernel sends it SIGTERM when its parent goes.  prctl(2) PR_SET_PDEATHSIG
ties that to the *thread* that forked, not the process: call ``start()`` from a thread that
lives as long as the member should (the event loop's), never from a short-lived worker
thread, or etcd is killed when that thread ends.  A daemon killed with SIGKILL still leaves
the member to pdeathsig; a daemon that restarts after a crash of the whole host finds a pid
file instead, and ``adopt_or_clean()`` stops whatever member a previous daemon left before a
new one starts on the same data directory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import select
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from labkit import errors
from labkit.engine.paths import PRIVATE_DIR_MODE, SECRET_FILE_MODE, write_secret

__all__ = ["ETCD_BIN", "EtcdMember", "MemberConfig"]

ETCD_BIN = "/usr/bin/etcd"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# etcd rejects an election timeout above 50 s (etcdmain/config.go: maxElectionMs).
_MAX_ELECTION_MS = 50_000
_QUOTA = 256 * 1024 * 1024


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


@dataclass(frozen=True)
class MemberConfig:
    """Everything one member is started with; ``validate()`` refuses what etcd would refuse
    later (or, worse, accept: a name with "," or "=" would corrupt --initial-cluster)."""

    name: str
    data_dir: Path
    advertise_ip: str
    cert_file: Path
    key_file: Path
    ca_file: Path
    initial_cluster: dict[str, str]
    state: Literal["new", "existing"]
    cluster_token: str
    log_file: Path
    peer_port: int = 2380
    client_port: int = 2379
    heartbeat_ms: int = 100
    election_ms: int = 1000
    quota_backend_bytes: int = field(default=_QUOTA)
    # only peers whose certificate names this host (a SAN DNS name: the role OU string
    # "swarm-manager") may join Raft; a worker's certificate of the same CA is refused.
    # Peers only: etcd 3.4's --client-cert-allowed-hostname also binds the client side of
    # its own gRPC gateway, which skips chain verification and is then refused ("client
    # certificate authentication failed"), so the whole /v3 JSON API stops working.
    allowed_hostname: str | None = None
    # Spec.Raft.SnapshotInterval (committed entries between snapshots: etcd's
    # --snapshot-count) and KeepOldSnapshots (etcd's --max-snapshots counts the newest too)
    snapshot_count: int = 10000
    max_snapshots: int = 1

    @property
    def peer_url(self) -> str:
        return f"https://{_host(self.advertise_ip)}:{self.peer_port}"

    @property
    def client_url(self) -> str:
        return f"https://{_host(self.advertise_ip)}:{self.client_port}"

    def validate(self) -> None:
        """Raise InvalidArgumentError naming the first bad field."""
        bad = errors.InvalidArgumentError
        if not _NAME.fullmatch(self.name):
            raise bad("etcd member name", f"{self.name!r} is not 1-63 of [A-Za-z0-9._-]")
        try:
            ip = ipaddress.ip_address(self.advertise_ip)
        except ValueError:
            raise bad("advertise IP", f"{self.advertise_ip!r} is not an IP address") from None
        if ip.is_unspecified or ip.is_multicast:
            raise bad("advertise IP", f"{ip} cannot be advertised to peers")
        for what, port in (("peer port", self.peer_port), ("client port", self.client_port)):
            if not 0 < port < 65536:
                raise bad(what, f"{port} is not a TCP port")
        if self.peer_port == self.client_port:
            raise bad("client port", "must differ from the peer port")
        for what, p in (("data dir", self.data_dir), ("cert file", self.cert_file),
                        ("key file", self.key_file), ("CA file", self.ca_file),
                        ("log file", self.log_file)):
            if not p.is_absolute() or "," in str(p):
                raise bad(what, f"{str(p)!r} is not an absolute path without ','")
        if self.heartbeat_ms <= 0:
            raise bad("heartbeat", f"{self.heartbeat_ms} ms is not positive")
        # etcd: "--election-timeout should be at least as 5 times as --heartbeat-interval"
        # (etcdserver/config.go, VerifyBootstrap via etcdmain); the Raft paper's advice too.
        if not 5 * self.heartbeat_ms <= self.election_ms <= _MAX_ELECTION_MS:
            raise bad("election timeout", f"{self.election_ms} ms must be at least 5 x the "
                      f"heartbeat ({self.heartbeat_ms} ms) and at most {_MAX_ELECTION_MS} ms")
        if not _NAME.fullmatch(self.cluster_token):
            raise bad("cluster token", f"{self.cluster_token!r} is not 1-63 of [A-Za-z0-9._-]")
        if self.state not in ("new", "existing"):
            raise bad("initial cluster state", f"{self.state!r} is not 'new' or 'existing'")
        if self.allowed_hostname is not None and not _NAME.fullmatch(self.allowed_hostname):
            raise bad("allowed hostname", f"{self.allowed_hostname!r} is not a DNS name")
        if self.snapshot_count < 1 or self.max_snapshots < 1:
            raise bad("snapshots", f"snapshot count {self.snapshot_count} and max snapshots "
                      f"{self.max_snapshots} must both be at least 1")
        if self.quota_backend_bytes < 16 * 1024 * 1024:
            raise bad("quota backend bytes", f"{self.quota_backend_bytes} is below 16 MiB")
        for name, url in self.initial_cluster.items():
            if not _NAME.fullmatch(name):
                raise bad("initial cluster", f"member name {name!r} is not 1-63 of [A-Za-z0-9._-]")
            if not re.fullmatch(r"https://[0-9A-Za-z.:\[\]-]+:[0-9]{1,5}", url):
                raise bad("initial cluster", f"peer URL {url!r} of {name} is not https://IP:PORT")
        # etcd checks that this member's --initial-advertise-peer-urls is its own entry
        if self.initial_cluster.get(self.name) != self.peer_url:
            raise bad("initial cluster", f"must map {self.name} to its peer URL {self.peer_url}")

    def flags(self) -> list[str]:
        """etcd's command-line flags (etcd --help; etcd 3.4 op-guide/configuration.md)."""
        cluster = ",".join(f"{n}={u}" for n, u in sorted(self.initial_cluster.items()))
        local = f"https://127.0.0.1:{self.client_port}"
        allowed = ([f"--peer-cert-allowed-hostname={self.allowed_hostname}"]
                   if self.allowed_hostname else [])
        return [*allowed,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--listen-client-urls={self.client_url},{local}",
            f"--advertise-client-urls={self.client_url}",
            f"--cert-file={self.cert_file}", f"--key-file={self.key_file}",
            f"--trusted-ca-file={self.ca_file}", "--client-cert-auth=true",
            f"--peer-cert-file={self.cert_file}", f"--peer-key-file={self.key_file}",
            f"--peer-trusted-ca-file={self.ca_file}", "--peer-client-cert-auth=true",
            f"--heartbeat-interval={self.heartbeat_ms}",
            f"--election-timeout={self.election_ms}",
            f"--initial-cluster={cluster}",
            f"--initial-cluster-state={self.state}",
            f"--initial-cluster-token={self.cluster_token}",
            # keep an hour of history (watchers that lag behind resume from it), bounded
            # disk: at the quota etcd raises a NOSPACE alarm and refuses writes
            "--auto-compaction-mode=periodic", "--auto-compaction-retention=1h",
            f"--quota-backend-bytes={self.quota_backend_bytes}",
            "--logger=zap", f"--log-outputs={self.log_file}",
            # managers join as learners, which count toward no quorum, and are promoted
            # once caught up; etcd's strict check would also refuse a new member until
            # every voter has been connected for 5 s (etcdserver: unhealthy cluster),
            # which only slows a swarm forming manager after manager
            "--strict-reconfig-check=false",
            # a member that restarts must not depose a healthy leader by campaigning with a
            # higher term (etcd 3.4 defaults to off; Raft thesis 9.6, "pre-vote")
            "--pre-vote=true",
            f"--snapshot-count={self.snapshot_count}",
            f"--max-snapshots={self.max_snapshots}",
        ]


class EtcdMember:
    """Start, watch and stop one etcd member; ``netns`` (a name under /run/netns) runs it
    there through nsenter(1), for labs and tests where the caller lives elsewhere."""

    def __init__(self, config: MemberConfig, *, netns: str | None = None,
                 etcd_bin: str = ETCD_BIN) -> None:
        config.validate()
        if netns is not None:
            from labkit.ns.netns import netns_path

            netns_path(netns)  # InvalidArgumentError for a name that is not labkit's
        self.config, self.netns, self.etcd_bin = config, netns, etcd_bin
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        """``<data dir>.pid``, beside (not inside) the data dir etcd owns."""
        d = self.config.data_dir
        return d.with_name(d.name + ".pid")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _argv(self) -> list[str]:
        tools = {"etcd": self.etcd_bin, "setpriv": shutil.which("setpriv") or "/usr/bin/setpriv"}
        if self.netns is not None:
            tools["nsenter"] = shutil.which("nsenter") or "/usr/bin/nsenter"
        for tool, path in tools.items():
            if not os.access(path, os.X_OK):
                hint = "apt-get install etcd-server" if tool == "etcd" else "apt-get install util-linux"
                raise errors.UnsupportedError(tool, f"{path} is missing", hint=hint)
        argv = [tools["setpriv"], "--pdeathsig", "TERM", "--"]
        if self.netns is not None:
            # nsenter(1) with only --net execs its command without forking: etcd keeps the pid
            # and the death signal (kept across execve unless set-user-ID, prctl(2))
            argv += [tools["nsenter"], f"--net=/run/netns/{self.netns}", "--"]
        return argv + [self.etcd_bin, *self.config.flags()]

    def start(self) -> int:
        """Spawn the member (after stopping a stale one on the same data dir); its pid.

        Call from a long-lived thread (module docstring: pdeathsig is per thread).
        Raises UnsupportedError if etcd, setpriv or nsenter is missing, InvalidStateError
        if this member already runs.
        """
        if self.running:
            raise errors.InvalidStateError("running", "starting", what="etcd member")
        argv = self._argv()
        self.adopt_or_clean()
        cfg = self.config
        cfg.data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        os.chmod(cfg.data_dir, PRIVATE_DIR_MODE)  # etcd refuses/warns on a wider data dir
        cfg.log_file.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        # etcd's zap appends to an existing file and keeps its mode: create it 0600 first.
        # stdout/stderr go there too, for what etcd prints before its logger is set up.
        log = os.open(cfg.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
                      | os.O_NOFOLLOW, SECRET_FILE_MODE)
        try:
            os.fchmod(log, SECRET_FILE_MODE)
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=log, start_new_session=True)
        finally:
            os.close(log)
        write_secret(self.pid_file, f"{self._proc.pid}\n".encode())
        return self._proc.pid

    def adopt_or_clean(self, timeout: float = 5.0) -> int | None:
        """Stop a member a previous daemon left on this data dir (pid file + /proc cmdline
        naming etcd and this data dir); returns its pid, or None if there was none."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            self.pid_file.unlink(missing_ok=True)
            return None
        if self._proc is not None and self._proc.pid == pid:
            return None  # ours
        try:
            # a pidfd pins the process: a pid reused after the cmdline check is not signalled
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            self.pid_file.unlink(missing_ok=True)
            return None
        try:
            if not self._is_ours(pid):
                self.pid_file.unlink(missing_ok=True)
                return None
            signal.pidfd_send_signal(fd, signal.SIGTERM)
            if not _wait_exit(fd, timeout):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                _wait_exit(fd, timeout)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)
        self.pid_file.unlink(missing_ok=True)
        return pid

    def _is_ours(self, pid: int) -> bool:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        names_etcd = any(os.path.basename(a) == b"etcd" for a in argv[:8])
        return names_etcd and f"--data-dir={self.config.data_dir}".encode() in argv

    async def wait_ready(self, timeout: float = 10.0, *, quorum: bool = True) -> None:
        """Until the member serves: /health true (it has a leader and a quorum read works),
        or, with ``quorum=False``, its maintenance status answers.

        Raises UnsupportedError with the tail of etcd's log if it exits or is not ready in
        ``timeout`` seconds (port in use, a certificate it refuses, a wrong cluster).
        """
        from labkit.engine.swarm.etcd.client import EtcdClient

        cfg = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with EtcdClient([cfg.client_url], cfg.ca_file, cfg.cert_file, cfg.key_file,
                              timeout=min(1.0, timeout)) as client:
            while True:
                if self._proc is not None and self._proc.poll() is not None:
                    raise self._failed(f"etcd exited with status {self._proc.returncode}")
                if quorum:
                    ok = await client.health(cfg.client_url)
                else:
                    try:
                        await client.status(cfg.client_url)
                        ok = True
                    except errors.LabkitError:
                        ok = False
                if ok:
                    return
                if loop.time() >= deadline:
                    raise self._failed(f"not ready after {timeout:g} s")
                await asyncio.sleep(0.1)

    def _failed(self, reason: str) -> errors.UnsupportedError:
        tail = self.log_tail()
        return errors.UnsupportedError(
            f"etcd member {self.config.name}", f"{reason}; log tail:\n{tail}",
            hint=f"read {self.config.log_file}; is the port in use, or the certificate wrong?")

    def log_tail(self, lines: int = 8) -> str:
        """The last ``lines`` lines of etcd's log (bounded read)."""
        try:
            with open(self.config.log_file, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(data.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; reaps it; removes the pid file."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
            except ProcessLookupError:
                proc.wait(timeout)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL by pid and reap (a crash, for tests and the lab); the pid file stays."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _wait_exit(pidfd: int, timeout: float) -> bool:
    """Until the process behind ``pidfd`` has exited, every thread of it: a pidfd becomes
    readable then (pidfd_open(2)).  /proc's "Z" is not enough for a threaded etcd: its
    first thread shows "Z" while the others still exit, and the process cannot be reaped
    yet (a parent polling it in that moment still sees it running)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))
