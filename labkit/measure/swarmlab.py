"""A local swarm for notebooks and tests: `labkit swarm lab up --managers 3 --workers 2`.

Every node is a labkit daemon in a network namespace of its own ("its host"), with its own
LABKIT_ROOT and LABKIT_RUN, and one link (eth0) to an underlay bridge that lives in one more
namespace; addresses come from a private /24 that exists only inside these namespaces, so
nothing the lab does touches the machine's own network.  The first manager inits the swarm,
the other managers join one at a time (an etcd membership change at a time), then the
workers.  What was made is recorded in $LABKIT_RUN/swarm-lab/<name>.json (0600), so `down`
and `exec` work from another process, and `down` removes exactly that: each node's
processes (by pid, checked against their start time), its namespace, the links, the dirs.

The underlay bridge holds the subnet's first address (.1): the lab's "outside", from which
a test or a benchmark reaches a node's published ports (`in_underlay`, `underlay_run`).
With ``registry=True`` a docker-registry (measure.registry) listens there on port 5000 and
every node's daemon.json lists it in insecure-registries, so services can run images
pushed once (`add_image`) and pulled by whichever node runs their tasks.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from labkit import errors
from labkit.cgroups import open_cgroup
from labkit.engine import paths
from labkit.engine.client import Client
from labkit.engine.client.launch import DAEMON_CMD, spawn_daemon, wait_ready
from labkit.engine.client.streams import demux_all
from labkit.measure import parentcg
from labkit.ns.netns import create_netns, netns, remove_netns

__all__ = ["TERMINAL", "LabNode", "SwarmLab", "binary_with_libs", "labs"]

T = TypeVar("T")
REGISTRY_PORT = 5000
# task states after which a task never runs again (moby api/types/swarm/task.go)
TERMINAL = frozenset({"complete", "shutdown", "failed", "rejected", "orphaned", "remove"})

_NAME = re.compile(r"[a-z][a-z0-9]{0,7}")
BRIDGE = "lkswbr"
Progress = Callable[[str], None]


@dataclass
class LabNode:
    """One node of the lab: its name (m1, w2), role, namespace, address and dirs."""

    name: str
    role: str
    netns: str
    addr: str
    base: str
    pids: dict[int, float] = field(default_factory=dict)  # pid -> start time

    @property
    def socket(self) -> Path:
        return Path(self.base) / "run" / "labkit.sock"

    @property
    def env(self) -> dict[str, str]:
        # this interpreter's bin dir first: `labkit` and `labkit-runtime` of the same venv
        path = f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        return dict(os.environ, LABKIT_ROOT=f"{self.base}/root", LABKIT_RUN=f"{self.base}/run",
                    LABKIT_SOCKET=str(self.socket), LABKIT_CONFIG=f"{self.base}/daemon.json",
                    LABKIT_NODE_NAME=self.hostname, PATH=path)

    @property
    def hostname(self) -> str:
        return f"lk-{self.name}"

    @property
    def docker_env(self) -> dict[str, str]:
        """For the Docker CLI (or any client): DOCKER_HOST at this node's daemon."""
        return dict(self.env, DOCKER_HOST=f"unix://{self.socket}",
                    DOCKER_CONFIG=f"{self.base}/docker-config")

    def client(self, timeout: float = 60.0) -> Client:
        return Client(self.socket, timeout=timeout)

    def api(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        t = self.client().transport
        if method == "GET":
            return t.get(path, **params)
        if method == "DELETE":
            return t.delete(path, **params)
        return t.post(path, body, **params)

    def node_id(self) -> str:
        return str(self.api("GET", "/info")["Swarm"]["NodeID"])

    def processes(self) -> list[int]:
        """Every live process of this node: the daemon and what it started (supervisor,
        etcd member), found by the LABKIT_RUN they inherit, plus the pids recorded."""
        run = f"{self.base}/run"
        out = []
        for p in psutil.process_iter(["pid"]):
            try:
                if p.environ().get("LABKIT_RUN") == run:
                    out.append(p.pid)
            except (psutil.Error, OSError):
                continue
        for pid, t in self.pids.items():
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).create_time() == t and pid not in out:
                    out.append(pid)
        return out


