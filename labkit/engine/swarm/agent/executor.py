"""The executor: a node's tasks as engine containers, and their states back to the managers.

Each task the snapshot asks to run gets one coroutine (``_run``) that owns it from start to
end, so no two steps on one task ever race: accepted -> preparing (image, networks,
secrets) -> starting -> running, then complete or failed when the container exits; told to
stop (DesiredState shutdown/remove, or the task left the snapshot) it stops the container
with the task's StopGracePeriod, removes it and its secrets, and reports shutdown.  Failures
before the container exists are "rejected" with the error, as Docker's agent reports them.

Containers go through the engine's own create path (createbody.parse_create, then
Containers.create and start: the checks of POST /containers/create), named and labelled as
Docker names them (SWARM13.md "Task containers"), with restart policy "no": the orchestrator
restarts tasks, never the engine.  A restarted daemon adopts the task containers it finds by
their labels instead of starting a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labkit import errors
from labkit.engine.swarm import discovery, objects
from labkit.engine.swarm.agent import secrets
from labkit.engine.swarm.agent.logs import TASK_LABEL
from labkit.engine.swarm.rpc import swarm_pb2 as pb

__all__ = ["Executor", "container_body", "container_name"]

log = logging.getLogger("labkit.swarm")
Obj = dict[str, Any]
NS = 1_000_000_000
TERMINAL = frozenset({"complete", "shutdown", "failed", "rejected", "remove", "orphaned"})
ORDER = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")
DEFAULT_GRACE_NS = 10 * NS
HEALTH_POLL_S = 0.25
NO_OVERLAY = "overlay networking is not available"
# Docker's task status messages (swarmkit agent/exec/controller.go)
MESSAGES = {"accepted": "accepted", "preparing": "preparing", "ready": "prepared",
            "starting": "starting", "running": "started", "complete": "finished",
            "failed": "started", "shutdown": "shutdown", "rejected": "preparing"}


def container_name(task: Obj) -> str:
    """SERVICE.SLOT.TASKID (global services: SERVICE.NODEID.TASKID), Docker's task name."""
    service = task.get("_ServiceName") or task.get("ServiceID") or "task"
    slot = task.get("Slot") or task.get("NodeID")
    return f"{service}.{slot}.{task['ID']}"


def _hosts(entries: list[str]) -> list[str]:
    """ContainerSpec.Hosts ("IP name [alias...]", /etc/hosts order) -> ExtraHosts
    ("name:IP", the container API's order)."""
    out = []
    for e in entries:
        parts = e.split()
        if len(parts) < 2:
            raise errors.InvalidArgumentError("ContainerSpec.Hosts", f"invalid entry {e!r}")
        out += [f"{name}:{parts[0]}" for name in parts[1:]]
    return out


def _ports(task: Obj) -> tuple[Obj, Obj]:
    """Host-mode published ports -> (ExposedPorts, PortBindings); ingress-mode ports are the
    routing mesh's (discovery), not the container's."""
    endpoint = task.get("Endpoint") or {}
    ports = (endpoint.get("Spec") or {}).get("Ports") or endpoint.get("Ports") or []
    exposed: Obj = {}
    bindings: Obj = {}
    for p in ports:
        if p.get("PublishMode") != "host" or not p.get("TargetPort"):
            continue
        key = f"{int(p['TargetPort'])}/{p.get('Protocol') or 'tcp'}"
        exposed[key] = {}
        bindings.setdefault(key, []).append(
            {"HostIp": "", "HostPort": str(p.get("PublishedPort") or "")})
    return exposed, bindings


