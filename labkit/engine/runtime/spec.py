"""`labkit-runtime spec`: write a default config.json into a bundle, as `runc spec` does.

The defaults follow runc's template (config.md, config-linux.md) with Docker's capability
set and our own seccomp allow-list (labkit.engine.runtime.seccomp).
"""

from __future__ import annotations

import json
import os

# typing costs ~1.5 ms to import; annotations are strings here (PEP 563), and mypy treats
# any name TYPE_CHECKING as true (the same trick as labkit.ns).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from labkit import errors

OCI_VERSION = "1.0.2"

# Docker's default capability set (moby oci/caps/defaults.go): what ordinary images need to
# act as root *inside* the container (chown files, bind ports below 1024, switch users,
# chroot, send signals to their own processes, create device nodes that the device cgroup
# still guards, open raw sockets for ping).  Everything that reaches the host is left out:
# CAP_SYS_ADMIN (mount, namespaces), CAP_NET_ADMIN, CAP_SYS_MODULE, CAP_SYS_PTRACE,
# CAP_SYS_TIME, CAP_SYS_RAWIO, CAP_SYS_BOOT, CAP_DAC_READ_SEARCH (open_by_handle_at), ...
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

# /proc and /sys files that leak host information or let a container poke the host kernel:
# hidden (bind /dev/null over files, an empty read-only tmpfs over directories).
MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
    "/proc/scsi",
)
# Readable but not writable: kernel tunables and triggers that are not namespaced.
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _mount(dest: str, typ: str, source: str, *options: str) -> dict[str, Any]:
    m: dict[str, Any] = {"destination": dest, "type": typ, "source": source}
    if options:
        m["options"] = list(options)
    return m


def default_config(rootless: bool = False) -> dict[str, Any]:
    """The config.json `spec` writes; ``rootless`` adds a user namespace mapping our ids."""
    from labkit.engine.runtime.seccomp import default_profile

    caps = list(DEFAULT_CAPS)
    cfg: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [f"PATH={DEFAULT_PATH}", "TERM=xterm"],
            "cwd": "/",
            # Docker sets no ambient set: a non-root user gets capabilities only from files.
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "labkit",
        "mounts": [
            _mount("/proc", "proc", "proc"),
            _mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
            _mount("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance",
                   "ptmxmode=0666", "mode=0620", "gid=5"),
            _mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777",
                   "size=65536k"),
            _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
            _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
            _mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev",
                   "relatime", "ro"),
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": default_profile(),
        },
    }
    if rootless:
        _make_rootless(cfg)
    return cfg


def _make_rootless(cfg: dict[str, Any]) -> None:
    # runc spec --rootless: map our own uid/gid to root inside; no network namespace (an
    # unprivileged user cannot wire one up); sysfs cannot be mounted without a netns owned by
    # the user namespace, so bind the host's; cgroupfs and devpts gid=5 are left out.
    linux = cfg["linux"]
    linux["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")]
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
    linux.pop("resources", None)
    mounts = []
    for m in cfg["mounts"]:
        if m["destination"] == "/sys/fs/cgroup":
            continue
        if m["destination"] == "/sys":
            m = _mount("/sys", "none", "/sys", "rbind", "nosuid", "noexec", "nodev", "ro")
        if m["destination"] == "/dev/pts":
            m["options"] = [o for o in m["options"] if o != "gid=5"]
        mounts.append(m)
    cfg["mounts"] = mounts


def write_spec(bundle: str = ".", rootless: bool = False) -> str:
    """Write ``bundle``/config.json (which must not exist yet) and return its path.

    Raises AlreadyExistsError if config.json is there: never overwrite someone's config.
    """
    path = os.path.join(bundle, "config.json")
    data = json.dumps(default_config(rootless), indent=2) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise errors.AlreadyExistsError("config.json", path, hint="remove it first") from None
    except FileNotFoundError:
        raise errors.NotFoundError("bundle directory", bundle) from None
    with os.fdopen(fd, "w") as f:
        f.write(data)
    return path
