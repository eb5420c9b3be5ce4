"""An in-memory SwarmBackend for unit tests, and a daemon app served on a unix socket.

``FakeSwarm`` keeps just enough state to drive the handlers and the CLIs (labkit's and
Docker's): init, join (tokens it was told to accept), leave, the cluster object with a
Version.Index checked and bumped on update, token and unlock-key rotation, lock/unlock, and
nodes (update with a version check, remove).  It raises what the real node raises, with
Docker's texts (labkit.engine.swarm.spec MSG_*).  ``serve(app, sock)`` runs an aiohttp app
on a unix socket in a thread, for CLI tests.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from labkit import errors
from labkit.engine.swarm.spec import (
    MSG_INVALID_UNLOCK_KEY,
    MSG_LOCKED,
    MSG_NO_SWARM,
    MSG_NOT_LOCKED,
    MSG_NOT_MANAGER,
    MSG_OUT_OF_SEQUENCE,
    MSG_SWARM_EXISTS,
    MSG_WORKER,
    ClusterSpec,
    InitRequest,
    JoinRequest,
    NodeSpec,
    UpdateFlags,
    inactive_info,
    match_node,
)

__all__ = ["CA_PEM", "FakeSwarm", "serve"]

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
T0 = "2026-12-04T10:00:00.000000001Z"


class FakeSwarm:
    """One node's view of a swarm, all in memory; ids and keys are predictable."""

    def __init__(self, hostname: str = "lk-node1") -> None:
        self.hostname = hostname
        self.state: str = "inactive"
        self._role: str | None = None
        self._seq = itertools.count(1)
        self.index = 0
        self.calls: list[tuple[str, Any]] = []
        self.accept_tokens: dict[str, str] = {}   # join token -> role it grants
        self._reset()

    def _reset(self) -> None:
        self.node_id = ""
        self.spec = ClusterSpec()
        self.version = 0
        self.tokens = {"Worker": "", "Manager": ""}
        self.key = ""
        self.members: dict[str, dict[str, Any]] = {}

    def _next(self, prefix: str) -> str:
        n = next(self._seq)
        return f"{prefix}{n:0>{25 - len(prefix)}}"

    def _bump(self) -> int:
        self.index += 1
        return self.index

    # -- the Protocol --------------------------------------------------------------------
    def local_state(self) -> str:
        return self.state

    def role(self) -> str | None:
        return self._role

    def _manager(self) -> None:
        if self.state == "locked":
            raise errors.UnavailableError(MSG_LOCKED)
        if self.state != "active":
            raise errors.UnavailableError(MSG_NOT_MANAGER)
        if self._role != "manager":
            raise errors.UnavailableError(MSG_WORKER)

    async def info(self) -> dict[str, Any]:
        if self.state == "inactive":
            return inactive_info()
        out: dict[str, Any] = {
            "NodeID": self.node_id, "NodeAddr": "10.99.0.1", "LocalNodeState": self.state,
            "ControlAvailable": self.state == "active" and self._role == "manager",
            "Error": "", "RemoteManagers": [{"NodeID": self.node_id, "Addr": "10.99.0.1:2377"}]}
        if out["ControlAvailable"]:
            out["Nodes"] = len(self.members)
            out["Managers"] = sum(1 for n in self.members.values() if "ManagerStatus" in n)
            out["Cluster"] = {k: v for k, v in (await self.inspect()).items()
                              if k != "JoinTokens"}
        return out

    async def init(self, req: InitRequest) -> str:
        self.calls.append(("init", req))
        if self.state != "inactive":
            raise errors.UnavailableError(MSG_SWARM_EXISTS)
        self.state, self._role = "active", "manager"
        self.node_id = self._next("n")
        self.spec = req.spec
        self.tokens = {"Worker": self._next("SWMTKN-1-w"), "Manager": self._next("SWMTKN-1-m")}
        self.key = self._next("SWMKEY-1-") if req.spec.autolock_managers else ""
        self.version = self._bump()
        addr = req.advertise_addr or req.listen_addr
        self.add_node(self.hostname, "manager", node_id=self.node_id,
                      manager_addr=str(addr) if not addr.unspecified else "10.99.0.1:2377",
                      availability=req.availability)
        return self.node_id

    async def join(self, req: JoinRequest) -> None:
        self.calls.append(("join", req))
        if self.state != "inactive":
            raise errors.UnavailableError(MSG_SWARM_EXISTS)
        role = self.accept_tokens.get(req.join_token)
        if role is None:
            raise errors.InvalidArgumentError("JoinToken", "A valid join token is necessary "
                                              "to join this cluster")
        self.state, self._role, self.node_id = "active", role, self._next("n")

    async def leave(self, force: bool) -> None:
        self.calls.append(("leave", force))
        if self.state == "inactive":
            raise errors.UnavailableError(MSG_NO_SWARM)
        if self._role == "manager" and not force:
            raise errors.UnavailableError(
                "You are attempting to leave the swarm on a node that is participating as a "
                "manager. Removing the last manager erases all current state of the swarm. "
                "Use `--force` to ignore this message. ")
        self.state, self._role = "inactive", None
        self._reset()

    async def inspect(self) -> dict[str, Any]:
        self._manager()
        return {"ID": "c" * 25, "Version": {"Index": self.version}, "CreatedAt": T0,
                "UpdatedAt": T0, "Spec": self.spec.to_docker(),
                "TLSInfo": {"TrustRoot": CA_PEM, "CertIssuerSubject": "MBMxETAPBgNV",
                            "CertIssuerPublicKey": "MFkwEwYH"},
                "RootRotationInProgress": False, "DefaultAddrPool": ["10.0.0.0/8"],
                "SubnetSize": 24, "DataPathPort": 4789, "JoinTokens": dict(self.tokens)}

    async def update(self, version: int, spec: ClusterSpec, flags: UpdateFlags) -> None:
        self.calls.append(("update", (version, spec, flags)))
        self._manager()
        if version != self.version:
            raise errors.ConflictError(MSG_OUT_OF_SEQUENCE)
        if flags.rotate_worker_token:
            self.tokens["Worker"] = self._next("SWMTKN-1-w")
        if flags.rotate_manager_token:
            self.tokens["Manager"] = self._next("SWMTKN-1-m")
        # swarmkit controlapi UpdateCluster: a key appears with autolock, goes without it
        if not spec.autolock_managers:
            self.key = ""
        elif not self.key or flags.rotate_unlock_key:
            self.key = self._next("SWMKEY-1-")
        self.spec = spec
        self.version = self._bump()

    async def unlock_key(self) -> str:
        self._manager()
        return self.key

    async def unlock(self, key: str) -> None:
        self.calls.append(("unlock", None))
        if self.state == "active":
            raise errors.ConflictError(MSG_NOT_LOCKED)
        if self.state != "locked":
            raise errors.UnavailableError(MSG_NOT_MANAGER)
        if not hmac.compare_digest(key.encode(), self.key.encode()):
            raise errors.ForbiddenError(MSG_INVALID_UNLOCK_KEY)
        self.state = "active"

    async def nodes(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        self._manager()
        return [n for n in self.members.values() if match_node(n, filters)]

    async def node(self, ref: str) -> dict[str, Any]:
        self._manager()
        return self.members[self._resolve(ref)]

    async def update_node(self, ref: str, version: int, spec: NodeSpec) -> None:
        self.calls.append(("update_node", (ref, version, spec)))
        self._manager()
        node = self.members[self._resolve(ref)]
        if version != node["Version"]["Index"]:
            raise errors.ConflictError(MSG_OUT_OF_SEQUENCE)
        managers = [n for n in self.members.values() if n["Spec"]["Role"] == "manager"]
        if spec.role == "worker" and managers == [node]:
            raise errors.ConflictError("attempting to demote the last manager of the swarm")
        node["Spec"] = {**node["Spec"], **spec.to_docker()}
        if spec.role == "manager":
            node.setdefault("ManagerStatus", {"Reachability": "reachable",
                                              "Addr": "10.99.0.9:2377"})
        else:
            node.pop("ManagerStatus", None)
        node["Version"] = {"Index": self._bump()}

    async def remove_node(self, ref: str, force: bool) -> None:
        self.calls.append(("remove_node", (ref, force)))
        self._manager()
        nid = self._resolve(ref)
        node = self.members[nid]
        if "ManagerStatus" in node:
            raise errors.ConflictError(f"node {nid} is a cluster manager and is a member of "
                                       "the raft cluster. It must be demoted to worker before "
                                       "removal")
        if not force and node["Status"]["State"] == "ready":
            raise errors.ConflictError(f"node {nid} is not down and can't be removed")
        del self.members[nid]

    # -- test helpers ----------------------------------------------------------------------
    def _resolve(self, ref: str) -> str:
        if ref == "self" and self.node_id:
            return self.node_id
        if ref in self.members:
            return ref
        hits = [i for i, n in self.members.items()
                if i.startswith(ref) or n["Description"]["Hostname"] == ref]
        if len(hits) != 1:
            raise errors.NotFoundError("node", ref) if not hits else errors.ConflictError(
                f"node {ref} is ambiguous ({len(hits)} matches found)")
        return hits[0]

    def add_node(self, hostname: str, role: str = "worker", *, node_id: str = "",
                 state: str = "ready", manager_addr: str = "", availability: str = "active",
                 labels: dict[str, str] | None = None) -> str:
        """Put a node object in the fake cluster (other members, as a manager sees them)."""
        nid = node_id or self._next("n")
        node: dict[str, Any] = {
            "ID": nid, "Version": {"Index": self._bump()}, "CreatedAt": T0, "UpdatedAt": T0,
            "Spec": {"Labels": dict(labels or {}), "Role": role, "Availability": availability},
            "Description": {"Hostname": hostname,
                            "Platform": {"Architecture": "x86_64", "OS": "linux"},
                            "Resources": {"NanoCPUs": 2_000_000_000, "MemoryBytes": 2**31},
                            "Engine": {"EngineVersion": "0.1.0-labkit", "Labels": {}},
                            "TLSInfo": {"TrustRoot": CA_PEM}},
            "Status": {"State": state, "Addr": "10.99.0.1"}}
        if role == "manager":
            node["ManagerStatus"] = {"Leader": nid == self.node_id, "Addr": manager_addr or
                                     "10.99.0.2:2377", "Reachability": "reachable"}
        self.members[nid] = node
        return nid

    def lock(self) -> None:
        """As a manager with autolock after a restart: locked until unlocked."""
        assert self.key, "lock() needs autolock on"
        self.state = "locked"


@contextmanager
def serve(app: web.Application, sock: Path) -> Iterator[None]:
    """Run ``app`` on the unix socket ``sock`` in a thread with its own event loop."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)

    async def start() -> None:
        await runner.setup()
        await web.UnixSite(runner, str(sock)).start()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
