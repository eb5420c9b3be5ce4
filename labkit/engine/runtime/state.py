"""`labkit-runtime state`: the container state machine and its on-disk record.

One directory per container under the state root (default /run/labkit/runtime, like runc's
/run/runc): ``state.json`` plus, between create and start, ``exec.fifo``.  state.json is
rewritten atomically (temp file, rename) after every transition, so a crash of the runtime
leaves either the old or the new state, never half of one (youki ``set_status(..).save()``).
No fsync(2): the state root is volatile by design (/run, a tmpfs in production; runc's
/run/runc is not synced either), the containers it describes do not survive a reboot, and
rename(2) alone is atomic for every reader on a running system.  An fsync cost 0.2-0.4 ms
per transition on this disk-backed /run, twice on the start path (create, start).

The status a reader sees is recomputed from the kernel (runtime.md "State"): a recorded
"created"/"running" container whose init is gone is "stopped"; it is "created" while the
exec fifo still exists (init blocks on it) and "running" once start has consumed it.  A
pid is trusted only if its start time (field 22 of /proc/PID/stat) matches the recorded
one, so a recycled pid is never mistaken for our init (runc does the same).

``kernel_ids`` (a labkit field of state.json, not part of the OCI state) names the container
the way the kernel sees it, for eBPF probes (labkit.probes.target reads it)::

    "kernel_ids": {"cgroup_id": 4242, "cgroup_path": "/lk/web",
                   "ns": {"cgroup": 4026532301, "ipc": ..., "mnt": ..., "net": ...,
                          "pid": ..., "time": ..., "user": ..., "uts": ...}}

``cgroup_id`` is the inode number of the container's directory in the cgroup v2 hierarchy
(on a hybrid host the mirror under /sys/fs/cgroup/unified), which is what
bpf_get_current_cgroup_id() returns for its tasks (kernfs ids are inode numbers on 64-bit);
``cgroup_path`` is that directory relative to the v2 mount, as /proc/PID/cgroup's "0::"
line shows it; ``ns`` holds the inode of each /proc/INIT/ns/<kind> link (namespaces(7):
two processes share a namespace exactly when these match).  Both are None/absent when the
host has no v2 hierarchy (legacy cgroup v1) or the kernel lacks a namespace kind.
"""

from __future__ import annotations

import enum
import os
import time

# typing costs ~1.5 ms to import; annotations are strings here (PEP 563), and mypy treats
# any name TYPE_CHECKING as true (the same trick as labkit.ns).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from labkit import errors
from labkit._sys import fastjson

OCI_VERSION = "1.0.2"


class Status(enum.StrEnum):
    """A container's status (runtime.md "State"), also the status of a process the shim
    owns (containerd's process states: created, running, paused, stopped).  A str, so it
    is written to JSON and compared with what a reader loaded as its plain value."""

    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    DELETED = "deleted"


CREATING, CREATED, RUNNING, PAUSED, STOPPED, DELETED = (
    Status.CREATING, Status.CREATED, Status.RUNNING, Status.PAUSED, Status.STOPPED,
    Status.DELETED)

# STYLE C11 (runc stateTransitionError, containerd init_state.go).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    CREATING: frozenset({CREATED, STOPPED, DELETED}),
    CREATED: frozenset({RUNNING, STOPPED, DELETED}),
    RUNNING: frozenset({PAUSED, STOPPED}),
    PAUSED: frozenset({RUNNING, STOPPED}),
    STOPPED: frozenset({DELETED}),
    DELETED: frozenset(),
}

EXEC_FIFO = "exec.fifo"
CONFIG_COPY = "config.json"
STATE_FILE = "state.json"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def default_root() -> str:
    """The state root: $LABKIT_RUN/runtime, else /run/labkit/runtime (DESIGN "Where state lives")."""
    return os.path.join(os.environ.get("LABKIT_RUN", "/run/labkit"), "runtime")


def check_id(container_id: str) -> str:
    """A container id is a file name: letters, digits and ``_+-.``, as runc allows."""
    if not container_id or container_id in (".", "..") or not set(container_id) <= _ID_CHARS:
        raise errors.InvalidArgumentError(
            "container id", f"{container_id!r} is not valid",
            hint="use letters, digits and _+-. only (e.g. lk-web-1)")
    return container_id