def container_body(task: Obj, node_id: str, endpoints: Obj, mounts: list[Obj]) -> Obj:
    """The POST /containers/create body of a task (SWARM13.md "Task containers")."""
    spec = task.get("Spec") or {}
    cs = spec.get("ContainerSpec") or {}
    if not cs.get("Image"):
        raise errors.InvalidArgumentError("ContainerSpec.Image", "the task names no image")
    service = task.get("_ServiceName") or ""
    labels = {**(cs.get("Labels") or {}),
              "com.docker.swarm.service.id": str(task.get("ServiceID") or ""),
              "com.docker.swarm.service.name": str(service),
              TASK_LABEL: str(task["ID"]),
              "com.docker.swarm.task.name": container_name(task),
              "com.docker.swarm.node.id": node_id}
    limits = (spec.get("Resources") or {}).get("Limits") or {}
    dns = cs.get("DNSConfig") or {}
    driver = spec.get("LogDriver") or {}
    grace = cs.get("StopGracePeriod")
    exposed, bindings = _ports(task)
    host: Obj = {
        "Mounts": list(cs.get("Mounts") or []) + mounts,
        "RestartPolicy": {"Name": "no"},  # the orchestrator restarts tasks, not the engine
        "ReadonlyRootfs": bool(cs.get("ReadOnly")),
        "NanoCpus": int(limits.get("NanoCPUs") or 0),
        "Memory": int(limits.get("MemoryBytes") or 0),
    }
    if cs.get("Init") is not None:
        host["Init"] = bool(cs["Init"])
    if limits.get("Pids"):
        host["PidsLimit"] = int(limits["Pids"])
    if driver.get("Name"):
        host["LogConfig"] = {"Type": driver["Name"], "Config": dict(driver.get("Options") or {})}
    if dns.get("Nameservers"):
        host["Dns"] = list(dns["Nameservers"])
    if dns.get("Search"):
        host["DnsSearch"] = list(dns["Search"])
    if dns.get("Options"):
        host["DnsOptions"] = list(dns["Options"])
    if cs.get("Hosts"):
        host["ExtraHosts"] = _hosts(list(cs["Hosts"]))
    if cs.get("Sysctls"):
        host["Sysctls"] = dict(cs["Sysctls"])
    if cs.get("CapabilityAdd"):
        host["CapAdd"] = list(cs["CapabilityAdd"])
    if cs.get("CapabilityDrop"):
        host["CapDrop"] = list(cs["CapabilityDrop"])
    if cs.get("Groups"):
        host["GroupAdd"] = list(cs["Groups"])
    if cs.get("Ulimits"):
        host["Ulimits"] = list(cs["Ulimits"])
    if bindings:
        host["PortBindings"] = bindings
    if endpoints:
        host["NetworkMode"] = next(iter(endpoints))
    body: Obj = {
        "Image": cs["Image"], "Labels": labels, "Env": list(cs.get("Env") or []),
        "WorkingDir": cs.get("Dir") or "", "User": cs.get("User") or "",
        "Hostname": cs.get("Hostname") or "", "Tty": bool(cs.get("TTY")),
        "OpenStdin": bool(cs.get("OpenStdin")), "HostConfig": host,
    }
    if cs.get("Command"):
        body["Entrypoint"] = list(cs["Command"])
    if cs.get("Args"):
        body["Cmd"] = list(cs["Args"])
    if cs.get("StopSignal"):
        body["StopSignal"] = cs["StopSignal"]
    if grace is not None:
        body["StopTimeout"] = int(grace) // NS
    if cs.get("Healthcheck"):
        body["Healthcheck"] = cs["Healthcheck"]
    if exposed:
        body["ExposedPorts"] = exposed
    if endpoints:
        body["NetworkingConfig"] = {"EndpointsConfig": endpoints}
    return body


