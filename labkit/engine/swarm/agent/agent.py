"""The agent: one Assignments stream to a manager, the executor behind it, status back.

Every active node runs one (managers too: their own tasks come from their own dispatcher,
so a manager connects to its own cluster port first).  When the stream breaks the agent
tries the next manager it knows, as the worker's heartbeat does (worker.Worker.call); the
first set on the new stream is complete, so nothing is lost in between.  Task states go
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
RETRY_S = (0.2, 0.5, 1.0, 2.0)
# the dispatcher sends an (empty) set every 5 s on a quiet stream: silence for longer
# means the manager or the path to it is gone, and the agent tries the next one
STREAM_IDLE_S = 15.0


def _br(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


class Agent:
    """Runs this node's tasks for the swarm (see the module docstring)."""

    def __init__(self, state: LocalState, ident: Callable[[], Identity], engine: Any) -> None:
        self.state = state
        self.ident = ident
        self.engine = engine
        self.executor = Executor(engine, state.node_id, state.addr, self._queue_status)
        self.connected = ""          # the manager whose stream we hold
        self.error = ""
        self._updates: asyncio.Queue[pb.TaskStatus] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._logs: dict[str, asyncio.Task[None]] = {}
        self._channel: grpc.aio.Channel | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(), name="swarm-agent"),
                       asyncio.create_task(self._report_loop(), name="swarm-agent-status")]

    async def stop(self, remove_tasks: bool = False) -> None:
        """Stop the stream; with ``remove_tasks`` (leave) the task containers go too."""
        for t in [*self._tasks, *self._logs.values()]:
            t.cancel()
        for t in [*self._tasks, *self._logs.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks, self._logs = [], {}
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

    # ------------------------------------------------------------------ the stream
    async def _loop(self) -> None:
        failures = 0
        while True:
            for addr in self.managers():
                try:
                    await self._session(addr)
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # noqa: BLE001 - the next manager, then again
                    self.error = f"{addr}: {str(err).splitlines()[0] if str(err) else err!r}"
                    log.info("swarm agent: %s", self.error)
                finally:
                    self.connected, self._channel = "", None
            await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
            failures += 1

    async def _session(self, addr: str) -> None:
        ident = self.ident()
        async with rpc.cluster_channel(addr, ident.roots, ident.cert, ident.key) as ch:
            stub = pbg.ClusterStub(ch)  # type: ignore[no-untyped-call]
            call = stub.Assignments(pb.AssignmentsRequest())
            first = True
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
                if first:
                    self.connected, self._channel, self.error = addr, ch, ""
                    first = False
                for req in msg.logs:
                    self._log_request(req)
                if msg.snapshot:
                    try:
                        await self.executor.apply(json.loads(msg.snapshot))
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

    async def _call(self, fn: str, req: object, timeout: float = 5.0) -> object:
        ch = self._channel
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
    def _log_request(self, req: pb.LogRequest) -> None:
        if req.cancel:
            t = self._logs.pop(req.id, None)
            if t is not None:
                t.cancel()
            return
        if req.id in self._logs:
            return
        self._logs[req.id] = asyncio.create_task(self._publish(req), name="swarm-agent-logs")

    async def _publish(self, req: pb.LogRequest) -> None:
        try:
            ch = self._channel
            if ch is None:
                return
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
