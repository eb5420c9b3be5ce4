"""runqlat, netio and oomkill against known workloads, attributed to cgroups we make.

A prime number of events (23) so that a doubled or dropped event cannot hide.  Each "container"
here is a cgroup made by the test in the unified hierarchy (whose inode is what
bpf_get_current_cgroup_id() returns) and, for memory, the same name in the v1 memory
hierarchy; every cgroup and namespace is lk-prefixed and removed in teardown.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labkit import probes
from labkit._sys import features
from labkit.probes import netio, oomkill, runqlat
from labkit.probes.target import Target

pytestmark = pytest.mark.privileged

N = 23
UNIFIED = Path("/sys/fs/cgroup/unified")
MEMORY = Path("/sys/fs/cgroup/memory")


@dataclass(frozen=True)
class Ctr:
    """A test container: its Target (what a probe is given) and its v2 cgroup directory."""

    target: Target
    cgroup_path: Path

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def cgroup_id(self) -> int | None:
        return self.target.cgroup_id


def _v2_root() -> Path:
    for root in (UNIFIED, Path("/sys/fs/cgroup")):
        if (root / "cgroup.procs").exists():
            return root
    pytest.skip("no cgroup v2 mount: bpf_get_current_cgroup_id() names nothing")


@pytest.fixture
def ctrs() -> Iterator[list[Ctr]]:
    root = _v2_root()
    made = []
    try:
        for x in "abc":
            d = root / f"lk-kst-{os.getpid()}-{x}"
            d.mkdir()
            made.append(Ctr(Target(f"ctr-{x}", x, None, os.stat(d).st_ino, f"/{d.name}"), d))
        yield made
    finally:
        for c in made:
            _empty(c.cgroup_path)
            c.cgroup_path.rmdir()


def _empty(d: Path) -> None:
    # Our workloads were waited for; a leftover would make rmdir fail with EBUSY, loudly.
    for _ in range(100):
        if not (d / "cgroup.procs").read_text().split():
            return
        time.sleep(0.05)


def _in(cg: Path, *cmd: str) -> subprocess.Popen[bytes]:
    """Start ``cmd`` inside cgroup ``cg``: the shell joins it, then execs the command."""
    quoted = " ".join(shlex.quote(c) for c in cmd)
    return subprocess.Popen(["sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec {quoted}"])


BUSY = "import time\nt = time.time()\nwhile time.time() - t < 0.8: pass"
NAPS = f"import time\nfor _ in range({N}): time.sleep(0.005)"


# -- runqlat ------------------------------------------------------------------------------------

def test_runqlat_counts_only_the_targeted_cgroups(ctrs: list[Ctr]) -> None:
    a, b, c = ctrs
    sub = b.cgroup_path / "lk-sub"  # a cgroup the container made: it counts for b
    sub.mkdir()
    try:
        with runqlat.attach(runqlat.Options(targets=[a.target, b.target])) as probe:
            assert probe.mode == "tracepoint" and probe.missing == ()
            # Two busy loops per cgroup on two CPUs: everybody waits on a run queue.
            procs = [_in(x.cgroup_path, sys.executable, "-c", BUSY) for x in (a, c, a, c)]
            procs.append(_in(sub, sys.executable, "-c", NAPS))
            assert [p.wait(timeout=60) for p in procs] == [0] * 5
            rows = probe.read()
    finally:
        _empty(sub)
        sub.rmdir()
    by = {r.target: r for r in rows}
    assert set(by) == {"ctr-a", "ctr-b"}, rows           # c ran too, but is not watched
    assert by["ctr-a"].cgroup_id == a.cgroup_id and by["ctr-b"].cgroup_id == b.cgroup_id
    # b's sleeper woke at least once per nap (its first run and python's start add more)
    assert by["ctr-b"].count >= N
    for r in rows:
        assert r.count == sum(n for _, _, n in r.buckets) and r.sum_ns > 0
        assert r.p50_us is not None and r.p95_us is not None and r.p50_us <= r.p95_us
        # Each wait lies in its bucket, so the exact sum lies between the buckets' bounds
        # (a wrong slot -> range mapping, off by a factor of two, breaks this).
        low = sum(lo * n for lo, _, n in r.buckets) * 1000
        high = sum((hi + 1) * n for _, hi, n in r.buckets) * 1000
        assert low <= r.sum_ns < high, (low, r.sum_ns, high)


def test_runqlat_without_targets_names_cgroups_by_id(ctrs: list[Ctr]) -> None:
    a = ctrs[0]
    with runqlat.attach() as probe:
        assert _in(a.cgroup_path, sys.executable, "-c", NAPS).wait(timeout=60) == 0
        rows = probe.read()
    mine = [r for r in rows if r.cgroup_id == a.cgroup_id]
    assert len(mine) == 1 and mine[0].target == f"cgroup:{a.cgroup_id}" and mine[0].count >= N


# -- netio --------------------------------------------------------------------------------------

@pytest.fixture
def veth_pair() -> Iterator[tuple[str, str]]:
    """Two test-made netns, lkkA (10.199.7.1) in one and lkkB (10.199.7.2) in the other."""
    tag = os.getpid()
    ns = (f"lk-kst-{tag}-a", f"lk-kst-{tag}-b")
    try:
        subprocess.run(["ip", "netns", "add", ns[0]], check=True)
        subprocess.run(["ip", "netns", "add", ns[1]], check=True)
        subprocess.run(["ip", "-n", ns[0], "link", "add", "lkkA", "type", "veth", "peer",
                        "name", "lkkB", "netns", ns[1]], check=True)
        for n, dev, ip in ((ns[0], "lkkA", "10.199.7.1/24"), (ns[1], "lkkB", "10.199.7.2/24")):
            # No IPv6 (router solicitations, MLD) on these links: only what we send moves.
            subprocess.run(["nsenter", f"--net=/run/netns/{n}", "sysctl", "-qw",
                            f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=True)
            subprocess.run(["ip", "-n", n, "addr", "add", ip, "dev", dev], check=True)
            subprocess.run(["ip", "-n", n, "link", "set", dev, "up"], check=True)
        yield ns
    finally:
        for n in ns:
            subprocess.run(["ip", "netns", "del", n], check=False, capture_output=True)


def _udp(cg: Path, ns: str, count: int, size: int = 100,
         also: tuple[Path, int] | None = None) -> None:
    """``count`` IPv4 UDP datagrams of ``size`` bytes from netns ``ns`` to 10.199.7.2:9999,
    sent by a process in cgroup ``cg`` (and, at the same time, ``also``: (cgroup, count));
    a listener in the peer namespace takes them all."""
    peer = ns[:-1] + "b"
    senders = [(cg, count), *([also] if also else [])]
    total = sum(n for _, n in senders)
    listener = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{peer}", sys.executable, "-c",
         ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
          "s.bind(('10.199.7.2', 9999))\nprint('ready', flush=True)\n"
          f"for _ in range({total}): s.recv(4096)")], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None and listener.stdout.readline() == "ready\n"
        procs = [_in(c, "nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c",
                     "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                     f"for _ in range({n}): s.sendto(bytes({size}), ('10.199.7.2', 9999))")
                 for c, n in senders]
        assert [p.wait(timeout=60) for p in procs] == [0] * len(procs)
        assert listener.wait(timeout=30) == 0
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()


def test_netio_counts_23_udp_datagrams_per_device_and_cgroup(
        ctrs: list[Ctr], veth_pair: tuple[str, str]) -> None:
    a, b = ctrs[0], ctrs[1]
    _neighbour(veth_pair)  # no ARP: every datagram leaves from the sender's own send
    opts = netio.Options(devices={"lkkA": "left", "lkkB": "right"}, targets=[a.target, b.target])
    with netio.attach(opts) as probe:
        _udp(a.cgroup_path, veth_pair[0], N)
        rows = probe.read()

    def get(via: str, dev: str, direction: str, proto: str) -> tuple[int, int]:
        hits = [r for r in rows if (r.via, r.device, r.direction, r.proto)
                == (via, dev, direction, proto)]
        assert len(hits) <= 1
        return (hits[0].packets, hits[0].bytes) if hits else (0, 0)

    frame = 14 + 20 + 8 + 100  # Ethernet + IPv4 + UDP headers + payload
    assert get("device", "lkkA", "tx", "ipv4") == (N, N * frame)
    # received: the Ethernet header was already pulled (eth_type_trans) when counted
    assert get("device", "lkkB", "rx", "ipv4") == (N, N * (frame - 14))
    assert get("device", "lkkA", "tx", "ipv6") == (0, 0)
    assert {r.target for r in rows if r.device == "lkkA" and r.via == "device"} == {"left"}
    # by cgroup: the sender's cgroup sent them, the other watched cgroup sent nothing
    sent = [r for r in rows if r.via == "cgroup" and r.proto == "ipv4"]
    assert [(r.target, r.device, r.packets, r.bytes) for r in sent] == [
        ("ctr-a", "lkkA", N, N * frame)]
    # the container's view of a host-side veth flips the directions
    view = netio.per_target(rows, host_side=True)
    assert view["right"]["tx_packets"] == N and view["left"]["rx_packets"] == N


def test_netio_two_senders_at_once_are_told_apart(
        ctrs: list[Ctr], veth_pair: tuple[str, str]) -> None:
    a, b = ctrs[0], ctrs[1]
    # A known neighbour: packets held while ARP resolves would be sent from the softirq
    # that receives the answer, charged to whichever sender it interrupted (netio's caveat).
    _neighbour(veth_pair)
    with probes.open("net", [a.target, b.target], devices={"lkkA": "left"}) as probe:
        _udp(a.cgroup_path, veth_pair[0], N, also=(b.cgroup_path, 29))
        rows = probe.read()
    sent = {r.target: r.packets for r in rows
            if (r.via, r.device, r.proto) == ("cgroup", "lkkA", "ipv4")}
    assert sent == {"ctr-a": N, "ctr-b": 29}
    device = [r.packets for r in rows
              if (r.via, r.device, r.direction, r.proto) == ("device", "lkkA", "tx", "ipv4")]
    assert device == [N + 29]


# -- oomkill ------------------------------------------------------------------------------------

@pytest.mark.skipif(not features.tracepoint_exists("oom", "mark_victim"),
                    reason="kernel has no oom:mark_victim tracepoint")
@pytest.mark.parametrize("with_bcc", [True, False], ids=["ebpf", "counters"])
def test_oomkill_in_a_16m_cgroup_matches_its_oom_kill_counter(
        ctrs: list[Ctr], monkeypatch: pytest.MonkeyPatch, with_bcc: bool) -> None:
    if not (MEMORY / "memory.limit_in_bytes").exists():
        pytest.skip("needs the cgroup v1 memory controller at /sys/fs/cgroup/memory")
    victim, bystander = ctrs[0], ctrs[1]
    mems = [MEMORY / c.cgroup_path.name for c in (victim, bystander)]
    hog = None
    try:
        for m in mems:
            m.mkdir()
        (mems[0] / "memory.limit_in_bytes").write_text(str(16 << 20))
        if (mems[0] / "memory.memsw.limit_in_bytes").exists():
            (mems[0] / "memory.memsw.limit_in_bytes").write_text(str(16 << 20))
        if not with_bcc:
            monkeypatch.setattr(features, "has_bcc", lambda: False)
        with probes.open("oomkill", [victim.target, bystander.target]) as probe:
            assert probe.mode == ("tracepoint" if with_bcc else "procfs")
            hog = subprocess.Popen(["sh", "-c", (
                f"echo $$ > {victim.cgroup_path}/cgroup.procs && echo $$ > {mems[0]}/cgroup.procs"
                f" && exec {sys.executable} -c \"a = b'x' * (64 << 20)\"")])
            assert hog.wait(timeout=60) == -9, "the OOM killer should have SIGKILLed the hog"
            counts = probe.counts()
            deadline = time.monotonic() + 5
            while with_bcc and counts[victim.name] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
                counts = probe.counts()
        assert counts == {victim.name: 1, bystander.name: 0}
        assert oomkill.cgroup_oom_kills(victim.cgroup_path) == 1   # the kernel's own count
        assert oomkill.cgroup_oom_kills(mems[1]) == 0
        if not with_bcc:
            assert "victim pid and comm" in probe.missing
    finally:
        if hog is not None and hog.poll() is None:
            hog.kill()
            hog.wait()
        for m in mems:
            if m.exists():
                m.rmdir()


@pytest.mark.skipif(not features.tracepoint_exists("oom", "mark_victim"),
                    reason="kernel has no oom:mark_victim tracepoint")
def test_oomkill_records_name_the_victim_by_its_exit(ctrs: list[Ctr]) -> None:
    if not (MEMORY / "memory.limit_in_bytes").exists():
        pytest.skip("needs the cgroup v1 memory controller at /sys/fs/cgroup/memory")
    victim = ctrs[0]
    mem = MEMORY / victim.cgroup_path.name
    hog = None
    try:
        mem.mkdir()
        (mem / "memory.limit_in_bytes").write_text(str(16 << 20))
        with oomkill.attach(oomkill.Options(targets=[victim.target])) as probe:
            hog = subprocess.Popen(["sh", "-c", (
                f"echo $$ > {victim.cgroup_path}/cgroup.procs && echo $$ > {mem}/cgroup.procs"
                f" && exec {sys.executable} -c \"a = b'x' * (64 << 20)\"")])
            assert hog.wait(timeout=60) == -9
            kills = probe.read()
            deadline = time.monotonic() + 5
            while not kills and time.monotonic() < deadline:
                time.sleep(0.05)
                kills = probe.read()
        assert len(kills) == 1, kills
        k = kills[0]
        assert (k.pid, k.target, k.cgroup_id) == (hog.pid, victim.name, victim.cgroup_id)
        assert k.attributed_by == "exit" and k.trigger_cgroup_id == victim.cgroup_id
        assert oomkill.kill_count(kills, victim.name) == 1
    finally:
        if hog is not None and hog.poll() is None:
            hog.kill()
            hog.wait()
        if mem.exists():
            mem.rmdir()


# -- fallbacks without bcc ----------------------------------------------------------------------

def test_fallbacks_without_bcc_say_what_is_missing(
        ctrs: list[Ctr], veth_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "has_bcc", lambda: False)
    a = ctrs[0]
    # A permanent neighbour entry: no ARP, so the device counters see our datagrams only.
    _neighbour(veth_pair)
    # through the front door, as a notebook would: the counter stand-ins
    with probes.open("net", devices={"lkkA": "left"}, netns=f"/run/netns/{veth_pair[0]}"
                     ) as net, probes.open("runqlat", [a.target]) as runq:
        assert (net.mode, runq.mode) == ("procfs", "procfs")
        assert "protocol split" in net.missing and "histogram" in runq.missing
        assert "bcc" in net.reason and "bcc" in runq.reason
        worker = _in(a.cgroup_path, sys.executable, "-c", BUSY + "\ntime.sleep(3)")
        _udp(ctrs[1].cgroup_path, veth_pair[0], N)
        time.sleep(1)  # the busy loop is over; the worker now sleeps, still in a
        rows = runq.read()
        nrows = net.read()
        worker.wait(timeout=30)
    assert [(r.target, r.p50_us) for r in rows] == [("ctr-a", None)] and rows[0].count > 0
    tx = [r for r in nrows if r.direction == "tx"]
    assert [(r.target, r.proto, r.packets, r.bytes) for r in tx] == [
        ("left", "all", N, N * (14 + 20 + 8 + 100))]


def _neighbour(veth_pair: tuple[str, str]) -> None:
    """lkkB's address as a permanent neighbour of lkkA: no ARP before the first datagram."""
    subprocess.run(["ip", "-n", veth_pair[0], "neigh", "add", "10.199.7.2", "lladdr",
                    _mac(veth_pair[1], "lkkB"), "dev", "lkkA", "nud", "permanent"], check=True)


def _mac(ns: str, dev: str) -> str:
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", dev],
                         capture_output=True, text=True, check=True).stdout
    return str(json.loads(out)[0]["address"])
