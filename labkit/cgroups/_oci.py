"""OCI runtime spec ``linux.resources`` (config-linux.md "Control groups") -> Resources kwargs.

Kept apart from base.py: only labkit-runtime's create path needs it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: labkit-runtime's start path (mypy: always true)
if TYPE_CHECKING:
    from typing import Any

from labkit import errors

# (OCI object, OCI key) -> Resources field, for the plain integers.  0 means "unset", as in
# runc's libcontainer/specconv and cgroups/fs (a Docker-ism that OCI configs inherit).
_INTS = {
    ("memory", "limit"): "memory_max",
    ("memory", "swap"): "memory_swap_max",
    ("memory", "reservation"): "memory_reservation",
    ("cpu", "quota"): "cpu_quota_us",
    ("cpu", "period"): "cpu_period_us",
    ("cpu", "shares"): "cpu_shares",
    ("blockIO", "weight"): "io_weight",
}
_STRS = {("cpu", "cpus"): "cpuset_cpus", ("cpu", "mems"): "cpuset_mems"}
_THROTTLE = {
    "throttleReadBpsDevice": "rbps",
    "throttleWriteBpsDevice": "wbps",
    "throttleReadIOPSDevice": "riops",
    "throttleWriteIOPSDevice": "wiops",
}


def _obj(what: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidArgumentError(what, f"must be an object, not {type(value).__name__}")
    return value


def _intval(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidArgumentError(what, f"must be an integer, not {type(value).__name__}")
    return value


def warnings(res: Any) -> list[str]:
    """What linux.resources asks that is deliberately not applied, one warning each.

    Kernel memory limits (memory.kernel, memory.kernelTCP): cgroup v1 kmem accounting
    limits are deprecated and gone from current kernels (memory-v1.rst; Linux 6.1 removed
    kmem.limit_in_bytes); runc logs "kernel memory settings are ignored" and goes on.
    """
    memory = _obj("memory", _obj("linux.resources", res).get("memory"))
    out = []
    for key in ("kernel", "kernelTCP"):
        if memory.get(key) is not None:
            _intval(f"memory.{key}", memory[key])
            out.append(f"linux.resources.memory.{key} is ignored: kernel memory limits are "
                       "deprecated and not supported by this kernel's cgroups")
    return out


def parse_oci(res: Any) -> dict[str, Any]:
    """Validate types and collect Resources keyword arguments; ranges are Resources' job."""
    from labkit.cgroups.base import IoLimit

    top = _obj("linux.resources", res)
    out: dict[str, Any] = {}
    for (section, key), fld in _INTS.items():
        val = _obj(section, top.get(section)).get(key)
        if val is None:
            continue
        val = _intval(f"{section}.{key}", val)
        if val != 0:
            out[fld] = val
    for (section, key), fld in _STRS.items():
        val = _obj(section, top.get(section)).get(key)
        if val is None or val == "":
            continue
        if not isinstance(val, str):
            raise errors.InvalidArgumentError(
                f"{section}.{key}", f"must be a string, not {type(val).__name__}")
        out[fld] = val
    memory = _obj("memory", top.get("memory"))
    swappiness = memory.get("swappiness")
    if swappiness is not None:
        swappiness = _intval("memory.swappiness", swappiness)
        # -1 (uint64 max once Go has cast it) means "unset", as in runc's fs/memory.go.
        if swappiness not in (-1, (1 << 64) - 1):
            out["memory_swappiness"] = swappiness  # 0..100 is Resources' check
    oom = memory.get("disableOOMKiller")
    if oom is not None:
        if not isinstance(oom, bool):
            raise errors.InvalidArgumentError(
                "memory.disableOOMKiller", f"must be a boolean, not {type(oom).__name__}")
        if oom:
            out["oom_kill_disable"] = True  # false: the kernel's default, nothing to write
    pids = _obj("pids", top.get("pids"))
    if pids.get("limit") is not None:
        limit = _intval("pids.limit", pids["limit"])
        if limit < 0:
            out["pids_max"] = -1
        elif limit > 0:
            out["pids_max"] = limit
    # blockIO.throttle*Device: [{major, minor, rate}], merged into one IoLimit per device.
    devices: dict[tuple[int, int], dict[str, int]] = {}
    blkio = _obj("blockIO", top.get("blockIO"))
    for key, attr in _THROTTLE.items():
        entries = blkio.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise errors.InvalidArgumentError(f"blockIO.{key}", "must be an array")
        for i, ent in enumerate(entries):
            what = f"blockIO.{key}[{i}]"
            ent = _obj(what, ent)
            major = _intval(f"{what}.major", ent.get("major"))
            minor = _intval(f"{what}.minor", ent.get("minor"))
            rate = _intval(f"{what}.rate", ent.get("rate"))
            devices.setdefault((major, minor), {})[attr] = rate
    if devices:
        out["io_limits"] = tuple(
            IoLimit(major, minor, **vals) for (major, minor), vals in sorted(devices.items()))
    return out
