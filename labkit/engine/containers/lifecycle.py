"""A container's and an exec's lifecycle: their states and the legal moves, in one place.

Container states are Docker's words as `docker inspect` shows them (moby container/state.go
StateString): ``created`` (never started), ``running``, ``paused``, ``restarting`` (the
restart policy waits out its backoff), ``removing`` (rm has begun), ``exited`` and ``dead``
(a removal that failed half way; `docker rm` again finishes it).  An exec is ``created``,
``running`` (from the moment start is accepted, as moby's ExecConfig.Running), ``exited``.

Every status change goes through ``move`` (records call it from ``transition``); anything
the tables do not allow raises ``InvalidStateError(frm, to)`` (runc's stateTransitionError,
containerd's init_state.go), which the daemon answers with 409.  Moving to the state a thing
is already in is allowed and changes nothing (restore re-applies what the supervisor says).

``DURABLE`` names the moves that recovery depends on: the record is written and fsync'ed
*before* the engine acts on them.  A daemon SIGKILLed after ``removing`` was recorded finds
it at its next start and finishes the removal instead of restarting the container by its
policy (see restore in recovery.py).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from labkit import errors

__all__ = ["DURABLE", "EXEC_TRANSITIONS", "GOING", "HOLD_ENV", "LIVE", "TRANSITIONS", "ExecState",
           "State", "can_move", "hold", "move", "refuse_if_going"]


class State(StrEnum):
    """A container's status, as Docker prints it."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


class ExecState(StrEnum):
    """An exec instance's status (Docker shows it as Running and ExitCode)."""

    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"


_S = State
TRANSITIONS: Mapping[State, frozenset[State]] = {
    # created -> exited: restore finds a task that started and ended while no daemon ran
    _S.CREATED: frozenset({_S.RUNNING, _S.EXITED, _S.REMOVING}),
    _S.RUNNING: frozenset({_S.PAUSED, _S.EXITED, _S.RESTARTING, _S.REMOVING}),
    _S.PAUSED: frozenset({_S.RUNNING, _S.EXITED, _S.REMOVING}),
    _S.RESTARTING: frozenset({_S.RUNNING, _S.EXITED, _S.REMOVING}),
    _S.EXITED: frozenset({_S.RUNNING, _S.RESTARTING, _S.REMOVING}),
    # a removal either finishes (the record is gone: no state) or fails half way (dead)
    _S.REMOVING: frozenset({_S.DEAD}),
    _S.DEAD: frozenset({_S.REMOVING}),
}

EXEC_TRANSITIONS: Mapping[ExecState, frozenset[ExecState]] = {
    ExecState.CREATED: frozenset({ExecState.RUNNING}),
    # running -> exited also when the process never came to be (exec of a missing binary)
    ExecState.RUNNING: frozenset({ExecState.EXITED}),
    ExecState.EXITED: frozenset(),
}

LIVE = frozenset({_S.RUNNING, _S.PAUSED, _S.RESTARTING})  # has a task, or will again
GOING = frozenset({_S.REMOVING, _S.DEAD})  # rm has begun: nothing but rm may touch it
# fsync'ed before acting; running and exited are re-derived from the supervisor by restore
DURABLE = frozenset(State) - {_S.RUNNING, _S.EXITED}
HOLD_ENV = "LABKIT_TEST_HOLD"
T = TypeVar("T", State, ExecState)


def can_move(frm: T, to: T, table: Mapping[T, frozenset[T]]) -> bool:
    """Whether ``table`` allows ``frm`` -> ``to`` (staying put is always allowed)."""
    return to == frm or to in table.get(frm, frozenset())


def move(frm: T, to: T, table: Mapping[T, frozenset[T]],
                     what: str = "container") -> T:
    """``to`` when the move is legal; InvalidStateError(frm, to) otherwise."""
    if not can_move(frm, to, table):
        raise errors.InvalidStateError(str(frm), str(to), what)
    return to


def refuse_if_going(status: State, cid: str, verb: str) -> None:
    """ConflictError when rm has begun on the container (moby: "container is marked for
    removal and cannot be <verb>"): its record is about to go."""
    if status in GOING:
        raise errors.ConflictError(f"Container {cid} is marked for removal and cannot be "
                                   f"{verb}")


async def hold(point: str) -> None:
    """Tests only: with LABKIT_TEST_HOLD=<point> in the daemon's environment, park here
    for ever, so a test can SIGKILL the daemon at exactly this point ("rm:recorded": rm
    wrote `removing`, nothing else happened yet; "rm:killed": the container is dead too,
    nothing torn down yet)."""
    if os.environ.get(HOLD_ENV) == point:
        await asyncio.Event().wait()
