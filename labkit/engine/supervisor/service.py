"""The Tasks service (supervisor.proto) on grpc.aio: one record per task, one shim per record.

Everything runs on one asyncio loop; the only blocking calls are mounts, the template fork
and the runtime's delete for a dead shim, which go to the default executor.  A task's
truth lives in its shim (state, exit status); the supervisor keeps only what it needs to
find the shim again (shims_dir()/<id>/config.json), so kill -9 loses nothing: restore()
rebuilds the records from those dirs and re-subscribes to every live shim.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from labkit import errors
from labkit._sys import trace
from labkit.engine.runtime.state import Status, check_id
from labkit.engine.shim import layout
from labkit.engine.shim.template import Template
from labkit.engine.supervisor import shims
from labkit.engine.supervisor.api import supervisor_pb2 as pb
from labkit.engine.supervisor.api import supervisor_pb2_grpc as pb_grpc
from labkit.engine.supervisor.errmap import to_grpc
from labkit.engine.supervisor.hoststats import to_stats

# A shim's status travels as the Status's value (JSON); "unknown" marks a busy shim.
STATUS = {Status.CREATED: pb.CREATED, Status.RUNNING: pb.RUNNING, Status.PAUSED: pb.PAUSED,
          Status.STOPPED: pb.STOPPED}
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
STATE_TIMEOUT = 5.0  # List/State give up on one busy shim after this many seconds


def rpc(fn: F) -> F:
    """Turn any exception into a gRPC status through errmap's one table."""
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except Exception as exc:  # noqa: BLE001 -- the one place errors become statuses
            code, msg, md = to_grpc(exc)
            await context.abort(code, msg, trailing_metadata=md)
    return wrapper  # type: ignore[return-value]


@dataclass
class Record:
    """What the supervisor knows about a task without asking its shim."""

    id: str
    dir: str
    cfg: dict[str, Any]
    shim_pid: int = 0
    gone: dict[str, Any] | None = None  # the exit, once the shim is known to be dead
    monitor: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def ctl(self) -> str:
        return layout.sockets(self.cfg)[0]

    @property
    def io_socket(self) -> str:
        return layout.sockets(self.cfg)[1]

    def dead_exit(self) -> dict[str, Any]:
        """The exit of a task whose shim died: exit.json if it got that far, else 255."""
        ex = layout.read_json(os.path.join(self.dir, layout.EXIT))
        st = layout.read_json(os.path.join(self.dir, layout.STATE)) or {}
        return ex or {"exec_id": "", "pid": st.get("pid", 0), "exit_status": 255,
                      "exited_at": time.time(), "oom_killed": False,
                      "error": "the shim died; the exit status is unknown"}


