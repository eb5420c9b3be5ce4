"""What every cgroup backend shares: Resources (input), Stats (output), the Cgroup Protocol.

Resources does not depend on the cgroup version (runc's configs.Resources, youki's
LinuxResources): the v1 and v2 backends translate it, with the conversions in convert.py.
Its fields follow the OCI runtime spec, config-linux.md "Control groups", and Docker's
flags (--memory, --memory-swap, --cpu-quota, --cpu-shares, --pids-limit, --blkio-weight).
"""

from __future__ import annotations

from labkit import errors
from labkit._record import Frozen, _set
from labkit.cgroups import convert

# Not typing.TYPE_CHECKING: labkit-runtime imports this on its start path, where typing
# (~1.5 ms) and pathlib (~2.7 ms with urllib.parse) are not paid for; mypy treats any
# name TYPE_CHECKING as true.  The records are Frozen (labkit/_record.py), not dataclasses
# (~4.7 ms with inspect), with the same constructors, eq/hash/repr, replace() and _asdict().
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Protocol
else:
    Protocol = object

__all__ = ["Cgroup", "IoLimit", "Pressure", "PressureLine", "Resources", "Stats", "check_name"]


_INT64_MAX = (1 << 63) - 1  # the OCI spec's int64/uint64 fields; the kernel parses into s64


def _int(what: str, value: Any, *, lo: int | None = None, hi: int = _INT64_MAX,
         allow_unlimited: bool = False) -> None:
    # bool is an int subclass; True as a memory limit is a bug, not 1 byte.
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidArgumentError(what, f"must be an integer, not {type(value).__name__}")
    if allow_unlimited and value == -1:
        return
    if (lo is not None and value < lo) or value > hi:
        rng = f"{lo if lo is not None else '-inf'}..{hi}"
        extra = " or -1 (unlimited)" if allow_unlimited else ""
        raise errors.InvalidArgumentError(what, f"{value} is outside {rng}{extra}")


def _cpulist(what: str, value: Any) -> None:
    # cpuset(7) "List format": comma-separated numbers and ranges, e.g. "0-3,7".
    if not isinstance(value, str):
        raise errors.InvalidArgumentError(what, f"must be a string like '0-1', not {type(value).__name__}")
    for part in value.split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise errors.InvalidArgumentError(what, f"{value!r} is not a cpuset(7) list like '0-2,4'")


class IoLimit(Frozen):
    """Throttle for one block device (v1 blkio.throttle.*, v2 io.max); None leaves it alone."""

    __slots__ = ("major", "minor", "rbps", "wbps", "riops", "wiops")  # noqa: RUF023 - field order
    __match_args__ = ("major", "minor", "rbps", "wbps", "riops", "wiops")
    major: int
    minor: int
    rbps: int | None
    wbps: int | None
    riops: int | None
    wiops: int | None

    def __init__(self, major: int, minor: int, rbps: int | None = None,
                 wbps: int | None = None, riops: int | None = None,
                 wiops: int | None = None) -> None:
        _set(self, "major", major)
        _set(self, "minor", minor)
        _set(self, "rbps", rbps)
        _set(self, "wbps", wbps)
        _set(self, "riops", riops)
        _set(self, "wiops", wiops)
        _int("io_limits.major", self.major, lo=0)
        _int("io_limits.minor", self.minor, lo=0)
        for name in ("rbps", "wbps", "riops", "wiops"):
            v = getattr(self, name)
            if v is not None:
                _int(f"io_limits[{self.major}:{self.minor}].{name}", v, lo=0)

    @property
    def device(self) -> str:
        return f"{self.major}:{self.minor}"


