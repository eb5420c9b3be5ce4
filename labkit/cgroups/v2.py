"""cgroup v2 backend: one directory on the unified hierarchy (Documentation/admin-guide/cgroup-v2.rst).

The shape of runc's cgroups/fs2 and youki's libcgroups v2.  Controllers must be enabled
top-down: a controller is usable in a cgroup only if its parent lists it in
cgroup.subtree_control ("Enabling and Disabling"), and a non-root cgroup that enables
controllers for its children may hold no processes itself ("No Internal Process Constraint").
"""

from __future__ import annotations

import errno
import os

from labkit import errors
from labkit.cgroups import _io, _ops, convert
from labkit.cgroups.base import Pressure, PressureLine, Resources, Stats, check_name
from labkit.cgroups.detect import _DEFAULT_ROOT

# Paths are str inside (os.path); pathlib.Path only for the public attributes root and path
# (pathlib with urllib.parse costs ~2.4 ms on labkit-runtime's start path).  Not typing's
# TYPE_CHECKING (~1.5 ms); mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from labkit.cgroups.detect import StrPath

_join = os.path.join

__all__ = ["V2_CONTROLLERS", "V2Cgroup"]

V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "pids")
_HINT_VM = ("the controller must be in cgroup.controllers of every ancestor; "
            "on a hybrid host use the v1 backend, or the VM: labkit vm")
_IO_MAX_KEYS = ("rbps", "wbps", "riops", "wiops")


class V2Cgroup:
    """A cgroup ``root/name`` on a cgroup2 mount.

    Example (this hybrid host's controller-less v2 mount):
        cg = V2Cgroup(Path("/sys/fs/cgroup/unified"), "lk-demo/ctr1")
        cg.create(); cg.add(pid); cg.freeze(True); cg.kill(); cg.remove()
    """

    def __init__(self, root: StrPath = _DEFAULT_ROOT, name: str = "") -> None:
        self.name = check_name(name)
        self._root = os.fspath(root)
        self._path = _join(self._root, name)
        # controller -> why enabling it failed (shown when set() needs it)
        self._not_enabled: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"V2Cgroup({self._root!r}, {self.name!r})"

    @property
    def root(self) -> Path:
        """The cgroup2 mount root."""
        from pathlib import Path

        return Path(self._root)

    @property
    def path(self) -> Path:
        """This cgroup's directory."""
        from pathlib import Path

        return Path(self._path)

    @property
    def dir(self) -> str:
        """This cgroup's directory as a str, for the runtime's start path (no pathlib there):
        where labkit.engine.runtime.devfilter attaches the device program."""
        return self._path

    def exists(self) -> bool:
        """Whether the cgroup directory exists."""
        return os.path.isdir(self._path)

    def create(self, *, exist_ok: bool = True) -> None:
        """mkdir(2) each level, enabling the available controllers on every ancestor first.

        Raises:
            AlreadyExistsError: it exists and ``exist_ok`` is False.
            SyscallError: mkdir(2) failed (names the directory).
        """
        if not exist_ok and self.exists():
            raise errors.AlreadyExistsError("cgroup", self.name)
        made: list[str] = []
        level = self._root
        try:
            for part in self.name.split("/"):
                self._enable_subtree(level)
                level = _join(level, part)
                try:
                    os.mkdir(level, 0o755)
                    made.append(level)
                except FileExistsError:
                    pass
                except OSError as err:
                    raise errors.from_errno(err.errno or errno.EIO, "mkdir", str(level)) from None
        except BaseException:
            for d in reversed(made):
                try:
                    _ops.remove_tree(d, self.name, list, 0.5)
                except errors.LabkitError:
                    pass
            raise

    def _enable_subtree(self, level: str) -> None:
        # Write "+memory +cpu ..." for what the level offers and has not enabled yet.  If the
        # batch is refused (EBUSY: processes in an intermediate cgroup; EINVAL/ENOENT: an
        # unavailable one), try one by one and remember why, for set()'s error message.
        avail = (_io.read(_join(level, "cgroup.controllers")) or "").split()
        have = (_io.read(_join(level, "cgroup.subtree_control")) or "").split()
        want = [c for c in V2_CONTROLLERS if c in avail and c not in have]
        if not want:
            return
        f = _join(level, "cgroup.subtree_control")
        try:
            _io.write(f, " ".join(f"+{c}" for c in want))
            return
        except errors.SyscallError:
            pass
        for c in want:
            try:
                _io.write(f, f"+{c}")
            except errors.SyscallError as err:
                self._not_enabled[c] = str(err)

    # --- processes ---------------------------------------------------------------------------
    def add(self, pid: int) -> None:
        """Move process ``pid`` into the cgroup (write cgroup.procs)."""
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise errors.InvalidArgumentError("pid", f"{pid!r} is not a process id")
        if not os.path.isdir(self._path):
            raise errors.NotFoundError("cgroup", self._path, hint="call create() first")
        _io.write(_join(self._path, "cgroup.procs"), str(pid))

    def add_self(self) -> None:
        """Move the calling process into the cgroup: write "0" to cgroup.procs (cgroup-v2.rst).

        Unlike v1's ``tasks``, this saves nothing: cgroup.procs always moves the whole thread
        group, so the kernel takes cgroup_threadgroup_rwsem for writing even for "0"
        (kernel/cgroup/cgroup.c, cgroup_procs_write_start), and its writer waits for an RCU
        grace period (measured on this host: 7-13 ms, the same as writing the pid).  Only a
        hierarchy mounted with ``favordynmods`` (cgroup-v2.rst, mount options) keeps the
        rwsem on its slow path so the writer does not wait, at the cost of every fork and
        exit; that is the host's choice, not ours.  cgroup.threads would skip the lock but
        moves a thread only within one resource domain (EOPNOTSUPP across domains).

        Raises:
            NotFoundError: the cgroup does not exist.
        """
        if not os.path.isdir(self._path):
            raise errors.NotFoundError("cgroup", self._path, hint="call create() first")
        _io.write(_join(self._path, "cgroup.procs"), "0")

    def procs(self) -> list[int]:
        """The pids in this cgroup (not its children)."""
        return sorted(_io.read_pids(_join(self._path, "cgroup.procs")))

    def _all_pids(self) -> list[int]:
        found: set[int] = set()
        for sub, _, _ in os.walk(self._path):
            found.update(_io.read_pids(_join(sub, "cgroup.procs")))
        return sorted(found)

    # --- limits ------------------------------------------------------------------------------
    def _file(self, ctrl: str, fname: str, why: str) -> str:
        f = _join(self._path, fname)
        if os.path.exists(f):
            return f
        if not os.path.isdir(self._path):
            raise errors.NotFoundError("cgroup", self._path, hint="call create() first")
        parent = os.path.dirname(self._path)
        reason = self._not_enabled.get(ctrl) or (
            f"not enabled in {_join(parent, 'cgroup.subtree_control')} (available there: "
            f"{(_io.read(_join(parent, 'cgroup.controllers')) or '').strip() or 'none'})")
        raise errors.UnsupportedError(f"cgroup controller {ctrl}", f"{reason}; needed for {why}",
                                      hint=_HINT_VM)

    def set(self, r: Resources) -> None:
        """Apply ``r``: every file is checked first, then written; a refused write is undone.

        Raises:
            UnsupportedError: a needed controller is not enabled (only for fields set);
                memory_swappiness or oom_kill_disable (no cgroup v2 equivalent).
            InvalidArgumentError: memory_swap_max below memory_max.
            SyscallError: the kernel refused a value; names the file and the value.
        """
        _refuse_v1_only(r)
        plan: list[_ops.Write] = []

        def w(ctrl: str, fname: str, data: str, why: str) -> None:
            f = self._file(ctrl, fname, why)
            plan.append(_ops.Write(f, data, _ops.old_value(f)))

        def num(v: int) -> str:
            return "max" if v == -1 else str(v)

        if r.memory_max is not None:
            w("memory", "memory.max", num(r.memory_max), "memory_max")
        swap = None
        if r.memory_swap_max is not None:
            swap = convert.swap_v2(r.memory_swap_max, r.memory_max)
        elif r.memory_max == -1:
            swap = -1  # runc: unlimited memory with unset swap means both unlimited
        if swap is not None and (swap != -1 or os.path.exists(_join(self._path, "memory.swap.max"))):
            w("memory", "memory.swap.max", num(swap), "memory_swap_max")
        if r.memory_reservation is not None:
            w("memory", "memory.low", num(r.memory_reservation), "memory_reservation")
        if r.cpu_quota_us is not None or r.cpu_period_us is not None:
            # cpu.max holds both; keep the half that was not given.
            f = self._file("cpu", "cpu.max", "cpu_quota_us/cpu_period_us")
            old = (_io.read(f) or "max 100000").split()
            quota = r.cpu_quota_us if r.cpu_quota_us is not None else (
                -1 if old[0] == "max" else int(old[0]))
            period = r.cpu_period_us if r.cpu_period_us is not None else int(old[1])
            plan.append(_ops.Write(f, convert.cpu_max(quota, period), " ".join(old)))
        weight = r.effective_cpu_weight
        if weight is not None:
            w("cpu", "cpu.weight", str(weight), "cpu_weight/cpu_shares")
        if r.cpuset_cpus is not None:
            w("cpuset", "cpuset.cpus", r.cpuset_cpus, "cpuset_cpus")
        if r.cpuset_mems is not None:
            w("cpuset", "cpuset.mems", r.cpuset_mems, "cpuset_mems")
        if r.pids_max is not None:
            w("pids", "pids.max", num(r.pids_max), "pids_max")
        if r.io_weight is not None:
            if (os.path.exists(_join(self._path, "io.weight"))
                    or not os.path.exists(_join(self._path, "io.bfq.weight"))):
                w("io", "io.weight", f"default {convert.blkio_weight_to_io_weight(r.io_weight)}",
                  "io_weight")
            else:  # BFQ's own knob keeps the blkio scale (block/bfq-iosched.rst)
                w("io", "io.bfq.weight", f"default {r.io_weight}", "io_weight")
        for lim in r.io_limits:
            f = self._file("io", "io.max", "io_limits")
            keys = " ".join(f"{k}={getattr(lim, k)}" for k in _IO_MAX_KEYS
                            if getattr(lim, k) is not None)
            if keys:
                plan.append(_ops.Write(f, f"{lim.device} {keys}", _old_io_max(f, lim.device)))
        _ops.apply(plan)

    # --- readings ----------------------------------------------------------------------------
    def stats(self) -> Stats:
        """Read the counters (cgroup-v2.rst "Memory", "CPU", "PID"); absent files give None."""
        def p(fname: str) -> str:
            return _join(self._path, fname)

        events = _io.read_keyed(p("memory.events")) or {}
        cpu = _io.read_keyed(p("cpu.stat")) or {}
        return Stats(
            memory_current=_io.read_int(p("memory.current")),
            memory_peak=_io.read_int(p("memory.peak")),  # 5.19+
            memory_max=_io.read_int(p("memory.max")),
            memory_swap_current=_io.read_int(p("memory.swap.current")),
            memory_limit_hits=events.get("max"),
            oom_events=events.get("oom"),
            oom_kills=events.get("oom_kill"),
            cpu_usage_usec=cpu.get("usage_usec"),
            cpu_user_usec=cpu.get("user_usec"),
            cpu_system_usec=cpu.get("system_usec"),
            nr_periods=cpu.get("nr_periods"),
            nr_throttled=cpu.get("nr_throttled"),
            throttled_usec=cpu.get("throttled_usec"),
            pids_current=_io.read_int(p("pids.current")),
            pids_max=_io.read_int(p("pids.max")),
        )

    def pressure(self, resource: str) -> Pressure:
        """PSI of ``resource`` ("cpu", "memory", "io") for this cgroup (accounting/psi.rst).

        Raises:
            InvalidArgumentError: unknown resource.
            UnsupportedError: no <resource>.pressure file (kernel without CONFIG_PSI or psi=0).
        """
        if resource not in ("cpu", "memory", "io"):
            raise errors.InvalidArgumentError("resource", f"{resource!r} is not cpu, memory or io")
        text = _io.read(_join(self._path, f"{resource}.pressure"))
        if text is None:
            raise errors.UnsupportedError(f"{resource} pressure (PSI)", f"no {resource}.pressure "
                                          f"in {self._path}", hint="boot with psi=1 (CONFIG_PSI)")
        lines: dict[str, PressureLine] = {}
        for line in text.splitlines():
            kind, *pairs = line.split()
            kv = dict(pair.split("=", 1) for pair in pairs)
            lines[kind] = PressureLine(float(kv["avg10"]), float(kv["avg60"]),
                                       float(kv["avg300"]), int(kv["total"]))
        return Pressure(some=lines["some"], full=lines.get("full"))

    # --- freezer and kill --------------------------------------------------------------------
    def _events(self) -> dict[str, int]:
        return _io.read_keyed(_join(self._path, "cgroup.events")) or {}

    def is_frozen(self) -> bool:
        """cgroup.events says "frozen 1"."""
        return self._events().get("frozen") == 1

    def freeze(self, frozen: bool, *, timeout: float = 5.0) -> None:
        """Write cgroup.freeze, then wait for "frozen 1"/"frozen 0" in cgroup.events.

        cgroup-v2.rst "Core Interface Files": freezing is asynchronous; cgroup.events
        reports when every task in the subtree has stopped.

        Raises:
            UnsupportedError: no cgroup.freeze (kernel < 5.2).
            ConflictError: the state was not reached within ``timeout`` (then it thaws).
        """
        f = _join(self._path, "cgroup.freeze")
        if not os.path.exists(f):
            if not os.path.isdir(self._path):
                raise errors.NotFoundError("cgroup", self._path, hint="call create() first")
            raise errors.UnsupportedError("cgroup v2 freezer", "no cgroup.freeze (kernel < 5.2)",
                                          hint="use the VM: labkit vm")
        want = 1 if frozen else 0
        _io.write(f, str(want))
        if not _ops.wait_for(lambda: self._events().get("frozen") == want, timeout):
            if frozen:
                _io.write(f, "0")
            raise errors.ConflictError(
                f"cgroup {self.name}: not {'frozen' if frozen else 'thawed'} within {timeout}s")

    def kill(self, *, timeout: float = 5.0) -> None:
        """SIGKILL the whole subtree: cgroup.kill (5.14+) or the freeze/kill/thaw loop."""
        k = _join(self._path, "cgroup.kill")
        if os.path.exists(k):
            # cgroup-v2.rst: cgroup.kill kills the subtree and is safe against forks.
            _io.write(k, "1")
            if not _ops.wait_for(lambda: not self._all_pids(), timeout):
                raise errors.ConflictError(
                    f"cgroup {self.name}: processes {self._all_pids()} still there "
                    f"{timeout}s after cgroup.kill")
            return
        can_freeze = os.path.exists(_join(self._path, "cgroup.freeze"))
        _ops.kill_all(self.name, self._all_pids,
                      (lambda on: self.freeze(on)) if can_freeze else None, timeout)

    def remove(self, *, timeout: float = 2.0) -> None:
        """rmdir(2) the cgroup and its children (deepest first); absent is fine.

        Raises:
            ConflictError: processes remain (nothing is removed then); call kill() first.
        """
        _ops.remove_tree(self._path, self.name, self._all_pids, timeout)


def _old_io_max(f: str, device: str) -> str:
    for line in (_io.read(f) or "").splitlines():
        if line.split()[:1] == [device]:
            return line.strip()
    return f"{device} " + " ".join(f"{k}=max" for k in _IO_MAX_KEYS)


def _refuse_v1_only(r: Resources) -> None:
    # cgroup-v2.rst has no per-cgroup swappiness (reclaim follows the global
    # vm.swappiness) and no switch for the OOM killer (memory.oom.group only chooses to kill
    # the whole group): refuse, never accept and ignore.  Leaving the killer on is v2's only
    # behaviour, so oom_kill_disable=False is fine.
    if r.memory_swappiness is not None:
        raise errors.UnsupportedError(
            "memory_swappiness (linux.resources.memory.swappiness)",
            "cgroup v2 has no per-cgroup swappiness; the kernel uses vm.swappiness",
            hint="leave it unset on a cgroup v2 host")
    if r.oom_kill_disable:
        raise errors.UnsupportedError(
            "oom_kill_disable (linux.resources.memory.disableOOMKiller)",
            "cgroup v2 cannot disable the OOM killer for a cgroup",
            hint="leave it unset on a cgroup v2 host; memory.oom.group only groups the kill")
