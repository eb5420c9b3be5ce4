"""Check a Docker ``POST /containers/create`` body the way dockerd does, before anything exists.

Two layers, as in moby:

* **types** (Go's encoding/json): unknown fields are ignored, ``null`` means "the zero value",
  and a value of the wrong JSON type is refused with Go's own wording, e.g.
  ``json: cannot unmarshal string into Go struct field ContainerConfigWrapper.HostConfig.Memory
  of type int64`` (status 400).  ``Cmd``/``Entrypoint``/``CapAdd``/``CapDrop`` are moby's
  ``strslice.StrSlice``: a string or an array of strings.
* **meaning** (moby daemon/container.go verifyContainerSettings, runconfig): restart policy
  names and counts, memory minimums, CPU options that exclude each other, capability names,
  network modes labkit knows.  Each failure is an InvalidArgumentError naming the field
  (400), a ConflictError (409) or an UnsupportedError for features a later issue brings (501).

``parse_create(body, name)`` returns a ``CreateSpec`` whose ``config`` and ``host_config``
are complete (defaults filled in) and shaped as ``docker inspect`` prints them.
"""

from __future__ import annotations

import json
import os
import re
import signal as _signal
from dataclasses import dataclass, field
from typing import Any

from labkit import errors
from labkit.engine.containers import hostopts
from labkit.engine.containers.healthcheck import check_healthcheck
from labkit.engine.volumes import spec as volspec

__all__ = [
    "CONFIG_TYPES",
    "HOST_TYPES",
    "CreateSpec",
    "check_ranges",
    "check_types",
    "parse_create",
    "parse_json",
    "validate_name",
    "validate_resources",
    "validate_restart",
]

# Go type names, as they appear in encoding/json's UnmarshalTypeError.
S, B, I64, I, STRS, SS, MAPS, OBJ, ANY_LIST = (
    "string", "bool", "int64", "int", "[]string", "strslice.StrSlice", "map[string]string",
    "object", "list")

CONFIG_TYPES: dict[str, str] = {
    "Hostname": S, "Domainname": S, "User": S, "AttachStdin": B, "AttachStdout": B,
    "AttachStderr": B, "ExposedPorts": OBJ, "Tty": B, "OpenStdin": B, "StdinOnce": B,
    "Env": STRS, "Cmd": SS, "Healthcheck": OBJ, "ArgsEscaped": B, "Image": S, "Volumes": OBJ,
    "WorkingDir": S, "Entrypoint": SS, "NetworkDisabled": B, "MacAddress": S, "OnBuild": STRS,
    "Labels": MAPS, "StopSignal": S, "StopTimeout": I, "Shell": SS, "HostConfig": OBJ,
    "NetworkingConfig": OBJ,
}
HOST_TYPES: dict[str, str] = {
    "Binds": STRS, "ContainerIDFile": S, "LogConfig": OBJ, "NetworkMode": S,
    "PortBindings": OBJ, "RestartPolicy": OBJ, "AutoRemove": B, "VolumeDriver": S,
    "VolumesFrom": STRS, "CapAdd": SS, "CapDrop": SS, "CgroupnsMode": S, "Dns": STRS,
    "DnsOptions": STRS, "DnsSearch": STRS, "ExtraHosts": STRS, "GroupAdd": STRS, "IpcMode": S,
    "Cgroup": S, "Links": STRS, "OomScoreAdj": I, "PidMode": S, "Privileged": B,
    "PublishAllPorts": B, "ReadonlyRootfs": B, "SecurityOpt": STRS, "StorageOpt": MAPS,
    "Tmpfs": MAPS, "UTSMode": S, "UsernsMode": S, "ShmSize": I64, "Sysctls": MAPS,
    "Runtime": S, "ConsoleSize": "[2]uint", "Isolation": S, "CpuShares": I64, "Memory": I64,
    "NanoCpus": I64, "CgroupParent": S, "BlkioWeight": "uint16", "CpuPeriod": I64,
    "CpuQuota": I64, "CpuRealtimePeriod": I64, "CpuRealtimeRuntime": I64, "CpusetCpus": S,
    "CpusetMems": S, "Devices": ANY_LIST, "DeviceCgroupRules": STRS,
    "DeviceRequests": ANY_LIST, "KernelMemory": I64, "KernelMemoryTCP": I64,
    "MemoryReservation": I64, "MemorySwap": I64, "MemorySwappiness": I64,
    "OomKillDisable": B, "PidsLimit": I64, "Ulimits": ANY_LIST, "CpuCount": I64,
    "CpuPercent": I64, "IOMaximumIOps": "uint64", "IOMaximumBandwidth": "uint64",
    "Mounts": ANY_LIST, "MaskedPaths": STRS, "ReadonlyPaths": STRS, "Init": B,
    "BlkioWeightDevice": ANY_LIST, "BlkioDeviceReadBps": ANY_LIST,
    "BlkioDeviceWriteBps": ANY_LIST, "BlkioDeviceReadIOps": ANY_LIST,
    "BlkioDeviceWriteIOps": ANY_LIST,
}
RESTART_TYPES = {"Name": S, "MaximumRetryCount": I}
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
MIN_MEMORY = 6 * 1024 * 1024  # moby: "Minimum memory limit allowed is 6MB"
_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # moby daemon/names validContainerNamePattern


