"""Issue 13's three service figures, measured on a local swarm lab (measure.swarmlab).

* Reschedule: a replicated service spread over 1 manager + 2 workers; a worker is killed
  (SIGKILL of its daemon and all it started); the time from the moment a manager reports the
  node ``down`` (GET /nodes, Status.State) to the moment every replica runs again on the
  nodes left.  Target: under 5 s.  The time from the kill to ``down`` is reported too: it is
  the heartbeat's business (3 missed periods, swarmkit's rule), not the orchestrator's.
* Routing mesh spread: a 3-replica service publishing port 8080 (ingress mode) whose tasks
  answer with their own hostname (busybox httpd); 1,000 HTTP requests, one connection each,
  from the lab's underlay netns to ONE node's address; the count per task and the largest
  deviation from an even share.  Target: within 10 %.
* Overlay throughput: iperf3 (Debian's, copied with its libraries into a busybox image
  pushed to the lab's registry) from a task on one worker to a task on the other, over a
  plain overlay and over an encrypted one (IPsec ESP); Gbit/s medians and their ratio.  A
  kernel without ESP or AES-GCM (this host's; the VM has both) gets the plain figure only.

Every service and network made here is removed afterwards; the lab itself is the caller's.
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labkit import errors
from labkit.measure.swarmlab import LabNode, SwarmLab, binary_with_libs

__all__ = ["HTTPD_HOSTNAME", "MeshSpread", "RescheduleTrial", "Throughput", "create_service", "http_get",
           "mesh_spread", "overlay_throughput", "remove_service", "reschedule_trials",
           "summary"]

Progress = Callable[[str], None]
RESCHEDULE_TARGET_S = 5.0
MESH_TARGET = 0.10
NS = 1_000_000_000
# sleep, httpd and iperf3 run as pid 1, which SIGTERM does not end: a short grace keeps
# every removal from waiting Docker's 10 s default before the SIGKILL
GRACE = NS
# a task that answers GET / with its own hostname (busybox httpd, in the foreground)
HTTPD_HOSTNAME = ("mkdir -p /www && hostname > /www/index.html && "
                  "exec httpd -f -p 80 -h /www")


@dataclass
class RescheduleTrial:
    killed: str          # the worker killed (w1, w2)
    moved: int           # replicas that ran on it
    to_down_s: float     # kill -> a manager reports the node down
    to_running_s: float  # down -> every replica running again


@dataclass
class MeshSpread:
    node: str                                   # the node whose address was asked
    requests: int
    counts: dict[str, int] = field(default_factory=dict)  # task hostname -> answers
    failed: int = 0

    @property
    def max_deviation(self) -> float:
        """Largest |count - even share| / even share over the tasks (0.0 = perfectly even)."""
        if not self.counts:
            return float("inf")
        even = (self.requests - self.failed) / len(self.counts)
        return max(abs(c - even) for c in self.counts.values()) / even


@dataclass
class Throughput:
    seconds: int
    plain_gbps: list[float] = field(default_factory=list)
    encrypted_gbps: list[float] = field(default_factory=list)


# ---------------------------------------------------------------------- helpers
def create_service(via: LabNode, spec: dict[str, Any]) -> str:
    """POST /services/create; the new service's ID."""
    return str(via.api("POST", "/services/create", spec)["ID"])


def remove_service(via: LabNode, ref: str, lab: SwarmLab | None = None,
                   timeout: float = 30.0) -> None:
    """DELETE /services/{ref}; with ``lab``, also wait until no task of it is left running."""
    with contextlib.suppress(errors.NotFoundError):
        via.api("DELETE", f"/services/{ref}")
    if lab is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not lab.running_tasks(ref, via):
                return
        except (errors.LabkitError, OSError):
            return
        time.sleep(0.2)


def _sleeper(name: str, replicas: int, image: str = "busybox:latest",
             **task: Any) -> dict[str, Any]:
    return {"Name": name, "Labels": {"lk.bench": "services"},
            "TaskTemplate": {"ContainerSpec": {"Image": image, "StopGracePeriod": GRACE,
                                               "Command": ["sleep", "86400"]}, **task},
            "Mode": {"Replicated": {"Replicas": replicas}}}


def _node_state(via: LabNode, hostname: str) -> str:
    for n in via.api("GET", "/nodes"):
        if n["Description"]["Hostname"] == hostname:
            return str(n["Status"]["State"])
    return "absent"


