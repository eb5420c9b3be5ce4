"""Notebooks 13-16's swarm with services: a SwarmDemo lab (labkit.lab.swarm_demo: a keeper
removes it even if the kernel is killed) formed in one step, plus what every one of those
notebooks asks of it through the nodes' Engine APIs: networks, services, their tasks, a
command run inside a task (``docker exec``), a task's network namespace; and notebook 14's
own pieces: the embedded DNS's answers, how a VIP spreads requests, the routing mesh.

Nothing here decides anything the swarm decides: services, tasks, addresses, VIPs and DNS
records all come from the managers and the nodes, read back through the API or the kernel.
"""

from __future__ import annotations

import collections
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit import errors
from labkit.engine.client.streams import demux_all
from labkit.lab.swarm_demo import SwarmDemo, _in_thread, _say, _until, require
from labkit.measure.swarmlab import LabNode, SwarmLab

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    from matplotlib.axes import Axes

__all__ = ["WEB_ARGS", "ExecResult", "ServiceLab", "evenness", "exec_in", "in_thread",
           "nft_table", "parse_nslookup", "plot_spread", "refused", "require", "spread", "task_row"]

# A busybox web server that answers with its container's hostname (the container id's
# first 12 characters, as Docker sets it), so an answer names the task that gave it.
WEB_ARGS = ["sh", "-c",
            "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
SLEEP_ARGS = ["sleep", "3600"]
RUNNING = "running"


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What a command run in a task's container (POST /containers/{id}/exec) ended with."""

    code: int
    out: str
    err: str


# -- pure helpers (unit-tested) ------------------------------------------------------------

def parse_nslookup(text: str) -> list[str]:
    """The addresses busybox's nslookup printed for the name asked (the ones after its
    first ``Name:`` line; the lines before name the server, 127.0.0.11)."""
    out: list[str] = []
    seen_name = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Name:"):
            seen_name = True
        elif seen_name and line.startswith("Address"):
            addr = line.split(":", 1)[1].strip().split()[0] if ":" in line else ""
            # "Address 1: 10.0.1.2 web.1..." (older busybox) or "Address: 10.0.1.2"
            m = re.match(r"\d+\.\d+\.\d+\.\d+", addr) or re.search(
                r"\d+\.\d+\.\d+\.\d+", line)
            if m:
                out.append(m.group(0))
    return out


def spread(answers: Iterable[str]) -> dict[str, int]:
    """How many of the answers each backend gave (blank lines left out), by name."""
    return dict(sorted(collections.Counter(a.strip() for a in answers if a.strip()).items()))


def evenness(counts: Mapping[str, int], total: int) -> dict[str, Any]:
    """The spread's summary: backends, answers, and ``max_dev``: how far the most unevenly
    loaded backend is from an even share, as a fraction of it (0.1 = within 10 %)."""
    if total <= 0:
        raise errors.InvalidArgumentError("total", f"{total}: a positive request count")
    n = len(counts)
    even = total / n if n else 0.0
    got = sum(counts.values())
    return {"backends": n, "answered": got, "asked": total,
            "max_dev": (max(abs(v - even) for v in counts.values()) / even) if n else 1.0}


def nft_table(ruleset: str, name: str) -> str:
    """The block of table ``name`` (any family) in `nft list ruleset` output; '' if none."""
    out: list[str] = []
    depth = 0
    for line in ruleset.splitlines():
        if depth == 0 and re.match(rf"table \w+ {re.escape(name)} {{", line.strip()):
            depth = 1
            out.append(line)
            continue
        if depth:
            out.append(line)
            depth += line.count("{") - line.count("}")
    return "\n".join(out)


def task_row(task: Mapping[str, Any], hostnames: Mapping[str, str], service: str = ""
             ) -> dict[str, Any]:
    """One task as `docker service ps` shows it: NAME (service.slot), NODE, DESIRED STATE,
    CURRENT STATE, ERROR, plus its container and its addresses."""
    st = task.get("Status") or {}
    cs = st.get("ContainerStatus") or {}
    slot = task.get("Slot") or task.get("NodeID", "")[:12]
    addrs = [a for att in task.get("NetworksAttachments") or []
             for a in att.get("Addresses") or []]
    svc = service or task.get("_ServiceName") or task.get("ServiceID", "")[:12]
    return {"name": f"{svc}.{slot}",
            "id": task["ID"][:12], "node": hostnames.get(task.get("NodeID", ""), ""),
            "desired": task.get("DesiredState", ""), "state": st.get("State", ""),
            "error": st.get("Err", "") or "", "container": (cs.get("ContainerID") or "")[:12],
            "addresses": ", ".join(addrs)}


def plot_spread(counts: Mapping[str, int], total: int, title: str = "",
                ax: Axes | None = None) -> Axes:
    """Bars: answers per backend, the even share dashed."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3))
    names = list(counts)
    ax.bar(names, [counts[k] for k in names], color="tab:blue")
    if names:
        ax.axhline(total / len(names), linestyle="--", color="grey",
                   label=f"even: {total / len(names):.0f}")
        ax.legend(loc="lower right", fontsize="small")
    ax.set_ylabel("requests answered")
    ax.set_title(title or f"{total} requests over {len(names)} tasks")
    return ax


# -- the lab -------------------------------------------------------------------------------

class ServiceLab(SwarmDemo):
    """A formed swarm (``managers`` + ``workers``) to run services on; ``up()`` forms it."""

    def __init__(self, name: str, subnet: str, managers: int = 1, workers: int = 1,
                 registry: bool = False) -> None:
        super().__init__(name, subnet, managers, workers)
        if registry:  # measure.swarmlab's registry=True (a docker-registry on the underlay)
            self.lab = SwarmLab(managers, workers, name=name, subnet=subnet, registry=True)  # type: ignore[call-arg,unused-ignore]
        self._nodes_by_id: dict[str, LabNode] = {}

    def up(self) -> pd.DataFrame:
        """Start the nodes, init the swarm on m1, join the others; `docker node ls`."""
        t0 = time.monotonic()
        say = _say(t0)
        say(f"starting {len(self.lab.nodes)} nodes")
        self.start()
        say("swarm init")
        self.init()
        if len(self.lab.nodes) > 1:
            say("swarm join")
            self.join_all()
        self._nodes_by_id = {n.node_id(): n for n in self.lab.nodes}
        say("formed")
        return self.node_ls()

    @property
    def manager(self) -> LabNode:
        return self.lab.any_manager()

    def hostnames(self) -> dict[str, str]:
        """node id -> lab node name (m1, w1)."""
        if not self._nodes_by_id:
            self._nodes_by_id = {n.node_id(): n for n in self.lab.nodes}
        return {k: n.name for k, n in self._nodes_by_id.items()}

    def node_of(self, task: Mapping[str, Any]) -> LabNode:
        self.hostnames()
        try:
            return self._nodes_by_id[task["NodeID"]]
        except KeyError:
            raise errors.NotFoundError("lab node of task", task.get("ID", "?")) from None

    # networks
    def create_network(self, name: str, *, encrypted: bool = False,
                       attachable: bool = True, options: Mapping[str, str] | None = None
                       ) -> dict[str, Any]:
        """`docker network create -d overlay [--attachable] [-o encrypted] NAME` on a
        manager; the network as the manager shows it."""
        opts = dict(options or {})
        if encrypted:
            opts["encrypted"] = ""
        got = self.manager.api("POST", "/networks/create", {
            "Name": name, "Driver": "overlay", "Attachable": attachable,
            "CheckDuplicate": True, "Options": opts})
        return self.network(str(got["Id"]))

    def network(self, ref: str) -> dict[str, Any]:
        return dict(self.manager.api("GET", f"/networks/{ref}"))

    def vni(self, ref: str) -> int:
        """The network's VXLAN id, from its options (Docker's vxlanid_list)."""
        opts = self.network(ref).get("Options") or {}
        vni = str(opts.get("com.docker.network.driver.overlay.vxlanid_list", "")).split(",")[0]
        if not vni.isdigit():
            raise errors.NotFoundError("VXLAN id of network", ref)
        return int(vni)

    # services
    def create_service(self, name: str, args: Sequence[str] = SLEEP_ARGS, *,
                       image: str = "busybox", replicas: int | None = 1,
                       networks: Sequence[str] = (), ports: Sequence[tuple[int, int]] = (),
                       constraints: Sequence[str] = (), endpoint_mode: str = "vip",
                       secrets: Sequence[Mapping[str, Any]] = (),
                       env: Sequence[str] = ()) -> str:
        """`docker service create`; ``replicas=None`` is a global service; ``ports`` are
        (published, target) TCP ports in ingress mode.  Returns the service id."""
        cspec: dict[str, Any] = {"Image": image, "Args": list(args)}
        if secrets:
            cspec["Secrets"] = [dict(s) for s in secrets]
        if env:
            cspec["Env"] = list(env)
        task: dict[str, Any] = {"ContainerSpec": cspec,
                                "Networks": [{"Target": n} for n in networks],
                                "RestartPolicy": {"Condition": "any", "Delay": 200_000_000}}
        if constraints:
            task["Placement"] = {"Constraints": list(constraints)}
        endpoint: dict[str, Any] = {"Mode": endpoint_mode}
        if ports:
            endpoint["Ports"] = [{"Protocol": "tcp", "PublishedPort": p, "TargetPort": t,
                                  "PublishMode": "ingress"} for p, t in ports]
        mode = {"Global": {}} if replicas is None else {"Replicated": {"Replicas": replicas}}
        got = self.manager.api("POST", "/services/create", {
            "Name": name, "TaskTemplate": task, "Mode": mode, "EndpointSpec": endpoint})
        return str(got["ID"])

    def service(self, ref: str) -> dict[str, Any]:
        return dict(self.manager.api("GET", f"/services/{ref}"))

    def update_service(self, ref: str, change: Callable[[dict[str, Any]], None]) -> None:
        """`docker service update`: ``change`` edits a copy of the spec in place; sent with
        the service's version (optimistic concurrency, as the CLI does)."""
        cur = self.service(ref)
        spec = dict(cur["Spec"])
        change(spec)
        self.manager.api("POST", f"/services/{cur['ID']}/update", spec,
                         version=cur["Version"]["Index"])

    def remove_service(self, ref: str) -> None:
        self.manager.api("DELETE", f"/services/{ref}")

    def tasks(self, service: str, *, running: bool = False) -> list[dict[str, Any]]:
        """GET /tasks?filters={"service": [service]}; ``running``: only tasks that should
        run and do (what DNS and the VIP balance over)."""
        got = self.manager.api("GET", "/tasks", filters={"service": [service]})
        if running:
            got = [t for t in got if t.get("DesiredState") == RUNNING
                   and (t.get("Status") or {}).get("State") == RUNNING]
        return sorted(got, key=lambda t: (t.get("Slot") or 0, t.get("NodeID", "")))

    def wait_running(self, service: str, count: int, timeout: float = 90.0
                     ) -> list[dict[str, Any]]:
        """Wait until ``count`` tasks of ``service`` are running, every one of them on the
        service's current spec (the `_up-to-date` filter, as `docker service update` waits):
        during a rolling update old tasks still run, and counting them would end the wait
        before the update has replaced them.  Those tasks."""
        def ready() -> list[dict[str, Any]] | None:
            got = self.tasks(service, running=True)
            current = {t["ID"] for t in self.manager.api(
                "GET", "/tasks", filters={"service": [service], "_up-to-date": ["true"]})}
            ok = len(got) == count and {t["ID"] for t in got} <= current and all(
                ((t.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
                for t in got)
            return got if ok else None

        try:
            tasks: list[dict[str, Any]] = _until(ready, timeout,
                                                 f"{count} running tasks of {service}")
        except errors.UnsupportedError:
            states = [task_row(t, self.hostnames(), service) for t in self.tasks(service)
                      if t.get("DesiredState") == RUNNING]
            raise errors.UnavailableError(
                f"{count} running tasks of {service}: not within {timeout:.0f} s; now: "
                + "; ".join(f"{r['name']} on {r['node'] or '-'}: {r['state']} {r['error']}"
                            for r in states)) from None
        return tasks

    def settle(self, service: str, count: int, timeout: float = 60.0) -> pd.DataFrame:
        """Wait until ``count`` slots of ``service`` have a running task, or a task that
        ended refused (rejected or failed: the node could not run it, and said why); per
        slot, that task, as `docker service ps` shows it."""
        import pandas as pd

        ended = ("rejected", "failed")

        def pick() -> list[dict[str, Any]] | None:
            best: dict[Any, dict[str, Any]] = {}
            by_time = sorted(self.tasks(service),
                             key=lambda t: str((t.get("Status") or {}).get("Timestamp", "")))
            for t in by_time:
                state = (t.get("Status") or {}).get("State")
                key = t.get("Slot") or t.get("NodeID")
                have = (best.get(key, {}).get("Status") or {}).get("State")
                runs = state == RUNNING and t.get("DesiredState") == RUNNING
                if runs or (state in ended and have != RUNNING):
                    best[key] = t
            return list(best.values()) if len(best) >= count else None

        got: list[dict[str, Any]] = _until(pick, timeout,
                                           f"{service}: {count} tasks running or refused")
        return pd.DataFrame([task_row(t, self.hostnames(), service) for t in got],
                            columns=["name", "id", "node", "desired", "state", "error",
                                     "container", "addresses"])

    def service_ps(self, service: str, history: bool = False) -> pd.DataFrame:
        """`docker service ps SERVICE` as a table: the tasks that should run (with
        ``history``, also the ones they replaced, as Docker lists them)."""
        import pandas as pd

        rows = [task_row(t, self.hostnames(), service) for t in self.tasks(service)
                if history or t.get("DesiredState") == RUNNING]
        return pd.DataFrame(rows, columns=["name", "id", "node", "desired", "state", "error",
                                           "container", "addresses"])

    def task_ips(self, service: str, network: str) -> list[str]:
        """The running tasks' addresses on ``network`` (id or name), without prefix."""
        net = self.network(network)
        out = []
        for t in self.tasks(service, running=True):
            for att in t.get("NetworksAttachments") or []:
                if _net_id(att) == net["Id"]:
                    out += [a.split("/")[0] for a in att.get("Addresses") or []]
        return sorted(out, key=_ip_key)

    def vip(self, service: str, network: str) -> str:
        """The service's virtual IP on ``network`` (Endpoint.VirtualIPs), no prefix."""
        net = self.network(network)
        for v in (self.service(service).get("Endpoint") or {}).get("VirtualIPs") or []:
            if v.get("NetworkID") == net["Id"]:
                return str(v["Addr"]).split("/")[0]
        raise errors.NotFoundError(f"VIP of {service} on", network)

    # inside a task
    def container(self, task: Mapping[str, Any]) -> str:
        cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        if not cid:
            raise errors.NotFoundError("container of task", str(task.get("ID", "?")))
        return str(cid)

    def exec(self, task: Mapping[str, Any], argv: Sequence[str], timeout: float = 60.0
             ) -> ExecResult:
        """`docker exec` on the task's node: run ``argv`` in its container, wait for it."""
        return exec_in(self.node_of(task), self.container(task), argv, timeout)

    def pid(self, task: Mapping[str, Any]) -> int:
        """The task container's init pid, as its node's engine reports it."""
        info = self.node_of(task).api("GET", f"/containers/{self.container(task)}/json")
        return int(info["State"]["Pid"])

    def run_in_task_netns(self, task: Mapping[str, Any], argv: Sequence[str],
                          timeout: float = 60.0, **kw: Any) -> subprocess.CompletedProcess[str]:
        """A host program (iperf3, ip) in the task container's network namespace only:
        nsenter(1) --net=/proc/PID/ns/net; its files and mounts stay the host's."""
        return subprocess.run(["nsenter", f"--net=/proc/{self.pid(task)}/ns/net", *argv],
                              capture_output=True, text=True, timeout=timeout, check=False,
                              **kw)

    def run_in_node(self, ref: str, argv: Sequence[str], timeout: float = 30.0
                    ) -> subprocess.CompletedProcess[str]:
        """A host program in node ``ref``'s own network namespace (where its daemon runs
        and its overlay devices are)."""
        n = self.lab.node(ref)
        return subprocess.run(["nsenter", f"--net=/run/netns/{n.netns}", *argv],
                              capture_output=True, text=True, timeout=timeout, check=False)

    # notebook 14
    def dns(self, task: Mapping[str, Any], name: str) -> list[str]:
        """What the embedded DNS answers for ``name``, asked from inside ``task`` (busybox
        nslookup against the resolver in its /etc/resolv.conf)."""
        r = self.exec(task, ["nslookup", name], timeout=20)
        return parse_nslookup(r.out)

    def wait_discovered(self, task: Mapping[str, Any], service: str, network: str,
                        timeout: float = 30.0) -> float:
        """Wait until the DNS that ``task`` asks answers ``tasks.SERVICE`` with every running
        task's address: a node learns of other nodes' tasks from its next assignment
        snapshot, a moment after the managers do.  The seconds it took."""
        t0 = time.monotonic()
        want = set(self.task_ips(service, network))
        _until(lambda: set(self.dns(task, f"tasks.{service}")) == want, timeout,
               f"tasks.{service} answering {sorted(want)}")
        return round(time.monotonic() - t0, 2)

    def fetch_many(self, task: Mapping[str, Any], url: str, n: int,
                   timeout: float = 120.0) -> list[str]:
        """``n`` HTTP GETs of ``url`` from inside ``task``, one connection each (busybox
        wget in a shell loop, one exec); the answers, one line each ('' when one failed)."""
        if not 1 <= n <= 5000:
            raise errors.InvalidArgumentError("n", f"{n}: 1..5000 requests")
        # busybox's wget -T crashes (SIGSEGV) in Debian's 1.35: bounded by timeout(1) instead
        script = (f'i=0; while [ $i -lt {n} ]; do i=$((i+1)); '
                  f'timeout 5 wget -q -O - "$0" 2>/dev/null || echo; done')
        r = self.exec(task, ["sh", "-c", script, url], timeout=timeout)
        return r.out.splitlines()

    def by_task(self, service: str, answers: Iterable[str]) -> dict[str, int]:
        """The answers (container hostnames) counted per task name (service.slot); an
        answer of no running task keeps its text, a failed request counts as 'failed'."""
        names = self.names_of(service)
        out: dict[str, int] = {}
        for a in answers:
            k = names.get(a.strip(), a.strip() or "failed")
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items()))

    def nft(self, where: str | Mapping[str, Any], table: str) -> str:
        """nftables table ``table`` as `nft list ruleset` shows it, in node ``where``'s
        namespace (a node name) or a task container's (a task)."""
        argv = ["nft", "list", "ruleset"]
        r = (self.run_in_node(where, argv) if isinstance(where, str)
             else self.run_in_task_netns(where, argv))
        return nft_table(r.stdout, table)

    def names_of(self, service: str) -> dict[str, str]:
        """container hostname (its id's first 12 characters) -> task name (service.slot)."""
        return {self.container(t)[:12]: f"{service}.{t.get('Slot') or t['NodeID'][:6]}"
                for t in self.tasks(service, running=True)}

    def from_outside(self, ref: str, port: int, n: int = 1, path: str = "/") -> list[str]:
        """``n`` HTTP GETs of node ``ref``'s address on ``port``, sent from the underlay
        (the lab bridge's namespace when it has an address, else node m1's own), as an
        external load balancer would; one answer per request ('' when it failed)."""
        node = self.lab.node(ref)
        where = f"/run/netns/{self.lab.bridge_ns}" if getattr(self.lab, "gateway", "") \
            else f"/run/netns/{self.lab.nodes[0].netns}"
        out = []
        for _ in range(n):
            r = subprocess.run(["nsenter", f"--net={where}", "busybox", "timeout", "5",
                                "busybox", "wget", "-q", "-O", "-",
                                f"http://{node.addr}:{port}{path}"],
                               capture_output=True, text=True, timeout=30, check=False)
            out.append(r.stdout.strip() if r.returncode == 0 else "")
        return out

    def endpoint_mode(self, service: str) -> str:
        spec = (self.service(service).get("Spec") or {}).get("EndpointSpec") or {}
        return str(spec.get("Mode") or "vip")

    def set_endpoint_mode(self, service: str, mode: str) -> None:
        """`docker service update --endpoint-mode MODE`; dnsrr has no VIP, so it drops the
        published ingress ports (Docker refuses dnsrr with ingress ports)."""
        if mode not in ("vip", "dnsrr"):
            raise errors.InvalidArgumentError("endpoint mode", f"{mode!r}: vip or dnsrr")

        def change(spec: dict[str, Any]) -> None:
            ep = dict(spec.get("EndpointSpec") or {})
            ep["Mode"] = mode
            if mode == "dnsrr":
                ep.pop("Ports", None)
            spec["EndpointSpec"] = ep

        self.update_service(service, change)