def proc_start_time(pid: int, procfs: str = "/proc") -> tuple[int, str] | None:
    """(start time in clock ticks, state letter) of ``pid`` from /proc/PID/stat, or None."""
    try:
        with open(f"{procfs}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # proc(5): field 2 (comm) may contain spaces and parens; split after the last ')'.
    rest = data[data.rfind(b")") + 2:].split()
    return int(rest[19]), rest[0].decode()


class State:
    """What state.json holds: the OCI state (runtime.md) plus what labkit needs to find again.

    A plain class, not a dataclass: dataclasses imports inspect (~4 ms), too much for the
    start path of `run`.
    """

    # state.json's fields, in its order; "dir" (where it lives) is not one of them.
    _SAVED = ("id", "bundle", "status", "pid", "annotations", "rootfs", "cgroup", "created",
              "init_start", "owner", "kernel_ids")
    __slots__ = ("annotations", "bundle", "cgroup", "created", "dir", "id", "init_start",
                 "kernel_ids", "owner", "pid", "rootfs", "status")

    def __init__(self, id: str, bundle: str, status: str = Status.CREATING, pid: int = 0,
                 annotations: dict[str, str] | None = None, rootfs: str = "", cgroup: str = "",
                 created: str = "", init_start: int = 0, owner: str = "", dir: str = "",
                 kernel_ids: dict[str, Any] | None = None) -> None:
        self.id = id
        self.bundle = bundle
        self.status = to_status(status)
        self.pid = pid
        self.annotations = dict(annotations or {})
        self.rootfs = rootfs
        self.cgroup = cgroup
        self.created = created
        self.init_start = init_start
        self.owner = owner
        self.dir = dir
        self.kernel_ids: dict[str, Any] = dict(kernel_ids or {})

    def __repr__(self) -> str:
        return f"State(id={self.id!r}, status={self.status!r}, pid={self.pid})"

    def to_dict(self) -> dict[str, Any]:
        """The fields state.json stores."""
        return {k: getattr(self, k) for k in self._SAVED}

    # -- the state machine ---------------------------------------------------------------
    def transition(self, to: Status) -> None:
        """Move to ``to`` or raise InvalidStateError(frm, to)."""
        self.status = check_move(self.status, to)

    # -- persistence ---------------------------------------------------------------------
    def save(self) -> None:
        """Write state.json atomically: temp file, rename (rename(2) is atomic); no fsync,
        the state root is volatile (see the module docstring)."""
        data = fastjson.dumps(self.to_dict()).encode()
        path = os.path.join(self.dir, STATE_FILE)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, path)

    def refresh(self, procfs: str = "/proc") -> Status:
        """Recompute ``status`` from the kernel (see the module docstring) and return it."""
        if self.status in (CREATED, RUNNING, PAUSED):
            seen = proc_start_time(self.pid, procfs) if self.pid else None
            if seen is None or seen[0] != self.init_start or seen[1] in ("Z", "X"):
                self.status = STOPPED
            elif self.status != PAUSED:
                fifo = os.path.exists(os.path.join(self.dir, EXEC_FIFO))
                self.status = CREATED if fifo else RUNNING
        return self.status

    def alive(self) -> bool:
        """True while the recorded init process still runs (not a zombie, same start time)."""
        return self.refresh() in (CREATED, RUNNING, PAUSED)

    def oci(self) -> dict[str, Any]:
        """The OCI state object (runtime.md "State"), plus runc's rootfs/created/owner."""
        return {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": self.status,
            "pid": self.pid if self.status in (CREATED, RUNNING, PAUSED) else 0,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "annotations": dict(self.annotations),
        }


NS_KINDS = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


def kernel_ids(pid: int, cgroup_v2_dir: str | None, cgroup_v2_path: str | None) -> dict[str, Any]:
    """The ``kernel_ids`` record of process ``pid`` (see the module docstring): nine stat(2)
    calls, no reads, so it stays off the start path's budget (~20 us here).

    ``cgroup_v2_dir``: its cgroup's directory in the v2 hierarchy (None: no v2 hierarchy);
    ``cgroup_v2_path``: the same relative to the v2 mount ("/lk/web")."""
    cg_id = None
    if cgroup_v2_dir is not None:
        try:
            cg_id = os.stat(cgroup_v2_dir).st_ino
        except OSError:
            cgroup_v2_path = None
    ns: dict[str, int] = {}
    for kind in NS_KINDS:
        try:
            ns[kind] = os.stat(f"/proc/{pid}/ns/{kind}").st_ino
        except OSError:
            pass  # a kind this kernel lacks (time: Linux 5.6), or init already gone
    return {"cgroup_id": cg_id, "cgroup_path": cgroup_v2_path if cg_id else None, "ns": ns}


def to_status(value: str) -> Status:
    """``value`` (as read from JSON) as a Status; InvalidArgumentError for anything else."""
    try:
        return Status(value)
    except ValueError:
        raise errors.InvalidArgumentError("status", f"{value!r} is not a container status",
                                          hint=", ".join(s.value for s in Status)) from None


def check_move(frm: Status, to: Status, what: str = "container") -> Status:
    """``to`` when TRANSITIONS allows frm -> to (or it is no move); else InvalidStateError."""
    if to != frm and to not in TRANSITIONS[frm]:
        raise errors.InvalidStateError(frm, to, what)
    return to


def container_dir(root: str, container_id: str) -> str:
    return os.path.join(root, check_id(container_id))


def load(root: str, container_id: str) -> State:
    """Read state.json of ``container_id``; NotFoundError if there is none."""
    d = container_dir(root, container_id)
    try:
        with open(os.path.join(d, STATE_FILE), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise errors.NotFoundError("container", container_id) from None
    raw = fastjson.loads(data, what=os.path.join(d, STATE_FILE))
    st = State(**raw)
    st.dir = d
    return st


def list_ids(root: str) -> list[str]:
    """Ids of every container with a state.json under ``root``, sorted."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.exists(os.path.join(root, n, STATE_FILE)))


def now_rfc3339() -> str:
    """UTC time like runc's "created" field (RFC 3339 with nanoseconds)."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"