class Resources(Frozen):
    """Limits to apply; None means "leave as it is".  -1 means unlimited where allowed.

    memory_swap_max has Docker's meaning: memory+swap in total (v1 memory.memsw), and is
    converted to swap alone for v2.  cpu_weight is the v2 scale (1..10000, default 100);
    cpu_shares (v1 scale 2..262144, default 1024) is accepted instead and converted.
    io_weight is the OCI/Docker blkio scale (10..1000).  memory_swappiness (0..100, v1
    memory.swappiness) and oom_kill_disable (v1 memory.oom_control) exist on cgroup v1
    only: a v2 backend refuses them (UnsupportedError) rather than ignore them.

    Raises:
        InvalidArgumentError: a field has the wrong type or range; names the field.
    """

    __slots__ = ("memory_max", "memory_swap_max", "memory_reservation", "cpu_quota_us",  # noqa: RUF023 - field order
                 "cpu_period_us", "cpu_weight", "cpu_shares", "cpuset_cpus", "cpuset_mems",
                 "pids_max", "io_weight", "io_limits", "memory_swappiness", "oom_kill_disable")
    __match_args__ = ("memory_max", "memory_swap_max", "memory_reservation", "cpu_quota_us",
                      "cpu_period_us", "cpu_weight", "cpu_shares", "cpuset_cpus", "cpuset_mems",
                      "pids_max", "io_weight", "io_limits", "memory_swappiness",
                      "oom_kill_disable")
    memory_max: int | None
    memory_swap_max: int | None
    memory_reservation: int | None
    cpu_quota_us: int | None
    cpu_period_us: int | None
    cpu_weight: int | None
    cpu_shares: int | None
    cpuset_cpus: str | None
    cpuset_mems: str | None
    pids_max: int | None
    io_weight: int | None
    io_limits: tuple[IoLimit, ...]
    memory_swappiness: int | None
    oom_kill_disable: bool | None

    def __init__(
        self, memory_max: int | None = None, memory_swap_max: int | None = None,
        memory_reservation: int | None = None, cpu_quota_us: int | None = None,
        cpu_period_us: int | None = None, cpu_weight: int | None = None,
        cpu_shares: int | None = None, cpuset_cpus: str | None = None,
        cpuset_mems: str | None = None, pids_max: int | None = None,
        io_weight: int | None = None, io_limits: tuple[IoLimit, ...] = (),
        memory_swappiness: int | None = None, oom_kill_disable: bool | None = None,
    ) -> None:
        _set(self, "memory_max", memory_max)
        _set(self, "memory_swap_max", memory_swap_max)
        _set(self, "memory_reservation", memory_reservation)
        _set(self, "cpu_quota_us", cpu_quota_us)
        _set(self, "cpu_period_us", cpu_period_us)
        _set(self, "cpu_weight", cpu_weight)
        _set(self, "cpu_shares", cpu_shares)
        _set(self, "cpuset_cpus", cpuset_cpus)
        _set(self, "cpuset_mems", cpuset_mems)
        _set(self, "pids_max", pids_max)
        _set(self, "io_weight", io_weight)
        _set(self, "io_limits", io_limits)
        _set(self, "memory_swappiness", memory_swappiness)
        _set(self, "oom_kill_disable", oom_kill_disable)
        if self.memory_swappiness is not None:
            # memory-v1.rst 5.3: 0..100 (runc: "valid memory swappiness range is 0-100").
            _int("memory_swappiness", self.memory_swappiness, lo=0, hi=100)
        if self.oom_kill_disable is not None and not isinstance(self.oom_kill_disable, bool):
            raise errors.InvalidArgumentError(
                "oom_kill_disable", f"must be a boolean, not {type(self.oom_kill_disable).__name__}")
        if self.memory_max is not None:
            _int("memory_max", self.memory_max, lo=1, allow_unlimited=True)
        if self.memory_swap_max is not None:
            _int("memory_swap_max", self.memory_swap_max, lo=1, allow_unlimited=True)
            convert.swap_v2(self.memory_swap_max, self.memory_max)  # total >= memory
        if self.memory_reservation is not None:
            _int("memory_reservation", self.memory_reservation, lo=0, allow_unlimited=True)
        if self.cpu_quota_us is not None:
            # sched-bwc.rst: quota >= 1ms; period 1ms..1s.
            _int("cpu_quota_us", self.cpu_quota_us, lo=1000, allow_unlimited=True)
        if self.cpu_period_us is not None:
            _int("cpu_period_us", self.cpu_period_us, lo=1000, hi=1_000_000)
        if self.cpu_weight is not None:
            _int("cpu_weight", self.cpu_weight, lo=convert.WEIGHT_MIN, hi=convert.WEIGHT_MAX)
        if self.cpu_shares is not None:
            _int("cpu_shares", self.cpu_shares, lo=convert.SHARES_MIN, hi=convert.SHARES_MAX)
            if self.cpu_weight is not None:
                raise errors.InvalidArgumentError(
                    "cpu_shares", "give cpu_weight or cpu_shares, not both")
        if self.cpuset_cpus is not None:
            _cpulist("cpuset_cpus", self.cpuset_cpus)
        if self.cpuset_mems is not None:
            _cpulist("cpuset_mems", self.cpuset_mems)
        if self.pids_max is not None:
            _int("pids_max", self.pids_max, lo=0, allow_unlimited=True)
        if self.io_weight is not None:
            _int("io_weight", self.io_weight, lo=10, hi=1000)
        if not isinstance(self.io_limits, tuple):
            if not isinstance(self.io_limits, list):
                raise errors.InvalidArgumentError("io_limits", "must be a tuple of IoLimit")
            object.__setattr__(self, "io_limits", tuple(self.io_limits))
        for lim in self.io_limits:
            if not isinstance(lim, IoLimit):
                raise errors.InvalidArgumentError("io_limits", f"{lim!r} is not an IoLimit")

    @property
    def effective_cpu_weight(self) -> int | None:
        """The v2 cpu.weight to write: cpu_weight, or cpu_shares converted."""
        if self.cpu_shares is not None:
            return convert.shares_to_weight(self.cpu_shares)
        return self.cpu_weight

    @property
    def effective_cpu_shares(self) -> int | None:
        """The v1 cpu.shares to write: cpu_shares, or cpu_weight converted back."""
        if self.cpu_weight is not None:
            return convert.weight_to_shares(self.cpu_weight)
        return self.cpu_shares

    @classmethod
    def from_oci(cls, linux_resources: dict[str, Any] | None) -> Resources:
        """OCI runtime spec config-linux.md ``linux.resources`` -> Resources.

        0 means "unset" for memory, cpu and pids values (runc does the same); a negative
        pids.limit means unlimited.  devices, hugepageLimits, network, rdma and unified are
        not handled here (the runtime owns the devices cgroup).

        Raises:
            InvalidArgumentError: a field has the wrong type or value; names it (e.g.
                "memory.limit").
        """
        from labkit.cgroups._oci import parse_oci

        return cls(**parse_oci(linux_resources))


