"""Three real etcd members (Debian's etcd 3.4) with mutual TLS, each in a network namespace
of its own on a test bridge, and EtcdClient driving them: KV and CAS, leases, a foreign CA
refused, the leader killed under a writer (no acknowledged write lost), quorum lost and back.

Topology (all in namespaces made here, named with the pid):
  lk-et-br-PID: bridge br0 10.247.X.254/24        <- the client's thread lives here
  lk-et-I-PID:  eth0 10.247.X.I/24 (veth to br0)  <- member I's etcd (I = 1..3)
The test process stays in its own netns; the clients run on an event loop in a thread that
setns(2)'d into the bridge namespace (setns moves only the calling thread).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from labkit import errors
from labkit._sys import consts, syscalls
from labkit.engine.swarm.etcd import EtcdClient, EtcdMember, MemberConfig, QuorumError
from labkit.engine.swarm.etcd.errors import StoreAuthError
from labkit.ns.netns import create_netns, list_netns, netns_path, remove_netns
from tests.privileged._etcd_pki import make_ca, make_node_cert

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(not os.access("/usr/bin/etcd", os.X_OK), reason="needs etcd-server"),
]

T = TypeVar("T")
PID = os.getpid()
NET = 10 + PID % 200
N = 3  # members started by the fixture; a fourth namespace waits for member_add


class NsLoop:
    """An asyncio loop on a thread that lives in network namespace ``path`` for good."""

    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        ready: Future[None] = Future()

        def main() -> None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    syscalls.setns(fd, consts.CLONE_NEWNET, target=str(path))
                finally:
                    os.close(fd)
            except OSError as err:
                ready.set_exception(err)
                return
            ready.set_result(None)
            asyncio.set_event_loop(self.loop)
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, name="lk-et-client", daemon=True)
        self.thread.start()
        ready.result(10)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Cluster:
    members: list[EtcdMember]
    ns: NsLoop
    endpoints: list[str]
    ca: Path
    ca_obj: Any
    client_cert: Path
    client_key: Path
    tmp: Path

    def client(self, timeout: float = 2.0) -> EtcdClient:
        return EtcdClient(self.endpoints, self.ca, self.client_cert, self.client_key, timeout)

    def by_name(self, name: str) -> EtcdMember:
        return next(m for m in self.members if m.config.name == name)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _netns_names() -> list[str]:
    return [f"lk-et-br-{PID}"] + [f"lk-et-{i}-{PID}" for i in range(1, N + 2)]


def _build_net() -> None:
    br = f"lk-et-br-{PID}"
    for name in _netns_names():
        create_netns(name)
        _ip("-n", name, "link", "set", "lo", "up")
    _ip("-n", br, "link", "add", "br0", "type", "bridge")
    _ip("-n", br, "addr", "add", f"10.247.{NET}.254/24", "dev", "br0")
    _ip("-n", br, "link", "set", "br0", "up")
    for i in range(1, N + 2):
        m = f"lk-et-{i}-{PID}"
        _ip("-n", br, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0",
            "netns", m)
        _ip("-n", br, "link", "set", f"v{i}", "master", "br0", "up")
        _ip("-n", m, "addr", "add", f"10.247.{NET}.{i}/24", "dev", "eth0")
        _ip("-n", m, "link", "set", "eth0", "up")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="lk-et-"))
    members: list[EtcdMember] = []
    ns: NsLoop | None = None
    try:
        _build_net()
        ca = make_ca(tmp / "pki")
        names = [f"m{i}" for i in range(1, N + 1)]
        ips = {n: f"10.247.{NET}.{i}" for i, n in enumerate(names, 1)}
        peers = {n: f"https://{ip}:2380" for n, ip in ips.items()}
        for i, n in enumerate(names, 1):
            cert = make_node_cert(ca, tmp / "pki", n, [ips[n], "127.0.0.1"])
            cfg = MemberConfig(
                name=n, data_dir=tmp / n / "etcd", advertise_ip=ips[n],
                cert_file=cert.cert_file, key_file=cert.key_file, ca_file=ca.path,
                initial_cluster=peers, state="new", cluster_token=f"lk-et-{PID}",
                log_file=tmp / n / "etcd.log", allowed_hostname="swarm-manager")
            members.append(EtcdMember(cfg, netns=f"lk-et-{i}-{PID}"))
        client_cert = make_node_cert(ca, tmp / "pki", "client", [])
        ns = NsLoop(netns_path(f"lk-et-br-{PID}"))
        for m in members:
            m.start()  # from the main thread: it lives as long as the members (pdeathsig)

        async def ready() -> None:
            await asyncio.gather(*(m.wait_ready(20) for m in members))
        ns.run(ready())
        yield Cluster(members, ns, [m.config.client_url for m in members], ca.path, ca,
                      client_cert.cert_file, client_cert.key_file, tmp)
    finally:
        for m in members:
            m.stop()
        if ns is not None:
            ns.close()
        for name in _netns_names():
            if name in list_netns():
                remove_netns(name)
        shutil.rmtree(tmp, ignore_errors=True)


def test_kv_cas_leases_cluster(cluster: Cluster) -> None:
    async def body() -> None:
        async with cluster.client() as c:
            rev = await c.put("/lk/t/a", b"\x00one")
            kv = await c.get("/lk/t/a")
            assert kv is not None and kv.value == b"\x00one" and kv.mod_revision == rev
            assert kv.version == 1 and kv.create_revision == rev
            assert await c.get("/lk/t/none") is None
            # compare-and-swap on mod_revision; 0 = must not exist
            assert not await c.put_if("/lk/t/a", b"two", rev + 1000)
            assert await c.put_if("/lk/t/a", b"two", rev)
            assert not await c.put_if("/lk/t/a", b"three", 0)
            assert await c.put_if("/lk/t/b", b"bee", 0)
            kvs = await c.range_prefix("/lk/t/")
            assert [(k.key, k.value) for k in kvs] == [(b"/lk/t/a", b"two"), (b"/lk/t/b", b"bee")]
            b = kvs[1]
            assert not await c.delete_if("/lk/t/b", b.mod_revision + 1)
            assert await c.delete_if("/lk/t/b", b.mod_revision)
            assert await c.delete("/lk/t/a") and not await c.delete("/lk/t/a")
            assert await c.range_prefix("/lk/t/") == []
            # leases: a key on a lease goes with it
            lease = await c.lease_grant(30)
            assert lease > 0 and 0 < await c.lease_keepalive(lease) <= 30
            await c.put("/lk/t/alive", b"x", lease=lease)
            got = await c.get("/lk/t/alive")
            assert got is not None and got.lease == lease
            await c.lease_revoke(lease)
            assert await c.get("/lk/t/alive") is None
            with pytest.raises(errors.NotFoundError, match="lease"):
                await c.lease_keepalive(lease)
            # watch: the changes under a prefix, in order
            start = await c.put("/lk/x", b"before")
            seen: list[tuple[str, bytes, bytes]] = []

            async def watch() -> None:
                async for ev in c.watch_prefix("/lk/w8/", start):
                    seen.append((ev.type, ev.kv.key, ev.kv.value))
                    if len(seen) == 3:
                        return
            task = asyncio.create_task(watch())
            await c.put("/lk/w8/1", b"a")
            await c.put("/lk/other", b"not watched")
            await c.put("/lk/w8/2", b"b")
            await c.delete("/lk/w8/1")
            await asyncio.wait_for(task, 10)
            assert seen == [("PUT", b"/lk/w8/1", b"a"), ("PUT", b"/lk/w8/2", b"b"),
                            ("DELETE", b"/lk/w8/1", b"")]
            # cluster view
            members = await c.member_list()
            assert sorted(m.name for m in members) == ["m1", "m2", "m3"]
            statuses = [await c.status(ep) for ep in cluster.endpoints]
            assert len({s.member_id for s in statuses}) == 3
            assert len({s.leader_id for s in statuses}) == 1
            leader = await c.leader()
            assert leader is not None and leader.id == statuses[0].leader_id
            assert leader.client_urls[0] in cluster.endpoints
    cluster.ns.run(body())


def test_foreign_ca_client_refused(cluster: Cluster) -> None:
    other = make_ca(cluster.tmp / "other", cn="other-ca")
    cert = make_node_cert(other, cluster.tmp / "other", "intruder", [])

    async def body() -> None:
        # trusts the right CA (so the server is verified), presents a foreign client cert
        async with EtcdClient(cluster.endpoints, cluster.ca, cert.cert_file, cert.key_file,
                              timeout=2.0) as c:
            with pytest.raises(StoreAuthError, match="TLS with the cluster store"):
                await c.put("/lk/t/intruder", b"x")
        # and a client trusting the foreign CA refuses the members' certificates
        async with EtcdClient(cluster.endpoints, other.path, cert.cert_file, cert.key_file,
                              timeout=2.0) as c:
            with pytest.raises(StoreAuthError, match="certificate verify failed"):
                await c.get("/lk/t/intruder")
        async with cluster.client() as c:
            assert await c.get("/lk/t/intruder") is None
    cluster.ns.run(body())


def test_member_add_and_stale_member_cleaned(cluster: Cluster) -> None:
    """A fourth member joins through member_add; a daemon that lost track of it (a new
    EtcdMember on the same data dir) stops it by pid; then it is removed again."""
    ip = f"10.247.{NET}.{N + 1}"
    cert = make_node_cert(cluster.ca_obj, cluster.tmp / "pki", "m4", [ip, "127.0.0.1"])
    base = cluster.members[0].config

    async def body() -> None:
        async with cluster.client() as c:
            t0 = time.monotonic()
            while True:  # etcd adds a member once all were connected for 5 s (HealthInterval)
                try:
                    added = await c.member_add(f"https://{ip}:2380")
                    break
                except errors.ConflictError:
                    assert time.monotonic() - t0 < 15, "member_add refused for 15 s"
                    await asyncio.sleep(0.2)
            assert added.member.name == "" and len(added.members) == N + 1
            cfg = MemberConfig(
                name="m4", data_dir=cluster.tmp / "m4" / "etcd", advertise_ip=ip,
                cert_file=cert.cert_file, key_file=cert.key_file, ca_file=cluster.ca,
                initial_cluster=added.initial_cluster("m4"), state="existing",
                cluster_token=base.cluster_token, log_file=cluster.tmp / "m4" / "etcd.log")
            m4 = EtcdMember(cfg, netns=f"lk-et-{N + 1}-{PID}")
            try:
                m4.start()
                await m4.wait_ready(20)
                names = sorted(m.name for m in await c.member_list())
                assert names == ["m1", "m2", "m3", "m4"]
                st = await c.status(cfg.client_url)
                assert st.member_id == added.member.id and st.leader_id != 0
                # a new daemon finds the member the old one left: pid file + /proc cmdline
                old_pid = m4.pid
                assert old_pid is not None and m4.pid_file.exists()
                assert EtcdMember(cfg).adopt_or_clean() == old_pid
                assert not m4.running and not m4.pid_file.exists()
                await c.member_remove(added.member.id)
                assert sorted(m.name for m in await c.member_list()) == ["m1", "m2", "m3"]
            finally:
                m4.stop()
    cluster.ns.run(body(), timeout=40)


_CHILD = """
import json, sys, time
from pathlib import Path
from labkit.engine.swarm.etcd import EtcdMember, MemberConfig
a = json.loads(sys.argv[1])
for k in ("data_dir", "cert_file", "key_file", "ca_file", "log_file"):
    a[k] = Path(a[k])
