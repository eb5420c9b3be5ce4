"""A manager: one etcd member, the sealed store over it, and the node <-> manager service.

Every manager runs the same code; none is special.  The swarm's leader is etcd's leader,
and anything that must happen once per cluster (promoting a new etcd learner to a voting
member) is done by whichever manager's member is the leader at the time.  What a manager
decides it writes to the store with compare-and-swap (store.py), so two managers racing on
the same object cannot both win.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from labkit import errors
from labkit.engine.swarm import ca, objects, seal, tokens
from labkit.engine.swarm.etcd.client import EtcdClient
from labkit.engine.swarm.etcd.member import EtcdMember, MemberConfig
from labkit.engine.swarm.orchestrator import Leader  # H2 (issue 13)
from labkit.engine.swarm.rpc import client as rpc_client
from labkit.engine.swarm.rpc import swarm_pb2 as pb
from labkit.engine.swarm.rpc import swarm_pb2_grpc as pbg
from labkit.engine.swarm.seal import DataKey
from labkit.engine.swarm.state import LocalState, NodeFiles
from labkit.engine.swarm.store import ALIVE, CLUSTER, NODES, ClusterStore

__all__ = ["Identity", "Manager"]

log = logging.getLogger("labkit.swarm")
Obj = dict[str, Any]
NS = 1_000_000_000
RAFT_TICK_MS = 100   # one Raft tick of Spec.Raft (ElectionTick, HeartbeatTick), in etcd's ms
PEER_PORT, CLIENT_PORT = 2380, 2379


class Identity:
    """This node's TLS identity in memory: certificate, key and trust roots (PEM); for a
    manager also its store identity (cert, key, roots of the store CA) that etcd uses."""

    def __init__(self, cert: bytes, key: bytes, roots: bytes,
                 store: tuple[bytes, bytes, bytes] | None = None) -> None:
        self.cert, self.key, self.roots = cert, key, roots
        self.store = store

    @property
    def who(self) -> ca.NodeIdentity:
        return ca.identity(self.cert)


def trust_bundle(cluster: Obj) -> bytes:
    """The roots a node trusts: the current root first, then during a rotation the one
    it replaces (objects.tls_info reports the first)."""
    olds: list[str] = cluster.get("_OldRoots") or []
    return (str(cluster["_RootCA"]["Cert"]) + "".join(olds)).encode()


def issued_by(cert_pem: bytes, root_pem: bytes) -> bool:
    """Whether ``cert_pem`` was signed by the root ``root_pem``."""
    try:
        ca.RootCA(root_pem).verify(cert_pem)
        return True
    except errors.LabkitError:
        return False


def peer_url(ip: str) -> str:
    return f"https://{_bracket(ip)}:{PEER_PORT}"


def client_url(ip: str) -> str:
    return f"https://{_bracket(ip)}:{CLIENT_PORT}"


def _bracket(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def heartbeat_ms(spec: Obj) -> int:
    return max(100, int(spec.get("Dispatcher", {}).get("HeartbeatPeriod") or 5 * NS) // 1_000_000)


def alive_ttl(spec: Obj) -> int:
    """A node is down after three missed heartbeats (swarmkit's dispatcher: 3 periods)."""
    return max(2, math.ceil(3 * heartbeat_ms(spec) / 1000))


class Manager:
    """The manager half of a swarm node (the node's façade is node.SwarmNode)."""

    def __init__(self, files: NodeFiles, state: LocalState, ident: Identity, dek: bytes,
                 on_demoted: Callable[[], Awaitable[None]]) -> None:
        self.files, self.state, self.ident = files, state, ident
        self.dek = DataKey(dek)
        self.on_demoted = on_demoted
        self.member: EtcdMember | None = None
        self.client: EtcdClient | None = None
        self.store: ClusterStore | None = None
        self.server: grpc.aio.Server | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._kek_key: str | None = None   # the unlock key this node's files are sealed with
        self.cross = b""                   # the cross-signed new root, during a rotation
        # --- H2 (issue 13): the leader's orchestrator (swarm/orchestrator), started in start()
        self.leader: Leader | None = None
        self._orch_task: asyncio.Task[None] | None = None
        # --- end H2
        # --- issue 13 (H3): the dispatcher serving this manager's Assignments streams
        from labkit.engine.swarm.dispatcher import Dispatcher
        self.dispatcher: Dispatcher | None = None
        self._dispatcher_cls = Dispatcher
        # --- end H3

    # ------------------------------------------------------------------ lifecycle
    async def start(self, store_timeout: float | None = 30.0) -> None:
        """Start the etcd member (founding the cluster when state.etcd_new), open the
        store, serve the node <-> manager channel, start the background loop."""
        if self.ident.store is None:
            raise errors.ConflictError("this manager has no store certificate",
                                       hint="`docker swarm leave --force`, then join again")
        cert, key, roots = self.files.write_tls(*self.ident.store)
        election, beat = self.state.election_ms, self.state.raft_heartbeat_ms
        cfg = MemberConfig(
            name=self.state.node_id, data_dir=self.files.make_etcd_dir(),
            advertise_ip=self.state.addr, cert_file=cert, key_file=key, ca_file=roots,
            initial_cluster=self.state.etcd_cluster,
            state="new" if self.state.etcd_new else "existing",
            cluster_token=self.state.cluster_id, heartbeat_ms=beat, election_ms=election,
            allowed_hostname=rpc_client.MANAGER_NAME,
            snapshot_count=self.state.snapshot_count, max_snapshots=self.state.max_snapshots,
            log_file=self.files.run / "etcd.log")
        self.member = EtcdMember(cfg)
        self.member.start()
        self.client = EtcdClient([f"https://127.0.0.1:{CLIENT_PORT}"], roots, cert, key)
        # a member that just joined is a learner: it answers status, not reads, until the
        # leader promotes it (manager._promote_soon); then the store is usable here
        await self.member.wait_ready(30.0 if store_timeout is None else store_timeout,
                                     quorum=False)
        self.store = ClusterStore(self.client, self.dek)
        await self._wait_store(store_timeout)
        self.dispatcher = self._dispatcher_cls(self.store)  # H3: served on the cluster port
        await self._serve()
        self._loop_task = asyncio.create_task(self._loop(), name="swarm-manager-loop")
        # --- H2 (issue 13): ticks every 200 ms; acts only while this member leads
        self.leader = Leader(self.store)
        self._orch_task = asyncio.create_task(self.leader.run(self._leads),
                                              name="swarm-orchestrator")
        # --- end H2

    async def _wait_store(self, timeout: float | None) -> None:
        """Until the store answers reads here (None: for as long as it takes, e.g. until
        enough restarted managers are back for a quorum)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout if timeout is not None else float("inf"))
        while True:
            try:
                await self.cluster()
                return
            except errors.NotFoundError:
                return  # a founding member: the cluster object is written next
            except errors.LabkitError as err:
                if loop.time() > deadline:
                    raise errors.UnsupportedError(
                        "swarm store", f"this manager's etcd member serves no reads after "
                        f"{timeout} s: {err}", hint=f"see {self.files.run / 'etcd.log'}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        # --- H2 (issue 13): the orchestrator stops first (it writes through the store)
        if self._orch_task is not None:
            self._orch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._orch_task
            self._orch_task = None
        # --- end H2
        if self.dispatcher is not None:  # H3
            await self.dispatcher.stop()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
        if self.server is not None:
            await self.server.stop(0.5)
            self.server = None
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
        if self.member is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.member.stop)
        self.files.drop_tls()

    async def _serve(self) -> None:
        from labkit.engine.swarm.rpc.server import ClusterService, JoinService

        server = grpc.aio.server()
        pbg.add_JoinServicer_to_server(JoinService(self), server)  # type: ignore[no-untyped-call]
        pbg.add_ClusterServicer_to_server(  # type: ignore[no-untyped-call]
            ClusterService(self), server)
        # the roots ride along (joiners pin the current one by the token's digest), and
        # during a rotation the old root's signature over the new root's key, so that a
        # node still trusting only the old root accepts this new certificate
        chain = self.ident.cert + self.cross + self.ident.roots
        join_creds = grpc.ssl_server_credentials([(self.ident.key, chain)])
        mutual = grpc.ssl_server_credentials([(self.ident.key, chain)],
                                             root_certificates=self.ident.roots,
                                             require_client_auth=True)
        ip = _bracket(self.state.listen_ip)
        server.add_secure_port(f"{ip}:{self.state.join_port}", join_creds)
        server.add_secure_port(f"{ip}:{self.state.join_port + 1}", mutual)
        await server.start()
        self.server = server

    async def restart_server(self) -> None:
        """A renewed certificate: serve with it (grpcio's credentials are fixed per port)."""
        if self.server is not None:
            await self.server.stop(0.2)
        await self._serve()

    # ------------------------------------------------------------------ store helpers
    def _store(self) -> ClusterStore:
        if self.store is None:
            raise errors.ConflictError("the swarm's store is not open yet")
        return self.store

    async def cluster(self) -> tuple[Obj, int]:
        return await self._store().must_get(CLUSTER, "swarm")

    async def signer(self, cluster: Obj) -> ca.RootCA:
        root = cluster["_RootCA"]
        return ca.RootCA(root["Cert"].encode(),
                         root["Key"].encode() if root.get("Key") else None)

    async def issue(self, csr: bytes, node_id: str, role: str, ip: str,
                    cluster: Obj | None = None) -> bytes:
        """A certificate for ``node_id`` in ``role``: signed here with the root key kept in
        the store, or by the external CA when Spec.CAConfig.ExternalCAs names one."""
        if cluster is None:
            cluster, _ = await self.cluster()
        spec = cluster["Spec"]
        expiry_ns = int(spec.get("CAConfig", {}).get("NodeCertExpiry") or 90 * 24 * 3600 * NS)
        import datetime as dt

        expiry = dt.timedelta(microseconds=expiry_ns // 1000)
        ips = [ip, "127.0.0.1"] if role == "manager" else [ip]
        externals = spec.get("CAConfig", {}).get("ExternalCAs") or []
        if externals:
            from labkit.engine.swarm.cfssl import ExternalCA

            ext = externals[0]
            signer = ExternalCA(ext["URL"], cluster["_RootCA"]["Cert"].encode())
            return await signer.sign(csr, node_id=node_id, role=role,  # type: ignore[arg-type]
                                     cluster_id=self.state.cluster_id, expiry=expiry, ips=ips)
        root = await self.signer(cluster)
        return root.issue(csr, node_id=node_id, role=role,  # type: ignore[arg-type]
                          cluster_id=self.state.cluster_id, expiry=expiry, ips=ips)

    def issue_store(self, csr: bytes, node_id: str, ip: str, cluster: Obj) -> bytes:
        """A certificate from the store CA: what etcd's ports trust.  Only managers get
        one, so a worker's swarm certificate opens neither the store nor the Raft peers."""
        store = cluster["_StoreCA"]
        expiry_ns = int(cluster["Spec"].get("CAConfig", {}).get("NodeCertExpiry")
                        or 90 * 24 * 3600 * NS)
        import datetime as dt

        return ca.RootCA(store["Cert"].encode(), store["Key"].encode()).issue(
            csr, node_id=node_id, role="manager", cluster_id=self.state.cluster_id,
            expiry=dt.timedelta(microseconds=expiry_ns // 1000), ips=[ip, "127.0.0.1"])

    # ------------------------------------------------------------------ RPC: join
    async def handle_join(self, req: pb.JoinRequest) -> pb.JoinResponse:
        cluster, _ = await self.cluster()
        try:
            tok = tokens.parse(req.token)
        except errors.InvalidArgumentError as err:
            raise errors.ForbiddenError("invalid join token") from err
        role = None
        for name, r in (("Manager", "manager"), ("Worker", "worker")):
            mine = cluster["JoinTokens"][name]
            if tokens.same_secret(mine, req.token) and tokens.parse(mine).digest == tok.digest:
                role = r
        if role is None:
            raise errors.ForbiddenError(
                "invalid join token: it does not match this swarm's current worker or "
                "manager token (rotated, or from another swarm)")
        node_id = ca.new_id()
        cert = await self.issue(req.csr, node_id, role, req.addr, cluster)
        roots = trust_bundle(cluster)
        d = req.description
        node = objects.new_node(node_id, role, req.addr, req.availability, d.hostname,
                                d.engine_version, d.nano_cpus, d.memory_bytes, roots,
                                self.state.join_port)
        await self._store().create(NODES + node_id, node)
        resp = pb.JoinResponse(node_id=node_id, cluster_id=self.state.cluster_id, role=role,
                               certificate=cert, trust_roots=roots,
                               managers=await self.manager_addrs(),
                               heartbeat_period_ms=heartbeat_ms(cluster["Spec"]))
        if role == "manager":
            resp.manager.CopyFrom(await self._admit_member(node_id, req.addr, req.store_csr,
                                                           cluster))
        await self._store().mark_alive(node_id, alive_ttl(cluster["Spec"]))
        log.info("node %s (%s) joined as %s", node_id, d.hostname, role)
        return resp

    async def _admit_member(self, node_id: str, ip: str, store_csr: bytes,
                            cluster: Obj) -> pb.ManagerMaterial:
        """Add the node's etcd member as a learner: it counts toward no quorum until it
        has caught up, and the leader's loop then promotes it to a voter (etcd learners,
        etcd 3.4 "runtime reconfiguration"); a manager that never starts thus cannot
        take the store's quorum down with it."""
        assert self.client is not None
        store_cert = self.issue_store(store_csr, node_id, ip, cluster)  # before: bad CSR
        added = await self.client.member_add(peer_url(ip), learner=True)
        peers = [pb.EtcdPeer(name=name, peer_url=url)
                 for name, url in added.initial_cluster(node_id).items()]
        asyncio.get_running_loop().create_task(self._promote_soon(added.member.id))
        return pb.ManagerMaterial(data_key=self.dek.raw, etcd_cluster=peers,
                                  etcd_member_id=added.member.id, election_ms=self.state.election_ms,
                                  heartbeat_ms=self.state.raft_heartbeat_ms,
                                  store_certificate=store_cert,
                                  snapshot_count=self.state.snapshot_count,
                                  max_snapshots=self.state.max_snapshots,
                                  store_roots=cluster["_StoreCA"]["Cert"].encode())

    async def _promote_soon(self, member_id: int, timeout: float = 60.0) -> None:
        """Promote the new learner as soon as etcd allows (it refuses until the learner's
        log has caught up with the leader's)."""
        assert self.client is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                await self.client.member_promote(member_id)
                return
            except errors.LabkitError as err:
                if "not found" in str(err).lower() or "not a learner" in str(err).lower():
                    return
            await asyncio.sleep(0.05)

    async def manager_addrs(self) -> list[str]:
        return [n["ManagerStatus"]["Addr"] for n, _ in await self._store().list(NODES)
                if n["Spec"]["Role"] == "manager" and "ManagerStatus" in n]

    # ------------------------------------------------------------------ RPC: cluster
    async def handle_heartbeat(self, node_id: str) -> pb.HeartbeatResponse:
        cluster, _ = await self.cluster()
        got = await self._store().get(NODES + node_id)
        if got is None:
            return pb.HeartbeatResponse(removed=True)
        node, _ = got
        await self._store().mark_alive(node_id, alive_ttl(cluster["Spec"]))
        root = ca.RootCA(cluster["_RootCA"]["Cert"].encode(), None)
        return pb.HeartbeatResponse(period_ms=heartbeat_ms(cluster["Spec"]),
                                    managers=await self.manager_addrs(),
                                    desired_role=node["Spec"]["Role"],
                                    root_digest=root.digest(),
                                    trust_roots=trust_bundle(cluster))

    async def handle_renew(self, node_id: str, csr: bytes,
                           store_csr: bytes = b"") -> pb.RenewResponse:
        """A new certificate for the caller, in the role its node object now has; on a
        promotion also what it needs to start an etcd member."""
        cluster, _ = await self.cluster()
        node, _ = await self._store().must_get(NODES + node_id, "node")
        role = node["Spec"]["Role"]
        ip = node["Status"]["Addr"]
        cert = await self.issue(csr, node_id, role, ip, cluster)
        resp = pb.RenewResponse(certificate=cert, role=role, trust_roots=trust_bundle(cluster))
        await self._record_tls(node_id, cluster)
        if role == "manager" and not await self._is_member(node_id, ip):
            resp.manager.CopyFrom(await self._admit_member(node_id, ip, store_csr, cluster))
            node["ManagerStatus"] = {"Addr": f"{_bracket(ip)}:{self.state.join_port}"}
            node["UpdatedAt"] = objects.now()
            await self._store().put(NODES + node_id, node)
        return resp

    async def _record_tls(self, node_id: str, cluster: Obj) -> None:
        """The node's TLSInfo now names the current root as its issuer (what `docker
        swarm ca --rotate` watches, node by node)."""
        for _ in range(5):
            got = await self._store().get(NODES + node_id)
            if got is None:
                return
            node, version = got
            node["Description"]["TLSInfo"] = objects.tls_info(
                cluster["_RootCA"]["Cert"].encode())
            try:
                await self._store().cas(NODES + node_id, node, version)
                return
            except errors.ConflictError:
                continue

    async def _is_member(self, node_id: str, ip: str) -> bool:
        assert self.client is not None
        return any(m.name == node_id or peer_url(ip) in m.peer_urls
                   for m in await self.client.member_list())

    async def handle_leave(self, node_id: str) -> None:
        """A worker leaves: it stays listed, down, until `docker node rm` (as in Docker)."""
        await self._store().mark_down(node_id)

    # ------------------------------------------------------------------ the loop
    async def _loop(self) -> None:
        """Own liveness, learner promotion (leader only), the unlock key and own role."""
        while True:
            period = 1.0
            try:
                cluster, _ = await self.cluster()
                period = heartbeat_ms(cluster["Spec"]) / 1000
                await self._store().mark_alive(self.state.node_id, alive_ttl(cluster["Spec"]))
                await self._promote_learners()
                await self._renew_own(cluster)
                await self._finish_rotation(cluster)
                await self._follow_unlock_key(cluster)
                mine = await self._store().get(NODES + self.state.node_id)
                if mine is not None and mine[0]["Spec"]["Role"] == "worker":
                    await self.on_demoted()
                    return
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure: retry next round  # a lost quorum, a member restarting: try again
                log.warning("manager loop: %s", err)
            await asyncio.sleep(min(period, 1.0))

    async def _renew_own(self, cluster: Obj) -> None:
        """A manager renews its own certificate (between 50 % and 80 % of its life, or at
        once when the swarm's root changed): it signs for itself, as it would for others."""
        roots = trust_bundle(cluster)
        cross = (cluster["_RootCA"].get("Cross") or "").encode()
        store = self.ident.store
        assert store is not None
        current = issued_by(self.ident.cert, cluster["_RootCA"]["Cert"].encode())
        if current and not ca.needs_renewal(self.ident.cert) and not ca.needs_renewal(store[0]):
            if roots != self.ident.roots or cross != self.cross:  # a rotation ended
                self.files.write_identity(self.ident.cert, roots, None, None)
                self.ident.roots, self.cross = roots, cross
                await self.restart_server()
            return
        nid = self.state.node_id
        key, csr = ca.new_key_and_csr(nid)
        skey, scsr = ca.new_key_and_csr(nid)
        cert = await self.issue(csr, nid, "manager", self.state.addr, cluster)
        scert = self.issue_store(scsr, nid, self.state.addr, cluster)
        kek = seal.kek(self._kek_key) if self._kek_key else None
        self.files.write_identity(cert, roots, key, kek)
        self.files.write_store_identity(scert, store[2], skey, kek)
        self.ident = Identity(cert, key, roots, (scert, skey, store[2]))
        self.cross = cross
        # etcd reads its certificate files again for each new connection
        self.files.write_tls(scert, skey, store[2])
        await self.restart_server()
        await self._record_tls(nid, cluster)
        log.info("manager certificate renewed, valid until %s", ca.identity(cert).not_after)

    async def _finish_rotation(self, cluster: Obj) -> None:
        """The leader ends a root rotation once every live node holds a certificate of
        the new root: the old root is trusted no more (swarmkit's root rotation)."""
        if not cluster.get("RootRotationInProgress") or not await self._leads():
            return
        want = objects.tls_info(cluster["_RootCA"]["Cert"].encode())["CertIssuerPublicKey"]
        alive = await self.alive()
        for node, _ in await self._store().list(NODES):
            if node["ID"] in alive and \
                    node["Description"]["TLSInfo"]["CertIssuerPublicKey"] != want:
                return
        fresh, version = await self.cluster()
        if fresh["_RootCA"]["Cert"] != cluster["_RootCA"]["Cert"]:
            return  # rotated again meanwhile
        fresh["_OldRoots"], fresh["RootRotationInProgress"] = [], False
        fresh["_RootCA"].pop("Cross", None)
        fresh["UpdatedAt"] = objects.now()
        with contextlib.suppress(errors.ConflictError):
            await self._store().cas(CLUSTER, fresh, version)
            log.info("root CA rotation complete: every node holds a certificate of the new root")

    async def _leads(self) -> bool:
        assert self.client is not None
        status = await self.client.status(f"https://127.0.0.1:{CLIENT_PORT}")
        return bool(status.leader_id == status.member_id)

    async def _promote_learners(self) -> None:
        assert self.client is not None
        if not await self._leads():
            return
        for m in await self.client.member_list():
            if m.is_learner:
                with contextlib.suppress(errors.LabkitError):
                    # refused until the learner has caught up with the leader's log
                    await self.client.member_promote(m.id)
                    log.info("etcd learner %s promoted to voting member", m.name or m.id)

    async def _follow_unlock_key(self, cluster: Obj) -> None:
        """Another manager turned autolock on/off or rotated the key: reseal our files."""
        want = cluster.get("_UnlockKey")
        if want == self._kek_key:
            return
        old = seal.kek(self._kek_key) if self._kek_key else None
        new = seal.kek(want) if want else None
        self.files.reseal(old, new)
        self._kek_key = want
        self.state.autolock = bool(want)
        self.files.save(self.state)

    def set_unlock_key(self, key: str | None) -> None:
        """The key this node's files are sealed with right now (after unlock or init)."""
        self._kek_key = key

    # ------------------------------------------------------------------ membership views
    async def members(self) -> dict[str, tuple[bool, str]]:
        """node id -> (leader?, reachability) for every etcd member."""
        assert self.client is not None
        out: dict[str, tuple[bool, str]] = {}
        members = await self.client.member_list()
        leader_id = None

        async def probe(m: Any) -> tuple[Any, Any]:
            if not m.client_urls:
                return m, None
            try:
                return m, await asyncio.wait_for(self.client.status(m.client_urls[0]), 0.5)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - unreachable is the answer
                return m, None

        for m, st in await asyncio.gather(*(probe(m) for m in members)):
            if st is not None and st.leader_id:
                leader_id = st.leader_id
            # a learner answers, but counts toward no quorum until promoted: "unknown"
            reach = "unreachable" if st is None else "unknown" if m.is_learner else "reachable"
            out[m.name] = (False, reach)
        for m in members:
            if m.id == leader_id and m.name in out:
                out[m.name] = (True, out[m.name][1])
        return out

    async def alive(self) -> set[str]:
        return await self._store().alive()

    async def render_nodes(self) -> list[Obj]:
        nodes = await self._store().list(NODES)
        alive = await self.alive()
        members = await self.members()
        out = []
        for node, version in nodes:
            pub = objects.public(node, version)
            up = node["ID"] in alive
            pub["Status"] = {**node["Status"], "State": "ready" if up else "down"}
            if "ManagerStatus" in node and node["Spec"]["Role"] == "manager":
                leader, reach = members.get(node["ID"], (False, "unreachable"))
                ms = {"Addr": node["ManagerStatus"]["Addr"], "Reachability": reach}
                if leader:
                    ms["Leader"] = True
                pub["ManagerStatus"] = ms
            else:
                pub.pop("ManagerStatus", None)
            out.append(pub)
        return out

    async def remove_self_from_etcd(self) -> None:
        """Leave the Raft group (before a demotion or a forced leave).  The request goes
        to another member: the removed member stops serving as soon as the removal is
        applied, so its own answer may never come."""
        assert self.client is not None
        members = await self.client.member_list()
        me = [m for m in members if m.name == self.state.node_id]
        others = [u for m in members if m.name != self.state.node_id for u in m.client_urls]
        if not me:
            return
        if not others:
            raise errors.ConflictError("this is the swarm's last manager")
        tls = self.files.tls_dir
        async with EtcdClient(others, tls / "ca.crt", tls / "node.crt", tls / "node.key") as c:
            await c.member_remove(me[0].id)

    def resume(self) -> None:
        """Run the loop again (a role switch that failed half-way is retried)."""
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._loop(), name="swarm-manager-loop")


def quorum(n: int) -> int:
    return n // 2 + 1


def alive_key(node_id: str) -> str:
    return ALIVE + node_id
