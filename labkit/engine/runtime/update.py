"""`labkit-runtime update`: change a container's cgroup limits while it runs (runc update).

    labkit-runtime update [--memory N] [--memory-swap N] [--memory-reservation N]
                          [--cpu-quota N] [--cpu-period N] [--cpu-share N]
                          [--cpuset-cpus LIST] [--cpuset-mems LIST] [--pids-limit N]
                          [--blkio-weight N] ID
    labkit-runtime update -r resources.json ID      (OCI linux.resources; "-" reads stdin)

As in runc, 0 (or an absent flag) leaves a value as it is, -1 means unlimited where the
kernel has "unlimited" (memory, swap, cpu quota, pids).  Unlike runc, which silently
ignores the flags when -r is given and the sections of a resources file it does not
apply, both are refused here with the name of what was refused (nothing accepted is
ignored).  The new limits are also written to the container's config copy, so what the
runtime reports (and a later exec reads) is what the cgroup holds.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from labkit import errors
from labkit._sys import fastjson
from labkit.engine.runtime import state as statemod

# The linux.resources keys update applies (config-linux.md "Control groups"); anything
# else (devices, hugepageLimits, unified, memory.swappiness, ...) is refused by name.
APPLIED: dict[str, frozenset[str]] = {
    "memory": frozenset({"limit", "swap", "reservation"}),
    "cpu": frozenset({"quota", "period", "shares", "cpus", "mems"}),
    "pids": frozenset({"limit"}),
    "blockIO": frozenset({"weight", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                          "throttleReadIOPSDevice", "throttleWriteIOPSDevice"}),
}

# flag -> (section, key, is a size in bytes, is a string)
FLAGS: dict[str, tuple[str, str, bool, bool]] = {
    "memory": ("memory", "limit", True, False),
    "memory_swap": ("memory", "swap", True, False),
    "memory_reservation": ("memory", "reservation", True, False),
    "cpu_quota": ("cpu", "quota", False, False),
    "cpu_period": ("cpu", "period", False, False),
    "cpu_share": ("cpu", "shares", False, False),
    "cpuset_cpus": ("cpu", "cpus", False, True),
    "cpuset_mems": ("cpu", "mems", False, True),
    "pids_limit": ("pids", "limit", False, False),
    "blkio_weight": ("blockIO", "weight", False, False),
}

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(flag: str, text: str) -> int:
    """"512m", "1g", "1048576", "-1" -> bytes (binary units, as go-units RAMInBytes)."""
    t = text.strip().lower()
    if t == "-1":
        return -1
    for suffix in ("ib", "b"):
        if t.endswith(suffix) and len(t) > len(suffix):
            t = t[: -len(suffix)]
            break
    unit = t[-1:] if t[-1:] in _UNITS else ""
    num = t[: len(t) - len(unit)]
    if not num.isdigit():
        raise errors.InvalidArgumentError(
            f"--{flag.replace('_', '-')}", f"{text!r} is not a size in bytes",
            hint="a number with an optional unit k, m, g or t (e.g. 512m), or -1")
    return int(num) * _UNITS[unit]


def _parse_int(flag: str, text: str) -> int:
    t = text.strip()
    if not t.lstrip("-").isdigit() or t.count("-") > 1 or "-" in t[1:]:
        raise errors.InvalidArgumentError(f"--{flag.replace('_', '-')}",
                                          f"{text!r} is not an integer")
    return int(t)


def resources_from_flags(opts: dict[str, str]) -> dict[str, Any]:
    """runc update's flags (names as in FLAGS) -> an OCI linux.resources object."""
    res: dict[str, Any] = {}
    for flag, text in opts.items():
        section, key, size, string = FLAGS[flag]
        value: int | str = (text if string else parse_bytes(flag, text) if size
                            else _parse_int(flag, text))
        res.setdefault(section, {})[key] = value
    return res


def read_resources(path: str) -> dict[str, Any]:
    """The OCI linux.resources object in file ``path`` ("-": standard input)."""
    try:
        if path == "-":
            import sys

            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as err:
        raise errors.InvalidArgumentError("--resources", f"{path}: {err.strerror}") from None
    res = fastjson.loads(data, what=f"--resources {path}")
    if not isinstance(res, dict):
        raise errors.InvalidArgumentError("--resources", "must hold a JSON object")
    return res


def check_applied(res: Any) -> dict[str, Any]:
    """``res`` when every key in it is one update applies; else InvalidArgumentError
    naming the first key that would be ignored."""
    if not isinstance(res, dict):
        raise errors.InvalidArgumentError("linux.resources", "must be an object")
    for section, value in res.items():
        keys = APPLIED.get(section)
        if keys is None:
            raise errors.UnsupportedError(
                f"updating linux.resources.{section}", "labkit-runtime update does not apply it",
                hint=f"update changes only {', '.join(sorted(APPLIED))}")
        if value is None:
            continue
        if not isinstance(value, dict):
            raise errors.InvalidArgumentError(f"linux.resources.{section}", "must be an object")
        for key in value:
            if key not in keys:
                raise errors.UnsupportedError(
                    f"updating linux.resources.{section}.{key}",
                    "labkit-runtime update does not apply it",
                    hint=f"{section} takes {', '.join(sorted(keys))}")
    return res


def _merge(old: Any, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` over ``old`` section by section; a 0 or None in ``new`` keeps the old value."""
    out: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v
                           for k, v in (old or {}).items()} if isinstance(old, dict) else {}
    for section, values in new.items():
        if not values:
            continue
        merged = out.setdefault(section, {})
        if not isinstance(merged, dict):
            merged = out[section] = {}
        for key, val in values.items():
            if val not in (None, 0, ""):
                merged[key] = val
    return out


def update(root: str, container_id: str, resources: dict[str, Any]) -> statemod.State:
    """Apply ``resources`` (OCI linux.resources) to the cgroup of ``container_id``.

    Raises InvalidStateError unless it is created, running or paused; UnsupportedError for
    a key update does not apply; InvalidArgumentError for a bad value (nothing is
    written then: Resources checks every value before the first write).
    """
    from labkit.cgroups import Resources, open_cgroup

    check_applied(resources)
    st = statemod.load(root, container_id)
    if not st.alive():
        raise errors.InvalidStateError(st.status, "updated", hint="the container is not running")
    r = Resources.from_oci(resources)
    cg = open_cgroup(st.cgroup) if st.cgroup else None
    if cg is None or not cg.exists():
        raise errors.NotFoundError("cgroup of container", container_id)
    cg.set(r)
    _record(st, resources)
    return st


def _record(st: statemod.State, resources: dict[str, Any]) -> None:
    # The config copy says what the container runs with; runc likewise saves the updated
    # cgroup config in its state.  Atomic replace, as state.json.
    path = os.path.join(st.dir, statemod.CONFIG_COPY)
    try:
        with open(path, "rb") as f:
            cfg = fastjson.loads(f.read(), what=path)
    except FileNotFoundError:
        return
    linux = cfg.setdefault("linux", {})
    linux["resources"] = _merge(linux.get("resources"), resources)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, fastjson.dumps(cfg).encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)