class TasksService(pb_grpc.TasksServicer):
    def __init__(self, template: Template, shims_root: str, runtime_root: str,
                 containers_root: str, sockets_root: str | None = None) -> None:
        self.template = template
        self.shims_root = shims_root
        # <run>/s/: the shims' sockets, named by a hash of the id (layout.short_sockets)
        self.sockets_root = sockets_root or os.path.join(os.path.dirname(shims_root), "s")
        self.runtime_root = runtime_root
        self.containers_root = containers_root
        self.records: dict[str, Record] = {}
        self.queues: set[asyncio.Queue[pb.Event]] = set()
        self.spawn_lock = asyncio.Lock()
        self.adopting: set[asyncio.Task[bool]] = set()  # restore()'s late adoptions

    # -- records, events -----------------------------------------------------------------
    def rec(self, cid: str) -> Record:
        r = self.records.get(cid)
        if r is None:
            raise errors.NotFoundError("task", cid)
        return r

    def broadcast(self, ev: dict[str, Any]) -> None:
        msg = pb.Event(topic=ev.get("topic", ""), id=ev.get("id", ""),
                       exec_id=ev.get("exec_id", ""), pid=int(ev.get("pid") or 0),
                       exit_status=int(ev.get("exit_status") or 0),
                       timestamp=float(ev.get("timestamp") or time.time()))
        for q in self.queues:
            if q.qsize() < 10000:  # a subscriber that stopped reading loses events, not us
                q.put_nowait(msg)

    async def subscribe(self, r: Record) -> None:
        """Subscribe to the shim's events (acknowledged before returning), then forward."""
        stream = shims.events(r.ctl)
        await stream.__anext__()

        async def forward() -> None:
            try:
                async for ev in stream:
                    self.broadcast(ev)
            except (OSError, errors.LabkitError):
                pass
            if self.records.get(r.id) is r and not os.path.exists(r.ctl):
                r.gone = r.dead_exit()
        r.monitor = asyncio.get_running_loop().create_task(forward())

    async def shim_state(self, r: Record) -> dict[str, Any]:
        if r.gone is None:
            try:
                return await shims.call(r.ctl, {"op": "state"}, timeout=STATE_TIMEOUT)
            except shims.ShimGoneError:
                r.gone = r.dead_exit()
            except TimeoutError:  # busy shim: what its state file says, marked unknown
                st = layout.read_json(os.path.join(r.dir, layout.STATE)) or {}
                return {**st, "status": "unknown"}
        return {"status": Status.STOPPED, "shim_pid": 0, **r.gone}

    def task(self, r: Record, st: dict[str, Any]) -> pb.Task:
        return pb.Task(id=r.id, pid=int(st.get("pid") or 0), status=STATUS.get(st.get("status", ""), pb.UNKNOWN),
                       bundle=r.cfg.get("bundle", ""), terminal=bool(st.get("terminal", r.cfg.get("terminal"))),
                       io_socket=r.io_socket, exit_status=int(st.get("exit_status") or 0),
                       exited_at=float(st.get("exited_at") or 0), oom_killed=bool(st.get("oom_killed")),
                       shim_pid=int(st.get("shim_pid") or 0), started_at=float(st.get("started_at") or 0),
                       labels=r.cfg.get("labels") or {})

    # -- restore (live-restore) ----------------------------------------------------------
    async def restore(self) -> list[str]:
        """Find every shim dir again; re-subscribe to the live, report the dead.

        Bounded: main.py serves only after this returns (the daemon's List must see every
        task), so one shim that does not answer must not keep the supervisor deaf.  A shim
        is single-threaded and answers nothing while it runs a create (a supervisor killed
        mid-Create leaves it there, for up to the runtime's sync timeout); such a shim is
        adopted in the background once it answers, and List reports it "unknown" until
        then (shim_state), as it does for any busy shim."""
        try:
            names = sorted(os.listdir(self.shims_root))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            d = os.path.join(self.shims_root, name)
            cfg = layout.read_json(os.path.join(d, layout.CONFIG))
            if cfg is None or cfg.get("id") != name:
                continue  # not a shim dir, or one whose template fork never finished
            self.records[name] = Record(name, d, cfg)
            found.append(name)
        recs = [self.records[n] for n in found]
        done = await asyncio.gather(*(self._adopt(r, STATE_TIMEOUT) for r in recs))
        loop = asyncio.get_running_loop()
        for r, ok in zip(recs, done):
            if not ok:
                print(f"labkit-supervisor: shim of {r.id} busy; adopting it once it answers",
                      file=sys.stderr, flush=True)
                t = loop.create_task(self._adopt(r, None))
                self.adopting.add(t)  # held: the loop keeps only weak references
                t.add_done_callback(self.adopting.discard)
        return found

    async def _adopt(self, r: Record, timeout: float | None) -> bool:
        """Subscribe to one restored shim and learn its state; False on timeout."""
        try:
            await asyncio.wait_for(self.subscribe(r), timeout)
            st = await shims.call(r.ctl, {"op": "state"}, timeout=timeout)
            r.shim_pid = int(st.get("shim_pid") or 0)
            if st.get("status") == Status.STOPPED:
                self.broadcast({"topic": "/tasks/exit", "id": r.id, **st})
        except shims.ShimGoneError:
            r.gone = r.dead_exit()
            self.broadcast({"topic": "/tasks/exit", "id": r.id, **r.gone})
        except TimeoutError:
            if r.monitor is not None:  # subscribed, state timed out: subscribe again later
                r.monitor.cancel()
                r.monitor = None
            return False
        return True

    # -- rpcs ----------------------------------------------------------------------------
    @rpc
    async def Create(self, req: pb.CreateTaskRequest, ctx: Any) -> pb.Task:
        """Mount the rootfs, fork a shim from the template, have it run the runtime's create.

        A failure at any step undoes the earlier ones (no mount, shim or dir is left)."""
        cid = check_id(req.id)
        trace.mark("supervisor.create.recv", cid)
        if cid in self.records:
            raise errors.AlreadyExistsError("task", cid)
        _check_log(req.log)
        bundle = os.path.abspath(req.bundle or ".")
        if not os.path.isfile(os.path.join(bundle, "config.json")):
            raise errors.NotFoundError("bundle", bundle, hint="it needs a config.json")
        log_path = req.log.path or os.path.join(self.containers_root, cid, f"{cid}-json.log")
        ctl, io = layout.short_sockets(self.sockets_root, cid)
        cfg = {"id": cid, "dir": os.path.join(self.shims_root, cid), "bundle": bundle,
               "ctl_sock": ctl, "io_sock": io,
               "runtime_root": self.runtime_root, "terminal": req.terminal, "stdin": req.stdin,
               "stdin_once": req.stdin_once, "labels": dict(req.labels),
               "log": {"driver": req.log.driver or "json-file", "path": log_path,
                       "options": dict(req.log.options)},
               "rootfs": [{"type": m.type, "source": m.source, "options": list(m.options)}
                          for m in req.rootfs]}
        r = Record(cid, os.path.join(self.shims_root, cid), cfg)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.mount_rootfs, r)
        self.records[cid] = r
        try:
            async with self.spawn_lock:
                r.shim_pid = await loop.run_in_executor(None, self.template.spawn, cfg)
            trace.mark("supervisor.shim.forked", cid)
            await self.subscribe(r)
            rep = await shims.call(r.ctl, {"op": "create"})
        except BaseException:
            self.records.pop(cid, None)
            if r.monitor is not None:
                r.monitor.cancel()
            if r.shim_pid:  # a failed create ends its shim; wait for it to be gone
                await loop.run_in_executor(None, _wait_gone, r.shim_pid)
            layout.remove_dir(r.dir)
            layout.remove_sockets(r.cfg)
            await loop.run_in_executor(None, self.cleanup_rootfs, r)
            raise
        return self.task(r, {"status": Status.CREATED, "pid": rep["pid"], "shim_pid": r.shim_pid})

    def mount_rootfs(self, r: Record) -> None:
        from labkit.engine.images.mounts import Mount, mount_all

        target = os.path.join(r.cfg["bundle"], "rootfs")
        mount_all([Mount(m["type"], m["source"], target, tuple(m["options"]))
                   for m in r.cfg.get("rootfs") or []])

    def cleanup_rootfs(self, r: Record) -> None:
        """Undo mount_rootfs: lazily unmount what was mounted at <bundle>/rootfs."""
        from labkit.engine.images.mounts import unmount

        target = os.path.join(r.cfg["bundle"], "rootfs")
        for _ in r.cfg.get("rootfs") or []:
            try:
                unmount(target, detach=True)
            except errors.SyscallError:
                break

    @rpc
    async def Start(self, req: pb.StartRequest, ctx: Any) -> pb.Process:
        r = self.rec(req.id)
        trace.mark("supervisor.start.recv", req.id)
        rep = await shims.call(r.ctl, {"op": "start", "exec_id": req.exec_id})
        return pb.Process(id=r.id, exec_id=req.exec_id, pid=int(rep.get("pid") or 0),
                          status=pb.RUNNING, io_socket=r.io_socket)

    @rpc
    async def Kill(self, req: pb.KillRequest, ctx: Any) -> pb.Empty:
        r = self.rec(req.id)
        if r.gone is not None:
            raise errors.InvalidStateError(Status.STOPPED, "signalled", hint="the task is not running")
        await shims.call(r.ctl, {"op": "kill", "exec_id": req.exec_id,
                                 "signal": req.signal or 15, "all": req.all})
        return pb.Empty()

    @rpc
    async def Delete(self, req: pb.DeleteRequest, ctx: Any) -> pb.Exit:
        r = self.rec(req.id)
        ex: dict[str, Any] | None = None
        if r.gone is None:
            try:
                ex = await shims.call(r.ctl, {"op": "delete", "exec_id": req.exec_id,
                                              "force": req.force})
            except shims.ShimGoneError:
                r.gone = r.dead_exit()
        # (the monitor may mark the record gone while the shim answers and exits: the
        # answer wins)
        if ex is None:
            r.gone = r.gone or r.dead_exit()
            if req.exec_id:
                raise errors.NotFoundError("exec", req.exec_id)
            ex = r.gone
            await asyncio.get_running_loop().run_in_executor(None, self._delete_dead, r)
        if not req.exec_id:
            self.records.pop(r.id, None)
            await asyncio.get_running_loop().run_in_executor(None, self.cleanup_rootfs, r)
            if r.monitor is not None:
                r.monitor.cancel()
        return _exit(r.id, ex)

    def _delete_dead(self, r: Record) -> None:
        from labkit.engine.runtime.delete import delete

        try:
            delete(self.runtime_root, r.id, force=True)
        except errors.NotFoundError:
            pass
        layout.remove_dir(r.dir)
        layout.remove_sockets(r.cfg)
        self.broadcast({"topic": "/tasks/delete", "id": r.id, **(r.gone or {})})

    @rpc
    async def Wait(self, req: pb.WaitRequest, ctx: Any) -> pb.Exit:
        r = self.rec(req.id)
        if r.gone is None:
            try:
                return _exit(r.id, await shims.call(r.ctl, {"op": "wait", "exec_id": req.exec_id}))
            except shims.ShimGoneError:
                r.gone = r.dead_exit()
        if req.exec_id:
            raise errors.NotFoundError("exec", req.exec_id)
        return _exit(r.id, r.gone)

    @rpc
    async def State(self, req: pb.TaskRequest, ctx: Any) -> pb.Task:
        r = self.rec(req.id)
        return self.task(r, await self.shim_state(r))

    @rpc
    async def List(self, req: pb.ListRequest, ctx: Any) -> pb.ListResponse:
        recs = list(self.records.values())
        states = await asyncio.gather(*(self.shim_state(r) for r in recs))
        return pb.ListResponse(tasks=[self.task(r, s) for r, s in zip(recs, states)])

    @rpc
    async def Exec(self, req: pb.ExecRequest, ctx: Any) -> pb.Process:
        r = self.rec(req.id)
        try:
            process = json.loads(req.process_json or b"null")
        except ValueError as err:
            raise errors.InvalidArgumentError("process_json", f"not JSON: {err}") from None
        await shims.call(r.ctl, {"op": "exec", "exec_id": req.exec_id, "process": process,
                                 "terminal": req.terminal, "stdin": req.stdin})
        return pb.Process(id=r.id, exec_id=req.exec_id, status=pb.CREATED, io_socket=r.io_socket)

    async def _simple(self, cid: str, op: str, **kw: Any) -> dict[str, Any]:
        r = self.rec(cid)
        if r.gone is not None:
            raise errors.InvalidStateError(Status.STOPPED, op, hint="the task's shim is gone")
        return await shims.call(r.ctl, {"op": op, **kw})

    @rpc
    async def ResizePty(self, req: pb.ResizeRequest, ctx: Any) -> pb.Empty:
        await self._simple(req.id, "resize", exec_id=req.exec_id, width=req.width, height=req.height)
        return pb.Empty()

    @rpc
    async def CloseStdin(self, req: pb.ProcessRequest, ctx: Any) -> pb.Empty:
        await self._simple(req.id, "close_stdin", exec_id=req.exec_id)
        return pb.Empty()

    @rpc
    async def Pause(self, req: pb.TaskRequest, ctx: Any) -> pb.Empty:
        await self._simple(req.id, "pause")
        return pb.Empty()

    @rpc
    async def Resume(self, req: pb.TaskRequest, ctx: Any) -> pb.Empty:
        await self._simple(req.id, "resume")
        return pb.Empty()

    @rpc
    async def Pids(self, req: pb.TaskRequest, ctx: Any) -> pb.PidsResponse:
        return pb.PidsResponse(pids=(await self._simple(req.id, "pids"))["pids"])

    @rpc
    async def Stats(self, req: pb.TaskRequest, ctx: Any) -> pb.Stats:
        return to_stats(req.id, await self._simple(req.id, "stats"))

    @rpc
    async def Update(self, req: pb.UpdateRequest, ctx: Any) -> pb.Empty:
        try:
            res = json.loads(req.resources_json or b"{}")
        except ValueError as err:
            raise errors.InvalidArgumentError("resources_json", f"not JSON: {err}") from None
        await self._simple(req.id, "update", resources=res)
        return pb.Empty()

    async def Events(self, req: pb.EventsRequest, ctx: Any) -> AsyncIterator[pb.Event]:
        q: asyncio.Queue[pb.Event] = asyncio.Queue()
        self.queues.add(q)
        try:
            while True:
                yield await q.get()
        finally:
            self.queues.discard(q)