class Stats(Frozen):
    """One reading of a cgroup's counters; None where this kernel/version has no such file.

    memory_max and pids_max are -1 when unlimited.  memory_limit_hits counts how often usage
    hit the limit (v1 memory.failcnt, v2 memory.events "max"); oom_events is v2 memory.events
    "oom" (None on v1); oom_kills is v1 memory.oom_control / v2 memory.events "oom_kill".
    """

    __slots__ = ("memory_current", "memory_peak", "memory_max", "memory_swap_current",  # noqa: RUF023 - field order
                 "memory_limit_hits", "cpu_usage_usec", "cpu_user_usec", "cpu_system_usec",
                 "nr_periods", "nr_throttled", "throttled_usec", "pids_current", "pids_max",
                 "oom_events", "oom_kills")
    __match_args__ = ("memory_current", "memory_peak", "memory_max", "memory_swap_current",
                      "memory_limit_hits", "cpu_usage_usec", "cpu_user_usec", "cpu_system_usec",
                      "nr_periods", "nr_throttled", "throttled_usec", "pids_current", "pids_max",
                      "oom_events", "oom_kills")
    memory_current: int | None
    memory_peak: int | None
    memory_max: int | None
    memory_swap_current: int | None
    memory_limit_hits: int | None
    cpu_usage_usec: int | None
    cpu_user_usec: int | None
    cpu_system_usec: int | None
    nr_periods: int | None
    nr_throttled: int | None
    throttled_usec: int | None
    pids_current: int | None
    pids_max: int | None
    oom_events: int | None
    oom_kills: int | None

    def __init__(
        self, memory_current: int | None = None, memory_peak: int | None = None,
        memory_max: int | None = None, memory_swap_current: int | None = None,
        memory_limit_hits: int | None = None, cpu_usage_usec: int | None = None,
        cpu_user_usec: int | None = None, cpu_system_usec: int | None = None,
        nr_periods: int | None = None, nr_throttled: int | None = None,
        throttled_usec: int | None = None, pids_current: int | None = None,
        pids_max: int | None = None, oom_events: int | None = None,
        oom_kills: int | None = None,
    ) -> None:
        _set(self, "memory_current", memory_current)
        _set(self, "memory_peak", memory_peak)
        _set(self, "memory_max", memory_max)
        _set(self, "memory_swap_current", memory_swap_current)
        _set(self, "memory_limit_hits", memory_limit_hits)
        _set(self, "cpu_usage_usec", cpu_usage_usec)
        _set(self, "cpu_user_usec", cpu_user_usec)
        _set(self, "cpu_system_usec", cpu_system_usec)
        _set(self, "nr_periods", nr_periods)
        _set(self, "nr_throttled", nr_throttled)
        _set(self, "throttled_usec", throttled_usec)
        _set(self, "pids_current", pids_current)
        _set(self, "pids_max", pids_max)
        _set(self, "oom_events", oom_events)
        _set(self, "oom_kills", oom_kills)


