"""Who waits for a container (POST /wait, stop, kill, rm): one future per waiter.

Docker's conditions (moby container.WaitCondition): ``not-running`` answers at once for a
container that is not running, otherwise at its next exit, like ``next-exit``; ``removed``
answers when the container is gone.  A removal answers every waiter, whatever it waited for.
"""

from __future__ import annotations

import asyncio

from labkit import errors
from labkit.engine.containers.record import ContainerRecord
from labkit.engine.containers.tasks import ExitInfo

__all__ = ["CONDITIONS", "Waiters", "exit_of"]

CONDITIONS = ("not-running", "next-exit", "removed")


def exit_of(rec: ContainerRecord) -> ExitInfo:
    """The container's last exit, as the record holds it."""
    return ExitInfo(rec.exit_code, rec.finished_at, rec.oom_killed, rec.error)


class Waiters:
    """The futures waiting for each container's next exit and for its removal."""

    def __init__(self) -> None:
        self._exits: dict[str, list[asyncio.Future[ExitInfo]]] = {}
        self._removals: dict[str, list[asyncio.Future[ExitInfo]]] = {}

    def wait(self, rec: ContainerRecord, condition: str = "not-running") -> asyncio.Future[ExitInfo]:
        """A future for ``condition``; InvalidArgumentError for an unknown one."""
        if condition not in CONDITIONS:
            raise errors.InvalidArgumentError("condition", f"invalid condition: {condition!r}")
        fut: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()
        if condition == "not-running" and not rec.running:
            fut.set_result(exit_of(rec))
        else:
            table = self._removals if condition == "removed" else self._exits
            table.setdefault(rec.id, []).append(fut)
        return fut

    def next_exit(self, rec: ContainerRecord) -> asyncio.Future[ExitInfo]:
        """Resolved by the task's next exit (or the container's removal), whatever the
        record's status says now (rm moves to removing before it kills)."""
        return self.wait(rec, "next-exit")

    def exited(self, cid: str, exit_: ExitInfo) -> None:
        """The container's task exited: answer the exit waiters."""
        _answer(self._exits.pop(cid, []), exit_)

    def removed(self, cid: str, exit_: ExitInfo) -> None:
        """The container is gone: answer everyone still waiting for it."""
        _answer(self._removals.pop(cid, []) + self._exits.pop(cid, []), exit_)


def _answer(futs: list[asyncio.Future[ExitInfo]], exit_: ExitInfo) -> None:
    for fut in futs:
        if not fut.done():
            fut.set_result(exit_)
