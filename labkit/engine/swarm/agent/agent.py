"""The agent: Assignments streams to the managers, the executor behind them, status back.

Every active node runs one (managers too: a manager's own cluster port comes first, so it
follows its own dispatcher).  The agent holds a stream to every manager it knows and
follows the first one that is up; when that one breaks, the next one's last set is applied
at once.  Every set is complete, so nothing is lost in between.  Task states go
back in batches through UpdateTaskStatus, in the order they happened; log requests that
arrive on the stream are answered through PublishLogs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio

from labkit.engine.swarm.agent.executor import Executor
from labkit.engine.swarm.agent.logs import task_lines
from labkit.engine.swarm.manager import Identity
from labkit.engine.swarm.rpc import client as rpc
from labkit.engine.swarm.rpc import swarm_pb2 as pb
from labkit.engine.swarm.rpc import swarm_pb2_grpc as pbg
from labkit.engine.swarm.state import LocalState

__all__ = ["Agent"]

log = logging.getLogger("labkit.swarm")
Obj = dict[str, Any]
RETRY_S = (0.2, 0.5, 1.0, 2.0)
# the dispatcher sends an (empty) set every 5 s on a quiet stream: silence for longer
# means the manager or the path to it is gone, and the agent tries the next one
STREAM_IDLE_S = 15.0
ORPHAN_GRACE_S = 30.0


def _br(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


class Agent:
    """Runs this node's tasks for the swarm (see the module docstring)."""

    def __init__(self, state: LocalState, ident: Callable[[], Identity], engine: Any) -> None:
        self.state = state
        self.ident = ident
        self.engine = engine
        self.executor = Executor(engine, state.node_id, state.addr, self._queue_status)
        self.error = ""
        self._sessions: dict[str, asyncio.Task[None]] = {}    # manager -> its stream's task
        self._channels: dict[str, grpc.aio.Channel] = {}      # managers whose stream is up
        self._latest: dict[str, Obj] = {}                     # manager -> its last set
        self._applied: Obj | None = None
        self._apply_lock = asyncio.Lock()
        self._updates: asyncio.Queue[pb.TaskStatus] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._logs: dict[str, asyncio.Task[None]] = {}
        self._orphans: dict[str, float] = {}  # attachment task id -> when first seen unheld
        self._was_held: set[str] = set()  # attachment ids a container record held last sweep

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(), name="swarm-agent"),
                       asyncio.create_task(self._report_loop(), name="swarm-agent-status")]

    async def stop(self, remove_tasks: bool = False) -> None:
        """Stop the streams; with ``remove_tasks`` (leave) the task containers go too."""
        every = [*self._tasks, *self._sessions.values(), *self._logs.values()]
        for t in every:
            t.cancel()
        for t in every:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks, self._logs, self._sessions = [], {}, {}
        await self.executor.close(remove_tasks)

    def managers(self) -> list[str]:
        """Join addresses to try, in order: this node's own on a manager, then the rest."""
        out = []
        if self.state.role == "manager":
            ip = self.state.listen_ip
            if ip in ("", "0.0.0.0", "::"):  # listening everywhere: the advertised address
                ip = self.state.addr
            out.append(f"{_br(ip)}:{self.state.join_port}")
        out += [a for a in self.state.managers if a not in out]
        return out

    # ------------------------------------------------------------------ the streams
    # One stream per manager: the first manager in managers() order whose stream is up is
    # the primary, and only its sets are applied; every stream answers the log requests of
    # its own manager, so `docker service logs` on any manager reaches every node (a
    # manager's task_logs can ask only the nodes whose streams it serves).
    @property
    def connected(self) -> str:
        """The primary manager: the one whose sets this node follows ('' when none)."""
        return next((a for a in self.managers() if a in self._channels), "")

    async def _loop(self) -> None:
        while True:
            want = self.managers()
            for addr in want:
                t = self._sessions.get(addr)
                if t is None or t.done():
                    self._sessions[addr] = asyncio.create_task(
                        self._keep(addr), name=f"swarm-agent-{addr}")
            for addr in list(self._sessions):
                if addr not in want:
                    self._sessions.pop(addr).cancel()
            try:
                await self._collect_attachments()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - tried again in 2 s
                log.info("swarm agent: attachments: %s", err)
            await asyncio.sleep(2.0)

    async def _collect_attachments(self) -> None:
        """Attachment tasks of this node that no container record holds are given back.

        One a record held at the last sweep whose removal did not give it back (no manager
        answered the removed hook's DetachNetwork) goes at the next sweep (2 s).
        One never seen held (a daemon that died between AttachNetwork and writing the
        record, or a create still under way) goes once it has stayed so for
        ORPHAN_GRACE_S: a create holds its own within milliseconds."""
        from labkit.engine.swarm.attach import held
        snap = self._applied or {}
        mine = {str(t["ID"]) for t in snap.get("tasks") or [] if t.get("_Attachment") is not None}
        holding = {a for rec in self.engine.store.all() for a in held(rec.networks)}
        # ids held before stay marked until given back (a failed DetachNetwork is retried
        # at the next sweep, not after the grace)
        was_held = self._was_held
        self._was_held = holding | (was_held & mine)
        now = asyncio.get_running_loop().time()
        for tid in list(self._orphans):
            if tid not in mine or tid in holding:
                del self._orphans[tid]
        for tid in sorted(mine - holding):
            since = self._orphans.setdefault(tid, now)
            if tid not in was_held and now - since < ORPHAN_GRACE_S:
                continue
            log.info("swarm agent: attachment %s has no container: given back", tid)
            try:
                await self._call("DetachNetwork", pb.DetachRequest(attachment_id=tid))
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            self._orphans.pop(tid, None)
            self._was_held.discard(tid)

    async def _keep(self, addr: str) -> None:
        failures = 0
        while True:
            try:
                await self._session(addr)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - tried again; the others carry on
                self.error = f"{addr}: {str(err).splitlines()[0] if str(err) else err!r}"
                log.info("swarm agent: %s", self.error)
            finally:
                self._channels.pop(addr, None)
                self._latest.pop(addr, None)
            await self._apply_primary()  # another manager's set, if this was the primary
            await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
            failures += 1

    async def _session(self, addr: str) -> None:
        ident = self.ident()
        async with rpc.cluster_channel(addr, ident.roots, ident.cert, ident.key) as ch:
            stub = pbg.ClusterStub(ch)  # type: ignore[no-untyped-call]
            call = stub.Assignments(pb.AssignmentsRequest())
            while True:
                try:
                    msg = await asyncio.wait_for(call.read(), STREAM_IDLE_S)
                except TimeoutError:
                    call.cancel()
                    raise ConnectionError(
                        f"no word from the manager in {STREAM_IDLE_S:.0f} s") from None
                if msg is grpc.aio.EOF:
                    return
                assert isinstance(msg, pb.AssignmentSet)
                if addr not in self._channels:
                    self._channels[addr] = ch
                    self.error = ""
                for req in msg.logs:
                    self._log_request(req, ch)
                if msg.snapshot:
                    self._latest[addr] = json.loads(msg.snapshot)
                    await self._apply_primary()

    async def _apply_primary(self) -> None:
        async with self._apply_lock:
            snap = self._latest.get(self.connected)
            if snap is None or snap is self._applied:
                return
            self._applied = snap
            try:
                await self.executor.apply(snap)
            except Exception as err:  # noqa: BLE001 - the next set tries again
                log.warning("swarm agent: applying the assignment set: %s", err)

    # ------------------------------------------------------------------ status
    def _queue_status(self, st: pb.TaskStatus) -> None:
        self._updates.put_nowait(st)

    async def _report_loop(self) -> None:
        pending: list[pb.TaskStatus] = []
        delay = 0
        while True:
            if not pending:
                pending.append(await self._updates.get())
            while not self._updates.empty():
                pending.append(self._updates.get_nowait())
            try:
                await self._call("UpdateTaskStatus", pb.TaskStatusRequest(updates=pending))
                pending, delay = [], 0
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - kept and sent again
                log.info("swarm agent: status update: %s", err)
                delay = min(delay + 1, len(RETRY_S) - 1)
                await asyncio.sleep(RETRY_S[delay])

    async def call(self, fn: str, req: object, timeout: float = 5.0) -> Any:
        """One unary Cluster rpc to the primary manager (or the first that answers):
        the node's other calls (AttachNetwork / DetachNetwork) go the agent's way."""
        return await self._call(fn, req, timeout)

    async def _call(self, fn: str, req: object, timeout: float = 5.0) -> object:
        ch = self._channels.get(self.connected)
        if ch is not None:
            stub = pbg.ClusterStub(ch)  # type: ignore[no-untyped-call]
            return await getattr(stub, fn)(req, timeout=timeout)
        last: Exception | None = None
        ident = self.ident()
        for addr in self.managers():
            try:
                async with rpc.cluster_channel(addr, ident.roots, ident.cert, ident.key) as c:
                    stub = pbg.ClusterStub(c)  # type: ignore[no-untyped-call]
                    return await getattr(stub, fn)(req, timeout=timeout)
            except grpc.aio.AioRpcError as err:
                last = err
        raise last or ConnectionError("no manager is known")

    # ------------------------------------------------------------------ logs
    def _log_request(self, req: pb.LogRequest, ch: grpc.aio.Channel) -> None:
        if req.cancel:
            t = self._logs.pop(req.id, None)
            if t is not None:
                t.cancel()
            return
        if req.id in self._logs:
            return
        self._logs[req.id] = asyncio.create_task(self._publish(req, ch),
                                                 name="swarm-agent-logs")

    async def _publish(self, req: pb.LogRequest, ch: grpc.aio.Channel) -> None:
        """The lines go back to the manager that asked, on its own channel."""
        try:
            stub = pbg.ClusterStub(ch)  # type: ignore[no-untyped-call]
            await stub.PublishLogs(self._chunks(req))
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - the caller sees the stream end
            log.info("swarm agent: logs %s: %s", req.id, err)
        finally:
            self._logs.pop(req.id, None)

    async def _chunks(self, req: pb.LogRequest) -> AsyncIterator[pb.LogChunk]:
        queue: asyncio.Queue[pb.LogChunk | None] = asyncio.Queue(maxsize=1024)

        async def pump(tid: str) -> None:
            try:
                async for stream, ns, data in task_lines(
                        self.engine, tid, follow=req.follow, tail=req.tail,
                        since_ns=req.since_unix_nano, until_ns=req.until_unix_nano,
                        stdout=req.stdout, stderr=req.stderr):
                    await queue.put(pb.LogChunk(request_id=req.id, task_id=tid, stream=stream,
                                                time_unix_nano=ns, data=data))
            except Exception as err:  # noqa: BLE001 - named in the chunk, not raised
                await queue.put(pb.LogChunk(request_id=req.id, task_id=tid,
                                            error=str(err).splitlines()[0]))
            finally:
                await queue.put(None)
        pumps = [asyncio.create_task(pump(t)) for t in req.task_ids]
        try:
            left = len(pumps)
            while left:
                c = await queue.get()
                if c is None:
                    left -= 1
                    continue
                yield c
            yield pb.LogChunk(request_id=req.id, eof=True)
        finally:
            for p in pumps:
                p.cancel()
