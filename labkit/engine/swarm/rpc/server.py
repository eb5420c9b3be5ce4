"""The manager's side of swarm.proto: thin servicers over manager.Manager.

Who calls is read from the TLS layer, never from the request: on the cluster port grpcio has
verified the client's certificate against the swarm's roots (require_client_auth), and the
servicer still parses it here, so a call that somehow arrives without one (the join port
asks for none) is refused rather than trusted.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from labkit import errors
from labkit.engine.swarm import ca
from labkit.engine.swarm.rpc import swarm_pb2 as pb
from labkit.engine.swarm.rpc import swarm_pb2_grpc as pbg

if TYPE_CHECKING:
    from labkit.engine.swarm.manager import Manager

__all__ = ["ClusterService", "JoinService"]

log = logging.getLogger("labkit.swarm")

STATUS: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.ForbiddenError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ConflictError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
)


async def _abort(context: grpc.aio.ServicerContext, err: BaseException) -> None:
    for cls, code in STATUS:
        if isinstance(err, cls):
            await context.abort(code, str(err).splitlines()[0])
    log.warning("swarm rpc failed: %s", err)
    await context.abort(grpc.StatusCode.UNAVAILABLE, str(err).splitlines()[0] or "unavailable")


def caller(context: grpc.aio.ServicerContext, cluster_id: str) -> ca.NodeIdentity:
    """The node behind this call, from its verified client certificate."""
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        raise errors.ForbiddenError("this call needs the node's swarm certificate (mutual TLS)")
    who = ca.identity(pems[0])
    if who.cluster_id != cluster_id:
        raise errors.ForbiddenError("the certificate belongs to another swarm")
    return who


class JoinService(pbg.JoinServicer):
    def __init__(self, manager: Manager) -> None:
        self.m = manager

    async def Join(self, request: pb.JoinRequest,
                   context: grpc.aio.ServicerContext) -> pb.JoinResponse:
        try:
            return await self.m.handle_join(request)
        except Exception as err:
            await _abort(context, err)
            raise


class ClusterService(pbg.ClusterServicer):
    def __init__(self, manager: Manager) -> None:
        self.m = manager

    async def Heartbeat(self, request: pb.HeartbeatRequest,
                        context: grpc.aio.ServicerContext) -> pb.HeartbeatResponse:
        try:
            who = caller(context, self.m.state.cluster_id)
            return await self.m.handle_heartbeat(who.node_id)
        except Exception as err:
            await _abort(context, err)
            raise

    async def RenewCertificate(self, request: pb.RenewRequest,
                               context: grpc.aio.ServicerContext) -> pb.RenewResponse:
        try:
            who = caller(context, self.m.state.cluster_id)
            return await self.m.handle_renew(who.node_id, request.csr, request.store_csr)
        except Exception as err:
            await _abort(context, err)
            raise

    async def Leave(self, request: pb.LeaveRequest,
                    context: grpc.aio.ServicerContext) -> pb.LeaveResponse:
        try:
            who = caller(context, self.m.state.cluster_id)
            await self.m.handle_leave(who.node_id)
            return pb.LeaveResponse()
        except Exception as err:
            await _abort(context, err)
            raise