def _net_id(attachment: Mapping[str, Any]) -> str:
    """The network id of a task's NetworksAttachments entry (the network object is Docker's
    network JSON, "Id"; swarmkit's own shape says "ID")."""
    net = attachment.get("Network") or {}
    return str(net.get("Id") or net.get("ID") or "")


def _ip_key(a: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in a.split("."))
    except ValueError:
        return (999,)


def exec_in(node: LabNode, cid: str, argv: Sequence[str], timeout: float = 60.0) -> ExecResult:
    """POST /containers/{cid}/exec and /exec/{id}/start on ``node``'s daemon; read both
    streams to their end (bounded by ``timeout``), then the exit code."""
    c = node.client(timeout=timeout)
    eid = c.execs.create(cid, list(argv))
    h = c.execs.start(eid)
    h.sock.settimeout(timeout)
    buf = bytearray()
    try:
        while chunk := h.recv():
            buf += chunk
    except TimeoutError:
        raise errors.UnavailableError(f"exec {' '.join(argv)!r} in {cid[:12]}: no end "
                                      f"within {timeout:.0f} s") from None
    finally:
        h.close()
    out, err = demux_all(bytes(buf))
    code: int | None = None
    for _ in range(100):  # ExitCode is set when the exec's process is reaped
        info = c.execs.inspect(eid)
        if info.get("ExitCode") is not None and not info.get("Running"):
            code = int(info["ExitCode"])
            break
        time.sleep(0.02)
    return ExecResult(-1 if code is None else code, out.decode(errors="replace"),
                      err.decode(errors="replace"))


def in_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a thread of its own (pyroute2 and asyncio users inside a Jupyter
    kernel, whose main thread already runs an event loop); its value."""
    box: list[Any] = []
    _in_thread(lambda: box.append(fn()))
    return box[0]


def refused(call: Callable[[], Any]) -> str:
    """The message of the error ``call`` ends with ('' when it went through)."""
    try:
        call()
    except errors.LabkitError as err:
        return str(err)
    return ""
