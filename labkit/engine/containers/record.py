"""The daemon's container record: Docker's container model, saved as JSON after each change.

One directory per container, ``paths.containers_dir()/<id>/``, holds ``config.v2.json`` (this
record; dockerd uses the same name), the OCI bundle (``bundle/config.json`` and the
``bundle/rootfs`` mount point), the overlay's ``upper``/``work`` dirs, the json-file log and
the /etc files bound into the container.  Writes are atomic (temp file, fsync, rename), so a
daemon killed at any moment leaves either the old record or the new one.

The status is Docker's, and it changes only through ``transition``, which asks lifecycle.py
whether the move is legal and writes the record (fsync'ed for the moves recovery relies on).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine.containers.lifecycle import DURABLE, LIVE, TRANSITIONS, State, move

__all__ = ["ZERO_TIME", "ContainerRecord", "new_id", "rfc3339"]

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, what Docker prints for "never"


def new_id() -> str:
    """64 hex digits, like Docker's container IDs."""
    return secrets.token_hex(32)


def rfc3339(t: float | None) -> str:
    """Unix seconds -> RFC 3339 with nanoseconds in UTC, as Go prints time.Time."""
    if not t:
        return ZERO_TIME
    whole = int(t)
    frac = f"{t - whole:.9f}"[2:].rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + (f".{frac}" if frac else "") + "Z"


@dataclass(slots=True)
class ContainerRecord:
    """Everything the daemon knows about one container (persisted as config.v2.json)."""

    id: str
    name: str
    image: str
    image_id: str
    created: float
    path: str
    args: list[str]
    config: dict[str, Any]
    host_config: dict[str, Any]
    dir: str
    status: State = State.CREATED  # changed only by transition()
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: float = 0.0
    finished_at: float = 0.0
    restart_count: int = 0
    manually_stopped: bool = False
    has_been_started: bool = False
    warnings: list[str] = field(default_factory=list)
    health: dict[str, Any] | None = None  # State.Health (health.py), when it has a probe
    mounts: list[dict[str, Any]] = field(default_factory=list)  # volumes/spec.py mount points
    # network name -> Docker's EndpointSettings (the request: IPAMConfig, Aliases, Links,
    # MacAddress; and while it runs: NetworkID, EndpointID, IPAddress, ...)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # what the network service made for the running container (networks/endpoints.py):
    # sandbox (netns file), endpoints (driver state per network id), ports (published)
    net: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # the initial state, typed (a record built from JSON or by hand says "running");
        # InvalidArgumentError-worthy values fail here, before any use
        self.status = State(self.status)

    # -- paths -------------------------------------------------------------------------
    @property
    def bundle(self) -> Path:
        return Path(self.dir) / "bundle"

    @property
    def log_path(self) -> Path:
        return Path(self.dir) / f"{self.id}-json.log"

    @property
    def running(self) -> bool:
        """Docker's State.Running (restarting counts: its task comes back)."""
        return self.status in LIVE

    # -- the state machine (lifecycle.py) ------------------------------------------------
    def transition(self, to: State) -> None:
        """Move to ``to`` and write the record; InvalidStateError (nothing changed) when
        lifecycle.TRANSITIONS forbids it.  DURABLE moves are fsync'ed before we return,
        so the caller acts on them only once they would survive a crash."""
        old, self.status = self.status, move(self.status, to, TRANSITIONS)
        try:
            self.save(sync=to in DURABLE)
        except BaseException:
            self.status = old  # not written: not moved
            raise

    # -- persistence -------------------------------------------------------------------
    def save(self, sync: bool = True) -> None:
        """Atomically write config.v2.json (temp file, fsync, rename(2)).

        ``sync=False`` skips the fsync for state changes that restore() re-derives from
        the supervisor anyway (running, exited): a daemon crash loses nothing either way
        (the page cache survives it), and after a machine crash no container runs."""
        d = Path(self.dir)
        fd, tmp = tempfile.mkstemp(prefix=".config.", dir=d)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(asdict(self), f)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            os.rename(tmp, d / "config.v2.json")
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    @classmethod
    def load(cls, d: Path) -> ContainerRecord:
        """Read ``d``/config.v2.json; InvalidArgumentError when it is corrupt."""
        try:
            return cls(**json.loads((d / "config.v2.json").read_text()))
        except FileNotFoundError:
            raise errors.NotFoundError("container record", str(d)) from None
        except (ValueError, TypeError) as err:
            raise errors.InvalidArgumentError(str(d / "config.v2.json"), f"corrupt: {err}") from None