class PressureLine(Frozen):
    """One line of a PSI file: share of time stalled (percent) and total stall time (us)."""

    __slots__ = ("avg10", "avg60", "avg300", "total_usec")
    __match_args__ = ("avg10", "avg60", "avg300", "total_usec")
    avg10: float
    avg60: float
    avg300: float
    total_usec: int

    def __init__(self, avg10: float, avg60: float, avg300: float, total_usec: int) -> None:
        _set(self, "avg10", avg10)
        _set(self, "avg60", avg60)
        _set(self, "avg300", avg300)
        _set(self, "total_usec", total_usec)


class Pressure(Frozen):
    """PSI of one resource (Documentation/accounting/psi.rst); ``full`` is None for cpu on old kernels."""

    __slots__ = ("some", "full")  # noqa: RUF023 - field order
    __match_args__ = ("some", "full")
    some: PressureLine
    full: PressureLine | None

    def __init__(self, some: PressureLine, full: PressureLine | None) -> None:
        _set(self, "some", some)
        _set(self, "full", full)


class Cgroup(Protocol):
    """One cgroup, whatever the version (runc cgroups.Manager, youki CgroupManager)."""

    name: str

    @property
    def path(self) -> Path:
        """The cgroup's directory (v1: the memory hierarchy's), a pathlib.Path."""

    def create(self, *, exist_ok: bool = True) -> None: ...
    def exists(self) -> bool: ...
    def add(self, pid: int) -> None: ...
    def add_self(self) -> None: ...
    def procs(self) -> list[int]: ...
    def set(self, r: Resources) -> None: ...
    def stats(self) -> Stats: ...
    def freeze(self, frozen: bool, *, timeout: float = 5.0) -> None: ...
    def is_frozen(self) -> bool: ...
    def kill(self, *, timeout: float = 5.0) -> None: ...
    def remove(self, *, timeout: float = 2.0) -> None: ...
    def pressure(self, resource: str) -> Pressure: ...


def check_name(name: Any) -> str:
    """A cgroup name is a relative path like "lk-abc/ctr1": no "/", "..", "." or empty parts.

    Raises:
        InvalidArgumentError: the name is empty, absolute, or escapes upwards.
    """
    if not isinstance(name, str) or not name:
        raise errors.InvalidArgumentError("cgroup name", f"{name!r} must be a non-empty string")
    if name.startswith("/"):
        raise errors.InvalidArgumentError(
            "cgroup name", f"{name!r} is absolute", hint='use a relative path like "lk-x/ctr1"')
    if "\0" in name:
        raise errors.InvalidArgumentError("cgroup name", f"{name!r} contains a NUL byte")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise errors.InvalidArgumentError(
                "cgroup name", f"{name!r} has an empty, '.' or '..' component")
    return name