def http_get(addr: str, port: int, timeout: float = 3.0) -> str:
    """One HTTP/1.0 GET / on a new connection; the body, stripped (a task's hostname)."""
    with socket.create_connection((addr, port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
        raise ConnectionError(f"not a 200 answer: {head[:60]!r}")
    return body.decode(errors="replace").strip()


# ---------------------------------------------------------------------- reschedule
def reschedule_trials(lab: SwarmLab, trials: int = 3, replicas: int = 6,
                      timeout: float = 60.0, progress: Progress | None = None
                      ) -> list[RescheduleTrial]:
    """``trials`` worker kills; each time the worker holding most replicas is killed, timed,
    restarted and back ``ready`` before the next trial."""
    say = progress or (lambda _m: None)
    mgr = lab.managers()[0]
    name = "lkbench-resched"
    create_service(mgr, _sleeper(name, replicas))
    out: list[RescheduleTrial] = []
    try:
        lab.wait_running(name, replicas, timeout, via=mgr)
        for i in range(trials):
            tasks = lab.wait_running(name, replicas, timeout, via=mgr)
            per = Counter(lab.node_by_id(t["NodeID"], mgr).name for t in tasks)
            workers = [n for n in lab.nodes if n.role == "worker"]
            if not workers:
                raise errors.InvalidArgumentError("lab", "the reschedule bench needs a worker")
            victim = max(workers, key=lambda n: per.get(n.name, 0))
            victim_id = victim.node_id()
            t0 = time.monotonic()
            lab.kill(victim)
            t_down = None
            while time.monotonic() - t0 < timeout:
                try:
                    if _node_state(mgr, victim.hostname) == "down":
                        t_down = time.monotonic()
                        break
                except (errors.LabkitError, OSError):
                    pass
                time.sleep(0.02)
            if t_down is None:
                raise errors.UnsupportedError("reschedule bench", f"{victim.name} not marked "
                                              f"down within {timeout:.0f} s")
            t_ok = None
            while time.monotonic() - t_down < timeout:
                try:
                    run = lab.running_tasks(name, mgr)
                    if len(run) >= replicas and all(t["NodeID"] != victim_id for t in run):
                        t_ok = time.monotonic()
                        break
                except (errors.LabkitError, OSError, KeyError):
                    pass
                time.sleep(0.02)
            if t_ok is None:
                raise errors.UnsupportedError("reschedule bench", f"trial {i + 1}: replicas "
                                              f"not running again within {timeout:.0f} s")
            out.append(RescheduleTrial(victim.name, per.get(victim.name, 0),
                                       t_down - t0, t_ok - t_down))
            say(f"reschedule {i + 1}: killed {victim.name} ({out[-1].moved} replicas), down "
                f"after {out[-1].to_down_s:.2f} s, all running {out[-1].to_running_s:.2f} s "
                "later")
            lab.restart(victim)
            lab.wait_ready(timeout)
    finally:
        remove_service(mgr, name, lab)
    return out


# ---------------------------------------------------------------------- routing mesh
def mesh_spread(lab: SwarmLab, requests: int = 1000, replicas: int = 3, port: int = 8080,
                node: str | None = None, timeout: float = 60.0,
                progress: Progress | None = None) -> MeshSpread:
    """``requests`` connections from the underlay to one node's published port."""
    say = progress or (lambda _m: None)
    mgr = lab.managers()[0]
    target = lab.node(node) if node else lab.nodes[-1]
    name = "lkbench-mesh"
    create_service(mgr, {
        "Name": name, "Labels": {"lk.bench": "services"},
        "TaskTemplate": {"ContainerSpec": {
            "Image": "busybox:latest", "StopGracePeriod": GRACE,
            "Command": ["sh", "-c", HTTPD_HOSTNAME]}},
        "Mode": {"Replicated": {"Replicas": replicas}},
        "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80,
                                                   "PublishedPort": port,
                                                   "PublishMode": "ingress"}]}})
    try:
        lab.wait_running(name, replicas, timeout, via=mgr)
        res = MeshSpread(target.name, requests)

        def ask() -> None:
            # the mesh is programmed once the tasks run: wait until every task has answered
            deadline = time.monotonic() + timeout
            seen: set[str] = set()
            while len(seen) < replicas and time.monotonic() < deadline:
                try:
                    seen.add(http_get(target.addr, port))
                except OSError:
                    time.sleep(0.1)
            if len(seen) < replicas:
                raise errors.UnsupportedError("mesh bench", f"only {len(seen)} of {replicas} "
                                              f"tasks answered on {target.addr}:{port}")
            for i in range(requests):
                try:
                    h = http_get(target.addr, port)
                    res.counts[h] = res.counts.get(h, 0) + 1
                except OSError:
                    res.failed += 1
                if (i + 1) % 100 == 0:
                    say(f"mesh: {i + 1}/{requests} requests to {target.name}")

        lab.in_underlay(ask, timeout=timeout + requests * 3.0)
        return res
    finally:
        remove_service(mgr, name, lab)


# ---------------------------------------------------------------------- throughput
def _address_on(task: dict[str, Any], net_id: str) -> str:
    for att in task.get("NetworksAttachments") or []:
        if att["Network"].get("ID") == net_id or att["Network"].get("Id") == net_id:
            return str(att["Addresses"][0]).split("/")[0]
    raise errors.NotFoundError("task address", f"{task['ID']} on network {net_id}")


def _gbps(report: str) -> float:
    """iperf3 -J's receiver-side rate (end.sum_received.bits_per_second) in Gbit/s."""
    try:
        doc = json.loads(report[report.index("{"):])
        return float(doc["end"]["sum_received"]["bits_per_second"]) / 1e9
    except (ValueError, KeyError) as err:
        raise errors.UnsupportedError("iperf3", f"no result: {report[-300:]!r}") from err