netns = a.pop("netns")
print(EtcdMember(MemberConfig(**a), netns=netns).start(), flush=True)
time.sleep(60)
"""


def test_member_dies_with_its_daemon(cluster: Cluster) -> None:
    """A daemon killed with SIGKILL takes its etcd along (setpriv --pdeathsig TERM)."""
    ip = f"10.247.{NET}.{N + 1}"
    cert = make_node_cert(cluster.ca_obj, cluster.tmp / "pki", "solo", [ip, "127.0.0.1"])
    args = {"name": "solo", "data_dir": str(cluster.tmp / "solo" / "etcd"), "advertise_ip": ip,
            "cert_file": str(cert.cert_file), "key_file": str(cert.key_file),
            "ca_file": str(cluster.ca), "initial_cluster": {"solo": f"https://{ip}:2480"},
            "state": "new", "cluster_token": "solo", "log_file": str(cluster.tmp / "solo.log"),
            "peer_port": 2480, "client_port": 2479, "netns": f"lk-et-{N + 1}-{PID}"}
    daemon = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(args)],
                              stdout=subprocess.PIPE, text=True)
    netns = str(args.pop("netns"))
    cfg = MemberConfig(**{**args, **{k: Path(str(args[k])) for k in (
        "data_dir", "cert_file", "key_file", "ca_file", "log_file")}})  # type: ignore[arg-type]
    try:
        assert daemon.stdout is not None
        pid = int(daemon.stdout.readline())
        end = time.monotonic() + 10
        while True:  # setpriv, then nsenter, exec etcd on the same pid
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if os.path.basename(cmdline[0]) == b"etcd" or time.monotonic() > end:
                break
            time.sleep(0.02)
        assert os.path.basename(cmdline[0]) == b"etcd", cmdline[:3]
        assert f"--data-dir={cfg.data_dir}".encode() in cmdline
        daemon.kill()
        daemon.wait(10)
        end = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < end:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), "etcd outlived its daemon"
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
        # whatever is left on that data dir (the test failed): stopped by pid
        EtcdMember(cfg, netns=netns).adopt_or_clean()


def test_leader_killed_then_quorum_lost_and_back(cluster: Cluster) -> None:
    acked: dict[int, tuple[float, float]] = {}  # i -> (last attempt sent, acknowledged)
    stop = asyncio.Event()

    async def writer() -> None:
        async with cluster.client(timeout=2.0) as c:
            i = 0
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    await c.put(f"/lk/w/{i:06d}", str(i).encode())
                except QuorumError:
                    await asyncio.sleep(0.02)
                    continue  # not acknowledged: write the same key again
                acked[i] = (sent, time.monotonic())
                i += 1

    async def scenario() -> tuple[float, float]:
        async with cluster.client() as c:
            leader = await c.leader()
            assert leader is not None
            task = asyncio.create_task(writer())
            while len(acked) < 20:
                await asyncio.sleep(0.01)
            victim = cluster.by_name(leader.name)
            t_kill = time.monotonic()
            victim.kill()  # SIGKILL by pid
            n_at_kill = len(acked)
            end = t_kill + 15
            while len(acked) < n_at_kill + 20 and time.monotonic() < end:
                await asyncio.sleep(0.02)
            stop.set()
            await task
            # writes sent after the kill (one in flight then may be acknowledged just after)
            after = [done for sent, done in acked.values() if sent > t_kill]
            assert len(after) >= 20, "no writes acknowledged after the leader was killed"
            new_leader = await c.leader()
            assert new_leader is not None and new_leader.name != leader.name
            # history: every acknowledged write is there, with its value
            kvs = {kv.key: kv.value for kv in await c.range_prefix("/lk/w/")}
            for i in acked:
                assert kvs.get(f"/lk/w/{i:06d}".encode()) == str(i).encode(), i
            first_after = min(after) - t_kill

            # a second member gone: 1 of 3 left, no quorum, writes refused within bounds
            second = cluster.by_name(new_leader.name)
            second.stop()
            t0 = time.monotonic()
            with pytest.raises(QuorumError, match="no quorum|did not confirm") as info:
                while time.monotonic() - t0 < 20:
                    await c.put("/lk/q", b"x")
            refused_after = time.monotonic() - t0
            print(f"\nquorum loss, first write: {info.value}")
            # once the survivor has noticed, it says "no leader" at once and the write is
            # known not to be applied.  When it notices depends on load: a SIGTERMed leader
            # hands its leadership over before it exits (etcd's EtcdServer.Stop), so the
            # survivor may lead a cluster of one until Raft's CheckQuorum makes it step down
            # (one to two election timeouts of not hearing from a majority); until then a
            # write waits for a commit that cannot come (outcome unknown, as asserted above).
            t_noticed = time.monotonic()
            while await c.leader() is not None:
                assert time.monotonic() - t_noticed < 15, "the survivor still has a leader"
                await asyncio.sleep(0.1)
            t1 = time.monotonic()
            with pytest.raises(QuorumError, match="no quorum: 1 of 3") as info:
                await c.put("/lk/q", b"x")
            assert not info.value.outcome_unknown and "no leader" in str(info.value)
            print(f"quorum loss, later write: {info.value} "
                  f"({(time.monotonic() - t1) * 1000:.0f} ms; the survivor had no leader "
                  f"{(t1 - t_noticed) * 1000:.0f} ms after the first refusal)")

            # back: the second member restarts on its data dir, writes work again
            second.start()
            t0 = time.monotonic()
            while True:
                try:
                    await c.put("/lk/q", b"back")
                    break
                except QuorumError:
                    assert time.monotonic() - t0 < 20, "no quorum 20 s after the restart"
                    await asyncio.sleep(0.1)
            got = await c.get("/lk/q")
            assert got is not None and got.value == b"back"
            victim.start()
            await asyncio.gather(*(m.wait_ready(20) for m in cluster.members))
            return first_after, refused_after

    first_after, refused_after = cluster.ns.run(scenario(), timeout=50)
    print(f"leader SIGKILL -> first acknowledged write: {first_after * 1000:.0f} ms; "
          f"quorum lost -> QuorumError after {refused_after * 1000:.0f} ms")