class SwarmLab:
    """A swarm of ``managers`` + ``workers`` labkit nodes on this machine."""

    def __init__(self, managers: int = 3, workers: int = 2, *, name: str = "lab",
                 subnet: str = "10.211.0.0/24", autolock: bool = False,
                 heartbeat: float = 1.0, registry: bool = False) -> None:
        if not _NAME.fullmatch(name):
            raise errors.InvalidArgumentError("lab name", f"{name!r}: 1-8 of [a-z0-9], "
                                              "starting with a letter")
        if managers < 1 or workers < 0 or managers + workers > 20:
            raise errors.InvalidArgumentError(
                "lab size", f"{managers} managers + {workers} workers: at least 1 manager, "
                "at most 20 nodes")
        net = ipaddress.ip_network(subnet)
        if net.num_addresses < managers + workers + 2:
            raise errors.InvalidArgumentError("subnet", f"{subnet} is too small")
        self.name, self.subnet, self.autolock = name, str(net), autolock
        self.heartbeat = heartbeat
        self.prefix = net.prefixlen
        hosts = iter(net.hosts())
        self.gateway = str(next(hosts))  # .1: the underlay bridge's own address
        # where the registry listens ("" without one); its process and dir, for down()
        self.registry = f"{self.gateway}:{REGISTRY_PORT}" if registry else ""
        self.registry_proc: dict[str, Any] = {}
        self.nodes = [LabNode(f"{r[0]}{i}", r, f"lk-sw-{name}-{r[0]}{i}", str(next(hosts)),
                              f"/tmp/lksw-{name}-{r[0]}{i}")
                      for r, n in (("manager", managers), ("worker", workers))
                      for i in range(1, n + 1)]
        self.unlock_key = ""
        self.bridge_ns = f"lk-sw-{name}"
        self.formation_joins: list[tuple[str, float]] = []  # (role, seconds) during up()
        # The containers' shared parent cgroup outlives them (measure.parentcg); a lab
        # whose nodes caused it removes it at down(), from the record in any process.
        self.made_parent = False

    # ------------------------------------------------------------------ record
    @staticmethod
    def record_path(name: str) -> Path:
        return paths.run() / "swarm-lab" / f"{name}.json"

    def save(self) -> None:
        p = self.record_path(self.name)
        paths.make_dir(p.parent, paths.PRIVATE_DIR_MODE)
        data = {"name": self.name, "subnet": self.subnet, "autolock": self.autolock,
                "heartbeat": self.heartbeat, "unlock_key": self.unlock_key,
                "registry": self.registry, "registry_proc": self.registry_proc,
                "made_parent": self.made_parent, "nodes": [asdict(n) for n in self.nodes]}
        paths.write_secret(p, json.dumps(data, indent=1).encode())

    @classmethod
    def load(cls, name: str = "lab") -> SwarmLab:
        p = cls.record_path(name)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError as err:
            raise errors.NotFoundError("swarm lab", name,
                                       hint="`labkit swarm lab up` makes one") from err
        lab = cls.__new__(cls)
        lab.name, lab.subnet, lab.autolock = data["name"], data["subnet"], data["autolock"]
        lab.heartbeat, lab.unlock_key = data["heartbeat"], data.get("unlock_key", "")
        lab.prefix = ipaddress.ip_network(lab.subnet).prefixlen
        lab.gateway = str(next(ipaddress.ip_network(lab.subnet).hosts()))
        lab.registry = data.get("registry", "")
        lab.registry_proc = data.get("registry_proc", {})
        lab.bridge_ns = f"lk-sw-{lab.name}"
        lab.formation_joins = []
        lab.made_parent = bool(data.get("made_parent", False))
        lab.nodes = [LabNode(**{**n, "pids": {int(k): v for k, v in n["pids"].items()}})
                     for n in data["nodes"]]
        return lab

    # ------------------------------------------------------------------ up
    def up(self, progress: Progress | None = None, form: bool = True) -> SwarmLab:
        """Make the network and the nodes, form the swarm (unless ``form`` is False: then
        the nodes are inactive daemons, for a client to init and join); on any failure
        remove all."""
        say = progress or (lambda _msg: None)
        if self.record_path(self.name).exists():
            raise errors.AlreadyExistsError("swarm lab", self.name,
                                            hint=f"`labkit swarm lab down --name {self.name}`")
        self.made_parent = parentcg.missing()
        self.save()
        try:
            say(f"network: {len(self.nodes)} namespaces on bridge {BRIDGE} ({self.subnet})")
            # in a thread of its own: pyroute2's NetNS runs an event loop, which fails
            # where the caller's thread already runs one (a Jupyter kernel)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(self._network).result()
            if self.registry:
                say(f"registry: docker-registry at {self.registry}")
                self._start_registry()
            say("daemons: starting one per node")
            self._start_daemons()
            if not form:
                return self
            first = self.nodes[0]
            say(f"{first.name}: swarm init")
            body = {"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": first.addr,
                    "AutoLockManagers": self.autolock,
                    "Spec": {"Dispatcher": {"HeartbeatPeriod": int(self.heartbeat * 1e9)},
                             "EncryptionConfig": {"AutoLockManagers": self.autolock}}}
            first.api("POST", "/swarm/init", body)
            if self.autolock:
                self.unlock_key = first.api("GET", "/swarm/unlockkey")["UnlockKey"]
            toks = first.api("GET", "/swarm")["JoinTokens"]
            for n in self.nodes[1:]:
                say(f"{n.name}: swarm join as {n.role}")
                took = self.join(n, toks["Manager" if n.role == "manager" else "Worker"])
                self.formation_joins.append((n.role, took))
            say("waiting for every node to be ready")
            self.wait_ready()
            self.save()
        except BaseException:
            self.down()
            raise
        return self

    def _network(self) -> None:
        from pyroute2 import NetNS

        create_netns(self.bridge_ns)
        with NetNS(self.bridge_ns) as br:
            br.link("add", ifname=BRIDGE, kind="bridge")
            br.link("set", index=br.link_lookup(ifname=BRIDGE)[0], state="up")
            br.addr("add", index=br.link_lookup(ifname=BRIDGE)[0], address=self.gateway,
                    prefixlen=self.prefix)
            br.link("set", index=br.link_lookup(ifname="lo")[0], state="up")
            for n in self.nodes:
                create_netns(n.netns)
                br.link("add", ifname=f"lk{n.name}", kind="veth",
                        peer={"ifname": "eth0", "net_ns_fd": f"/run/netns/{n.netns}"})
                idx = br.link_lookup(ifname=f"lk{n.name}")[0]
                br.link("set", index=idx, master=br.link_lookup(ifname=BRIDGE)[0], state="up")
                with NetNS(n.netns) as ns:
                    eth = ns.link_lookup(ifname="eth0")[0]
                    ns.addr("add", index=eth, address=n.addr, prefixlen=self.prefix)
                    ns.link("set", index=eth, state="up")
                    ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")

    def _start_daemons(self, nodes: Sequence[LabNode] | None = None) -> None:
        procs = []
        for n in nodes or self.nodes:
            for d in ("root", "run"):
                Path(n.base, d).mkdir(parents=True, exist_ok=True, mode=0o711)
            cfg = Path(n.base, "daemon.json")
            if not cfg.exists():
                # the lab's registry is plain HTTP on a non-loopback address: listed as
                # insecure, as dockerd's daemon.json "insecure-registries" does
                doc = {"insecure-registries": [self.registry]} if self.registry else {}
                cfg.write_text(json.dumps(doc) + "\n")
            cmd = ["nsenter", f"--net=/run/netns/{n.netns}", *DAEMON_CMD]
            procs.append((n, spawn_daemon(n.env, log=Path(n.base, "run", "daemon.log"),
                                          cmd=cmd)))
        for n, proc in procs:
            n.pids[proc.pid] = psutil.Process(proc.pid).create_time()
            wait_ready(n.socket, 60.0, proc=proc, log=Path(n.base, "run", "daemon.log"))
        self.save()

    def _start_registry(self) -> None:
        """docker-registry in the bridge's netns on the underlay's .1 address; its pid and
        start time go to the record so that `down` from another process ends it."""
        from labkit.measure.registry import LocalRegistry

        reg = LocalRegistry(netns=self.bridge_ns, port=REGISTRY_PORT)
        reg.host = self.gateway
        reg.start()
        assert reg.proc is not None
        self.registry_proc = {"pid": reg.proc.pid, "base": str(reg.base),
                              "ctime": psutil.Process(reg.proc.pid).create_time()}
        self.save()

    def _stop_registry(self) -> None:
        pid = int(self.registry_proc.get("pid", 0))
        if pid:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if psutil.Process(pid).create_time() == self.registry_proc.get("ctime"):
                    os.kill(pid, signal.SIGKILL)
                    _wait_gone([pid])
        base = str(self.registry_proc.get("base", ""))
        if base.startswith("/tmp/lk-reg-"):
            shutil.rmtree(base, ignore_errors=True)
        self.registry_proc = {}

    def join(self, node: LabNode, token: str) -> float:
        """``node`` joins through the first manager; returns the seconds it took."""
        t0 = time.monotonic()
        node.api("POST", "/swarm/join", {"ListenAddr": "0.0.0.0:2377",
                                          "AdvertiseAddr": node.addr,
                                          "RemoteAddrs": [f"{self.nodes[0].addr}:2377"],
                                          "JoinToken": token})
        return time.monotonic() - t0

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(errors.LabkitError, OSError):
                nodes = self.any_manager().api("GET", "/nodes")
                last = [(n["Description"]["Hostname"], n["Status"]["State"]) for n in nodes]
                if len(nodes) == len(self.nodes) and all(
                        n["Status"]["State"] == "ready" for n in nodes):
                    return
            time.sleep(0.2)
        raise errors.UnsupportedError("swarm lab", f"nodes not ready after {timeout:.0f} s: "
                                      f"{last}", hint=f"see {self.nodes[0].base}/run/*.log")

    # ------------------------------------------------------------------ use
    def node(self, ref: int | str) -> LabNode:
        """A node by index (1-based, managers first) or name (m1, w2)."""
        if isinstance(ref, int) or str(ref).isdigit():
            i = int(ref)
            if not 1 <= i <= len(self.nodes):
                raise errors.NotFoundError("lab node", str(ref))
            return self.nodes[i - 1]
        for n in self.nodes:
            if ref in (n.name, n.hostname):
                return n
        raise errors.NotFoundError("lab node", str(ref))

    def managers(self) -> list[LabNode]:
        return [n for n in self.nodes if n.role == "manager"]

    def running(self, node: LabNode) -> bool:
        return node.socket.exists() and bool(node.processes())

    def any_manager(self, exclude: Sequence[LabNode] = ()) -> LabNode:
        for n in self.managers():
            if n not in exclude and self.running(n):
                return n
        raise errors.UnsupportedError("swarm lab", "no manager is running")

    def leader(self, via: LabNode | None = None) -> LabNode | None:
        """The node whose manager status says Leader (asked of ``via``)."""
        nodes = (via or self.any_manager()).api("GET", "/nodes")
        for n in nodes:
            if (n.get("ManagerStatus") or {}).get("Leader"):
                return self.node(n["Description"]["Hostname"])
        return None

    def exec(self, ref: int | str, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` with DOCKER_HOST at node ``ref``'s daemon."""
        return subprocess.run(list(argv), env=self.node(ref).docker_env, text=True, check=False,
                              **kw)

    def kill(self, node: LabNode) -> list[int]:
        """Crash a node: SIGKILL its daemon and everything it started (its etcd member,
        its shims) and its containers, as a host that dies takes its tasks with it."""
        pids = node.processes()
        # stop them all first: the daemon's death would otherwise send its etcd member
        # SIGTERM (pdeathsig), and a member that stops gracefully hands its leadership
        # over first; a crash is what is measured, so no process may act on a signal
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        _wait_gone(pids)
        _kill_containers(node)
        node.pids.clear()
        self.save()
        return pids

    def restart(self, node: LabNode) -> None:
        """Start a killed node's daemon again (its swarm state is on disk)."""
        node.socket.unlink(missing_ok=True)
        self._start_daemons([node])

    # ------------------------------------------------------------------ the underlay
    def in_underlay(self, fn: Callable[[], T], timeout: float = 120.0) -> T:
        """Call ``fn`` in a thread inside the underlay bridge's netns (the lab's outside:
        it reaches every node's address, and the gateway address is its own); sockets
        ``fn`` opens stay there.  Its exception, if any, is raised here."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                with netns(f"/run/netns/{self.bridge_ns}"):
                    box["ok"] = fn()
            except BaseException as err:  # noqa: BLE001 - handed to the caller below
                box["err"] = err

        t = threading.Thread(target=run, name=f"lk-underlay-{self.name}", daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise errors.UnsupportedError("swarm lab", f"underlay call still running after "
                                          f"{timeout:.0f} s")
        if "err" in box:
            raise box["err"]
        return box["ok"]  # type: ignore[no-any-return]

    def underlay_run(self, argv: Sequence[str], timeout: float = 60.0
                     ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the underlay bridge's netns (e.g. wget to a node's address)."""
        return subprocess.run(["ip", "netns", "exec", self.bridge_ns, *argv], text=True,
                              capture_output=True, timeout=timeout, check=False)

    def node_run(self, ref: int | str | LabNode, argv: Sequence[str], timeout: float = 60.0
                 ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in a node's own netns (its host: `ip -s xfrm state`, `nft list`)."""
        node = ref if isinstance(ref, LabNode) else self.node(ref)
        return subprocess.run(["ip", "netns", "exec", node.netns, *argv], text=True,
                              capture_output=True, timeout=timeout, check=False)

    # ------------------------------------------------------------------ services and tasks
    def node_by_id(self, node_id: str, via: LabNode | None = None) -> LabNode:
        """The lab node that the swarm knows as ``node_id`` (by its hostname)."""
        n = (via or self.any_manager()).api("GET", f"/nodes/{node_id}")
        return self.node(n["Description"]["Hostname"])

    def tasks(self, service: str, via: LabNode | None = None, **filters: str
              ) -> list[dict[str, Any]]:
        """GET /tasks for one service (by name or ID), with more filters as Docker's CLI
        sends them (``{"desired-state": {"running": true}}``)."""
        f: dict[str, dict[str, bool]] = {"service": {service: True}}
        for k, v in filters.items():
            f[k.replace("_", "-")] = {v: True}
        return list((via or self.any_manager()).api("GET", "/tasks", filters=f))

    def running_tasks(self, service: str, via: LabNode | None = None
                      ) -> list[dict[str, Any]]:
        """The service's tasks that should run and do (DesiredState and State running)."""
        return [t for t in self.tasks(service, via) if t.get("DesiredState") == "running"
                and t.get("Status", {}).get("State") == "running"]

    def wait_running(self, service: str, count: int, timeout: float = 60.0,
                     via: LabNode | None = None) -> list[dict[str, Any]]:
        """Wait until exactly ``count`` tasks of ``service`` run and no other task is
        meant to; return them.  UnsupportedError with the last states seen on timeout."""
        deadline = time.monotonic() + timeout
        seen: Any = None
        while time.monotonic() < deadline:
            try:
                tasks = self.tasks(service, via)
                seen = [(t.get("Slot"), t.get("DesiredState"), t["Status"].get("State"),
                         t["Status"].get("Err") or t["Status"].get("Message"))
                        for t in tasks]
                run = [t for t in tasks if t.get("DesiredState") == "running"
                       and t["Status"].get("State") == "running"]
                others = [t for t in tasks if t.get("DesiredState") == "running"
                          and t["Status"].get("State") != "running"]
                if len(run) == count and not others:
                    return run
            except (errors.LabkitError, OSError, KeyError) as err:
                seen = err
            time.sleep(0.1)
        raise errors.UnsupportedError("swarm lab", f"service {service}: not {count} running "
                                      f"tasks after {timeout:.0f} s; last seen {seen}")

    def task_container(self, task: dict[str, Any]) -> tuple[LabNode, str]:
        """The node running ``task`` and its container's ID there."""
        cid = (task.get("Status", {}).get("ContainerStatus") or {}).get("ContainerID")
        if not task.get("NodeID") or not cid:
            raise errors.NotFoundError("task container", str(task.get("ID")),
                                       hint=f"state {task.get('Status', {}).get('State')}")
        return self.node_by_id(task["NodeID"]), str(cid)

    def task_exec(self, task: dict[str, Any], argv: Sequence[str], timeout: float = 60.0
                  ) -> tuple[int, str]:
        """`docker exec` in the task's container on whichever node runs it:
        (exit status, stdout + stderr)."""
        node, cid = self.task_container(task)
        c = node.client(timeout=timeout)
        eid = c.execs.create(cid, list(argv))
        hj = c.execs.start(eid)
        hj.sock.settimeout(timeout)
        chunks = []
        try:
            while data := hj.recv():
                chunks.append(data)
        finally:
            hj.close()
        out, err = demux_all(b"".join(chunks))
        code = c.execs.inspect(eid).get("ExitCode")
        return (-1 if code is None else int(code)), (out + err).decode(errors="replace")

    def add_image(self, ref: str, files: dict[str, str] | None = None) -> str:
        """A busybox image (labkit's busybox-static rootfs) plus ``files`` (image path ->
        host path), imported as ``ref``: with the lab's registry, on the first node and
        pushed there (returns REGISTRY/ref, which every node pulls); else imported on
        every node (returns ``ref``)."""
        from labkit.engine.images.busybox import build_rootfs

        work = Path(f"/tmp/lksw-{self.name}-img")
        shutil.rmtree(work, ignore_errors=True)
        try:
            build_rootfs(work / "rootfs")
            for inside, host in (files or {}).items():
                dest = work / "rootfs" / inside.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(host, dest)  # follows links: the file itself
            tar = work / "rootfs.tar"
            with tarfile.open(tar, "w") as tf:
                tf.add(work / "rootfs", arcname=".")
            full = f"{self.registry}/{ref}" if self.registry else ref
            targets = self.nodes[:1] if self.registry else self.nodes
            for n in targets:
                n.client(timeout=300).images.import_file(tar, full)
            if self.registry:
                self.nodes[0].client(timeout=300).images.push(full)
            return full
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # ------------------------------------------------------------------ down
    def down(self) -> None:
        """Remove every process, namespace, link and directory the lab made."""
        for n in self.nodes:
            self.kill(n)
        for n in self.nodes:
            _unmount_under(n.base)
            shutil.rmtree(n.base, ignore_errors=True)
            with contextlib.suppress(errors.LabkitError, OSError):
                remove_netns(n.netns)  # its eth0 goes with it, and the veth peer with that
        self._stop_registry()
        with contextlib.suppress(errors.LabkitError, OSError):
            remove_netns(self.bridge_ns)
        if self.made_parent:
            parentcg.remove()  # in use by another engine's container: it stays
        self.record_path(self.name).unlink(missing_ok=True)


def labs() -> list[str]:
    d = paths.run() / "swarm-lab"
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


def _kill_containers(node: LabNode) -> None:
    """SIGKILL every container the node's runtime recorded (its state.json files), by
    cgroup (cgroup.kill takes the whole subtree: a container's init ignores SIGTERM), and
    remove the cgroup.  A container's processes carry neither the node's environment nor a
    path of its dirs as their root, so the runtime's record is what names them."""
    for f in Path(node.base, "run", "runtime").glob("*/state.json"):
        try:
            cg = json.loads(f.read_text()).get("cgroup")
        except (OSError, ValueError):
            continue
        # only the cgroup this record's own container was given (lk/<id>, runtime config)
        if not isinstance(cg, str) or cg.rsplit("/", 1)[-1] != f.parent.name:
            continue
        with contextlib.suppress(errors.LabkitError, OSError):
            group = open_cgroup(cg)
            if group.exists():
                pids = group.procs()
                group.kill()
                group.remove()
                _wait_gone(pids)  # reaps those that were re-parented to this process


def binary_with_libs(exe: str) -> dict[str, str]:
    """A dynamically linked host binary and the shared objects it loads (ldd(1)), as
    image path -> host path, for add_image: the same paths inside as outside."""
    path = shutil.which(exe)
    if path is None:
        raise errors.UnsupportedError("swarm lab image", f"{exe} is not installed",
                                      hint=f"apt-get install {exe}")
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=False).stdout
    files = {path: path}
    for line in out.splitlines():
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x..)"
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            files[m.group(1)] = m.group(1)
    return files


def _wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline and psutil.pid_exists(pid):
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.Error:
                break
            time.sleep(0.01)


def _unmount_under(base: str) -> None:
    with open("/proc/self/mounts") as f:
        targets = [line.split()[1] for line in f if line.split()[1].startswith(base + "/")]
    for t in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", t], check=False, capture_output=True)
