"""Which container a probe watches: its name, its cgroup id and its namespace inodes.

A probe is pointed at a container by name; the kernel knows it by numbers.  The runtime
publishes them when it creates a container (``kernel_ids`` in state.json, see
labkit.engine.runtime.state): the inode of the container's cgroup in the v2 hierarchy,
which is what ``bpf_get_current_cgroup_id()`` returns for its tasks, and the inode of each
of init's /proc/PID/ns/<kind> links (namespaces(7)).  This module turns a name into those
numbers, read-only: it never starts the daemon nor changes a record.

* ``resolve(name_or_id)``: a labkit-runtime container id (under the runtime's state root,
  $LABKIT_RUN/runtime), or an engine container's name, id or unique id prefix (the daemon's
  records under $LABKIT_ROOT/containers, resolved as Docker does);
* ``from_pid(pid, name)``: any process, from /proc/PID/cgroup's "0::" line and /proc/PID/ns;
* ``running()``: every live container of the runtime's state root.

On a hybrid host the id names the container only because labkit's v1 backend mirrors each
cgroup in the unified hierarchy (labkit.cgroups.v1); processes of other engines (dockerd,
podman on v1) all sit in the unified root, and share its id.

Example::

    t = resolve("web")
    t.cgroup_id, t.ns["pid"]      # 56227, 4026532179
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from labkit import errors
from labkit._sys import features

__all__ = ["Target", "from_pid", "resolve", "running"]

@dataclass(frozen=True)
class Target:
    """A container (or a process) as the kernel names it.

    ``cgroup_id``: inode of its cgroup directory in the v2 hierarchy (None: the host has
    none, a legacy v1 host); ``cgroup_path``: that cgroup relative to the v2 mount
    ("/lk/web"); ``ns``: namespace kind -> inode of init's /proc/PID/ns/<kind>.
    ``pid`` is the container's init on the host (None once it has exited).
    """

    name: str
    id: str
    pid: int | None
    cgroup_id: int | None
    cgroup_path: str | None
    ns: Mapping[str, int] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        # A read-only view, so a frozen Target stays frozen all the way down.
        object.__setattr__(self, "ns", MappingProxyType(dict(self.ns)))


# --- the v2 hierarchy ------------------------------------------------------------------
def _v2_mount(root: str = "/sys/fs/cgroup") -> str | None:
    """Where the cgroup v2 hierarchy is mounted: the cgroup root on a unified host, its
    "unified" child on a hybrid one, None on a legacy host (cgroups(7))."""
    from labkit.cgroups.detect import Mode, detect_mode

    try:
        mode = detect_mode(root)
    except errors.UnsupportedError:
        return None
    if mode is Mode.UNIFIED:
        return root
    if mode is Mode.HYBRID:
        return os.path.join(root, "unified")
    return None


def _ns_inodes(pid: int, procfs: str = "/proc") -> dict[str, int]:
    out: dict[str, int] = {}
    for kind in features.NAMESPACE_KINDS:
        try:
            out[kind] = os.stat(f"{procfs}/{pid}/ns/{kind}").st_ino
        except OSError:
            pass  # a kind this kernel lacks, or the process is gone
    return out


def _v2_path(pid: int, procfs: str = "/proc") -> str | None:
    """The "0::PATH" line of /proc/PID/cgroup (cgroups(7)): its cgroup in the v2 hierarchy,
    relative to our own cgroup namespace's root."""
    try:
        text = Path(f"{procfs}/{pid}/cgroup").read_text()
    except FileNotFoundError:
        raise errors.NotFoundError("process", str(pid)) from None
    except OSError as err:
        raise errors.from_errno(err.errno or 0, "read", f"{procfs}/{pid}/cgroup") from None
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:] or "/"
    return None


def from_pid(pid: int, name: str | None = None) -> Target:
    """The Target of any process: its v2 cgroup (id = the directory's inode) and namespaces.

    Raises:
        NotFoundError: no process ``pid``.
        InvalidArgumentError: ``pid`` is not a positive int.
    """
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise errors.InvalidArgumentError("pid", f"{pid!r} is not a process id")
    path = _v2_path(pid)
    mount = _v2_mount()
    cg_id = None
    if path is not None and mount is not None:
        try:
            cg_id = os.stat(os.path.join(mount, path.lstrip("/"))).st_ino
        except OSError:
            cg_id = None  # a cgroup removed meanwhile, or outside our cgroup namespace
    ns = _ns_inodes(pid)
    if not ns and not os.path.exists(f"/proc/{pid}"):
        raise errors.NotFoundError("process", str(pid))
    return Target(name=name or str(pid), id=str(pid), pid=pid, cgroup_id=cg_id,
                  cgroup_path=path if cg_id is not None else None, ns=ns)


