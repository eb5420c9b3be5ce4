"""A worker's side of the swarm: heartbeats to a manager, and what their answers ask for.

Each answer carries the node's desired role (promote/demote are node updates on a manager;
the node itself follows), the swarm's current root CA (a rotation means renew now), and the
managers to fall back on when this one stops answering.  A node that was removed from the
swarm learns it here and resets itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import grpc
import grpc.aio
from cryptography.hazmat.primitives.serialization import Encoding

from labkit.engine.swarm import ca
from labkit.engine.swarm.manager import Identity, issued_by
from labkit.engine.swarm.rpc import client as rpc
from labkit.engine.swarm.rpc import swarm_pb2 as pb
from labkit.engine.swarm.rpc import swarm_pb2_grpc as pbg
from labkit.engine.swarm.state import LocalState, NodeFiles

__all__ = ["Worker"]


def _issued_by_first(cert_pem: bytes, roots_pem: bytes) -> bool:
    """Whether the node's certificate comes from the swarm's current root (the bundle's
    first): after a rotation began it does not, and the node renews."""
    first = ca.load_pem_chain(roots_pem)[0].public_bytes(Encoding.PEM)
    return issued_by(cert_pem, first)

log = logging.getLogger("labkit.swarm")


class Worker:
    """Heartbeats and certificate renewal for a node in the worker role."""

    def __init__(self, files: NodeFiles, state: LocalState, ident: Identity,
                 on_role: Callable[[pb.RenewResponse, bytes, bytes], Awaitable[None]],
                 on_removed: Callable[[], Awaitable[None]]) -> None:
        self.files, self.state, self.ident = files, state, ident
        self.on_role, self.on_removed = on_role, on_removed
        self.task: asyncio.Task[None] | None = None
        self.error = ""
        self.last_ok = 0.0

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name="swarm-worker-loop")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    async def call(self, fn: str, req: object, timeout: float = 5.0) -> object:
        """One Cluster call on the first manager that answers (mutual TLS)."""
        last: Exception | None = None
        for addr in list(self.state.managers):
            ch = rpc.cluster_channel(addr, self.ident.roots, self.ident.cert, self.ident.key)
            try:
                async with ch:
                    stub = pbg.ClusterStub(ch)  # type: ignore[no-untyped-call]
                    return await getattr(stub, fn)(req, timeout=timeout)
            except grpc.aio.AioRpcError as err:
                last = err
                if err.code() not in (grpc.StatusCode.UNAVAILABLE,
                                      grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise rpc.rpc_error(err, addr) from err
        if isinstance(last, grpc.aio.AioRpcError):
            raise rpc.rpc_error(last, "every manager")
        raise ConnectionError("no manager is known")

    async def _loop(self) -> None:
        period = self.state.heartbeat_ms / 1000
        while True:
            try:
                resp = await self.call("Heartbeat", pb.HeartbeatRequest())
                assert isinstance(resp, pb.HeartbeatResponse)
                self.error = ""
                if resp.removed:
                    await self.on_removed()
                    return
                period = max(resp.period_ms, 100) / 1000
                if list(resp.managers) and list(resp.managers) != self.state.managers:
                    self.state.managers = list(resp.managers)
                    self.state.heartbeat_ms = resp.period_ms
                    self.files.save(self.state)
                if resp.trust_roots and resp.trust_roots != self.ident.roots:
                    # a rotation began (two roots) or ended (one): trust what the swarm does
                    self.files.write_identity(self.ident.cert, resp.trust_roots, None, None)
                    self.ident.roots = resp.trust_roots
                stale = bool(resp.trust_roots) and not _issued_by_first(
                    self.ident.cert, resp.trust_roots)
                if resp.desired_role != self.state.role or stale \
                        or ca.needs_renewal(self.ident.cert):
                    await self.renew()
                    if resp.desired_role != self.state.role:
                        return  # the node has switched roles: a manager runs now
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - shown in info, retried
                self.error = str(err).splitlines()[0]
                log.warning("heartbeat: %s", self.error)
            await asyncio.sleep(period)

    async def renew(self) -> None:
        key, csr = ca.new_key_and_csr(self.state.node_id)
        skey, scsr = ca.new_key_and_csr(self.state.node_id)  # used if promoted
        resp = await self.call("RenewCertificate", pb.RenewRequest(csr=csr, store_csr=scsr))
        assert isinstance(resp, pb.RenewResponse)
        await self.on_role(resp, key, skey)
