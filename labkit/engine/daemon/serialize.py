"""JSON shapes for /version, /info and images, as dockerd returns them (API v1.41)."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

import labkit
from labkit.engine import paths
from labkit.engine.containers.record import rfc3339

__all__ = ["API_VERSION", "image_inspect", "image_summary", "info", "version"]

API_VERSION = "1.41"
MIN_API_VERSION = "1.12"


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _cgroup_version() -> str:
    from labkit.cgroups.detect import Mode, detect_mode
    try:
        return "2" if detect_mode() is Mode.UNIFIED else "1"
    except Exception:  # noqa: BLE001 - info must answer anyway
        return "1"


def version() -> dict[str, Any]:
    v = f"{labkit.__version__}-labkit"
    details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
               "Os": "linux", "Arch": "amd64", "KernelVersion": platform.release(),
               "GitCommit": "labkit", "GoVersion": f"python{platform.python_version()}",
               "BuildTime": "", "Experimental": "false"}
    return {"Platform": {"Name": "labkit Engine"}, "Version": v,
            "Components": [{"Name": "Engine", "Version": v, "Details": details}], **details,
            "Experimental": False}


def info(engine: Any) -> dict[str, Any]:
    recs = engine.store.all()
    counts = {s: sum(1 for r in recs if r.status == s) for s in ("running", "paused")}
    return {
        "ID": "labkit", "Containers": len(recs), "ContainersRunning": counts["running"],
        "ContainersPaused": counts["paused"],
        "ContainersStopped": len(recs) - counts["running"] - counts["paused"],
        "Images": len(engine.images.list()), "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "ipvlan", "macvlan", "null"], "Log": ["fluentd", "gelf", "json-file", "local", "none", "syslog"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": True, "PidsLimit": True, "IPv4Forwarding": True, "Debug": False,
        "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": False,
        "NGoroutines": 0, "SystemTime": rfc3339(__import__("time").time()),
        "LoggingDriver": engine.config.log_driver, "CgroupDriver": "cgroupfs",
        "CgroupVersion": _cgroup_version(), "NEventsListener": len(engine.bus.subscribers),
        "KernelVersion": platform.release(), "OperatingSystem": _os_name(),
        "OSVersion": "", "OSType": "linux", "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": _registry_config(engine),
        "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(),
        "DockerRootDir": str(paths.root()), "Name": socket.gethostname(), "Labels": [],
        "ExperimentalBuild": False, "ServerVersion": f"{labkit.__version__}-labkit",
        "Runtimes": {"labkit-runtime": {"path": "labkit-runtime"}},
        "DefaultRuntime": "labkit-runtime", "LiveRestoreEnabled": True, "Isolation": "",
        "InitBinary": "tini-static", "SecurityOptions": ["name=seccomp,profile=default"],
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "Warnings": [f"WARNING: container {cid}: record unreadable, moved aside to {what}"
                     for cid, what in sorted(engine.store.unreadable.items())],
    }


def _registry_config(engine: Any) -> dict[str, Any]:
    from labkit.engine.registry.endpoints import registry_config
    return registry_config(engine.config)


def image_summary(img: Any) -> dict[str, Any]:
    return {"Id": img.id, "ParentId": "", "RepoTags": list(img.tags), "RepoDigests": [],
            "Created": 0, "Size": img.size, "VirtualSize": img.size, "SharedSize": -1,
            "Labels": {}, "Containers": -1}


def image_inspect(img: Any) -> dict[str, Any]:
    cfg = img.config
    return {"Id": img.id, "RepoTags": list(img.tags), "RepoDigests": [], "Parent": "",
            "Comment": "", "Created": cfg.get("created", ""), "Container": "",
            "ContainerConfig": {}, "DockerVersion": "", "Author": "",
            "Config": cfg.get("config", {}), "Architecture": cfg.get("architecture", "amd64"),
            "Os": cfg.get("os", "linux"), "Size": img.size, "VirtualSize": img.size,
            "GraphDriver": {"Name": "overlay2",
                            "Data": {"LowerDir": ":".join(str(p) for p in img.layers)}},
            "RootFS": {"Type": "layers", "Layers": cfg.get("rootfs", {}).get("diff_ids", [])},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"}}