def overlay_throughput(lab: SwarmLab, runs: int = 3, seconds: int = 3,
                       timeout: float = 90.0, progress: Progress | None = None
                       ) -> Throughput:
    """iperf3 between tasks on the first two non-manager nodes (or any two nodes), over a
    plain and an encrypted overlay, runs interleaved."""
    say = progress or (lambda _m: None)
    if len(lab.nodes) < 2:
        raise errors.InvalidArgumentError("lab", "the throughput bench needs two nodes")
    mgr = lab.managers()[0]
    pair = ([n for n in lab.nodes if n.role == "worker"] + lab.managers())[:2]
    say("throughput: an iperf3 image for the lab")
    image = lab.add_image("lk-iperf3:latest", binary_with_libs("iperf3"))
    made: list[str] = []
    nets: dict[str, str] = {}
    res = Throughput(seconds)
    kinds: list[tuple[str, dict[str, str]]] = [("plain", {})]
    if esp_supported(lab):
        kinds.append(("encrypted", {"encrypted": ""}))
    else:
        say("throughput: this kernel has no IPsec ESP with AES-GCM: plain overlay only")
    try:
        for kind, opts in kinds:
            nid = mgr.api("POST", "/networks/create", {
                "Name": f"lkbench-{kind}", "Driver": "overlay", "Options": opts,
                "Labels": {"lk.bench": "services"}})["Id"]
            nets[kind] = str(nid)
            for role, node, cmd in (("srv", pair[0], ["iperf3", "-s"]),
                                    ("cli", pair[1], ["sleep", "86400"])):
                name = f"lkbench-{kind}-{role}"
                create_service(mgr, {
                    "Name": name, "Labels": {"lk.bench": "services"},
                    "TaskTemplate": {
                        "ContainerSpec": {"Image": image, "Command": cmd,
                                          "StopGracePeriod": GRACE},
                        "Placement": {"Constraints": [f"node.hostname=={node.hostname}"]},
                        "Networks": [{"Target": str(nid)}]},
                    "Mode": {"Replicated": {"Replicas": 1}}})
                made.append(name)
        pairs = {}
        for kind, nid in nets.items():
            srv = lab.wait_running(f"lkbench-{kind}-srv", 1, timeout, via=mgr)[0]
            cli = lab.wait_running(f"lkbench-{kind}-cli", 1, timeout, via=mgr)[0]
            pairs[kind] = (cli, _address_on(srv, nid))
        for i in range(runs):
            for kind, (cli, addr) in pairs.items():
                code, out = lab.task_exec(cli, ["iperf3", "-c", addr, "-t", str(seconds),
                                                "-J"], timeout=seconds + 30)
                if code != 0:
                    raise errors.UnsupportedError("iperf3", f"{kind} run {i + 1} exited "
                                                  f"{code}: {out[-300:]}")
                rate = _gbps(out)
                (res.plain_gbps if kind == "plain" else res.encrypted_gbps).append(rate)
                say(f"throughput {i + 1}/{runs}: {kind} {rate:.2f} Gbit/s")
    finally:
        for name in made:
            remove_service(mgr, name, lab)
        for nid in nets.values():
            _remove_network(mgr, nid)
    return res


def esp_supported(lab: SwarmLab) -> bool:
    """Whether the kernel takes an ESP SA with AES-GCM (labkit.engine.net.xfrm's probe),
    asked in the lab's underlay netns so the host's own XFRM tables are never touched."""
    from labkit.engine.net import xfrm

    return bool(lab.in_underlay(xfrm.esp_supported))


def _remove_network(via: LabNode, nid: str, timeout: float = 20.0) -> None:
    """DELETE a swarm network once its tasks are gone (a network in use is refused)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            via.api("DELETE", f"/networks/{nid}")
            return
        except errors.NotFoundError:
            return
        except errors.LabkitError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


# ---------------------------------------------------------------------- summary
def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summary(trials: list[RescheduleTrial], mesh: MeshSpread | None,
            tput: Throughput | None) -> dict[str, Any]:
    """Medians, the mesh's deviation and the encrypted/plain ratio, against the targets."""
    out: dict[str, Any] = {}
    if trials:
        r = _med([t.to_running_s for t in trials])
        out.update(reschedule_s=r, reschedule_to_down_s=_med([t.to_down_s for t in trials]),
                   reschedule_met=r < RESCHEDULE_TARGET_S, trials=len(trials))
    if mesh is not None:
        out.update(mesh_requests=mesh.requests, mesh_failed=mesh.failed,
                   mesh_counts=dict(sorted(mesh.counts.items())),
                   mesh_max_deviation=mesh.max_deviation,
                   mesh_met=mesh.failed == 0 and mesh.max_deviation <= MESH_TARGET)
    if tput is not None and tput.plain_gbps and tput.encrypted_gbps:
        p, e = _med(tput.plain_gbps), _med(tput.encrypted_gbps)
        out.update(plain_gbps=p, encrypted_gbps=e, encrypted_ratio=e / p if p else float("nan"))
    return out