async def _maybe(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a Networks method: a coroutine is awaited; a synchronous one does netlink/nft
    work under the Networks lock, so it runs in a worker thread (pyroute2 refuses to run
    inside a running event loop, and the loop must not wait on the kernel)."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    return await asyncio.to_thread(fn, *args)


@dataclass
class Run:
    """One task this node runs: its container and the coroutine that owns it."""

    task_id: str
    task: Obj
    container_id: str = ""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    report_shutdown: bool = True
    job: asyncio.Task[None] | None = None


class Executor:
    """Turns snapshots into containers on ``engine`` and reports task states."""

    def __init__(self, engine: Any, node_id: str, local_addr: str,
                 report: Callable[[pb.TaskStatus], None]) -> None:
        self.engine = engine
        self.node_id = node_id
        self.local_addr = local_addr
        self.report_fn = report
        self.runs: dict[str, Run] = {}
        self.last: dict[str, str] = {}         # task id -> last state reported
        self.snap: Obj = {}
        self.net_errors: dict[str, str] = {}   # network id -> why it is not up here
        self.materialized: set[str] = set()
        self.finished: set[str] = set()         # task ids whose run has ended here
        self._adopted: dict[str, Any] | None = None

    # ------------------------------------------------------------------ reporting
    def report(self, task_id: str, state: str, *, err: str = "", container_id: str = "",
               pid: int = 0, exit_code: int = 0) -> None:
        if self.last.get(task_id) == state or self.last.get(task_id) in TERMINAL:
            return  # said already; and nothing follows a terminal state
        self.last[task_id] = state
        self.report_fn(pb.TaskStatus(task_id=task_id, state=state,
                                     message=MESSAGES.get(state, state), err=err,
                                     container_id=container_id, pid=pid, exit_code=exit_code,
                                     timestamp=objects.now()))

    # ------------------------------------------------------------------ snapshots
    async def apply(self, snap: Obj) -> None:
        """Make this node what ``snap`` says: start, stop and remove task containers."""
        self.snap = snap
        if self._adopted is None:
            self._adopted = self._find_existing()
        await self._networks(snap)
        wanted = {t["ID"]: t for t in snap.get("tasks") or [] if not t.get("_Attachment")}
        for tid, t in wanted.items():
            self._reconcile(t)
        self.finished &= set(wanted)  # remembered while the managers still list them
        for tid, run in list(self.runs.items()):
            if tid not in wanted:
                run.report_shutdown = False
                run.stop.set()
        for tid, rec in list((self._adopted or {}).items()):
            if tid not in wanted:  # a leftover container of a task that is gone
                self._adopted.pop(tid, None)
                asyncio.create_task(self._remove_container(rec.id, tid))
        await self._discovery(snap)

    def _find_existing(self) -> dict[str, Any]:
        """Task containers this node made before a daemon restart (adopted, not doubled)."""
        out: dict[str, Any] = {}
        for rec in self.engine.store.all():
            labels = rec.config.get("Labels") or {}
            if labels.get("com.docker.swarm.node.id") == self.node_id and labels.get(TASK_LABEL):
                out[labels[TASK_LABEL]] = rec
        return out

    def _reconcile(self, t: Obj) -> None:
        tid = t["ID"]
        state = (t.get("Status") or {}).get("State") or "new"
        desired = t.get("DesiredState") or "running"
        run = self.runs.get(tid)
        if desired != "running":
            if run is not None:
                run.stop.set()
            elif state not in TERMINAL:
                adopted = (self._adopted or {}).pop(tid, None)
                if adopted is not None:
                    asyncio.create_task(self._remove_container(adopted.id, tid))
                self.report(tid, "shutdown")
            return
        if run is not None or state in TERMINAL or tid in self.finished:
            return  # a task id runs once: a set older than our own reports cannot revive it
        adopted = (self._adopted or {}).pop(tid, None)
        if adopted is None and state in ORDER and ORDER.index(state) > ORDER.index("assigned") \
                and tid not in self.last:
            # the store says it ran here, but nothing of it is left (the daemon lost it)
            self.last[tid] = state
            self.report(tid, "failed", err="task: the task's container is gone")
            return
        run = Run(tid, t)
        if adopted is not None:
            run.container_id = adopted.id
            self.last.setdefault(tid, state)
        self.runs[tid] = run
        run.job = asyncio.create_task(self._run(run), name=f"swarm-task-{tid[:12]}")

    # ------------------------------------------------------------------ one task
    async def _run(self, run: Run) -> None:
        tid = run.task_id
        try:
            started = await self._start(run)
            if started and not run.stop.is_set():
                await self._watch_exit(run)
            await run.stop.wait()   # the container stays until the task is shut down
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - reported as the task's error
            log.warning("task %s: %s", tid, err)
        finally:
            self.runs.pop(tid, None)
            self.finished.add(tid)
        await self._teardown(run)
        if run.report_shutdown:
            self.report(tid, "shutdown")

    async def _start(self, run: Run) -> bool:
        """Bring the task's container up; False when it never ran (reported)."""
        tid, t = run.task_id, run.task
        eng = self.engine
        if run.container_id:  # adopted after a daemon restart
            rec = eng.store.get(run.container_id)
            if rec.running:
                self.report(tid, "running", container_id=rec.id, pid=rec.pid)
                return True
            self._report_exit(tid, rec.id, rec.exit_code)
            return False
        self.report(tid, "accepted")
        try:
            self.report(tid, "preparing")
            image = await self._image(str(((t.get("Spec") or {}).get("ContainerSpec") or {})
                                          .get("Image") or ""))
            endpoints = self._endpoints(t)
            if run.stop.is_set():
                return False
            mounts = secrets.materialize(t, self.snap)
            body = container_body(t, self.node_id, endpoints, mounts)
            body["Image"] = image
            from labkit.engine.containers import parse_create
            spec = parse_create(body, container_name(t),
                                (eng.config.log_driver, eng.config.log_opts))
            rec = eng.containers.create(spec)
            run.container_id = rec.id
        except Exception as err:  # noqa: BLE001 - Docker: "rejected" with the error
            self.report(tid, "rejected", err=str(err).splitlines()[0] if str(err) else repr(err))
            return False
        if run.stop.is_set():
            return False
        self.report(tid, "starting", container_id=rec.id)
        try:
            await eng.containers.start(rec.id)
        except Exception as err:  # noqa: BLE001 - Docker: failed, "starting container failed"
            self.report(tid, "failed", container_id=rec.id, exit_code=int(rec.exit_code or 0),
                        err=f"starting container failed: {str(err).splitlines()[0]}")
            return False
        if rec.health is None:  # with a probe: running once healthy (_watch_exit)
            self.report(tid, "running", container_id=rec.id, pid=rec.pid)
        return True

    async def _watch_exit(self, run: Run) -> None:
        """Until the container exits or the task is stopped; with a health probe the task
        is running only once healthy, and fails when unhealthy (swarmkit's controller:
        "task: unhealthy container")."""
        rec = self.engine.store.get(run.container_id)
        exit_f = self.engine.containers.wait(rec.id, "not-running")
        stop_w = asyncio.ensure_future(run.stop.wait())
        try:
            while True:
                done, _ = await asyncio.wait({exit_f, stop_w}, timeout=HEALTH_POLL_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if done:
                    break
                health = (rec.health or {}).get("Status")
                if health == "healthy":
                    self.report(run.task_id, "running", container_id=rec.id, pid=rec.pid)
                elif health == "unhealthy":
                    self.report(run.task_id, "failed", container_id=rec.id,
                                err="task: unhealthy container")
                    exit_f.cancel()
                    return
        finally:
            stop_w.cancel()
        if exit_f.done() and not run.stop.is_set():
            self._report_exit(run.task_id, rec.id, exit_f.result().exit_status)
        elif not exit_f.done():
            exit_f.cancel()

    def _report_exit(self, tid: str, cid: str, code: int) -> None:
        if code == 0:
            self.report(tid, "complete", container_id=cid)
        else:  # Docker's words (swarmkit agent/exec/dockerapi/controller.go ExitError)
            self.report(tid, "failed", container_id=cid, exit_code=code,
                        err=f"task: non-zero exit ({code})")

    async def _teardown(self, run: Run) -> None:
        if run.container_id:
            grace = ((run.task.get("Spec") or {}).get("ContainerSpec") or {}).get(
                "StopGracePeriod")  # 0 is a grace of none, not the default
            await self._remove_container(run.container_id, run.task_id,
                                         int(DEFAULT_GRACE_NS if grace is None else grace) // NS)
        with contextlib.suppress(Exception):
            secrets.remove(run.task_id)

    async def _remove_container(self, cid: str, tid: str, grace: int = 10) -> None:
        """Stop (grace seconds, then SIGKILL), remove; and the task's secrets go too."""
        eng = self.engine
        try:
            rec = eng.store.get(cid)
            if rec.running:
                await eng.control.stop(cid, grace)
            await eng.control.remove(cid, force=True)
        except errors.NotFoundError:
            pass
        except Exception as err:  # noqa: BLE001 - logged; the next snapshot tries again
            log.warning("task %s: removing container %s: %s", tid, cid[:12], err)
        with contextlib.suppress(Exception):
            secrets.remove(tid)
        await self._drop_unused()

    async def close(self, remove: bool) -> None:
        """Stop following the tasks; with ``remove`` (leaving the swarm) their containers go
        too, otherwise they keep running (a daemon restart adopts them)."""
        runs = list(self.runs.values())
        for run in runs:
            if remove:
                run.report_shutdown = False
                run.stop.set()
            elif run.job is not None:
                run.job.cancel()
        for run in runs:
            if run.job is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await run.job
        if remove:
            for tid, rec in list((self._adopted or {}).items()):
                await self._remove_container(rec.id, tid)
            if self.snap.get("services") or self.snap.get("ingress"):
                # no VIPs, DNS records or published ports of the swarm stay behind
                await self._discovery({**self.snap, "tasks": [], "services": [], "ingress": [],
                                       "networks": {}, "peers": {}, "attachments": {}})
            for nid in list(self.materialized):
                with contextlib.suppress(Exception):
                    await _maybe(self.engine.networks.drop_swarm, nid)
            self.materialized.clear()

    # ------------------------------------------------------------------ images
    async def _image(self, ref: str) -> str:
        """The local image (by name, or by the pinned digest), else pulled through labkit's
        registry client with the daemon's insecure-registries (daemonconfig)."""
        eng = self.engine
        for cand in (ref, ref.split("@", 1)[0]) if "@" in ref else (ref,):
            with contextlib.suppress(errors.NotFoundError):
                eng.images.get(cand)
                return cand
        from labkit.engine.registry import pull as pulling
        from labkit.engine.registry import reference
        from labkit.engine.registry.auth import AuthConfig, TokenCache
        from labkit.engine.registry.client import new_session
        from labkit.engine.registry.metadata import DigestMap
        parsed = reference.parse(ref)
        session = new_session()
        try:
            res = await pulling.resolve(session, eng.images, eng.config, TokenCache(), parsed,
                                        AuthConfig(), None)
            try:
                async for _msg in pulling.run(res, eng.images, DigestMap(eng.images)):
                    pass
            finally:
                res.close()
        finally:
            await session.close()
        for cand in (ref, ref.split("@", 1)[0]) if "@" in ref else (ref,):
            with contextlib.suppress(errors.NotFoundError):
                eng.images.get(cand)
                return cand
        return ref

    # ------------------------------------------------------------------ networks
    def _endpoints(self, t: Obj) -> Obj:
        """NetworkingConfig.EndpointsConfig of a task: its addresses and aliases."""
        out: Obj = {}
        service = t.get("_ServiceName") or ""
        spec_nets = (t.get("Spec") or {}).get("Networks") or []
        for a in t.get("NetworksAttachments") or []:
            net = a.get("Network") or {}
            nid = str(net.get("Id") or net.get("ID") or "")
            if not nid:
                continue
            if nid in self.net_errors:
                raise errors.UnavailableError(self.net_errors[nid])
            if nid not in self.materialized:
                raise errors.UnavailableError(NO_OVERLAY)
            aliases = [service] if service else []
            for n in spec_nets:
                if n.get("Target") in (nid, net.get("Name"), (net.get("Spec") or {}).get("Name")):
                    aliases += [str(x) for x in n.get("Aliases") or []]
            ep: Obj = {"Aliases": aliases}
            addrs = [str(x).split("/", 1)[0] for x in a.get("Addresses") or []]
            if addrs:
                ep["IPAMConfig"] = {"IPv4Address": addrs[0]}
            out[nid] = ep
        return out

    async def _networks(self, snap: Obj) -> None:
        """Materialize the snapshot's swarm networks here (H4's Networks API)."""
        nets: Obj = snap.get("networks") or {}
        api = self.engine.networks
        if not nets and not self.materialized:
            return
        if not hasattr(api, "ensure_swarm"):
            self.net_errors = {nid: NO_OVERLAY for nid in nets}
            return
        errs: dict[str, str] = {}
        # networks gone from the set go first: a new network may reuse what an old one
        # held on this node (its VNI's device names)
        await self._drop_unused(set(nets))
        data_port = int(snap.get("data_port") or 4789)
        peers: Obj = snap.get("peers") or {}
        for nid, info in nets.items():
            try:
                await _maybe(api.ensure_swarm, info, self.local_addr, data_port)
                self.materialized.add(nid)
                await _maybe(api.set_overlay_peers, nid, list(peers.get(nid) or []))
                addr = (snap.get("attachments") or {}).get(nid)
                if addr:
                    await _maybe(api.set_node_address, nid, addr)
            except Exception as err:  # noqa: BLE001 - the tasks on it are rejected with it
                errs[nid] = f"network {info.get('Name')}: {str(err).splitlines()[0]}"
                log.warning("swarm network %s: %s", info.get("Name"), err)
        if "keys" in snap:
            enc = [nid for nid, i in nets.items() if i.get("Encrypted")]
            addrs = sorted({p["addr"] for nid in enc for p in peers.get(nid) or []
                            if p.get("addr")})
            try:
                await _maybe(api.set_overlay_keys, list(snap["keys"]), addrs)
            except Exception as err:  # noqa: BLE001
                for nid in enc:
                    errs[nid] = f"network encryption keys: {str(err).splitlines()[0]}"
        await self._drop_unused(set(nets))
        self.net_errors = errs

    async def _drop_unused(self, keep: set[str] | None = None) -> None:
        """Remove the materialized swarm networks no task here needs any more; one still
        holding a stopping container stays until that container is gone (called again
        then, from _remove_container: no new snapshot may ever come for it)."""
        if keep is None:
            keep = set((self.snap or {}).get("networks") or {})
        for nid in list(self.materialized - keep):
            try:
                await _maybe(self.engine.networks.drop_swarm, nid)
                self.materialized.discard(nid)
            except Exception as err:  # noqa: BLE001 - still in use: tried again later
                log.info("swarm network %s stays: %s", nid[:12], err)

    def _attached_netns(self, snap: Obj) -> dict[str, str]:
        """Attachment tasks (standalone containers on attachable networks, H9) -> the
        netns of the running container that holds each (its endpoint remembers the id)."""
        from labkit.engine.swarm.attach import KEY
        wanted = {t["ID"] for t in snap.get("tasks") or [] if t.get("_Attachment") is not None}
        out: dict[str, str] = {}
        if not wanted:
            return out
        for rec in self.engine.store.all():
            if not (rec.running and rec.pid):
                continue
            for cfg in (rec.networks or {}).values():
                if cfg.get(KEY) in wanted:
                    out[cfg[KEY]] = f"/proc/{rec.pid}/ns/net"
        return out

    async def refresh(self) -> None:
        """VIPs and DNS again outside a new set: a standalone container on a swarm
        network started (its VIP rules) or went."""
        if self.snap:
            await self._discovery(self.snap)

    async def _discovery(self, snap: Obj) -> None:
        """VIPs, DNS and the routing mesh (swarm/discovery.py) after every snapshot."""
        netns_of: dict[str, str] = {}
        for tid, run in self.runs.items():
            if not run.container_id:
                continue
            with contextlib.suppress(errors.LabkitError):
                rec = self.engine.store.get(run.container_id)
                if rec.running and rec.pid:
                    netns_of[tid] = f"/proc/{rec.pid}/ns/net"
        netns_of.update(self._attached_netns(snap))
        try:  # nft work runs in a worker thread (discovery.apply_async)
            await discovery.apply_async(self.engine, snap, netns_of)
        except Exception as err:  # noqa: BLE001 - logged, the next snapshot tries again
            log.warning("swarm discovery: %s", err)

