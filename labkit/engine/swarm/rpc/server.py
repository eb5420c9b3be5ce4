"""The manager's side of swarm.proto: thin servicers over manager.Manager.

Who calls is read from the TLS layer, never from the request: on the cluster port grpcio has
verified the client's certificate against the swarm's roots (require_client_auth), and the
servicer still parses it here, so a call that somehow arrives without one (the join port
asks for none) is refused rather than trusted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from labkit import errors
from labkit.engine.swarm import ca
from labkit.engine.swarm.rpc import swarm_pb2 as pb
from labkit.engine.swarm.rpc import swarm_pb2_grpc as pbg

if TYPE_CHECKING:
    from labkit.engine.swarm.dispatcher import Dispatcher
    from labkit.engine.swarm.manager import Manager

__all__ = ["ClusterService", "JoinService"]

log = logging.getLogger("labkit.swarm")

STATUS: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.ForbiddenError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ConflictError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE),
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

    # ------------------------------------------------------------------ issue 13: dispatcher
    # Every call names its node by the verified certificate (``caller``), never by the
    # request: a node sees, and updates, only what is assigned to it.
    def _dispatcher(self) -> Dispatcher:
        d = getattr(self.m, "dispatcher", None)
        if d is None:
            raise errors.UnavailableError("this manager's dispatcher is not running")
        return d  # type: ignore[no-any-return]

    async def Assignments(self, request: pb.AssignmentsRequest,
                          context: grpc.aio.ServicerContext) -> AsyncIterator[pb.AssignmentSet]:
        try:
            who = caller(context, self.m.state.cluster_id)
            async for msg in self._dispatcher().assignments(who.node_id):
                yield msg
        except Exception as err:
            await _abort(context, err)
            raise

    async def UpdateTaskStatus(self, request: pb.TaskStatusRequest,
                               context: grpc.aio.ServicerContext) -> pb.TaskStatusResponse:
        try:
            who = caller(context, self.m.state.cluster_id)
            await self._dispatcher().update_status(who.node_id, list(request.updates))
            return pb.TaskStatusResponse()
        except Exception as err:
            await _abort(context, err)
            raise

    async def PublishLogs(self, request_iterator: AsyncIterator[pb.LogChunk],
                          context: grpc.aio.ServicerContext) -> pb.PublishLogsResponse:
        try:
            who = caller(context, self.m.state.cluster_id)
            await self._dispatcher().publish_logs(who.node_id, request_iterator)
            return pb.PublishLogsResponse()
        except Exception as err:
            await _abort(context, err)
            raise

    async def AttachNetwork(self, request: pb.AttachRequest,
                            context: grpc.aio.ServicerContext) -> pb.AttachResponse:
        try:
            who = caller(context, self.m.state.cluster_id)
            return await self._dispatcher().attach_network(who.node_id, request)
        except Exception as err:
            await _abort(context, err)
            raise

    async def DetachNetwork(self, request: pb.DetachRequest,
                            context: grpc.aio.ServicerContext) -> pb.DetachResponse:
        try:
            who = caller(context, self.m.state.cluster_id)
            await self._dispatcher().detach_network(who.node_id, request.attachment_id)
            return pb.DetachResponse()
        except Exception as err:
            await _abort(context, err)
            raise