def _check_log(log: pb.LogConfig) -> None:
    """Refuse a log configuration before anything exists (Docker checks --log-opt early)."""
    from labkit.engine.logs.drivers import DRIVERS, check

    driver = log.driver or "json-file"
    if driver not in DRIVERS:
        raise errors.UnsupportedError(f"log driver {driver!r}", "not implemented",
                                      hint=f"use one of: {', '.join(DRIVERS)}")
    check(driver, dict(log.options), internal=True)  # the daemon added CONTEXT_KEY


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    # The shim is not our child (the template double-forks): poll for it via /proc; one
    # that did not end after a failed create is killed (its own start time is checked
    # first, so a recycled pid is never hit).
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            start = f.read().rsplit(b")", 1)[-1].split()[19]
    except OSError:
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[-1].split()
        except OSError:
            return
        if fields[0] == b"Z" or fields[19] != start:
            return
        time.sleep(0.005)
    os.kill(pid, 9)


def _exit(cid: str, ex: dict[str, Any]) -> pb.Exit:
    return pb.Exit(id=cid, exec_id=ex.get("exec_id", ""), pid=int(ex.get("pid") or 0),
                   exit_status=int(ex.get("exit_status") or 0),
                   exited_at=float(ex.get("exited_at") or 0),
                   oom_killed=bool(ex.get("oom_killed")), error=ex.get("error", ""))