def _json_kind(v: Any) -> str:
    """The JSON type name Go's decoder reports for a value of the wrong type."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(v), "value")


def _ok(v: Any, gotype: str) -> bool:
    if v is None:
        return True  # JSON null: Go leaves the zero value
    if gotype == S:
        return isinstance(v, str)
    if gotype == B:
        return isinstance(v, bool)
    if gotype in INT_RANGES:
        return int_in_range(v, gotype)
    if gotype in (STRS, SS):
        return (gotype == SS and isinstance(v, str)) or \
            (isinstance(v, list) and all(isinstance(x, str) for x in v))
    if gotype == MAPS:
        return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
    if gotype == "[2]uint":
        return isinstance(v, list) and all(int_in_range(x, "uint") for x in v)
    if gotype == ANY_LIST:
        return isinstance(v, list)
    return isinstance(v, dict)


# Go's integer types by their ranges (int and uint are 64 bits on amd64 and arm64).
# encoding/json refuses a number outside its field's range with the same
# UnmarshalTypeError as a wrong type: "cannot unmarshal number 1e+30 into ... of type int64".
INT_RANGES: dict[str, tuple[int, int]] = {
    I64: (-(1 << 63), (1 << 63) - 1), I: (-(1 << 63), (1 << 63) - 1),
    "uint16": (0, (1 << 16) - 1), "uint64": (0, (1 << 64) - 1), "uint": (0, (1 << 64) - 1),
}


def int_in_range(v: Any, gotype: str) -> bool:
    """True when ``v`` is a JSON integer (not a bool, not a float) that fits Go's ``gotype``."""
    if not isinstance(v, int) or isinstance(v, bool):
        return False
    lo, hi = INT_RANGES[gotype]
    return lo <= v <= hi


def _type_error(path: str, v: Any, gotype: str) -> errors.InvalidArgumentError:
    if gotype == MAPS and isinstance(v, dict):
        bad = next(x for x in v.values() if not isinstance(x, str))
        v, gotype = bad, S
    elif gotype in (STRS, SS) and isinstance(v, list):
        bad = next(x for x in v if not isinstance(x, str))
        v, gotype = bad, S
    elif gotype == "[2]uint" and isinstance(v, list):
        v = next(x for x in v if not int_in_range(x, "uint"))
    shown = {OBJ: "struct", ANY_LIST: "[]struct"}.get(gotype, gotype)
    kind = _json_kind(v)
    if kind == "number":
        kind = f"number {v}"  # Go names the number it could not fit
    return errors.InvalidArgumentError(
        path, f"json: cannot unmarshal {kind} into Go struct field "
              f"ContainerConfigWrapper.{path} of type {shown}")


def check_types(obj: dict[str, Any], table: dict[str, str], prefix: str = "") -> None:
    """Raise InvalidArgumentError (Go's wording) for the first field of a wrong JSON type."""
    for key, gotype in table.items():
        if key in obj and not _ok(obj[key], gotype):
            raise _type_error(prefix + key, obj[key], gotype)


# No Docker body nests deeper than a handful of levels; a much deeper one is an attack on
# the parser (json recurses in C and raises RecursionError near Python's recursion limit,
# and anything that later walks the value recursively would fail the same way).
MAX_JSON_DEPTH = 64


def _too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``value`` nests lists/objects deeper than ``limit`` (walked without recursion)."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        v, depth = todo.pop()
        if isinstance(v, (list, dict)):
            if depth > limit:
                return True
            todo.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
    return False


