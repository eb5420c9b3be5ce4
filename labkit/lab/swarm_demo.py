"""Notebook 12's swarm: a local lab (labkit.measure.swarmlab) formed one step at a time, and
the tables and plots that show what each step made.

Why a keeper process beside the atexit hook: the lab's daemons run in sessions of their own,
so they outlive the notebook's kernel, and nbval and Jupyter end a kernel with SIGKILL, which
runs no atexit hook.  The keeper (``python -m labkit.lab.swarm_demo NAME``, its own session)
blocks reading its stdin; when that pipe closes (``SwarmDemo.down()``, or the kernel's death
in any way) it downs the lab from its record ($LABKIT_RUN/swarm-lab/NAME.json) if the record
is still there.  The atexit hook covers a kernel that exits normally with the lab still up.

Everything here reads the lab through its nodes' Engine APIs and /proc, and changes it only
through those APIs and SwarmLab's kill/restart (by pid of the processes the lab started).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import ipaddress
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from labkit import errors
from labkit.engine.swarm import ca, seal
from labkit.measure import bench_swarm
from labkit.measure.swarmlab import LabNode, SwarmLab

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    from matplotlib.axes import Axes

__all__ = ["PORTS", "TARGET_S", "ListenSocket", "SwarmDemo", "keeper_main",
           "mask_secret", "node_rows", "parse_proc_net_tcp", "plot_failover", "require",
           "tolerated_failures"]

TARGET_S = 2.0  # issue 12's failover target: kill -> a new leader accepting writes
# What listens where on a node (swarm.proto's header; etcd's default ports).
PORTS = {2377: "join (TLS, the node has no certificate yet)",
         2378: "cluster: node <-> manager (mutual TLS, gRPC)",
         2379: "etcd clients (mutual TLS)",
         2380: "etcd peers: Raft (mutual TLS, managers only)"}
_TCP_LISTEN = "0A"  # include/net/tcp_states.h: TCP_LISTEN = 10
Progress = Callable[[str], None]


# -- pure helpers (unit-tested) ------------------------------------------------------------

def tolerated_failures(managers: int) -> int:
    """How many managers may fail with the rest still a Raft quorum (a majority,
    floor(n/2) + 1, of the n voting members): (n - 1) // 2.  4 tolerate no more than 3."""
    if managers < 0:
        raise errors.InvalidArgumentError("managers", f"{managers} is negative")
    return max(0, (managers - 1) // 2)


def mask_secret(s: str, keep: int = 4) -> str:
    """``SWMKEY-1-abcd...`` : enough to recognise a key, not enough to use it."""
    head, sep, rest = s.rpartition("-")
    return f"{head}{sep}{rest[:keep]}..." if sep else f"{s[:keep]}..."


@dataclass(frozen=True)
class ListenSocket:
    """One listening TCP socket from /proc/PID/net/tcp{,6} (proc(5))."""

    addr: str
    port: int
    inode: int


def _hex_addr(h: str) -> str:
    # proc(5): the address is the kernel's in-memory form, 32-bit words in host byte order
    # (little-endian here): "0100007F" is 127.0.0.1.
    words = [bytes.fromhex(h[i:i + 8])[::-1] for i in range(0, len(h), 8)]
    ip = ipaddress.ip_address(b"".join(words))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"  # as ss(8) shows it
    return str(ip)


def parse_proc_net_tcp(text: str) -> list[ListenSocket]:
    """The LISTEN sockets of one /proc/PID/net/tcp or tcp6 text (header line skipped)."""
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 10 or f[3] != _TCP_LISTEN:
            continue
        host, _, port = f[1].partition(":")
        out.append(ListenSocket(_hex_addr(host), int(port, 16), int(f[9])))
    return out


def node_rows(nodes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """GET /nodes as `docker node ls` shows it: one row per node, sorted by hostname."""
    rows = []
    for n in nodes:
        ms = n.get("ManagerStatus") or {}
        status = "Leader" if ms.get("Leader") else str(ms.get("Reachability", "")).capitalize()
        rows.append({"hostname": n["Description"]["Hostname"], "id": n["ID"][:12],
                     "role": n["Spec"]["Role"], "state": n["Status"]["State"],
                     "availability": n["Spec"].get("Availability", ""),
                     "manager status": status, "addr": n["Status"].get("Addr", "")})
    return sorted(rows, key=lambda r: r["hostname"])


def require() -> None:
    """Stop the notebook here (a skip under nbval) unless it runs as root and Debian's
    etcd-server is installed: every manager runs an etcd member."""
    from labkit.lab import MissingFeatureError
    from labkit.lab import require as lab_require

    lab_require("root")
    if shutil.which("etcd") is None:
        raise MissingFeatureError([("etcd", "etcd not on PATH", "apt-get install etcd-server")])


# -- the keeper ----------------------------------------------------------------------------

def keeper_main(name: str) -> int:
    """Block on stdin; on EOF down the lab ``name`` if its record is still there."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a notebook interrupt is not ours
    with contextlib.suppress(OSError):
        sys.stdin.read()
    if SwarmLab.record_path(name).exists():
        SwarmLab.load(name).down()
    return 0


_OPEN: dict[str, SwarmDemo] = {}  # labs this process has up, by name


def _say(t0: float) -> Progress:
    return lambda msg: print(f"[{time.monotonic() - t0:5.2f} s] {msg}", flush=True)


def _in_thread(fn: Callable[[], object]) -> None:
    """Run ``fn`` in a thread of its own and re-raise what it raised.  pyroute2 (which
    SwarmLab.up uses for the links) runs an asyncio loop of its own, and a Jupyter kernel's
    main thread already runs one ("This event loop is already running")."""
    import threading

    failed: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            failed.append(err)

    t = threading.Thread(target=run, name="swarm-lab")
    t.start()
    try:
        t.join()
    except KeyboardInterrupt:  # a notebook interrupt: let the step finish, then stop
        t.join()
        raise
    if failed:
        raise failed[0]


def _until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if got := pred():
                return got
        except (errors.LabkitError, OSError, KeyError) as err:
            last = err
        time.sleep(0.1)
    raise errors.UnsupportedError("swarm lab", f"{what}: not within {timeout:.0f} s"
                                  + (f" (last error: {last})" if last else ""))


class SwarmDemo:
    """A SwarmLab of ``managers`` + ``workers`` nodes that the notebook forms step by step."""

    def __init__(self, name: str = "nb12", subnet: str = "10.215.0.0/24", managers: int = 3,
                 workers: int = 2) -> None:
        self.lab = SwarmLab(managers, workers, name=name, subnet=subnet)
        self.keeper: subprocess.Popen[bytes] | None = None
        self.tokens: dict[str, str] = {}

    # life cycle
    def start(self) -> SwarmDemo:
        """The keeper, the network and one inactive daemon per node (no swarm yet)."""
        name = self.lab.name
        if (old := _OPEN.pop(name, None)) is not None:  # the set-up cell run again
            old.down()
        if SwarmLab.record_path(name).exists():
            raise errors.AlreadyExistsError("swarm lab", name,
                                            hint=f"`labkit swarm lab down --name {name}`")
        # start_new_session: out of the kernel's process group, which Jupyter signals as a
        # whole on interrupt (jupyter_client's LocalProvisioner.send_signal uses killpg)
        self.keeper = subprocess.Popen([sys.executable, "-m", "labkit.lab.swarm_demo", name],
                                       stdin=subprocess.PIPE, start_new_session=True)
        atexit.register(self.down)
        _OPEN[name] = self
        try:
            say = _say(time.monotonic())
            _in_thread(lambda: self.lab.up(say, form=False))
        except BaseException:
            self.down()
            raise
        return self

    def down(self, timeout: float = 60.0) -> None:
        """Remove every process, namespace, link and dir of the lab; end the keeper.
        Safe to call twice."""
        atexit.unregister(self.down)
        if _OPEN.get(self.lab.name) is self:
            del _OPEN[self.lab.name]
        try:
            if SwarmLab.record_path(self.lab.name).exists():
                _in_thread(self.lab.down)
        finally:
            keeper, self.keeper = self.keeper, None
            if keeper is not None:
                if keeper.stdin is not None:
                    keeper.stdin.close()
                try:
                    keeper.wait(timeout)
                except subprocess.TimeoutExpired:
                    keeper.kill()  # by its pid: we started it
                    keeper.wait()

    def left_over(self) -> dict[str, list[str]]:
        """What down() must have removed: namespaces, dirs, processes, the record."""
        name = self.lab.name
        netns = sorted(p.name for p in Path("/run/netns").glob(f"lk-sw-{name}*"))
        dirs = sorted(str(p) for p in Path("/tmp").glob(f"lksw-{name}-*"))
        procs = [str(pid) for n in self.lab.nodes for pid in n.processes()]
        rec = [str(p) for p in [SwarmLab.record_path(name)] if p.exists()]
        return {"netns": netns, "dirs": dirs, "processes": procs, "record": rec}

    # forming, step by step
    def init(self) -> dict[str, Any]:
        """The first manager inits the swarm: it becomes the root CA, the first etcd member
        and the leader.  Heartbeat 1 s, so a killed node is marked down quickly."""
        first = self.lab.nodes[0]
        t0 = time.monotonic()
        first.api("POST", "/swarm/init", {
            "ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": first.addr,
            "Spec": {"Dispatcher": {"HeartbeatPeriod": int(self.lab.heartbeat * 1e9)}}})
        took = time.monotonic() - t0
        self.tokens = dict(first.api("GET", "/swarm")["JoinTokens"])
        return self._step(first, "swarm init", took)

    def join(self, ref: int | str) -> dict[str, Any]:
        """Node ``ref`` joins with the token of its role, through the first manager."""
        if not self.tokens:
            raise errors.InvalidStateError("no swarm", "join", what="lab",
                                           hint="run init() first")
        n = self.lab.node(ref)
        took = self.lab.join(n, self.tokens["Manager" if n.role == "manager" else "Worker"])
        return self._step(n, f"swarm join as {n.role}", took)

    def join_all(self) -> pd.DataFrame:
        """Every node but the first joins, one at a time (one etcd membership change at a
        time); a row per step: the call's seconds and the swarm as it stands after it."""
        import pandas as pd

        rows = [self.join(n.name) for n in self.lab.nodes[1:]]
        self.lab.wait_ready()
        self.lab.save()
        return pd.DataFrame(rows)

    def _step(self, node: LabNode, action: str, took: float) -> dict[str, Any]:
        nodes = self.lab.nodes[0].api("GET", "/nodes")
        leader = [r["hostname"] for r in node_rows(nodes) if r["manager status"] == "Leader"]
        return {"node": node.name, "step": action, "seconds": round(took, 3),
                "nodes": len(nodes), "managers": sum("ManagerStatus" in n for n in nodes),
                "leader": ",".join(leader)}

    # what is there
    def local_states(self) -> pd.DataFrame:
        """Each node's own view (GET /info): LocalNodeState, NodeID, is it a manager."""
        import pandas as pd

        rows = []
        for n in self.lab.nodes:
            sw = n.api("GET", "/info")["Swarm"]
            rows.append({"node": n.name, "netns": n.netns, "addr": n.addr,
                         "LocalNodeState": sw["LocalNodeState"],
                         "NodeID": sw.get("NodeID", "")[:12],
                         "ControlAvailable": sw.get("ControlAvailable", False)})
        return pd.DataFrame(rows).set_index("node")

    def node_ls(self, via: str | None = None) -> pd.DataFrame:
        """`docker node ls` as a manager (``via``, else any running one) answers it."""
        import pandas as pd

        m = self.lab.node(via) if via else self.lab.any_manager()
        return pd.DataFrame(node_rows(m.api("GET", "/nodes"))).set_index("hostname")

    def namespaces(self) -> pd.DataFrame:
        """Each node's network namespace (the nsfs inode of /run/netns/NAME, namespaces(7))
        and the processes of the node (name:pid), with whether every one of them is in it
        (the inode of /proc/PID/ns/net is the same)."""
        import pandas as pd

        rows = []
        for n in self.lab.nodes:
            ino = os.stat(f"/run/netns/{n.netns}").st_ino
            procs, inodes = [], set()
            for pid in sorted(n.processes()):
                with contextlib.suppress(psutil.Error, OSError):
                    procs.append(f"{psutil.Process(pid).name()}:{pid}")
                    inodes.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
            rows.append({"node": n.name, "netns": n.netns, "netns inode": ino,
                         "processes": " ".join(procs),
                         "all in it": bool(procs) and inodes == {ino}})
        return pd.DataFrame(rows).set_index("node")

    def etcd_members(self) -> pd.DataFrame:
        """The etcd member processes (psutil): one per manager, in that manager's netns."""
        import pandas as pd

        rows = []
        for n in self.lab.managers():
            for pid in n.processes():
                with contextlib.suppress(psutil.Error, OSError):
                    p = psutil.Process(pid)
                    if p.name() != "etcd":
                        continue
                    rows.append({"node": n.name, "pid": pid,
                                 "netns": os.stat(f"/proc/{pid}/ns/net").st_ino,
                                 "node netns": os.stat(f"/run/netns/{n.netns}").st_ino,
                                 "rss MiB": round(p.memory_info().rss / (1 << 20), 1),
                                 "threads": p.num_threads(),
                                 "data dir": _arg(p.cmdline(), "--data-dir")})
        return pd.DataFrame(rows)

    def listening(self, ref: str) -> pd.DataFrame:
        """The TCP sockets listening in node ``ref``'s namespace (/proc/PID/net/tcp{,6} of
        one of its processes: proc(5) shows the net namespace of that process) and which of
        the node's processes holds each (its fd links to socket:[inode])."""
        import pandas as pd

        n = self.lab.node(ref)
        pids = n.processes()
        if not pids:
            raise errors.InvalidStateError("down", "inspect", what=f"node {n.name}")
        socks: list[ListenSocket] = []
        for f in ("tcp", "tcp6"):
            with contextlib.suppress(OSError):
                socks += parse_proc_net_tcp(Path(f"/proc/{pids[0]}/net/{f}").read_text())
        owner: dict[int, str] = {}
        for pid in pids:
            with contextlib.suppress(psutil.Error, OSError):
                name = psutil.Process(pid).name()
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        link = os.readlink(f"/proc/{pid}/fd/{fd}")
                        if link.startswith("socket:["):
                            owner[int(link[8:-1])] = f"{name} ({pid})"
        rows = [{"addr": s.addr, "port": s.port, "process": owner.get(s.inode, "?"),
                 "what": PORTS.get(s.port, "")} for s in socks]
        return pd.DataFrame(rows).sort_values(["port", "addr"]).reset_index(drop=True)

    def certificates(self) -> pd.DataFrame:
        """Each node's certificate (cert_summary) and whether it names the node: CN = its
        node id, OU = its role, issued by the swarm's root CA (verified with it)."""
        import pandas as pd

        rows = []
        for n in self.lab.nodes:
            d = self.cert_dir(n.name)
            pem = (d / "swarm-node.crt").read_bytes()
            s = ca.cert_summary(pem)
            root = ca.RootCA((d / "swarm-root-ca.crt").read_bytes())
            try:
                root.verify(pem, role=s["role"])
                verified = True
            except errors.LabkitError:
                verified = False
            rows.append({"node": n.name, "role": s["role"], "subject": s["subject"],
                         "issuer": s["issuer"], "not_after": s["not_after"],
                         "days_left": s["days_left"], "key_type": s["key_type"],
                         "sans": ", ".join(s["sans"]),
                         "is node id": s["node_id"] == n.node_id(),
                         "verified by root": verified,
                         "key sealed": seal.is_sealed(d / "swarm-node.key")})
        return pd.DataFrame(rows).set_index("node")

    def root_ca(self) -> dict[str, Any]:
        """The swarm's root certificate as the first manager holds it."""
        return ca.cert_summary((self.cert_dir("m1") / "swarm-root-ca.crt").read_bytes())

    def cert_dir(self, ref: str) -> Path:
        return Path(self.lab.node(ref).base, "root", "swarm", "certificates")

    def store_scan(self, ref: str = "m2",
                   clear: Sequence[bytes] = (b"SWMTKN-1", b"BEGIN", b"swarm-ca")
                   ) -> dict[str, Any]:
        """etcd's own data file on node ``ref``: the keys are there in clear, the values
        are AES-GCM ciphertext, so no hostname, token or PEM may appear in it."""
        db = next(Path(self.lab.node(ref).base, "root", "swarm", "etcd").rglob("db"))
        data = db.read_bytes()
        words = [*clear, *(n.hostname.encode() for n in self.lab.nodes)]
        return {"file": str(db), "bytes": len(data),
                "keys seen": data.count(b"/lk/swarm/"),
                "clear text found": [w.decode() for w in words if w in data]}

    # failover
    def failover(self, trials: int = 3) -> list[bench_swarm.FailoverTrial]:
        """``trials`` leader kills, each restarted and reachable before the next."""
        return bench_swarm.failover_trials(self.lab, trials, progress=_say(time.monotonic()))

    # autolock
    def set_autolock(self, on: bool) -> str:
        """swarm update --autolock=on|off; the unlock key ('' when off).  Waits until every
        manager's key file is sealed (or in clear) accordingly."""
        m = self.lab.any_manager()
        sw = m.api("GET", "/swarm")
        spec = {**sw["Spec"], "EncryptionConfig": {"AutoLockManagers": on}}
        m.api("POST", "/swarm/update", spec, version=sw["Version"]["Index"])
        key = str(m.api("GET", "/swarm/unlockkey")["UnlockKey"]) if on else ""
        self.lab.unlock_key = key
        self.lab.save()
        for n in self.lab.managers():  # a manager reseals its TLS key, then the data key
            for f in _key_files(n):
                _until(functools.partial(_sealed_is, f, on), 30,
                       f"{n.name}'s {f.name} {'sealed' if on else 'in clear'}")
        return key

    def key_files(self) -> pd.DataFrame:
        """Each manager's key files: sealed (needs the unlock key) or in clear."""
        import pandas as pd

        rows = []
        for n in self.lab.managers():
            for f in _key_files(n):
                rows.append({"node": n.name, "file": str(f.relative_to(n.base)),
                             "sealed": seal.is_sealed(f),
                             "mode": oct(f.stat().st_mode & 0o777)})
        return pd.DataFrame(rows)

    def locked_restart(self, ref: str, key: str) -> pd.DataFrame:
        """Crash manager ``ref`` and start it again under autolock: it comes back locked,
        serves nothing and runs no etcd member; a wrong key is refused; the right one
        unlocks it and it is a reachable manager again.  A row per step."""
        import pandas as pd

        n = self.lab.node(ref)
        rows: list[dict[str, Any]] = []

        def row(step: str, answer: str = "") -> None:
            names = []
            for pid in n.processes():
                with contextlib.suppress(psutil.Error):
                    names.append(psutil.Process(pid).name())
            rows.append({"step": step,
                         "LocalNodeState": n.api("GET", "/info")["Swarm"]["LocalNodeState"],
                         "etcd running": "etcd" in names, "answer": answer})

        self.lab.kill(n)
        self.lab.restart(n)
        row("killed and restarted")
        row("GET /nodes", _refused(lambda: n.api("GET", "/nodes")))
        wrong = seal.UNLOCK_PREFIX + "A" * 43
        row("unlock, wrong key", _refused(lambda: n.api("POST", "/swarm/unlock",
                                                          {"UnlockKey": wrong})))
        n.api("POST", "/swarm/unlock", {"UnlockKey": key})
        # "pending" until its etcd member has caught up with the quorum (swarmlab.restart)
        _until(lambda: self._reachable(n) and n.api("GET", "/info")["Swarm"]
               ["LocalNodeState"] == "active", 60, f"{n.name} active after unlock")
        row("unlock, right key", "ok: reachable manager again")
        return pd.DataFrame(rows)

    def _reachable(self, n: LabNode) -> bool:
        for r in self.lab.any_manager(exclude=[n]).api("GET", "/nodes"):
            if r["Description"]["Hostname"] == n.hostname:
                ms = r.get("ManagerStatus") or {}
                return bool(ms.get("Reachability") == "reachable"
                            and r["Status"]["State"] == "ready")
        return False

    # roles
    def set_role(self, ref: str, role: str) -> None:
        """`docker node promote|demote`: the node's Spec.Role, with its Version."""
        if role not in ("manager", "worker"):
            raise errors.InvalidArgumentError("role", f"{role!r}: manager or worker")
        nid = self.lab.node(ref).node_id()
        m = self.lab.any_manager()
        cur = m.api("GET", f"/nodes/{nid}")
        m.api("POST", f"/nodes/{nid}/update", {**cur["Spec"], "Role": role},
              version=cur["Version"]["Index"])

    def etcd_learners(self) -> list[str]:
        """The etcd members that are still learners (their names are node ids), asked of
        the leader's member over mutual TLS with the leader's own certificate, from inside
        its namespace (2379 listens only there).  "Reachable" in GET /nodes does not tell
        a learner, which counts toward no quorum, from a voter."""
        import asyncio

        from labkit.engine.swarm.etcd.client import EtcdClient
        from labkit.ns.netns import netns

        leader = self.lab.leader()
        if leader is None:
            raise errors.UnsupportedError("swarm lab", "no leader")
        tls = Path(leader.base, "run", "swarm", "tls")
        out: list[str] = []

        async def ask() -> list[str]:
            async with EtcdClient([f"https://{leader.addr}:2379"], tls / "ca.crt",
                                  tls / "node.crt", tls / "node.key") as c:
                return [m.name for m in await c.member_list() if m.is_learner]

        def run() -> None:  # setns(2) moves only this thread (labkit.ns.netns)
            with netns(f"/run/netns/{leader.netns}"):
                out.extend(asyncio.run(ask()))

        _in_thread(run)
        return out

    def managers_settled(self, timeout: float = 60.0) -> list[str]:
        """Wait until every node whose Spec.Role is manager is a reachable, ready manager
        and a voting etcd member (a promoted node first joins etcd as a learner); their
        hostnames."""
        def settled() -> list[str] | None:
            nodes = self.lab.any_manager().api("GET", "/nodes")
            want = [n for n in nodes if n["Spec"]["Role"] == "manager"]
            ok = all((n.get("ManagerStatus") or {}).get("Reachability") == "reachable"
                     and n["Status"]["State"] == "ready" for n in want)
            if not ok or self.etcd_learners():
                return None
            return sorted(n["Description"]["Hostname"] for n in want)

        got: list[str] = _until(settled, timeout, "every manager reachable")
        for h in got:  # the lab's own idea of roles follows (kill/any_manager use it)
            self.lab.node(h).role = "manager"
        self.lab.save()
        return got

    def survive(self, failures: int, timeout: float = 60.0) -> dict[str, Any]:
        """Kill ``failures`` managers that do not lead, make one acknowledged write through
        the leader, then start them again and wait until they are reachable."""
        leader = self.lab.leader()
        if leader is None:
            raise errors.UnsupportedError("swarm lab", "no leader")
        others = [m for m in self.lab.managers() if m is not leader][:failures]
        target = self.lab.nodes[-1].node_id()
        for m in others:
            self.lab.kill(m)
        try:
            t0 = time.monotonic()
            bench_swarm.write_label(leader, target, "survived", str(failures), timeout=10.0)
            took = time.monotonic() - t0
        finally:
            for m in others:
                self.lab.restart(m)
        for m in others:
            _until(functools.partial(self._reachable, m), timeout,
                   f"{m.name} reachable after restart")
        return {"killed": [m.name for m in others], "write_s": round(took, 3),
                "leader": leader.name}


def _key_files(n: LabNode) -> list[Path]:
    """A node's key material on disk: its TLS key and, on a manager, the store's data key."""
    root = Path(n.base, "root", "swarm")
    return [f for f in (root / "certificates" / "swarm-node.key", root / "dek") if f.exists()]


def _sealed_is(path: Path, sealed: bool) -> bool:
    return seal.is_sealed(path) == sealed


def _arg(argv: Sequence[str], flag: str) -> str:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return ""


def _refused(call: Callable[[], Any]) -> str:
    """The error a call ends with ('' if it answered), for a table cell."""
    try:
        call()
    except errors.LabkitError as err:
        return f"refused: {err}"
    return ""


def plot_failover(trials: Sequence[bench_swarm.FailoverTrial], target: float = TARGET_S,
                  ax: Axes | None = None) -> Axes:
    """Per trial: seconds from the kill to a new leader and to the first acknowledged
    write, the target dashed."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    xs = range(1, len(trials) + 1)
    w = 0.38
    ax.bar([x - w / 2 for x in xs], [t.to_leader_s for t in trials], w, label="new leader")
    ax.bar([x + w / 2 for x in xs], [t.to_write_s for t in trials], w,
           label="first acknowledged write")
    ax.axhline(target, linestyle="--", color="grey", label=f"target {target:g} s")
    ax.set_xticks(list(xs), [f"{i}: kill {t.killed}\n-> {t.new_leader}"
                             for i, t in zip(xs, trials, strict=True)])
    top = max([target, *(t.to_leader_s for t in trials), *(t.to_write_s for t in trials)])
    ax.set_ylim(0, top * 1.35)  # room for the legend above the target line
    ax.set_ylabel("seconds since the kill")
    med = statistics.median(t.to_write_s for t in trials) if trials else float("nan")
    ax.set_title(f"leader failover: median {med:.2f} s to the first acknowledged write")
    ax.legend(loc="upper left", ncol=3, fontsize="small")
    return ax


if __name__ == "__main__":  # the keeper: python -m labkit.lab.swarm_demo NAME
    sys.exit(keeper_main(sys.argv[1]))
