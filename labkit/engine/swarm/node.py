"""SwarmNode: one daemon's membership of a swarm (the daemon's ``engine.swarm``).

States (Docker's LocalNodeState): inactive -> (init | join) -> active; a restarted manager
whose key material is sealed (autolock) is ``locked`` and serves nothing of the swarm until
``unlock``; ``pending`` while a join is under way; ``error`` when the node's swarm state
could not be brought up (the message says why).  A node is a manager (etcd member + store +
the node <-> manager service: manager.py) or a worker (heartbeats: worker.py), and switches
between the two when a manager changes its role (promote / demote).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import psutil

from labkit import errors
from labkit.engine.swarm import ca, objects, seal, tokens
from labkit.engine.swarm import cluster as cl
from labkit.engine.swarm import spec as sp
from labkit.engine.swarm.advertise import advertise_ip
from labkit.engine.swarm.manager import Identity, Manager, peer_url, quorum
from labkit.engine.swarm.rpc import client as rpc
from labkit.engine.swarm.rpc import swarm_pb2 as pb
from labkit.engine.swarm.state import LocalState, NodeFiles, hostname
from labkit.engine.swarm.store import ALIVE, CLUSTER, NODES
from labkit.engine.swarm.worker import Worker

if TYPE_CHECKING:
    from labkit.engine.swarm.control import Control

__all__ = ["Attachment", "SwarmNode"]

log = logging.getLogger("labkit.swarm")
Obj = dict[str, Any]
NS = 1_000_000_000


class SwarmNode:
    """The swarm membership of this daemon (implements spec.SwarmBackend)."""

    def __init__(self, files: NodeFiles | None = None, engine_version: str = "") -> None:
        self.files = files or NodeFiles()
        self.engine_version = engine_version
        self.state: LocalState | None = None
        self.mode = "inactive"
        self.error = ""
        self.manager: Manager | None = None
        self.worker: Worker | None = None
        self.lock = asyncio.Lock()
        self._up_task: asyncio.Task[None] | None = None
        # --- issue 13 (H3): the engine the agent runs tasks on, and the agent
        self.engine: Any = None
        self.agent: Any = None
        # --- end H3

    # ------------------------------------------------------------------ daemon start/stop
    async def start(self) -> None:
        """Bring back what this node was (daemon start): a worker heartbeats again, a
        manager starts its etcd member, a sealed manager waits locked for its key."""
        # etcd's clear copies of the TLS files from a daemon that crashed: a locked node
        # must not keep them, and a running one writes them again
        self.files.drop_tls()
        if not self.files.exists():
            return
        try:
            self.state = self.files.load()
        except errors.LabkitError as err:
            self.mode, self.error = "error", str(err).splitlines()[0]
            return
        if self.state.role == "manager" and self.files.sealed():
            self.mode = "locked"
            return
        self._bring_up(None, None)

    def _bring_up(self, kek: seal.DataKey | None, unlock_key: str | None) -> None:
        """Activate in the background: a restarted manager's store may have no quorum
        until its peers are back too (every node restarted at once), and the daemon must
        serve its API meanwhile (LocalNodeState "pending", as Docker shows it)."""
        self.mode = "pending"
        self._up_task = asyncio.get_running_loop().create_task(
            self._up(kek, unlock_key), name="swarm-bring-up")

    async def _up(self, kek: seal.DataKey | None, unlock_key: str | None) -> None:
        async with self.lock:
            try:
                await self._activate(kek, unlock_key, store_timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - reported as LocalNodeState error
                await self._stop_roles()
                self.mode, self.error = "error", str(err).splitlines()[0]
                log.error("swarm state not restored: %s", err)

    async def close(self) -> None:
        """Daemon stop: the etcd member and the loops end; the state on disk stays."""
        task = self._up_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._stop_roles()

    async def _stop_roles(self) -> None:
        await self._stop_agent(remove_tasks=False)  # H3: containers stay (adopted later)
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        if self.manager is not None:
            await self.manager.stop()
            self.manager = None

    async def _activate(self, kek: seal.DataKey | None, unlock_key: str | None,
                        store_timeout: float | None = 30.0) -> None:
        st = self.state
        assert st is not None
        key = self.files.read_key(kek)
        ident = Identity(self.files.cert_file.read_bytes(), key,
                         self.files.roots_file.read_bytes())
        if st.role == "manager":
            dek = self.files.read_dek(kek)
            ident.store = self.files.read_store_identity(kek)
            self.manager = Manager(self.files, st, ident, dek, self._demoted)
            self.manager.set_unlock_key(unlock_key)
            await self.manager.start(store_timeout)
        else:
            self.worker = Worker(self.files, st, ident, self._role_changed, self._removed)
            self.worker.start()
        self.mode, self.error = "active", ""
        self._start_agent()  # H3

    # ------------------------------------------------------------------ the protocol
    def local_state(self) -> str:
        return self.mode

    def role(self) -> str | None:
        return self.state.role if self.state is not None and self.mode == "active" else None

    def _manager(self) -> Manager:
        if self.mode == "locked":
            raise errors.UnavailableError(sp.MSG_LOCKED)
        if self.mode == "pending" and self.state is not None and self.state.role == "manager":
            raise errors.UnavailableError(sp.MSG_MANAGER_NOT_READY)
        if self.mode != "active" or self.state is None:
            raise errors.UnavailableError(sp.MSG_NOT_MANAGER)
        if self.manager is None:
            raise errors.UnavailableError(sp.MSG_WORKER)
        return self.manager

    # --- issue 13 (H1): the control API (services, tasks, secrets, configs, networks) ---
    def control(self) -> Control:
        """The managers' control API over this manager's store; raises what _manager()
        raises (not a manager, a worker, locked) with Docker's texts."""
        from labkit.engine.swarm.control import Control

        return Control(self._manager()._store())
    # --- end issue 13 (H1)

    async def info(self) -> Obj:
        out: Obj = {"NodeID": "", "NodeAddr": "", "LocalNodeState": self.mode,
                    "ControlAvailable": False, "Error": self.error, "RemoteManagers": None}
        st = self.state
        if st is None or self.mode == "inactive":
            return out
        out.update(NodeID=st.node_id, NodeAddr=st.addr,
                   RemoteManagers=[{"NodeID": "", "Addr": a} for a in st.managers])
        if self.manager is not None and self.mode == "active":
            with contextlib.suppress(errors.LabkitError):
                nodes = await self.manager.render_nodes()
                out["Nodes"] = len(nodes)
                out["Managers"] = sum(1 for n in nodes if n["Spec"]["Role"] == "manager")
                out["RemoteManagers"] = [{"NodeID": n["ID"], "Addr": n["ManagerStatus"]["Addr"]}
                                         for n in nodes if "ManagerStatus" in n]
                cluster = await self.inspect()
                cluster.pop("JoinTokens", None)
                out["Cluster"] = cluster
            out["ControlAvailable"] = True
        if self.worker is not None and self.worker.error:
            out["Error"] = self.worker.error
        return out

    async def init(self, req: sp.InitRequest) -> str:
        async with self.lock:
            if self.mode != "inactive":
                raise errors.UnavailableError(sp.MSG_SWARM_EXISTS)
            listen_ip, port = req.listen_addr.host, req.listen_addr.port
            addr = advertise_ip(req.advertise_addr.host if req.advertise_addr else "",
                                listen_ip)
            spec = req.spec.to_docker()
            cl.check_raft(spec)
            autolock = req.autolock_managers
            spec.setdefault("EncryptionConfig", {})["AutoLockManagers"] = autolock
            try:
                return await self._found(spec, listen_ip, port, addr, autolock,
                                         req.availability or "active", req)
            except BaseException:
                await self._stop_roles()
                self.files.wipe()
                self.state, self.mode = None, "inactive"
                raise

    async def _found(self, spec: Obj, listen_ip: str, port: int, addr: str, autolock: bool,
                     availability: str, req: sp.InitRequest | None = None) -> str:
        cluster_id, node_id = ca.new_id(), ca.new_id()
        externals = spec.get("CAConfig", {}).get("ExternalCAs") or []
        key, csr = ca.new_key_and_csr(node_id)
        expiry = dt.timedelta(microseconds=int(spec.get("CAConfig", {}).get(
            "NodeCertExpiry") or 90 * 24 * 3600 * NS) // 1000)
        if externals:
            from labkit.engine.swarm.cfssl import ExternalCA

            ext = externals[0]
            cacert = (ext.get("CACert") or "").encode()
            signer = ExternalCA(ext["URL"], cacert or None)
            if not cacert:
                cacert = await signer.info()
                signer = ExternalCA(ext["URL"], cacert)
            root = ca.RootCA(cacert, None)
            cert = await signer.sign(csr, node_id=node_id, role="manager",
                                     cluster_id=cluster_id, expiry=expiry)
        else:
            root = ca.RootCA.create()
            cert = root.issue(csr, node_id=node_id, role="manager", cluster_id=cluster_id,
                              expiry=expiry, ips=[addr, "127.0.0.1"])
        # etcd's ports trust only this second CA, whose certificates only managers get
        store_ca = ca.RootCA.create(common_name="swarm-store-ca")
        skey, scsr = ca.new_key_and_csr(node_id)
        scert = store_ca.issue(scsr, node_id=node_id, role="manager", cluster_id=cluster_id,
                               expiry=expiry, ips=[addr, "127.0.0.1"])
        raft = spec.get("Raft", {})
        dek = seal.DataKey.new()
        unlock_key = seal.new_unlock_key() if autolock else None
        kek = seal.kek(unlock_key) if unlock_key else None
        st = LocalState(node_id=node_id, cluster_id=cluster_id, role="manager", addr=addr,
                        hostname=hostname(), listen_ip=listen_ip, join_port=port,
                        managers=[f"{_br(addr)}:{port}"],
                        heartbeat_ms=int(spec.get("Dispatcher", {}).get("HeartbeatPeriod")
                                         or 5 * NS) // 1_000_000,
                        autolock=autolock, etcd_cluster={node_id: peer_url(addr)},
                        etcd_new=True, election_ms=int(raft.get("ElectionTick") or 10) * 100,
                        raft_heartbeat_ms=int(raft.get("HeartbeatTick") or 1) * 100,
                        snapshot_count=int(raft.get("SnapshotInterval") or 10000),
                        max_snapshots=int(raft.get("KeepOldSnapshots") or 0) + 1)
        self.files.write_identity(cert, root.cert_pem, key, kek)
        self.files.write_dek(dek.raw, kek)
        self.files.write_store_identity(scert, store_ca.cert_pem, skey, kek)
        self.files.save(st)
        self.state = st
        await self._activate(kek, unlock_key)
        assert self.manager is not None and self.manager.store is not None
        t = objects.now()
        cluster: Obj = {
            "ID": cluster_id, "CreatedAt": t, "UpdatedAt": t, "Spec": spec,
            "JoinTokens": {"Worker": tokens.make(root.cert_pem),
                           "Manager": tokens.make(root.cert_pem)},
            "RootRotationInProgress": False,
            # issue 13 (H1): the overlay settings of `swarm init` (GET /swarm shows them)
            "DataPathPort": req.data_path_port if req else sp.DEFAULT_DATA_PATH_PORT,
            "DefaultAddrPool": list(req.default_addr_pool if req else sp.DEFAULT_ADDR_POOL),
            "SubnetSize": req.subnet_size if req else sp.DEFAULT_SUBNET_SIZE,
            "_RootCA": {"Cert": root.cert_pem.decode(),
                        "Key": root.key_pem.decode() if root.key_pem else None},
            "_StoreCA": {"Cert": store_ca.cert_pem.decode(),
                         "Key": (store_ca.key_pem or b"").decode()},
            "_UnlockKey": unlock_key,
        }
        await self.manager.store.create(CLUSTER, cluster)
        node = objects.new_node(node_id, "manager", addr, availability, st.hostname,
                                self.engine_version, (psutil.cpu_count() or 1) * NS,
                                psutil.virtual_memory().total, root.cert_pem, port)
        await self.manager.store.create(NODES + node_id, node)
        self._founded()
        return node_id

    def _founded(self) -> None:
        """After the first start the member's data dir holds the cluster: a restart must
        not try to found it again."""
        assert self.state is not None
        self.state.etcd_new = False
        self.files.save(self.state)

    async def join(self, req: sp.JoinRequest) -> None:
        async with self.lock:
            if self.mode != "inactive":
                raise errors.UnavailableError(sp.MSG_SWARM_EXISTS)
            tokens.parse(req.join_token)  # a malformed token: 400 before any network
            listen_ip, port = req.listen_addr.host, req.listen_addr.port
            addr = advertise_ip(req.advertise_addr.host if req.advertise_addr else "",
                                listen_ip)
            self.mode = "pending"
            try:
                await self._join(req, listen_ip, port, addr)
            except BaseException:
                await self._stop_roles()
                self.files.wipe()
                self.state, self.mode = None, "inactive"
                raise

    async def _join(self, req: sp.JoinRequest, listen_ip: str, port: int, addr: str) -> None:
        last: Exception | None = None
        for hp in req.remote_addrs:
            remote = str(hp)
            try:
                roots = await rpc.fetch_root(remote, req.join_token)
                key, csr = ca.new_key_and_csr("joining")
                skey, scsr = ca.new_key_and_csr("joining")
                desc = pb.Description(hostname=hostname(), engine_version=self.engine_version,
                                      os="linux", architecture=os.uname().machine,
                                      nano_cpus=(psutil.cpu_count() or 1) * NS,
                                      memory_bytes=psutil.virtual_memory().total)
                resp = await rpc.join(remote, roots, pb.JoinRequest(
                    token=req.join_token, csr=csr, store_csr=scsr, addr=addr,
                    availability=req.availability or "active", description=desc))
                break
            except (errors.UnsupportedError, ConnectionError) as err:
                last = err  # try the next manager
        else:
            raise last or errors.InvalidArgumentError("remote address", "none given")
        ca.RootCA(roots, None).verify(resp.certificate, role=resp.role,  # type: ignore[arg-type]
                                      cluster_id=resp.cluster_id)
        st = LocalState(node_id=resp.node_id, cluster_id=resp.cluster_id, role=resp.role,
                        addr=addr, hostname=hostname(), listen_ip=listen_ip, join_port=port,
                        managers=list(resp.managers) or [remote],
                        heartbeat_ms=resp.heartbeat_period_ms or 5000)
        self._take_manager_material(st, resp.manager if resp.role == "manager" else None,
                                    skey)
        self.files.write_identity(resp.certificate, resp.trust_roots or roots, key, None)
        self.files.save(st)
        self.state = st
        await self._activate(None, None)

    def _take_manager_material(self, st: LocalState, m: pb.ManagerMaterial | None,
                               store_key: bytes) -> None:
        if m is None:
            return
        self.files.write_store_identity(m.store_certificate, m.store_roots, store_key, None)
        st.etcd_cluster = {p.name: p.peer_url for p in m.etcd_cluster}
        st.etcd_new = False
        st.election_ms = m.election_ms or 1000
        st.raft_heartbeat_ms = m.heartbeat_ms or 100
        st.snapshot_count = m.snapshot_count or 10000
        st.max_snapshots = m.max_snapshots or 1
        self.files.write_dek(m.data_key, None)

    # ------------------------------------------------------------------ role switches
    async def _role_changed(self, resp: pb.RenewResponse, key: bytes, store_key: bytes) -> None:
        """Called from the worker loop with a renewed certificate (maybe a new role)."""
        st = self.state
        assert st is not None
        roots = resp.trust_roots or self.files.roots_file.read_bytes()
        self.files.write_identity(resp.certificate, roots, key, None)
        if resp.role == st.role or resp.role != "manager" or not resp.HasField("manager"):
            if self.worker is not None:
                self.worker.ident = Identity(resp.certificate, key, roots)
            return
        self._take_manager_material(st, resp.manager, store_key)
        st.role = "manager"
        self.files.save(st)
        asyncio.get_running_loop().create_task(self._switch(), name="swarm-promote")

    async def _demoted(self) -> None:
        """Called from the manager loop when this node's Spec.Role became worker."""
        asyncio.get_running_loop().create_task(self._become_worker(), name="swarm-demote")

    async def _become_worker(self) -> None:
        async with self.lock:
            m = self.manager
            if m is None or self.state is None:
                return
            try:
                await self._demote_self(m, self.state)
            except Exception as err:  # noqa: BLE001 - reported, and the loop tries again
                self.error = f"demotion failed: {err}".splitlines()[0]
                log.error("%s", self.error)
                if self.manager is m:
                    m.resume()

    async def _demote_self(self, m: Manager, st: LocalState) -> None:
        key, csr = ca.new_key_and_csr(st.node_id)
        cert = await m.issue(csr, st.node_id, "worker", st.addr)
        node, version = await m._store().must_get(NODES + st.node_id, "node")
        node.pop("ManagerStatus", None)
        node["UpdatedAt"] = objects.now()
        await m._store().cas(NODES + st.node_id, node, version)
        st.managers = [a for a in await m.manager_addrs()]
        await m.remove_self_from_etcd()
        await self._stop_roles()
        self.files.drop_manager_material()
        self.files.write_identity(cert, self.files.roots_file.read_bytes(), key, None)
        st.role, st.autolock, st.etcd_cluster = "worker", False, {}
        self.files.save(st)
        await self._activate(None, None)
        log.info("demoted: this node is a worker now")

    async def _switch(self) -> None:
        async with self.lock:
            await self._stop_roles()
            await self._activate(None, None)
            log.info("promoted: this node is a manager now")

    async def _removed(self) -> None:
        """A manager says this node is no longer in the swarm (node rm)."""
        asyncio.get_running_loop().create_task(self._reset(), name="swarm-removed")

    async def _reset(self) -> None:
        async with self.lock:
            await self._stop_agent(remove_tasks=True)  # H3
            await self._stop_roles()
            self.files.wipe()
            self.state, self.mode, self.error = None, "inactive", ""

    # ------------------------------------------------------------------ leave
    async def leave(self, force: bool) -> None:
        async with self.lock:
            if self.mode == "inactive":
                raise errors.UnavailableError(sp.MSG_NO_SWARM)
            st = self.state
            if self.mode == "active" and self.manager is not None and not force:
                raise errors.UnavailableError(await self._leave_warning())
            if self.manager is not None:
                with contextlib.suppress(Exception):
                    if len(await self.manager.client.member_list()) > 1:  # type: ignore[union-attr]
                        await self.manager.remove_self_from_etcd()
                        await self.manager._store().mark_down(st.node_id)  # type: ignore[union-attr]
            elif self.worker is not None:
                with contextlib.suppress(Exception):
                    await self.worker.call("Leave", pb.LeaveRequest(), timeout=2.0)
            await self._stop_agent(remove_tasks=True)  # H3: a node that leaves runs no tasks
            await self._stop_roles()
            self.files.wipe()
            self.state, self.mode, self.error = None, "inactive", ""

    async def _leave_warning(self) -> str:
        msg = ("You are attempting to leave the swarm on a node that is participating as a "
               "manager. ")
        m = self._manager()
        members = await m.members()
        reach = sum(1 for _, r in members.values() if r == "reachable")
        if len(members) <= 1:
            msg += ("Removing the last manager erases all current state of the swarm. Use "
                    "`--force` to ignore this message. ")
        elif reach - 1 < quorum(len(members)):
            msg += (f"Removing this node leaves {reach - 1} managers out of {len(members)}. "
                    "Without a Raft quorum your swarm will be inaccessible. The only way to "
                    "restore a swarm that has lost consensus is to reinitialize it with "
                    "`--force-new-cluster`. Use `--force` to suppress this message.")
        else:
            msg += "Use `--force` to leave anyway (its etcd member is removed first)."
        return msg

    # ------------------------------------------------------------------ cluster object
    async def inspect(self) -> Obj:
        m = self._manager()
        cluster, version = await m.cluster()
        out = objects.public(cluster, version)
        out["TLSInfo"] = objects.tls_info(cluster["_RootCA"]["Cert"].encode())
        return out

    async def update(self, version: int, spec: sp.ClusterSpec, flags: sp.UpdateFlags) -> None:
        m = self._manager()
        cluster, current = await m.cluster()
        if version != current:
            raise errors.ConflictError("update out of sequence")
        cluster = cl.apply_update(cluster, spec, flags)
        await m._store().cas(CLUSTER, cluster, current)
        await m._follow_unlock_key(cluster)  # this node at once; the others within a beat

    async def unlock_key(self) -> str:
        cluster, _ = await self._manager().cluster()
        key: str | None = cluster.get("_UnlockKey")
        return key or ""

    async def unlock(self, key: str) -> None:
        async with self.lock:
            if self.mode == "inactive":
                raise errors.UnavailableError(sp.MSG_NO_SWARM)
            if self.mode != "locked":
                raise errors.ConflictError(sp.MSG_NOT_LOCKED)
            kek = seal.kek(key.strip())
            try:
                self.files.check_kek(kek)
            except errors.ForbiddenError as err:
                raise errors.ForbiddenError(sp.MSG_INVALID_UNLOCK_KEY) from err
        self._bring_up(kek, key.strip())
        # answer once the manager serves (as dockerd waits for its node to be ready); a
        # store without quorum (every manager restarted and locked) keeps it pending: the
        # call returns, and the node comes up when the others are unlocked too
        assert self._up_task is not None
        await asyncio.wait({self._up_task}, timeout=10.0)
        if self.mode == "error":
            raise errors.UnavailableError(f"swarm unlocked, but not started: {self.error}")

    # ------------------------------------------------------------------ nodes
    async def nodes(self, filters: dict[str, list[str]]) -> list[Obj]:
        nodes = await self._manager().render_nodes()
        return [n for n in nodes if sp.match_node(n, filters)]

    async def node(self, ref: str) -> Obj:
        nodes = await self._manager().render_nodes()
        return self._find(nodes, ref)

    def _find(self, nodes: list[Obj], ref: str) -> Obj:
        if ref == "self" and self.state is not None:
            ref = self.state.node_id
        for field in (("ID",), ("Description", "Hostname"), ("Spec", "Name")):
            hits = [n for n in nodes if _dig(n, field) == ref]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise errors.ConflictError(f"node {ref} is ambiguous ({len(hits)} matches)")
        hits = [n for n in nodes if ref and n["ID"].startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise errors.ConflictError(f"node {ref} is ambiguous ({len(hits)} matches)")
        raise errors.NotFoundError("node", ref)

    async def update_node(self, ref: str, version: int, spec: sp.NodeSpec) -> None:
        m = self._manager()
        target = await self.node(ref)
        node, current = await m._store().must_get(NODES + target["ID"], "node")
        if version != current:
            raise errors.ConflictError("update out of sequence")
        new = spec.to_docker()
        if node["Spec"]["Role"] == "manager" and new.get("Role") == "worker":
            await self._check_demote(m, target)
        node["Spec"] = {**node["Spec"], **new}
        node["UpdatedAt"] = objects.now()
        await m._store().cas(NODES + target["ID"], node, current)

    async def _check_demote(self, m: Manager, target: Obj) -> None:
        nodes = await m.render_nodes()
        managers = [n for n in nodes if n["Spec"]["Role"] == "manager"]
        if len(managers) <= 1:
            raise errors.ConflictError("attempting to demote the last manager of the swarm")
        members = await m.members()
        reach = sum(1 for _, r in members.values() if r == "reachable")
        left = reach - (1 if members.get(target["ID"], (False, ""))[1] == "reachable" else 0)
        if left < quorum(len(members) - 1):
            raise errors.ConflictError(
                "can't remove member from the raft: this would result in a loss of quorum")

    async def remove_node(self, ref: str, force: bool) -> None:
        m = self._manager()
        target = await self.node(ref)
        nid = target["ID"]
        if target["Spec"]["Role"] == "manager":
            raise errors.ConflictError(
                f"node {nid} is a cluster manager and is a member of the raft cluster. It must "
                "be demoted to worker before removal")
        if target["Status"]["State"] != "down" and not force:
            raise errors.ConflictError(
                f"node {nid} is not down and can't be removed",
                hint="stop the node first, or use --force")
        await m._store().delete(NODES + nid)
        await m._store().delete(ALIVE + nid)


    # ------------------------------------------------------------------ issue 13 (H3): tasks
    def bind_engine(self, engine: Any) -> None:
        """The engine this node runs its swarm tasks on (the daemon's; none in unit tests,
        and then no agent runs)."""
        self.engine = engine

    def _start_agent(self) -> None:
        if self.engine is None or self.state is None or self.agent is not None:
            return
        from labkit.engine.swarm.agent import Agent

        def ident() -> Identity:
            role = self.manager or self.worker
            assert role is not None, "the agent runs only on an active node"
            return role.ident
        self.agent = Agent(self.state, ident, self.engine)
        self.agent.start()

    async def _stop_agent(self, remove_tasks: bool) -> None:
        agent, self.agent = self.agent, None
        if agent is not None:
            await agent.stop(remove_tasks)

    async def task_logs(self, task_ids: list[str], *, follow: bool, tail: int, since_ns: int,
                        until_ns: int, stdout: bool,
                        stderr: bool) -> AsyncIterator[tuple[str, int, int, bytes]]:
        """(task id, stream 1|2, time ns, line) of the tasks, from the nodes running them
        (`docker service logs`; on a manager only)."""
        m = self._manager()
        if m.dispatcher is None:
            raise errors.UnavailableError(sp.MSG_MANAGER_NOT_READY)
        async for item in m.dispatcher.task_logs(task_ids, follow=follow, tail=tail,
                                                 since_ns=since_ns, until_ns=until_ns,
                                                 stdout=stdout, stderr=stderr):
            yield item
    # --- end H3

    # ------------------------------------------------------------------ issue 13 (H9): attach
    async def attach_network(self, ref: str, container_id: str, aliases: list[str],
                             address: str = "") -> Attachment:
        """An address for a standalone container on attachable swarm network ``ref``
        (`docker run --network` / `network connect` on any node): a manager makes an
        attachment task for this node and its leader allocates the address; the network
        is then materialized here (the agent's next set brings its peers).  Nothing is
        left behind on failure.  Raises NetworkNotFoundError (no such swarm network),
        ForbiddenError (not attachable: Docker's words), UnavailableError."""
        from labkit.engine.networks.store import NetworkNotFoundError
        agent = self.agent
        if self.local_state() != "active" or agent is None or self.state is None:
            raise NetworkNotFoundError(ref)
        req = pb.AttachRequest(network=ref, container_id=container_id,
                               aliases=aliases, address=address)
        try:  # the dispatcher waits up to ATTACH_WAIT_S (10 s) for the leader's address
            resp = await agent.call("AttachNetwork", req, timeout=15.0)
        except grpc.aio.AioRpcError as err:
            code = err.code()
            if code == grpc.StatusCode.NOT_FOUND:
                raise NetworkNotFoundError(ref) from None
            # moby daemon/container_operations.go findAndAttachNetwork: "Could not attach
            # to network %s: %v" around the manager's gRPC status (Go's code name)
            what = "".join(w.capitalize() for w in code.name.split("_"))
            msg = (f"Could not attach to network {ref}: rpc error: code = {what} "
                   f"desc = {err.details()}")
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise errors.ForbiddenError(msg) from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise errors.InvalidArgumentError("network", msg) from None
            raise errors.UnavailableError(msg) from None
        except ConnectionError as err:
            raise errors.UnavailableError(f"Could not attach to network {ref}: {err}") from None
        att = Attachment(resp.attachment_id, json.loads(resp.network), resp.address)
        try:
            data_port = int((agent.executor.snap or {}).get("data_port") or 4789)
            # pyroute2 refuses to run inside a running event loop: a worker thread
            await asyncio.to_thread(self.engine.networks.ensure_swarm, att.network,
                                    self.state.addr, data_port)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.detach_network(att.id)
            raise
        return att

    async def detach_network(self, attachment_id: str) -> None:
        """Give an attachment's address back (the container went or left the network).
        A manager that no longer knows it (the node left and came back) is no error."""
        agent = self.agent
        if self.local_state() != "active" or agent is None:
            log.info("swarm attachment %s not given back: not in a swarm", attachment_id)
            return
        try:
            await agent.call("DetachNetwork", pb.DetachRequest(attachment_id=attachment_id))
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise errors.UnavailableError(
                    f"network attachment {attachment_id}: {err.details()}") from None
        executor = agent.executor
        with contextlib.suppress(Exception):  # the network goes here once nothing uses it
            await executor.refresh()
    # --- end H9


@dataclass(frozen=True)
class Attachment:
    """A standalone container's place on a swarm network (AttachNetwork's answer)."""

    id: str                 # the attachment task's id (given back with detach_network)
    network: Obj            # the network as in the assignment snapshot (NetInfo)
    address: str            # "10.0.1.5/24"


def _dig(obj: Obj, path: tuple[str, ...]) -> Any:
    for k in path:
        obj = obj.get(k) or {}
    return obj


def _br(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip
