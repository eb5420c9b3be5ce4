"""cgroup v1 backend: one directory per controller hierarchy (cgroup-v1/cgroups.rst).

The shape of runc's cgroups/fs and youki's libcgroups v1: the same name is created under
each mounted hierarchy (cpu, cpuacct, cpuset, memory, pids, freezer, blkio, devices and the
named name=systemd one), and each Resources field goes to its controller's files.

Hybrid hosts (cgroups(7): v1 controllers plus a cgroup2 mount at ``root/unified`` that holds
no controllers): the same name is made in the unified hierarchy too, the process joins it,
and remove() removes it, as systemd's hybrid mode and runc's fs manager do.  It limits
nothing; it gives the container a cgroup *id* of its own in the v2 hierarchy, which is the
one bpf_get_current_cgroup_id() reports (kernel/bpf/helpers.c: task_dfl_cgroup), so eBPF
probes can tell containers apart (labkit.probes.attribution).  Without it every labkit
container sits in the unified root "/" and all share one id.
"""

from __future__ import annotations

import errno
import functools
import os

from labkit import errors
from labkit.cgroups import _io, _ops
from labkit.cgroups.base import Pressure, Resources, Stats, check_name
from labkit.cgroups.detect import _DEFAULT_ROOT, _controller_dirs

# Paths are str inside (os.path), pathlib.Path only where the public attributes root, dirs
# and path are read: pathlib (with urllib.parse, ~2.4 ms) stays off labkit-runtime's start
# path.  Not typing's TYPE_CHECKING either (~1.5 ms); mypy treats it as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    StrPath = str | os.PathLike[str]

_join = os.path.join

__all__ = ["V1_CONTROLLERS", "V1Cgroup"]

# The hierarchies a container joins, in the order runc's fs manager lists its subsystems.
V1_CONTROLLERS = ("cpuset", "cpu", "cpuacct", "memory", "pids", "freezer", "blkio", "devices",
                  "name=systemd")

# v1 prints "no limit" as PAGE_COUNTER_MAX * PAGE_SIZE (9223372036854771712 on 4K pages).
_UNLIMITED = 1 << 62
_THROTTLE_FILES = {"rbps": "blkio.throttle.read_bps_device",
                   "wbps": "blkio.throttle.write_bps_device",
                   "riops": "blkio.throttle.read_iops_device",
                   "wiops": "blkio.throttle.write_iops_device"}
_HINT_VM = "use the VM with the controller enabled: labkit vm"


class V1Cgroup:
    """A cgroup named ``name`` in every v1 hierarchy under ``root``.

    Example:
        cg = V1Cgroup(Path("/sys/fs/cgroup"), "lk-demo/ctr1")
        cg.create(); cg.add(pid); cg.set(Resources(memory_max=64 << 20))
    """

    def __init__(self, root: StrPath = _DEFAULT_ROOT, name: str = "", *,
                 hierarchies: Mapping[str, StrPath] | None = None,
                 mountinfo: StrPath = "/proc/self/mountinfo",
                 unified: StrPath | None = None) -> None:
        """``unified``: the cgroup2 mount of a hybrid host, to mirror the cgroup in; by
        default found in ``mountinfo`` (a cgroup2 mount at ``root/unified``) unless
        ``hierarchies`` is given (fake trees name it explicitly)."""
        self.name = check_name(name)
        self._root = os.fspath(root)
        if hierarchies is not None:
            mounts = {c: os.fspath(d) for c, d in hierarchies.items()}
        else:
            mounts = _controller_dirs(self._root, os.fspath(mountinfo))
            if unified is None:
                unified = _unified_mount(self._root, os.fspath(mountinfo))
        self._dirs = {c: _join(mounts[c], name) for c in V1_CONTROLLERS if c in mounts}
        # This cgroup's directory in the hybrid host's (controller-less) v2 hierarchy.
        self._unified = None if unified is None else _join(os.fspath(unified), name)
        if not self._dirs:
            raise errors.UnsupportedError(
                "cgroup v1", f"no controller hierarchies mounted under {self._root}", hint=_HINT_VM)
        # One path to show and to hand to tools; memory is where OOM happens.
        self._path = self._dirs.get("memory", next(iter(self._dirs.values())))

    def __repr__(self) -> str:
        return f"V1Cgroup({self._root!r}, {self.name!r})"

    # --- the directories -------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """The cgroup mount root (e.g. /sys/fs/cgroup)."""
        from pathlib import Path

        return Path(self._root)

    @property
    def dirs(self) -> dict[str, Path]:
        """controller -> this cgroup's directory in that controller's hierarchy (a copy)."""
        from pathlib import Path

        return {c: Path(d) for c, d in self._dirs.items()}

    @property
    def path(self) -> Path:
        """The directory to show and hand to tools: the memory hierarchy's, if mounted."""
        from pathlib import Path

        return Path(self._path)

    def controller_dir(self, ctrl: str) -> str | None:
        """This cgroup's directory in ``ctrl``'s hierarchy (a str), None if not mounted."""
        return self._dirs.get(ctrl)

    @property
    def unified_dir(self) -> str | None:
        """This cgroup's directory in the hybrid host's v2 hierarchy (a str), None when the
        host has no cgroup2 mount at ``root/unified`` (a legacy host)."""
        return self._unified

    def without_unified(self) -> V1Cgroup:
        """The same cgroup without its unified mirror: for a process already born in the
        mirror (clone3 CLONE_INTO_CGROUP), which then joins only the v1 hierarchies."""
        other = V1Cgroup.__new__(V1Cgroup)
        other.__dict__.update(self.__dict__)
        other._unified = None
        return other

    def _mirror(self) -> str | None:
        # The unified mirror when it exists: a cgroup made before labkit mirrored, or where
        # the mirror could not be made, is joined in its v1 hierarchies only.
        d = self._unified
        return d if d is not None and os.path.isdir(d) else None

    def _unique_dirs(self) -> list[str]:
        return list(dict.fromkeys(self._dirs.values()))  # co-mounted cpu,cpuacct share one

    def _all_dirs(self) -> list[str]:
        # Every directory this cgroup owns: the v1 hierarchies, then the unified mirror.
        dirs = self._unique_dirs()
        return dirs if self._unified is None else [*dirs, self._unified]

    def _dir(self, ctrl: str, why: str) -> str:
        d = self._dirs.get(ctrl)
        if d is None:
            raise errors.UnsupportedError(
                f"cgroup controller {ctrl}", f"not mounted under {self._root} (needed for {why})",
                hint=_HINT_VM)
        return d

    def _file(self, ctrl: str, fname: str, why: str) -> str:
        d = self._dir(ctrl, why)
        f = _join(d, fname)
        if not os.path.exists(f):
            if not os.path.isdir(d):
                raise errors.NotFoundError("cgroup", f"{self.name} ({d})", hint="call create() first")
            raise errors.UnsupportedError(
                f"cgroup file {fname}", f"not present in {d} (needed for {why})", hint=_HINT_VM)
        return f

    def exists(self) -> bool:
        """Whether the cgroup directory exists in any hierarchy."""
        return any(os.path.isdir(d) for d in self._all_dirs())

    def create(self, *, exist_ok: bool = True) -> None:
        """mkdir(2) the cgroup in every hierarchy; undone if any mkdir fails.

        Raises:
            AlreadyExistsError: it exists and ``exist_ok`` is False.
            SyscallError: mkdir(2) failed (names the directory).
        """
        if not exist_ok and self.exists():
            raise errors.AlreadyExistsError("cgroup", self.name)
        made: list[str] = []
        try:
            for ctrl, d in self._dirs.items():
                mount = d
                for _ in self.name.split("/"):
                    mount = os.path.dirname(mount)
                level = mount
                for part in self.name.split("/"):
                    level = _join(level, part)
                    try:
                        os.mkdir(level, 0o755)
                        made.append(level)
                    except FileExistsError:
                        pass
                    except OSError as err:
                        raise errors.from_errno(err.errno or errno.EIO, "mkdir", str(level)) from None
                    if ctrl == "cpuset":
                        self._cpuset_inherit(level)
        except BaseException:
            _undo_mkdirs(made, self.name)
            raise
        if self._unified is not None:
            self._create_mirror()

    def _create_mirror(self) -> None:
        # The unified mirror limits nothing; it only names the cgroup for eBPF.  Where it
        # cannot be made (a read-only or foreign-owned cgroup2 mount, as inside some
        # containers) the cgroup works without it, and has no v2 id of its own.
        assert self._unified is not None
        made: list[str] = []
        level = self._unified
        for _ in self.name.split("/"):
            level = os.path.dirname(level)
        try:
            for part in self.name.split("/"):
                level = _join(level, part)
                try:
                    os.mkdir(level, 0o755)
                    made.append(level)
                except FileExistsError:
                    pass
        except OSError as err:
            _undo_mkdirs(made, self.name)
            if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                self._unified = None
                return
            raise errors.from_errno(err.errno or errno.EIO, "mkdir", level) from None

    @staticmethod
    def _cpuset_inherit(level: str) -> None:
        # cpusets.rst: a new cpuset starts with empty cpus/mems and refuses tasks (ENOSPC)
        # until they are set; copy the parent's, as runc's cpusetEnsureParent does.
        for fname in ("cpuset.cpus", "cpuset.mems"):
            mine = _io.read(_join(level, fname))
            if mine is not None and not mine.strip():
                parent = _io.read(_join(os.path.dirname(level), fname))
                if parent and parent.strip():
                    _io.write(_join(level, fname), parent.strip())

    # --- processes ---------------------------------------------------------------------------
    def add(self, pid: int) -> None:
        """Move process ``pid`` into the cgroup by writing cgroup.procs in each hierarchy."""
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise errors.InvalidArgumentError("pid", f"{pid!r} is not a process id")
        for d in self._unique_dirs():
            if not os.path.isdir(d):
                raise errors.NotFoundError("cgroup", f"{self.name} ({d})", hint="call create() first")
            _io.write(_join(d, "cgroup.procs"), str(pid))
        if (mirror := self._mirror()) is not None:
            _io.write(_join(mirror, "cgroup.procs"), str(pid))

    def add_self(self) -> None:
        """Move the calling process into the cgroup: write "0" to ``tasks`` in each hierarchy.

        Documentation/admin-guide/cgroup-v1/cgroups.rst: writing 0 to ``tasks`` moves the
        writing task.  That moves one THREAD, so this is only the whole process when the
        caller is single-threaded, as labkit-runtime's intermediate child is (a fork of the
        runtime, which starts no threads).  Why not cgroup.procs: a threadgroup move takes
        cgroup_threadgroup_rwsem for writing, and the percpu rwsem's writer waits for an RCU
        grace period (kernel/cgroup/cgroup.c, cgroup_procs_write_start: the lock is skipped
        only for "0" written to ``tasks``); measured on this host 6-13 ms for cgroup.procs
        against ~0.03 ms for ``tasks``.

        Raises:
            NotFoundError: the cgroup was not created in one of the hierarchies.
        """
        for d in self._unique_dirs():
            if not os.path.isdir(d):
                raise errors.NotFoundError("cgroup", f"{self.name} ({d})", hint="call create() first")
            _io.write(_join(d, "tasks"), "0")
        if (mirror := self._mirror()) is not None:
            # cgroup v2 has no "tasks" file, and its cgroup.threads moves a thread only
            # inside its own domain (cgroup-v2.rst "Threads"): cgroup.procs it is, with the
            # global lock's grace period (labkit.engine.runtime.create forks into it instead;
            # without_unified() skips it).
            _io.write(_join(mirror, "cgroup.procs"), "0")

    def procs(self) -> list[int]:
        """The pids in this cgroup (not its children), from cgroup.procs of every hierarchy."""
        found: set[int] = set()
        for d in self._all_dirs():
            found.update(_io.read_pids(_join(d, "cgroup.procs")))
        return sorted(found)

    def _all_pids(self) -> list[int]:
        found: set[int] = set()
        for d in self._all_dirs():
            found.update(_pids_under(d))
        return sorted(found)

    # --- limits ------------------------------------------------------------------------------
    def set(self, r: Resources) -> None:
        """Apply ``r``: every file is checked first, then written; a refused write is undone.

        Raises:
            UnsupportedError: a needed controller or file is absent (only for fields set).
            SyscallError: the kernel refused a value; names the file and the value.
        """
        plan: list[_ops.Write] = []

        def w(ctrl: str, fname: str, data: str, why: str) -> None:
            f = self._file(ctrl, fname, why)
            plan.append(_ops.Write(f, data, _ops.old_value(f)))

        self._plan_memory(r, plan, w)
        if r.cpu_period_us is not None:  # period before quota, as runc's fs/cpu.go
            w("cpu", "cpu.cfs_period_us", str(r.cpu_period_us), "cpu_period_us")
        if r.cpu_quota_us is not None:
            w("cpu", "cpu.cfs_quota_us", str(r.cpu_quota_us), "cpu_quota_us")
        shares = r.effective_cpu_shares
        if shares is not None:
            w("cpu", "cpu.shares", str(shares), "cpu_weight/cpu_shares")
        if r.cpuset_cpus is not None:
            w("cpuset", "cpuset.cpus", r.cpuset_cpus, "cpuset_cpus")
        if r.cpuset_mems is not None:
            w("cpuset", "cpuset.mems", r.cpuset_mems, "cpuset_mems")
        if r.pids_max is not None:
            w("pids", "pids.max", "max" if r.pids_max == -1 else str(r.pids_max), "pids_max")
        if r.io_weight is not None:
            # blkio.weight belonged to CFQ (gone in 5.0); BFQ offers blkio.bfq.weight.
            d = self._dir("blkio", "io_weight")
            fname = "blkio.weight" if os.path.exists(_join(d, "blkio.weight")) else "blkio.bfq.weight"
            w("blkio", fname, str(r.io_weight), "io_weight (needs the BFQ I/O scheduler)")
        for lim in r.io_limits:
            for attr, fname in _THROTTLE_FILES.items():
                val = getattr(lim, attr)
                if val is None:
                    continue
                f = self._file("blkio", fname, "io_limits")
                plan.append(_ops.Write(f, f"{lim.device} {val}", _old_rule(f, lim.device)))
        _ops.apply(plan)

    def _plan_memory(self, r: Resources, plan: list[_ops.Write], w: _ops.WriteFn) -> None:
        mem, swap = r.memory_max, r.memory_swap_max
        if (mem is None and swap is None and r.memory_reservation is None
                and r.memory_swappiness is None and r.oom_kill_disable is None):
            return
        d = self._dir("memory", "memory limits")
        has_memsw = os.path.exists(_join(d, "memory.memsw.limit_in_bytes"))
        if swap is not None and swap != -1 and not has_memsw:
            raise errors.UnsupportedError(
                "cgroup v1 swap accounting", f"memory.memsw.limit_in_bytes missing in {d}",
                hint="boot with swapaccount=1, or leave memory_swap_max unset")
        if mem == -1 and swap is None and has_memsw:
            swap = -1  # runc: unlimited memory with unset swap means both unlimited
        if not has_memsw:
            swap = None
        if mem is not None and swap is not None:
            # memory-v1: limit_in_bytes <= memsw.limit_in_bytes must hold after every write.
            # Writing memsw first is safe when the new total is >= the current memory limit.
            cur = _io.read_int(_join(d, "memory.limit_in_bytes"), unlimited=_UNLIMITED)
            swap_first = swap == -1 or (cur is not None and cur != -1 and swap >= cur)
            order = [("memory.memsw.limit_in_bytes", swap), ("memory.limit_in_bytes", mem)]
            for fname, val in (order if swap_first else order[::-1]):
                w("memory", fname, str(val), "memory_max/memory_swap_max")
        elif mem is not None:
            w("memory", "memory.limit_in_bytes", str(mem), "memory_max")
        elif swap is not None:
            w("memory", "memory.memsw.limit_in_bytes", str(swap), "memory_swap_max")
        if r.memory_reservation is not None:
            w("memory", "memory.soft_limit_in_bytes", str(r.memory_reservation),
              "memory_reservation")
        if r.memory_swappiness is not None:
            w("memory", "memory.swappiness", str(r.memory_swappiness), "memory_swappiness")
        if r.oom_kill_disable is not None:
            # memory-v1.rst 10: writing 1 to memory.oom_control disables the OOM killer;
            # tasks then wait at the limit instead of being killed.
            w("memory", "memory.oom_control", "1" if r.oom_kill_disable else "0",
              "oom_kill_disable")

    # --- readings ----------------------------------------------------------------------------
    def stats(self) -> Stats:
        """Read the counters (memory-v1.rst, cpuacct.rst, sched-bwc.rst, pids.rst)."""
        mem = self._dirs.get("memory")
        cur = peak = limit = swap = hits = kills = None
        if mem is not None:
            cur = _io.read_int(_join(mem, "memory.usage_in_bytes"))
            peak = _io.read_int(_join(mem, "memory.max_usage_in_bytes"))
            limit = _io.read_int(_join(mem, "memory.limit_in_bytes"), unlimited=_UNLIMITED)
            memsw = _io.read_int(_join(mem, "memory.memsw.usage_in_bytes"))
            swap = None if memsw is None or cur is None else max(0, memsw - cur)
            # With memsw == memory the memory+swap counter is the one that hits its limit.
            fails = [_io.read_int(_join(mem, f)) for f in ("memory.failcnt", "memory.memsw.failcnt")]
            hits = max((f for f in fails if f is not None), default=None)
            kills = (_io.read_keyed(_join(mem, "memory.oom_control")) or {}).get("oom_kill")
        usage = user = system = None
        acct = self._dirs.get("cpuacct")
        if acct is not None:
            ns = _io.read_int(_join(acct, "cpuacct.usage"))
            usage = None if ns is None else ns // 1000
            ticks = _io.read_keyed(_join(acct, "cpuacct.stat")) or {}
            hz = os.sysconf("SC_CLK_TCK")  # cpuacct.stat counts USER_HZ ticks
            user = ticks["user"] * 1_000_000 // hz if "user" in ticks else None
            system = ticks["system"] * 1_000_000 // hz if "system" in ticks else None
        cpu: dict[str, int] = {}
        if "cpu" in self._dirs:
            cpu = _io.read_keyed(_join(self._dirs["cpu"], "cpu.stat")) or {}
        pids = self._dirs.get("pids")
        return Stats(
            memory_current=cur, memory_peak=peak, memory_max=limit, memory_swap_current=swap,
            memory_limit_hits=hits, oom_kills=kills, oom_events=None,
            cpu_usage_usec=usage, cpu_user_usec=user, cpu_system_usec=system,
            nr_periods=cpu.get("nr_periods"), nr_throttled=cpu.get("nr_throttled"),
            throttled_usec=cpu["throttled_time"] // 1000 if "throttled_time" in cpu else None,
            pids_current=None if pids is None else _io.read_int(_join(pids, "pids.current")),
            pids_max=None if pids is None else _io.read_int(_join(pids, "pids.max")),
        )

    def pressure(self, resource: str) -> Pressure:
        """PSI exists per cgroup only in v2 (psi.rst)."""
        raise errors.UnsupportedError(
            f"{resource} pressure (PSI) per cgroup", "cgroup v1 has no pressure files",
            hint="use cgroup v2: the VM (labkit vm)")

    # --- freezer and kill --------------------------------------------------------------------
    def is_frozen(self) -> bool:
        """freezer.state reads FROZEN (self or an ancestor frozen)."""
        d = self._dirs.get("freezer")
        text = None if d is None else _io.read(_join(d, "freezer.state"))
        return text is not None and text.strip() == "FROZEN"

    def freeze(self, frozen: bool, *, timeout: float = 5.0) -> None:
        """Freeze or thaw via freezer.state and wait until the kernel reports it done.

        cgroup-v1/freezer-subsystem.rst: writing FROZEN moves the state to FREEZING, then
        FROZEN once every task has stopped; a task in the middle of something can delay
        that, so the write is repeated now and then (runc's fs/freezer.go does the same).

        Raises:
            UnsupportedError: no freezer hierarchy.
            ConflictError: the state was not reached within ``timeout`` (then it thaws).
        """
        f = self._file("freezer", "freezer.state", "freeze")
        target = "FROZEN" if frozen else "THAWED"
        _io.write(f, target)
        polls = 0

        def reached() -> bool:
            nonlocal polls
            polls += 1
            if polls % 25 == 0:
                _io.write(f, target)
            return (_io.read(f) or "").strip() == target

        if not _ops.wait_for(reached, timeout):
            if frozen:
                _io.write(f, "THAWED")
            raise errors.ConflictError(f"cgroup {self.name}: freezer did not reach {target} "
                                       f"within {timeout}s", hint="a task may be stuck in D state")

    def kill(self, *, timeout: float = 5.0) -> None:
        """SIGKILL every process in the cgroup and its children; wait until none is left."""
        frz = self._dirs.get("freezer")
        can_freeze = frz is not None and os.path.exists(_join(frz, "freezer.state"))
        _ops.kill_all(self.name, self._all_pids,
                      (lambda on: self.freeze(on)) if can_freeze else None, timeout)

    def remove(self, *, timeout: float = 2.0) -> None:
        """rmdir(2) the cgroup (children first) in every hierarchy; absent is fine.

        Raises:
            ConflictError: processes remain (nothing is removed then); call kill() first.
        """
        left = self._all_pids()
        if left:
            raise errors.ConflictError(
                f"cgroup {self.name} still has processes {left}", hint="call kill() first")
        for d in self._all_dirs():
            # Re-check only the hierarchy being removed (a process may have joined since the
            # check above): re-walking every hierarchy for each one was ~10 walks per remove,
            # on the path between a container's exit and `docker wait`'s answer.
            _ops.remove_tree(d, self.name, functools.partial(_sorted_pids_under, d), timeout)


