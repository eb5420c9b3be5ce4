"""linux.resources.devices: which device nodes the container may create, read and write.

Without this, root in a container with CAP_MKNOD (Docker's default set) could mknod the
host's disk and read it.  labkit.cgroups leaves the devices controller to the runtime.  On a
v1 host it is the "devices" hierarchy: rules are lines "TYPE MAJOR:MINOR ACCESS" written to
devices.deny / devices.allow, applied in order (cgroup-v1/devices.rst).  A backend without
per-controller directories (cgroup v2) gets the same rules as a BPF_PROG_TYPE_CGROUP_DEVICE
program attached to the container's cgroup (devfilter.py); where that cannot be done the
container is not started.

After the config's rules come the devices every container needs, as runc appends its
AllowedDevices (libcontainer/specconv): the standard nodes, ptys, and mknod of anything (a
node that may be created but not opened is harmless).
"""

from __future__ import annotations

import errno
import os

from labkit import errors
from labkit.engine.runtime import devfilter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# (type, major, minor, access); None is the wildcard "*".
ALLOWED_DEVICES: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"), ("b", None, None, "m"),     # mknod of any node
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"),   # null zero full
    ("c", 1, 8, "rwm"), ("c", 1, 9, "rwm"),             # random urandom
    ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),   # tty console ptmx
    ("c", 136, None, "rwm"),                            # /dev/pts/*
)


def _line(typ: str, major: int | None, minor: int | None, access: str) -> str:
    return (f"{typ} {'*' if major is None else major}:{'*' if minor is None else minor} "
            f"{access}")


def parse(resources: dict[str, Any] | None) -> list[devfilter.Rule]:
    """linux.resources.devices, then ALLOWED_DEVICES, as (allow, type, major, minor, access).

    An absent type, major or minor is the wildcard (runtime-spec config-linux.md "Allowed
    Device Cgroup"); None stands for it.

    Raises InvalidArgumentError naming a malformed entry.
    """
    out: list[devfilter.Rule] = []
    for i, d in enumerate((resources or {}).get("devices") or []):
        w = f"linux.resources.devices[{i}]"
        if not isinstance(d, dict) or not isinstance(d.get("allow"), bool):
            raise errors.InvalidArgumentError(w, "must be an object with a boolean 'allow'")
        typ = d.get("type") or "a"
        access = d.get("access") or "rwm"
        if typ not in ("a", "c", "b") or not isinstance(access, str) or set(access) - set("rwm"):
            raise errors.InvalidArgumentError(w, f"bad type {typ!r} or access {access!r}")
        major, minor = d.get("major"), d.get("minor")
        for name, v in (("major", major), ("minor", minor)):
            # dev_t holds a 32-bit number each (include/linux/kdev_t.h has 12 + 20 bits)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)
                                  or not 0 <= v < 1 << 31):
                raise errors.InvalidArgumentError(f"{w}.{name}", "must be a non-negative integer")
        out.append((d["allow"], typ, major, minor, access))
    out += [(True, *dev) for dev in ALLOWED_DEVICES]
    return out


def rules(resources: dict[str, Any] | None) -> list[tuple[bool, str]]:
    """(allow?, v1 rule line) for linux.resources.devices, then ALLOWED_DEVICES.

    Raises InvalidArgumentError naming a malformed entry.
    """
    out: list[tuple[bool, str]] = []
    for allow, typ, major, minor, access in parse(resources):
        # v1's "a" is every device with every access (cgroup-v1/devices.rst)
        out.append((allow, "a" if typ == "a" else _line(typ, major, minor, access)))
    return out


def apply(cgroup: Any, resources: dict[str, Any] | None) -> bool:
    """Enforce the rules on the container's cgroup; False if the backend offers no way to.

    Feature-detected, not version-detected: a backend exposing a "devices" directory gets
    the v1 files; one with a single directory and no such controller (cgroup v2) gets the
    eBPF device filter, or an UnsupportedError saying why it cannot have one.
    """
    controller_dir = getattr(cgroup, "controller_dir", None)
    if controller_dir is not None:
        d = controller_dir("devices")  # a str: no pathlib on the start path
    else:
        dirs = getattr(cgroup, "dirs", None)
        d = dirs.get("devices") if isinstance(dirs, dict) else None
    if d is None:
        # V2Cgroup.dir is a str; .path would import pathlib on the start path
        path = getattr(cgroup, "dir", None) or getattr(cgroup, "path", None)
        if controller_dir is not None or path is None:
            return False  # per-controller hierarchies without "devices": nothing to enforce with
        devfilter.attach(os.fspath(path), parse(resources))
        return True
    todo = rules(resources)
    for allow, line in todo:
        path = os.path.join(str(d), "devices.allow" if allow else "devices.deny")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as err:
            raise errors.from_errno(err.errno or errno.EIO, f"write {os.path.basename(path)}",
                                    f"{path} <- {line}") from None
    return True
