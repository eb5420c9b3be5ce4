"""What the supervisor answers, as small frozen records (no protobuf past its client).

The supervisor's client (client.py) turns each gRPC reply into one of these, so the
daemon, the engine's services, the tests and the notebooks read plain fields; the
containers room re-exports them beside its TaskService Protocol.  They live here, in the
room that owns the wire format, because a room only imports rooms above it (DESIGN.md):
the supervisor cannot import labkit.engine.containers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["STATUS_NAMES", "ExitInfo", "ProcInfo", "TaskEvent", "TaskInfo", "TaskStats"]

# proto enum Status -> Docker's words
STATUS_NAMES = {0: "unknown", 1: "created", 2: "running", 3: "paused", 4: "stopped"}


@dataclass(frozen=True, slots=True)
class TaskInfo:
    id: str
    pid: int
    status: str
    io_socket: str = ""
    exit_status: int = 0
    exited_at: float = 0.0
    oom_killed: bool = False
    started_at: float = 0.0
    shim_pid: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    bundle: str = ""
    terminal: bool = False


@dataclass(frozen=True, slots=True)
class ProcInfo:
    id: str
    exec_id: str
    pid: int
    status: str
    io_socket: str = ""


@dataclass(frozen=True, slots=True)
class ExitInfo:
    exit_status: int
    exited_at: float = 0.0
    oom_killed: bool = False
    error: str = ""
    pid: int = 0


@dataclass(frozen=True, slots=True)
class TaskStats:
    read_at: float = 0.0
    memory_usage: int = 0
    memory_limit: int = 0
    memory_max_usage: int = 0
    cpu_usage_ns: int = 0
    cpu_user_ns: int = 0
    cpu_system_ns: int = 0
    system_cpu_ns: int = 0
    online_cpus: int = 0
    throttled_periods: int = 0
    throttled_ns: int = 0
    pids_current: int = 0
    pids_limit: int = 0
    oom_kills: int = 0
    id: str = ""


@dataclass(frozen=True, slots=True)
class TaskEvent:
    topic: str
    id: str
    exec_id: str = ""
    pid: int = 0
    exit_status: int = 0
    timestamp: float = 0.0