# --- runtime containers ------------------------------------------------------------------
def _runtime_root(state_root: str | os.PathLike[str] | None) -> str:
    from labkit.engine.runtime import state as statemod

    return os.fspath(state_root) if state_root is not None else statemod.default_root()


def _from_state(root: str, cid: str, name: str | None = None) -> Target:
    from labkit.engine.runtime import state as statemod

    st = statemod.load(root, cid)
    alive = st.alive()
    pid = st.pid if alive else None
    ids: dict[str, Any] = st.kernel_ids or {}
    if not ids and pid is not None:
        # A container created before the runtime published its ids: ask the kernel.
        t = from_pid(pid, name or cid)
        return Target(name=name or cid, id=cid, pid=pid, cgroup_id=t.cgroup_id,
                      cgroup_path=t.cgroup_path, ns=t.ns)
    ns = {str(k): int(v) for k, v in (ids.get("ns") or {}).items()}
    cg_id = ids.get("cgroup_id")
    return Target(name=name or cid, id=cid, pid=pid,
                  cgroup_id=int(cg_id) if cg_id is not None else None,
                  cgroup_path=ids.get("cgroup_path"), ns=ns)


def running(*, state_root: str | os.PathLike[str] | None = None) -> list[Target]:
    """Every live container of the runtime's state root (the engine's run there too), named
    by the engine's name when the daemon has a record of it, else by its runtime id."""
    from labkit.engine.runtime import state as statemod

    root = _runtime_root(state_root)
    names = {rec_id: name for name, rec_id in _engine_names().items()}
    out = []
    for cid in statemod.list_ids(root):
        try:
            t = _from_state(root, cid, names.get(cid))
        except errors.LabkitError:
            continue  # removed while we listed, or an unreadable state.json
        if t.pid is not None:
            out.append(t)
    return out


# --- engine containers -------------------------------------------------------------------
def _engine_store() -> Any:
    """A ContainerStore filled read-only from the daemon's records (load_all() would also
    tidy the directory, which is the daemon's job, not a probe's)."""
    from labkit.engine import paths
    from labkit.engine.containers.record import ContainerRecord
    from labkit.engine.containers.store import ContainerStore

    store = ContainerStore(paths.containers_dir())
    try:
        dirs = sorted(store.root.iterdir())
    except OSError:
        return store
    for d in dirs:
        if not (d / "config.v2.json").is_file():
            continue
        try:
            rec = ContainerRecord.load(d)
        except errors.LabkitError:
            continue  # unreadable: the daemon reports it; a probe just cannot use it
        store.by_id[rec.id] = rec
        store.names[rec.name] = rec.id
    return store


def _engine_names() -> dict[str, str]:
    """Engine container name -> id (empty when there is no daemon state)."""
    return dict(_engine_store().names)


def resolve(name_or_id: str, *, state_root: str | os.PathLike[str] | None = None) -> Target:
    """The running container ``name_or_id``: a labkit-runtime id under ``state_root``
    (default $LABKIT_RUN/runtime), else an engine container's name, id or id prefix.

    Raises:
        NotFoundError: nothing of that name (the hint lists what runs and what the engine
            knows), or an engine container that is not running (no task, no cgroup).
        InvalidArgumentError: an ambiguous id prefix, or an empty name.
    """
    from labkit.engine.runtime import state as statemod

    if not isinstance(name_or_id, str) or not name_or_id:
        raise errors.InvalidArgumentError("container", f"{name_or_id!r} is not a name or id")
    root = _runtime_root(state_root)
    try:
        statemod.check_id(name_or_id)
        if os.path.exists(os.path.join(root, name_or_id, statemod.STATE_FILE)):
            return _from_state(root, name_or_id)
    except errors.InvalidArgumentError:
        pass  # not a runtime id ("/web" is an engine name): try the engine
    store = _engine_store()
    try:
        rec = store.get(name_or_id)
    except errors.NotFoundError:
        live = [t.name for t in running(state_root=state_root)]
        known = sorted(set(live) | set(store.names))
        hint = ("running or known: " + ", ".join(known)) if known else (
            f"no containers under {root} nor in the engine's records")
        raise errors.NotFoundError("container", name_or_id, hint=hint) from None
    engine_root = _runtime_root(None)
    if not os.path.exists(os.path.join(engine_root, rec.id, statemod.STATE_FILE)):
        raise errors.NotFoundError(
            "running container", rec.name,
            hint=f"it is {rec.status.value}: start it first (labkit container start {rec.name})")
    return _from_state(engine_root, rec.id, rec.name)