def _deep() -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(
        "request body", f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels")


def parse_json(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or InvalidArgumentError (dockerd answers 400)."""
    if not raw.strip():
        raise errors.InvalidArgumentError("request body", "invalid JSON: empty body (EOF)")
    try:
        body = json.loads(raw)
    except ValueError as err:  # also a number of more than sys.get_int_max_str_digits()
        raise errors.InvalidArgumentError("request body", f"invalid JSON: {err}") from None
    except RecursionError:
        raise _deep() from None
    if _too_deep(body):
        raise _deep()
    if not isinstance(body, dict):
        raise errors.InvalidArgumentError(
            "request body", f"json: cannot unmarshal {_json_kind(body)} into Go value of "
                            "type container.ContainerConfigWrapper")
    return body


def _strslice(v: Any) -> list[str] | None:
    if v is None:
        return None
    return [v] if isinstance(v, str) else list(v)


def parse_signal(sig: str | int | None, default: int = _signal.SIGKILL) -> int:
    """'KILL', 'SIGKILL', '9' or 9 -> 9; InvalidArgumentError for an unknown signal.

    Here, with the other checks of what a client sends: create validates StopSignal with
    it, and the stop/kill verbs (control.py) parse with it too."""
    if sig in (None, ""):
        return default
    if isinstance(sig, int) or str(sig).isdigit():
        n = int(sig)
        if 0 < n < 65:
            return n
    else:
        name = str(sig).upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        if hasattr(_signal.Signals, name):
            return int(_signal.Signals[name])
    raise errors.InvalidArgumentError("signal", f"Invalid signal: {sig}")


def validate_name(name: str) -> str:
    """A container name without its leading '/'; InvalidArgumentError when moby would refuse."""
    if not _NAME_RE.match(name):
        raise errors.InvalidArgumentError(
            "name", f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


def validate_restart(policy: dict[str, Any], auto_remove: bool) -> dict[str, Any]:
    """Normalize RestartPolicy (moby runconfig validateRestartPolicy, validateAutoRemove)."""
    check_types(policy, RESTART_TYPES, "HostConfig.RestartPolicy.")
    name = policy.get("Name") or "no"
    count = policy.get("MaximumRetryCount") or 0
    if name not in RESTART_POLICIES:
        raise errors.InvalidArgumentError(
            "HostConfig.RestartPolicy.Name", f"invalid restart policy '{name}'",
            hint="use one of 'no', 'always', 'on-failure[:max-retries]' or 'unless-stopped'")
    if name == "on-failure" and count < 0:
        raise errors.InvalidArgumentError(
            "HostConfig.RestartPolicy.MaximumRetryCount", "maximum retry count cannot be negative")
    if name != "on-failure" and count:
        raise errors.InvalidArgumentError(
            "HostConfig.RestartPolicy.MaximumRetryCount",
            f"maximum retry count cannot be used with restart policy '{name}'")
    if auto_remove and name != "no":
        raise errors.ConflictError(
            f"conflicting options: AutoRemove and restart policy '{name}': a container "
            "removed when it exits cannot be restarted", hint="drop --rm or --restart")
    return {"Name": name, "MaximumRetryCount": count}


def validate_resources(h: dict[str, Any], ncpu: int | None = None) -> None:
    """Resource checks dockerd makes before creating anything (daemon_unix.go verifyPlatform...)."""
    mem, swap = h.get("Memory") or 0, h.get("MemorySwap") or 0
    if mem and mem < MIN_MEMORY:
        raise errors.InvalidArgumentError("HostConfig.Memory", "Minimum memory limit allowed is 6MB")
    if swap > 0 and mem and swap < mem:
        raise errors.InvalidArgumentError(
            "HostConfig.MemorySwap",
            "Minimum memoryswap limit should be larger than memory limit, see usage")
    if swap > 0 and not mem:
        raise errors.InvalidArgumentError(
            "HostConfig.MemorySwap", "You should always set the Memory limit when using "
                                     "Memoryswap limit, see usage")
    nano = h.get("NanoCpus") or 0
    if nano and (h.get("CpuQuota") or h.get("CpuPeriod")):
        raise errors.InvalidArgumentError(
            "HostConfig.NanoCpus", "Conflicting options: Nano CPUs and CPU Period cannot both "
                                   "be set")
    ncpu = ncpu or os.cpu_count() or 1
    if nano < 0 or nano > ncpu * 10**9 or 0 < nano < 10**7:
        raise errors.InvalidArgumentError(
            "HostConfig.NanoCpus", f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                                   f"{ncpu} CPUs available")
    quota, period = h.get("CpuQuota") or 0, h.get("CpuPeriod") or 0
    if period and not 1000 <= period <= 1_000_000:
        raise errors.InvalidArgumentError(
            "HostConfig.CpuPeriod", "CPU cfs period can not be less than 1ms (i.e. 1000) or "
                                    "larger than 1s (i.e. 1000000)")
    if quota and 0 < quota < 1000:
        raise errors.InvalidArgumentError(
            "HostConfig.CpuQuota", "CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if (h.get("PidsLimit") or 0) < -1:
        raise errors.InvalidArgumentError("HostConfig.PidsLimit", "must be -1, 0 or positive")
    check_ranges(h)


# Lowest value each limit accepts; below it the kernel would be handed nonsense (a negative
# byte count, share, or period).  -1 means "unlimited" where Docker gives it that meaning.
_LOWEST: dict[str, tuple[int, str]] = {
    "MemorySwap": (-1, "must be -1 (unlimited swap), 0 (twice Memory) or a size in bytes"),
    "MemoryReservation": (0, "must be 0 (none) or a size in bytes"),
    "KernelMemory": (0, "must be 0 (none) or a size in bytes"),
    "KernelMemoryTCP": (0, "must be 0 (none) or a size in bytes"),
    "ShmSize": (0, "SHM size can not be less than 0"),
    "CpuShares": (0, "must be 0 (the default, 1024) or a positive weight"),
    "CpuQuota": (-1, "must be -1 (unlimited), 0 or a quota in microseconds"),
    "CpuRealtimePeriod": (0, "must be 0 or a period in microseconds"),
    "CpuRealtimeRuntime": (0, "must be 0 or a runtime in microseconds"),
    "CpuCount": (0, "must be 0 or a CPU count"),
    "CpuPercent": (0, "must be 0 or a percentage"),
    "MemorySwappiness": (-1, "Invalid value: {v}, valid memory swappiness range is 0-100"),
}


def check_ranges(h: dict[str, Any]) -> None:
    """Negative and out-of-range limits (moby verifyPlatformContainerResources wording where
    moby has one); InvalidArgumentError naming the HostConfig field."""
    for key, (lowest, why) in _LOWEST.items():
        v = h.get(key)
        if isinstance(v, int) and v < lowest:
            msg = why.format(v=v) if "{v}" in why else f"{why} (got {v})"
            raise errors.InvalidArgumentError(f"HostConfig.{key}", msg)
    res = h.get("MemoryReservation") or 0
    if 0 < res < MIN_MEMORY:
        raise errors.InvalidArgumentError("HostConfig.MemoryReservation",
                                          "Minimum memory reservation allowed is 6MB")
    swappiness = h.get("MemorySwappiness")
    if isinstance(swappiness, int) and swappiness > 100:
        raise errors.InvalidArgumentError(
            "HostConfig.MemorySwappiness",
            f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    oom = h.get("OomScoreAdj") or 0
    if not -1000 <= oom <= 1000:
        raise errors.InvalidArgumentError(
            "HostConfig.OomScoreAdj", f"Invalid value {oom}, range for oom score adj is "
                                      "[-1000, 1000]")
    weight = h.get("BlkioWeight") or 0
    if weight and not 10 <= weight <= 1000:
        raise errors.InvalidArgumentError("HostConfig.BlkioWeight",
                                          "Range of blkio weight is from 10 to 1000")
    rt_period, rt_runtime = h.get("CpuRealtimePeriod") or 0, h.get("CpuRealtimeRuntime") or 0
    if rt_period and rt_runtime > rt_period:
        raise errors.InvalidArgumentError(
            "HostConfig.CpuRealtimeRuntime", "cpu-rt-runtime cannot be higher than cpu-rt-period")


def _caps(names: list[str] | None, what: str) -> list[str]:
    from labkit._sys.caps import mask
    out = []
    for n in names or []:
        up = n.upper()
        if up == "ALL":
            out.append("ALL")
            continue
        full = up if up.startswith("CAP_") else f"CAP_{up}"
        try:
            mask([full], what)
        except errors.InvalidArgumentError:
            raise errors.InvalidArgumentError(what, f'unknown capability: "{full}"') from None
        out.append(full)
    return out


def _log_config(host: dict[str, Any], default: tuple[str, dict[str, str]] | None
                ) -> dict[str, Any]:
    """HostConfig.LogConfig with the daemon's default driver/options (daemon.json)."""
    lc = host.get("LogConfig") or {}
    check_types(lc, {"Type": S, "Config": MAPS}, "HostConfig.LogConfig.")
    from labkit.engine.containers.logconfig import check_log_config
    driver, opts = default or ("json-file", {})
    return check_log_config(lc, driver, opts)  # moby's checks and words (logconfig.py)


_EP_KEYS = frozenset({"IPAMConfig", "Links", "Aliases", "MacAddress", "DriverOpts",
                      "NetworkID", "EndpointID", "Gateway", "IPAddress", "IPPrefixLen",
                      "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "DNSNames",
                      "GwPriority"})


def check_endpoints(nc: Any) -> dict[str, dict[str, Any]]:
    """NetworkingConfig.EndpointsConfig: per network, what the container asks for there
    (--ip/--ip6, --network-alias, --link on a user network, --mac-address).  The
    read-only fields a client echoes back (IPAddress, ...) are dropped, as dockerd does;
    DriverOpts are refused: no labkit driver takes endpoint options."""
    if not nc:
        return {}
    if not isinstance(nc, dict):
        raise errors.InvalidArgumentError("NetworkingConfig", "must be an object")
    # dockerd's decoder drops unknown keys; one that asks for nothing (docker-py sends
    # {"<network>": null}) is let pass, one that asks for something is refused by name
    asking = sorted(k for k, v in nc.items() if k != "EndpointsConfig" and v)
    if asking:
        raise errors.InvalidArgumentError("NetworkingConfig", f"unknown field(s) {asking}: "
                                          "only EndpointsConfig is known")
    out: dict[str, dict[str, Any]] = {}
    for name, ep in (nc.get("EndpointsConfig") or {}).items():
        ep = ep or {}
        if not isinstance(ep, dict) or set(ep) - _EP_KEYS:
            raise errors.InvalidArgumentError(f"EndpointsConfig[{name}]", "unknown field(s) "
                                              f"{sorted(set(ep) - _EP_KEYS)}")
        if ep.get("DriverOpts"):
            raise errors.InvalidArgumentError(f"EndpointsConfig[{name}].DriverOpts",
                                              "no labkit network driver takes endpoint options")
        ipam = ep.get("IPAMConfig") or {}
        if not isinstance(ipam, dict) or set(ipam) - {"IPv4Address", "IPv6Address",
                                                       "LinkLocalIPs"}:
            raise errors.InvalidArgumentError(f"EndpointsConfig[{name}].IPAMConfig",
                                              "only IPv4Address and IPv6Address are known")
        if ipam.get("LinkLocalIPs"):
            raise errors.InvalidArgumentError("--link-local-ip", "link-local addresses are "
                                              "not offered by labkit")
        aliases = ep.get("Aliases") or []
        links = ep.get("Links") or []
        for what, lst in (("Aliases", aliases), ("Links", links)):
            if not isinstance(lst, list) or not all(isinstance(a, str) and a for a in lst):
                raise errors.InvalidArgumentError(f"EndpointsConfig[{name}].{what}",
                                                  "must be a list of names")
        out[name] = {"IPAMConfig": {k: v for k, v in ipam.items() if v} or None,
                     "Aliases": list(aliases) or None, "Links": list(links) or None,
                     "MacAddress": ep.get("MacAddress") or ""}
    return out


def _cgroup_v2() -> bool:
    """Whether the host mounts cgroup v2 alone (Docker's private-cgroupns default there)."""
    from labkit.cgroups import Mode, detect_mode  # (the package's name: tests patch it there)
    try:
        return detect_mode() is Mode.UNIFIED
    except errors.UnsupportedError:
        return False


@dataclass(slots=True)
class CreateSpec:
    """A checked create request: name (maybe ''), image ref, Config and HostConfig dicts."""

    name: str
    image: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)  # volumes.spec.parse_all
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # NetworkingConfig


def parse_create(body: dict[str, Any], name: str = "",
                 log_default: tuple[str, dict[str, str]] | None = None) -> CreateSpec:
    """Check a create body (already JSON-decoded) and fill in Docker's defaults.

    Raises InvalidArgumentError (400), ConflictError (409), UnsupportedError (501).
    """
    check_types(body, CONFIG_TYPES)
    host = body.get("HostConfig") or {}
    check_types(host, HOST_TYPES, "HostConfig.")
    if name:
        name = validate_name(name)
    image = body.get("Image") or ""
    if not image:
        raise errors.InvalidArgumentError("Image", "no image given: specify an image to create "
                                                   "a container from")
    warnings: list[str] = []
    if host.get("VolumesFrom"):
        raise errors.UnsupportedError("HostConfig.VolumesFrom", "--volumes-from is not offered "
                                      "by labkit", hint="name the volumes with -v instead")
    mounts = volspec.parse_all(host, body.get("Volumes"))
    net = host.get("NetworkMode") or "default"
    if not isinstance(net, str) or net.startswith("container:") and not net[10:]:
        raise errors.InvalidArgumentError("HostConfig.NetworkMode",
                                          f"invalid network mode {net!r}")
    if body.get("NetworkDisabled"):
        raise errors.InvalidArgumentError("NetworkDisabled", "use --network none instead",
                                          hint="NetworkDisabled is deprecated in the API")
    endpoints = check_endpoints(body.get("NetworkingConfig"))
    from labkit.engine.networks.portspec import exposed_ports, parse_bindings
    exposed_ports(body)  # refuse a bad ExposedPorts key now
    parse_bindings(host, body)
    if body.get("StopSignal"):  # moby verifyContainerSettings: "Invalid signal: X", 400
        parse_signal(body["StopSignal"])
    restart = validate_restart(host.get("RestartPolicy") or {}, bool(host.get("AutoRemove")))
    validate_resources(host)
    config: dict[str, Any] = {
        "Hostname": body.get("Hostname") or "", "Domainname": body.get("Domainname") or "",
        "User": body.get("User") or "", "AttachStdin": bool(body.get("AttachStdin")),
        "AttachStdout": bool(body.get("AttachStdout")),
        "AttachStderr": bool(body.get("AttachStderr")), "Tty": bool(body.get("Tty")),
        "OpenStdin": bool(body.get("OpenStdin")), "StdinOnce": bool(body.get("StdinOnce")),
        "Env": list(body.get("Env") or []), "Cmd": _strslice(body.get("Cmd")),
        "Image": image, "Volumes": body.get("Volumes"),
        "WorkingDir": body.get("WorkingDir") or "",
        "Entrypoint": _strslice(body.get("Entrypoint")), "OnBuild": body.get("OnBuild"),
        "Labels": dict(body.get("Labels") or {}), "ExposedPorts": body.get("ExposedPorts"),
        "StopSignal": body.get("StopSignal") or "", "StopTimeout": body.get("StopTimeout"),
    }
    if body.get("Shell"):
        config["Shell"] = _strslice(body["Shell"])
    health = check_healthcheck(body.get("Healthcheck"))
    if health is not None:
        config["Healthcheck"] = health
    for i, e in enumerate(config["Env"]):
        if not e or e.startswith("="):
            raise errors.InvalidArgumentError(f"Env[{i}]", f"invalid environment variable: {e!r}")
    host_config = {k: host.get(k) for k in HOST_TYPES if k in host}
    host_config.update({
        "NetworkMode": net, "RestartPolicy": restart, "AutoRemove": bool(host.get("AutoRemove")),
        "CapAdd": _caps(_strslice(host.get("CapAdd")), "HostConfig.CapAdd") or None,
        "CapDrop": _caps(_strslice(host.get("CapDrop")), "HostConfig.CapDrop") or None,
        "Privileged": bool(host.get("Privileged")), "Init": host.get("Init"),
        "LogConfig": _log_config(host, log_default),
    })
    warnings += hostopts.check(host_config, {**config, "MacAddress": body.get("MacAddress")},
                               cgroup_v2=_cgroup_v2())
    for k in ("Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod",
              "MemoryReservation"):
        host_config[k] = host.get(k) or 0
    host_config["PidsLimit"] = host.get("PidsLimit")
    if body.get("MacAddress"):  # API < 1.44 sends it at the top; it is the endpoint's
        config["MacAddress"] = body["MacAddress"]
    return CreateSpec(name, image, config, host_config, warnings, mounts, endpoints)
