"""HostConfig resources beside memory/CPU/pids (createbody.validate_resources): cpusets, block
I/O throttles, the fields labkit refuses, the zero values inspect shows, and what
POST /containers/{id}/update may change.  Wording follows moby (daemon/daemon_unix.go
verifyPlatformContainerResources, daemon/update.go).
"""

from __future__ import annotations

import os
import stat
from typing import Any

from labkit import errors

__all__ = ["INSPECT_DEFAULTS", "THROTTLES", "UPDATE_APPLIED", "check_cpuset", "check_resources",
           "cpu_list", "update_fields"]


def _bad(what: str, problem: str, hint: str | None = None) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(what, problem, hint)


def cpu_list(text: str) -> set[int]:
    """cpuset(7) list format "0-2,4" -> {0,1,2,4}; ValueError when malformed."""
    out: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(text)
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(text)
        out.update(range(a, b + 1))
    return out


def _online(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip() or "0"
    except OSError:
        return "0"


def check_cpuset(host: dict[str, Any]) -> None:
    """CpusetCpus/CpusetMems well-formed and present on this host (400 otherwise)."""
    for key, what, path, noun in (
            ("CpusetCpus", "cpus", "/sys/devices/system/cpu/online", "CPUs"),
            ("CpusetMems", "mems", "/sys/devices/system/node/online", "memory nodes")):
        val = host.get(key) or ""
        if not val:
            continue
        try:
            want = cpu_list(val)
        except ValueError:
            raise _bad(f"HostConfig.{key}", f"Invalid value {val} for cpuset {what}") from None
        have = _online(path)
        if not want <= cpu_list(have):
            raise _bad(f"HostConfig.{key}", f"Requested {noun} are not available - requested "
                                            f"{val}, available: {have}")


# Resources labkit does not apply at create: refused when they ask for anything (the CLI
# sends every field, zero when the flag was not given).  Why, per field:
_NOT_APPLIED = {
    "BlkioWeight": "block I/O weights need the BFQ scheduler's cgroup files; labkit does not "
                   "set them",
    "BlkioWeightDevice": "per-device block I/O weights are not applied by labkit",
    "CpuRealtimePeriod": "real-time CPU scheduling (cpu.rt_*) is not applied by labkit",
    "CpuRealtimeRuntime": "real-time CPU scheduling (cpu.rt_*) is not applied by labkit",
    "DeviceRequests": "device requests (GPUs) need a device driver labkit does not have",
    "KernelMemory": "kernel memory limits are deprecated and not applied",
    "KernelMemoryTCP": "kernel TCP memory limits are not applied by labkit",
    "MemorySwappiness": "memory.swappiness is not applied by labkit-runtime yet",
    "OomKillDisable": "labkit-runtime cannot disable the OOM killer (memory.oom_control) yet",
    "CpuCount": "CpuCount is a Windows option",
    "CpuPercent": "CpuPercent is a Windows option",
    "IOMaximumIOps": "IOMaximumIOps is a Windows option",
    "IOMaximumBandwidth": "IOMaximumBandwidth is a Windows option",
    "StorageOpt": "storage options (overlay quota) are not applied by labkit",
    "VolumeDriver": "volume drivers are not offered",
}
THROTTLES = {"BlkioDeviceReadBps": "throttleReadBpsDevice",
             "BlkioDeviceWriteBps": "throttleWriteBpsDevice",
             "BlkioDeviceReadIOps": "throttleReadIOPSDevice",
             "BlkioDeviceWriteIOps": "throttleWriteIOPSDevice"}


# Applied through the runtime's cgroup Resources where it has the field (cgroup v1 only):
# HostConfig field -> Resources slot.
_V1_MEMORY = {"MemorySwappiness": "memory_swappiness", "OomKillDisable": "oom_kill_disable"}
_V2_DISCARDED = {  # moby verifyPlatformContainerResources, where the kernel has no such file
    "MemorySwappiness": "Your kernel does not support memory swappiness capabilities or the "
                        "cgroup is not mounted. Memory swappiness discarded.",
    "OomKillDisable": "Your kernel does not support OomKillDisable. OomKillDisable discarded."}


def runtime_applies(slot: str) -> bool:
    """Whether labkit's cgroup Resources (what labkit-runtime applies) has ``slot``."""
    from labkit.cgroups.base import Resources
    return slot in getattr(Resources, "__slots__", ())


def _memory_v1(host: dict[str, Any], cgroup_v2: bool, warnings: list[str]) -> None:
    """MemorySwappiness and OomKillDisable: applied on v1 when the runtime can, discarded
    with Docker's warning on v2 (no such cgroup files), refused otherwise."""
    for key, slot in _V1_MEMORY.items():
        val = host.get(key)
        if val in (None, -1, False):
            continue  # unset (the CLI's -1 / false)
        if key == "MemorySwappiness" and not 0 <= val <= 100:
            raise _bad(f"HostConfig.{key}", f"Invalid value: {val}, valid memory swappiness "
                                            "range is 0-100")
        if cgroup_v2:
            warnings.append(_V2_DISCARDED[key])
            host[key] = None if key == "MemorySwappiness" else False
        elif not runtime_applies(slot):
            raise _bad(f"HostConfig.{key}", f"{key} is not supported by labkit: "
                                            f"{_NOT_APPLIED[key]}")


def check_resources(host: dict[str, Any], cgroup_v2: bool = False,
                    warnings: list[str] | None = None) -> None:
    """Refuse the resource fields labkit does not apply; check the blkio throttles."""
    _memory_v1(host, cgroup_v2, warnings if warnings is not None else [])
    for key, why in _NOT_APPLIED.items():
        val = host.get(key)
        if key in _V1_MEMORY:
            continue  # _memory_v1's
        if val not in (None, 0, "", False, [], {}):
            raise _bad(f"HostConfig.{key}", f"{key} is not supported by labkit: {why}")
    if (host.get("Isolation") or "default") != "default":
        raise _bad("Isolation", f"Invalid isolation: {host['Isolation']!r} - linux only "
                                "supports 'default'")
    if host.get("Runtime") not in (None, ""):
        raise _bad("Runtime", f"Unknown runtime specified {host['Runtime']}",
                   hint="labkit runs every container with labkit-runtime")
    for key in THROTTLES:
        for i, ent in enumerate(host.get(key) or []):
            w = f"HostConfig.{key}[{i}]"
            if not isinstance(ent, dict) or not isinstance(ent.get("Path"), str):
                raise _bad(w, "must be an object {Path, Rate}")
            rate = ent.get("Rate")
            if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
                raise _bad(w, "Rate must be a non-negative integer")
            try:
                st = os.stat(ent["Path"])
            except OSError as err:
                raise _bad(w, f"{ent['Path']}: {err.strerror}") from None
            if not stat.S_ISBLK(st.st_mode):
                raise _bad(w, f"{ent['Path']} is not a block device")


# What `docker inspect` shows for the fields a create body left out (moby's zero values),
# so templates like {{.HostConfig.PidMode}} print "" rather than "<no value>".
INSPECT_DEFAULTS: dict[str, Any] = {
    "CapAdd": None, "CapDrop": None, "GroupAdd": None, "OomScoreAdj": 0, "PidMode": "",
    "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None,
    "UTSMode": "", "UsernsMode": "", "Isolation": "", "CpuShares": 0, "Memory": 0,
    "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
    "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None,
    "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
    "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemory": 0,
    "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
    "OomKillDisable": False, "PidsLimit": None, "Ulimits": None, "CpuCount": 0,
    "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
}


# -- POST /containers/{id}/update ----------------------------------------------------------
# moby UpdateConfig = Resources + RestartPolicy.  labkit applies these to a running
# container (cgroup files through the supervisor) and to the record:
UPDATE_APPLIED = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuQuota",
                  "CpuPeriod", "CpuShares", "PidsLimit", "CpusetCpus", "CpusetMems",
                  "RestartPolicy")