def _undo_mkdirs(made: list[str], name: str) -> None:
    for d in reversed(made):
        try:
            _ops.remove_tree(d, name, list, 0.5)
        except errors.LabkitError:
            pass


def _unified_mount(root: str, mountinfo: str) -> str | None:
    """``root/unified`` when ``mountinfo`` shows a cgroup2 mount there (a hybrid host).

    proc(5) mountinfo: "... mountpoint ... - fstype source superopts"; only a real mount
    counts, so a fake tree (tests) or a legacy host gets None."""
    want = _join(root.rstrip("/") or "/", "unified")
    try:
        with open(mountinfo) as f:
            for line in f:
                left, sep, right = line.partition(" - ")
                fields = left.split()
                if sep and len(fields) > 4 and fields[4] == want and right.startswith("cgroup2 "):
                    return want
    except OSError:
        return None
    return None


def _sorted_pids_under(top: str) -> list[int]:
    return sorted(_pids_under(top))


def _pids_under(top: str) -> set[int]:
    """The pids in cgroup directory ``top`` and its child cgroups (one hierarchy)."""
    found: set[int] = set()
    for sub, _, _ in os.walk(top):
        found.update(_io.read_pids(_join(sub, "cgroup.procs")))
    return found


def _old_rule(f: str, device: str) -> str:
    # blkio throttle files list "MAJ:MIN VALUE" rules; writing VALUE 0 deletes a rule.
    for line in (_io.read(f) or "").splitlines():
        if line.split()[:1] == [device]:
            return line.strip()
    return f"{device} 0"
