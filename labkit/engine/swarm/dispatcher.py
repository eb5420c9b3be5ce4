"""The dispatcher: every manager serves the Assignments streams of the nodes connected to it.

A node gets its whole assignment set (the "snapshot", schema below and in SWARM13.md) again
each time it changes, never a diff: a node that missed a message or reconnected to another
manager is whole again with the next one (swarmkit's dispatcher sends "complete" sets the
same way).  The snapshot carries only what the node's own tasks need: another node's
secrets never reach it (issue 13: "delivered only to nodes with the service's tasks").

Snapshot (JSON in AssignmentSet.snapshot)::

    {"node_id", "tasks": [...], "secrets": {id: {"Name", "Data"}}, "configs": {...},
     "networks": {net_id: NetInfo}, "attachments": {net_id: "10.0.0.5/24"},
     "peers": {net_id: [{"node", "addr", "ips"}]}, "services": [...], "ingress": [...],
     "keys"?: [{"Key", "Tag"}], "data_port": 4789}

One poller per manager reads the store (woken by an etcd watch when the store has one, else
every 200 ms) into a shared ``View``; each stream computes its node's snapshot from the view
and sends it only when it differs from the last one sent.

Task states only move forward (Docker's order, swarmkit api/types.proto TaskState): an
update that would move a task back, or touch a task assigned to another node, is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from labkit import errors
from labkit.engine.swarm import ca, objects
from labkit.engine.swarm.rpc import swarm_pb2 as pb
from labkit.engine.swarm.store import (
    ALIVE,
    ATTACH,
    CLUSTER,
    CONFIGS,
    NETWORKS,
    NODES,
    PREFIX,
    SECRETS,
    SERVICES,
    TASKS,
)

__all__ = ["STATES", "TERMINAL", "Dispatcher", "View", "check_transition", "net_info",
           "snapshot"]

log = logging.getLogger("labkit.swarm")
Obj = dict[str, Any]

# Docker's task states in order (moby api/types/swarm/task.go); the agent's start at accepted
STATES = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting",
          "running", "complete", "shutdown", "failed", "rejected", "remove", "orphaned")
TERMINAL = frozenset({"complete", "shutdown", "failed", "rejected", "remove", "orphaned"})
POLL_S = 0.2
ATTACH_WAIT_S = 10.0
KEEPALIVE_S = 5.0  # an empty set this often on a quiet stream (agent.STREAM_IDLE_S)


class Store(Protocol):
    async def get(self, key: str) -> tuple[Obj, int] | None: ...
    async def create(self, key: str, obj: Obj) -> None: ...
    async def cas(self, key: str, obj: Obj, version: int) -> None: ...
    async def list(self, prefix: str) -> list[tuple[Obj, int]]: ...
    async def delete(self, key: str) -> bool: ...


def check_transition(current: str, new: str) -> bool:
    """Whether a task may go from ``current`` to ``new``: forward only, never out of a
    terminal state (swarmkit dispatcher: "cannot transition backwards")."""
    if new not in STATES:
        raise errors.InvalidArgumentError("state", f"unknown task state {new!r}")
    if current in TERMINAL:
        return False
    cur = STATES.index(current) if current in STATES else 0
    return STATES.index(new) > cur


def _net_id(net: Obj) -> str:
    return str(net.get("Id") or net.get("ID") or "")


def _ip(cidr: str) -> str:
    return cidr.split("/", 1)[0]


def net_info(net: Obj) -> Obj:
    """The NetInfo of a swarm network record (SWARM13.md)."""
    cfg = ((net.get("IPAM") or {}).get("Config") or [{}])[0] or {}
    opts = dict(net.get("Options") or {})
    vni = net.get("_VNI")
    if vni is None:
        with contextlib.suppress(ValueError):
            vni = int(str(opts.get("com.docker.network.driver.overlay.vxlanid_list", "")
                          ).split(",")[0])
    mtu = opts.get("com.docker.network.driver.mtu")
    gateway = cfg.get("Gateway") or ""
    subnet = cfg.get("Subnet") or ""
    if subnet and not gateway:
        with contextlib.suppress(ValueError):
            gateway = str(next(ipaddress.ip_network(subnet, strict=False).hosts()))
    return {"ID": _net_id(net), "Name": net.get("Name", ""), "VNI": int(vni or 0),
            "Subnet": subnet, "Gateway": gateway, "Encrypted": "encrypted" in opts,
            "MTU": int(str(mtu)) if str(mtu or "").isdigit() else None,
            "Attachable": bool(net.get("Attachable")), "Internal": bool(net.get("Internal")),
            "Ingress": bool(net.get("Ingress")), "Labels": dict(net.get("Labels") or {}),
            "Options": opts}


def _task_public(task: Obj, version: int) -> Obj:
    out = objects.public(task, version)
    for k in ("_SpecVersion", "_ServiceName", "_Attachment"):
        if k in task:
            out[k] = task[k]
    return out


def _state(task: Obj) -> str:
    return str((task.get("Status") or {}).get("State") or "new")


def _live(task: Obj) -> bool:
    """A task that holds (or is about to hold) an endpoint: its addresses are in use."""
    return bool(task.get("NodeID")) and _state(task) not in TERMINAL \
        and task.get("DesiredState", "running") == "running"


def _attachments(task: Obj) -> list[tuple[str, Obj, list[str]]]:
    out = []
    for a in task.get("NetworksAttachments") or []:
        net = a.get("Network") or {}
        if _net_id(net):
            out.append((_net_id(net), net, list(a.get("Addresses") or [])))
    return out


def _service_name(svc: Obj) -> str:
    return str((svc.get("Spec") or {}).get("Name") or "")


def _service_aliases(svc: Obj, net_id: str, net_name: str) -> list[str]:
    spec = svc.get("Spec") or {}
    nets = (spec.get("TaskTemplate") or {}).get("Networks") or spec.get("Networks") or []
    for n in nets:
        if n.get("Target") in (net_id, net_name):
            return [str(a) for a in n.get("Aliases") or []]
    return []


def snapshot(node_id: str, *, tasks: list[tuple[Obj, int]], services: list[Obj],
             networks: list[Obj], secrets: list[Obj], configs: list[Obj], nodes: list[Obj],
             attach: dict[tuple[str, str], str], cluster: Obj | None) -> Obj:
    """The assignment set of ``node_id`` (pure; SWARM13.md "The assignment snapshot")."""
    mine = [(t, v) for t, v in tasks if t.get("NodeID") == node_id
            and (_state(t) not in TERMINAL or t.get("DesiredState") == "running")]
    mine.sort(key=lambda tv: str(tv[0].get("ID")))
    running_mine = [t for t, _ in mine if t.get("DesiredState", "running") == "running"]
    secret_ids = {s.get("SecretID") for t in running_mine
                  for s in ((t.get("Spec") or {}).get("ContainerSpec") or {}).get("Secrets") or []}
    config_ids = {c.get("ConfigID") for t in running_mine
                  for c in ((t.get("Spec") or {}).get("ContainerSpec") or {}).get("Configs") or []}
    out_secrets = {s["ID"]: {"Name": s["Spec"]["Name"], "Data": s.get("_Data", "")}
                   for s in secrets if s.get("ID") in secret_ids}
    out_configs = {c["ID"]: {"Name": c["Spec"]["Name"], "Data": c["Spec"].get("Data", "")}
                   for c in configs if c.get("ID") in config_ids}

    by_id = {_net_id(n): n for n in networks}
    used: dict[str, Obj] = {}
    for t, _ in mine:
        for nid, _net, _addrs in _attachments(t):
            # a network already removed from the store is not sent: its tasks are on their
            # way out, and the attachment's copy (moby's task shape) is no NetInfo source
            if nid in by_id:
                used[nid] = by_id[nid]
    my_attach = {net: addr for (node, net), addr in attach.items() if node == node_id}
    ingress = next((n for n in networks if n.get("Ingress")), None)
    if ingress is not None and _net_id(ingress) in my_attach:
        used[_net_id(ingress)] = ingress
    infos = {nid: net_info(net) for nid, net in sorted(used.items())}

    addr_of = {n["ID"]: (n.get("Status") or {}).get("Addr", "") for n in nodes}
    # every endpoint on each network: (node, ip), from live tasks and node attachments
    endpoints: dict[str, dict[str, list[str]]] = {nid: {} for nid in infos}
    for t, _ in tasks:
        if not _live(t):
            continue
        for nid, _net, addrs in _attachments(t):
            if nid in endpoints:
                endpoints[nid].setdefault(t["NodeID"], []).extend(_ip(a) for a in addrs)
    for (node, nid), addr in attach.items():
        if nid in endpoints:
            endpoints[nid].setdefault(node, []).append(_ip(addr))
    peers = {nid: [{"node": node, "addr": addr_of.get(node, ""), "ips": sorted(set(ips))}
                   for node, ips in sorted(eps.items()) if node != node_id]
             for nid, eps in endpoints.items()}

    running = [t for t, _ in tasks if _state(t) == "running" and _live(t)]
    out_services = []
    ingress_ports = []
    ingress_id = _net_id(ingress) if ingress is not None else ""
    for svc in sorted(services, key=lambda s: str(s.get("ID"))):
        if svc.get("_Deleted"):
            continue
        sid, name = svc.get("ID"), _service_name(svc)
        endpoint = svc.get("Endpoint") or {}
        mode = ((svc.get("Spec") or {}).get("EndpointSpec") or {}).get("Mode") or "vip"
        vips = {v["NetworkID"]: _ip(v["Addr"]) for v in endpoint.get("VirtualIPs") or []
                if v.get("NetworkID") and v.get("Addr")}
        task_ips: dict[str, list[str]] = {}
        for t in running:
            if t.get("ServiceID") != sid:
                continue
            for nid, _net, addrs in _attachments(t):
                task_ips.setdefault(nid, []).extend(_ip(a) for a in addrs)
        on = sorted((set(vips) | set(task_ips)) & set(infos))
        if on:
            out_services.append({
                "ID": sid, "Name": name, "Mode": mode,
                "Aliases": {n: _service_aliases(svc, n, infos[n]["Name"]) for n in on},
                "VIPs": {n: vips[n] for n in on if n in vips and mode == "vip"},
                "Tasks": {n: sorted(task_ips.get(n, [])) for n in on}})
        for p in endpoint.get("Ports") or []:
            if (p.get("PublishMode") or "ingress") != "ingress" or not p.get("PublishedPort"):
                continue
            ingress_ports.append({
                "Protocol": p.get("Protocol") or "tcp", "PublishedPort": p["PublishedPort"],
                "TargetPort": p.get("TargetPort"), "ServiceID": sid,
                "Backends": sorted(task_ips.get(ingress_id, []))})

    cl = cluster or {}
    out: Obj = {"node_id": node_id, "tasks": [_task_public(t, v) for t, v in mine],
                "secrets": out_secrets, "configs": out_configs, "networks": infos,
                "attachments": {n: a for n, a in sorted(my_attach.items())},
                "peers": peers, "services": out_services, "ingress": ingress_ports,
                "data_port": int(cl.get("DataPathPort") or 4789)}
    if any(i["Encrypted"] for i in infos.values()):
        keys = sorted(cl.get("_NetworkKeys") or [], key=lambda k: -int(k.get("Tag", 0)))
        out["keys"] = [{"Key": k["Key"], "Tag": k["Tag"]} for k in keys]
    return out


@dataclass
class View:
    """What the store holds at one moment, read once per change for every stream."""

    revision: int = 0
    tasks: list[tuple[Obj, int]] = field(default_factory=list)
    services: list[Obj] = field(default_factory=list)
    networks: list[Obj] = field(default_factory=list)
    secrets: list[Obj] = field(default_factory=list)
    configs: list[Obj] = field(default_factory=list)
    nodes: list[Obj] = field(default_factory=list)
    attach: dict[tuple[str, str], str] = field(default_factory=dict)
    cluster: Obj | None = None

    @classmethod
    async def load(cls, store: Store) -> View:
        v = cls()
        revs: list[int] = []

        async def grab(prefix: str) -> list[Obj]:
            got = await store.list(prefix)
            revs.extend(r for _, r in got)
            return [o for o, _ in got]
        v.tasks = await store.list(TASKS)
        revs.extend(r for _, r in v.tasks)
        v.services = await grab(SERVICES)
        v.networks = await grab(NETWORKS)
        v.secrets = await grab(SECRETS)
        v.configs = await grab(CONFIGS)
        v.nodes = await grab(NODES)
        v.attach = await _attach(store)
        c = await store.get(CLUSTER)
        v.cluster = c[0] if c else None
        v.revision = max(revs, default=0)
        return v

    def snapshot(self, node_id: str) -> Obj:
        return snapshot(node_id, tasks=self.tasks, services=self.services,
                        networks=self.networks, secrets=self.secrets, configs=self.configs,
                        nodes=self.nodes, attach=self.attach, cluster=self.cluster)


async def _attach(store: Store) -> dict[tuple[str, str], str]:
    """attach/<node>/<net> -> address: the key names the pair, so read the keys (the
    etcd client's range on a ClusterStore, ``keys()`` on the test double)."""
    out: dict[tuple[str, str], str] = {}
    client = getattr(store, "client", None)
    opener = getattr(store, "_open", None)
    if client is not None and opener is not None:
        for kv in await client.range_prefix(ATTACH):
            key = kv.key.decode()
            node, _, net = key.removeprefix(ATTACH).partition("/")
            out[(node, net)] = str(opener(key, kv.value).get("Addr", ""))
        return out
    for key in getattr(store, "keys", lambda _p: [])(ATTACH):
        got = await store.get(key)
        if got is not None:
            node, _, net = key.removeprefix(ATTACH).partition("/")
            out[(node, net)] = str(got[0].get("Addr", ""))
    return out


@dataclass
class _LogSub:
    queue: asyncio.Queue[pb.LogChunk | None]
    nodes: set[str]
    # which node may speak for which task: a node's chunks for another node's task are
    # dropped (the caller is known from its certificate, the task's node from the store)
    owner: dict[str, str] = field(default_factory=dict)


class Dispatcher:
    """The manager's side of Assignments / UpdateTaskStatus / PublishLogs / Attach."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.view: View | None = None
        self._changed = asyncio.Condition()
        self._dirty = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._streams: dict[str, asyncio.Queue[pb.LogRequest]] = {}
        self._logs: dict[str, _LogSub] = {}

    # ------------------------------------------------------------------ the shared view
    def start(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name="swarm-dispatcher")
            if getattr(getattr(self.store, "client", None), "watch_prefix", None):
                self._watcher = asyncio.create_task(self._watch(), name="swarm-dispatch-watch")

    async def stop(self) -> None:
        for t in (self._poller, self._watcher):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        self._poller = self._watcher = None

    def kick(self) -> None:
        """Read the store again now (after a write of our own)."""
        self._dirty.set()

    async def _watch(self) -> None:
        client: Any = self.store.client  # type: ignore[attr-defined]
        while True:
            try:
                async for ev in client.watch_prefix(PREFIX):
                    # liveness leases are renewed every heartbeat and are in no snapshot
                    if not ev.kv.key.startswith(ALIVE.encode()):
                        self._dirty.set()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - the poller covers for it meanwhile
                log.debug("dispatcher watch: %s", err)
            await asyncio.sleep(1.0)

    async def _poll(self) -> None:
        watched = self._watcher is not None
        while True:
            try:
                view = await View.load(self.store)
                async with self._changed:
                    self.view = view
                    self._changed.notify_all()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - a lost quorum: try again
                log.warning("dispatcher: store read failed: %s", err)
            self._dirty.clear()
            # with a watch, a change wakes us at once; the timeout is the safety net
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), 1.0 if watched else POLL_S)

    async def _next_view(self, seen: View | None) -> View:
        async with self._changed:
            await self._changed.wait_for(lambda: self.view is not None and self.view is not seen)
            assert self.view is not None
            return self.view

    # ------------------------------------------------------------------ Assignments
    async def assignments(self, node_id: str) -> AsyncIterator[pb.AssignmentSet]:
        """The node's stream: a full set whenever it changes, and log requests."""
        if await self.store.get(NODES + node_id) is None:  # removed (`node rm`): no tasks
            raise errors.ForbiddenError(f"node {node_id} is not a member of this swarm")
        self.start()
        queue: asyncio.Queue[pb.LogRequest] = asyncio.Queue()
        self._streams[node_id] = queue
        last: bytes | None = None
        seen: View | None = None
        try:
            while True:
                view_t = asyncio.ensure_future(self._next_view(seen))
                log_t = asyncio.ensure_future(queue.get())
                try:
                    done, _ = await asyncio.wait({view_t, log_t}, timeout=KEEPALIVE_S,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if not done:  # an empty set: the node knows its manager is there
                        yield pb.AssignmentSet(revision=seen.revision if seen else 0)
                        continue
                finally:
                    for t in (view_t, log_t):
                        if not t.done():
                            t.cancel()
                            with contextlib.suppress(asyncio.CancelledError):
                                await t
                reqs = [log_t.result()] if log_t.done() and not log_t.cancelled() else []
                while not queue.empty():
                    reqs.append(queue.get_nowait())
                if view_t.done() and not view_t.cancelled():
                    seen = view_t.result()
                    data = json.dumps(seen.snapshot(node_id), sort_keys=True).encode()
                    if data != last:
                        last = data
                        yield pb.AssignmentSet(revision=seen.revision, snapshot=data, logs=reqs)
                        continue
                if reqs:
                    yield pb.AssignmentSet(revision=seen.revision if seen else 0, logs=reqs)
        finally:
            if self._streams.get(node_id) is queue:
                del self._streams[node_id]

    # ------------------------------------------------------------------ task status
    async def update_status(self, node_id: str, updates: list[pb.TaskStatus]) -> None:
        """Record what the caller's tasks did: only its own tasks, forward only, CAS."""
        for u in updates:
            await self._update_one(node_id, u)
        self.kick()

    async def _update_one(self, node_id: str, u: pb.TaskStatus) -> None:
        key = TASKS + u.task_id
        for _ in range(10):
            got = await self.store.get(key)
            if got is None:
                return  # removed meanwhile: nothing to record
            task, version = got
            if task.get("NodeID") != node_id:
                raise errors.ForbiddenError(
                    f"task {u.task_id} is not assigned to node {node_id}")
            if not check_transition(_state(task), u.state):
                cs = (task.get("Status") or {}).get("ContainerStatus") or {}
                if _state(task) == u.state and u.container_id and \
                        cs.get("ContainerID") != u.container_id:
                    pass  # same state, the container named now: fill it in
                else:
                    return
            status: Obj = {"Timestamp": u.timestamp or objects.now(), "State": u.state,
                           "Message": u.message}
            if u.err:
                status["Err"] = u.err
            if u.container_id:
                status["ContainerStatus"] = {"ContainerID": u.container_id, "PID": u.pid,
                                             "ExitCode": u.exit_code}
            old = task.get("Status") or {}
            if "PortStatus" in old:
                status["PortStatus"] = old["PortStatus"]
            task["Status"] = status
            task["UpdatedAt"] = objects.now()
            try:
                await self.store.cas(key, task, version)
                return
            except errors.ConflictError:
                continue
        raise errors.ConflictError(f"task {u.task_id}: status update kept conflicting")

    # ------------------------------------------------------------------ logs
    async def task_logs(self, task_ids: list[str], *, follow: bool, tail: int, since_ns: int,
                        until_ns: int, stdout: bool,
                        stderr: bool) -> AsyncIterator[tuple[str, int, int, bytes]]:
        """(task id, stream, time ns, line) from the nodes that run the tasks, over their
        Assignments streams (the request) and PublishLogs (the lines)."""
        nodes: dict[str, list[str]] = {}
        for tid in task_ids:
            got = await self.store.get(TASKS + tid)
            if got is not None and got[0].get("NodeID"):
                nodes.setdefault(got[0]["NodeID"], []).append(tid)
        rid = ca.new_id()
        sub = _LogSub(asyncio.Queue(), set(),
                      {tid: node for node, tids in nodes.items() for tid in tids})
        for node, tids in nodes.items():
            q = self._streams.get(node)
            if q is None:
                log.info("logs: node %s has no stream on this manager", node)
                continue
            sub.nodes.add(node)
            q.put_nowait(pb.LogRequest(id=rid, task_ids=tids, follow=follow, tail=tail,
                                       since_unix_nano=since_ns, until_unix_nano=until_ns,
                                       stdout=stdout, stderr=stderr))
        if not sub.nodes:
            return
        self._logs[rid] = sub
        try:
            while sub.nodes:
                chunk = await sub.queue.get()
                if chunk is None:
                    continue
                if chunk.data:
                    yield chunk.task_id, chunk.stream, chunk.time_unix_nano, chunk.data
        finally:
            self._logs.pop(rid, None)
            for node in sub.nodes:
                q = self._streams.get(node)
                if q is not None:
                    q.put_nowait(pb.LogRequest(id=rid, cancel=True))

    async def publish_logs(self, node_id: str, chunks: AsyncIterator[pb.LogChunk]) -> None:
        """Lines a node sends for a request: to the waiting task_logs caller."""
        async for c in chunks:
            sub = self._logs.get(c.request_id)
            if sub is None or node_id not in sub.nodes:
                continue
            if c.error:
                log.warning("logs from node %s: %s", node_id, c.error)
            if c.eof:
                sub.nodes.discard(node_id)
                sub.queue.put_nowait(None)
            elif sub.owner.get(c.task_id) == node_id:
                sub.queue.put_nowait(c)

    # ------------------------------------------------------------------ attachments
    async def attach_network(self, node_id: str, req: pb.AttachRequest) -> pb.AttachResponse:
        """An attachment task for a standalone container of ``node_id`` on an attachable
        swarm network; the leader's allocator gives it an address, which is returned."""
        net = await self._find_network(req.network)
        if not net.get("Attachable"):
            raise errors.ForbiddenError(
                f"network {net.get('Name')} not manually attachable")
        if req.address:
            try:
                ipaddress.IPv4Address(req.address)
            except ValueError as err:
                raise errors.InvalidArgumentError("address", f"{req.address!r} is not an "
                                                  "IPv4 address") from err
        tid, t = ca.new_id(), objects.now()
        nid = _net_id(net)
        target: Obj = {"Target": nid, "Aliases": list(req.aliases)}
        if req.address:
            target["Addresses"] = [req.address]
        task: Obj = {
            "ID": tid, "CreatedAt": t, "UpdatedAt": t, "Labels": {}, "ServiceID": "",
            "Slot": 0, "NodeID": node_id, "DesiredState": "running",
            "Spec": {"NetworkAttachmentSpec": {"ContainerID": req.container_id},
                     "Networks": [target]},
            "Status": {"Timestamp": t, "State": "new", "Message": "created"},
            "NetworksAttachments": [{"Network": objects.public(net, 0), "Addresses": []}],
            "_Attachment": {"ContainerID": req.container_id, "Aliases": list(req.aliases)},
        }
        await self.store.create(TASKS + tid, task)
        self.kick()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ATTACH_WAIT_S
        while loop.time() < deadline:
            got = await self.store.get(TASKS + tid)
            if got is None:
                break
            for a in got[0].get("NetworksAttachments") or []:
                if a.get("Addresses"):
                    return pb.AttachResponse(attachment_id=tid,
                                             network=json.dumps(net_info(net)).encode(),
                                             address=a["Addresses"][0])
            await asyncio.sleep(0.1)
        await self.store.delete(TASKS + tid)
        raise errors.UnavailableError(
            f"no address was allocated on network {net.get('Name')} within "
            f"{ATTACH_WAIT_S:.0f} s (is the swarm's leader up?)")

    async def detach_network(self, node_id: str, attachment_id: str) -> None:
        got = await self.store.get(TASKS + attachment_id)
        if got is None:
            raise errors.NotFoundError("network attachment", attachment_id)
        task, _ = got
        if task.get("NodeID") != node_id or "_Attachment" not in task:
            raise errors.ForbiddenError(
                f"attachment {attachment_id} does not belong to node {node_id}")
        await self.store.delete(TASKS + attachment_id)
        self.kick()

    async def _find_network(self, ref: str) -> Obj:
        if not ref:
            raise errors.InvalidArgumentError("network", "no network named")
        nets = [n for n, _ in await self.store.list(NETWORKS)]
        for pick in (lambda n: _net_id(n) == ref, lambda n: n.get("Name") == ref,
                     lambda n: _net_id(n).startswith(ref)):
            hits = [n for n in nets if pick(n)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise errors.ConflictError(f"network {ref} is ambiguous ({len(hits)} matches)")
        raise errors.NotFoundError("network", ref)