# ... and refuses these when they ask for anything (the CLI sends every field, zero when
# the flag was not given, so a zero value asks for nothing):
UPDATE_REFUSED = ("CgroupParent", "BlkioWeight", "BlkioWeightDevice", "BlkioDeviceReadBps",
                  "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
                  "CpuRealtimePeriod", "CpuRealtimeRuntime", "Devices", "DeviceCgroupRules",
                  "DeviceRequests", "KernelMemory", "KernelMemoryTCP", "MemorySwappiness",
                  "OomKillDisable", "Ulimits", "CpuCount", "CpuPercent", "IOMaximumIOps",
                  "IOMaximumBandwidth")


def _asks(key: str, value: Any) -> bool:
    if key == "MemorySwappiness" and value == -1:
        return False  # the CLI's "unset"
    if key == "RestartPolicy" and isinstance(value, dict):
        return bool(value.get("Name") or value.get("MaximumRetryCount"))
    return value not in (None, 0, "", False) and value != [] and value != {}


def update_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of an update body that change something; 400 naming any field that
    labkit cannot change (or does not know) but that asks for a change."""
    refused = sorted(k for k, v in body.items() if _asks(k, v) and k not in UPDATE_APPLIED)
    if refused:
        unknown = [k for k in refused if k not in UPDATE_REFUSED]
        why = (f"unknown update field(s) {', '.join(unknown)}" if unknown else
               "labkit cannot change these on an existing container")
        raise _bad(", ".join(refused), f"cannot update {', '.join(refused)}: {why}",
                   hint="updatable: " + ", ".join(UPDATE_APPLIED))
    out = {k: v for k, v in body.items() if k in UPDATE_APPLIED and _asks(k, v)}
    if body.get("PidsLimit") is not None:  # a pointer in moby: 0 and -1 mean unlimited
        out["PidsLimit"] = body["PidsLimit"]
    return out

