"""Which cgroup layout this host has, detected once per root from statfs(2) magics.

The same test as youki's get_cgroup_setup_with_root, runc's IsCgroup2UnifiedMode and crun's
libcrun_get_cgroup_mode (cgroups(7), "Cgroups version 1 and version 2"):

* root is cgroup2 (CGROUP2_SUPER_MAGIC)                          -> UNIFIED
* root is a tmpfs, root/unified is cgroup2                       -> HYBRID (v1 controllers,
  plus a v2 hierarchy that holds no controllers; labkit uses v1)
* root is a tmpfs of v1 controller mounts                        -> LEGACY

For fake trees in tests, pass ``fstype=`` (a function path -> magic) or skip detection by
giving the mode to open_cgroup(); tests/fakes/cgroups.py (marker_fstype) derives the magic from
marker files so a tmp_path tree can be "detected" too.
"""

from __future__ import annotations

import enum
import os

from labkit import errors

# pathlib (~2.4 ms with urllib.parse) and typing (~1.5 ms) stay off labkit-runtime's start
# path: paths are str inside; DEFAULT_ROOT and controllers() give pathlib.Paths on demand.
# Not typing's TYPE_CHECKING; mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    StrPath = str | os.PathLike[str]
    FsType = Callable[[str], int]
    DEFAULT_ROOT: Path

__all__ = ["DEFAULT_ROOT", "Mode", "controllers", "detect_mode"]

_DEFAULT_ROOT = "/sys/fs/cgroup"


def __getattr__(name: str) -> Any:
    # PEP 562: DEFAULT_ROOT is Path("/sys/fs/cgroup"), made (and pathlib imported) on use.
    if name == "DEFAULT_ROOT":
        from pathlib import Path

        return Path(_DEFAULT_ROOT)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# include/uapi/linux/magic.h (repeated here so importing this module does not load ctypes)
_CGROUP_SUPER_MAGIC = 0x0027E0EB
_CGROUP2_SUPER_MAGIC = 0x63677270
_TMPFS_MAGIC = 0x01021994

# Mount options of a v1 cgroup mount that are not controller names (cgroup-v1/cgroups.rst).
_V1_NON_CONTROLLER_OPTS = {
    "rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "none", "noprefix",
    "clone_children", "xattr", "cpuset_v2_mode", "favordynmods",
}


class Mode(enum.Enum):
    """The three layouts of cgroups(7)."""

    UNIFIED = "unified"  # cgroup v2 only
    HYBRID = "hybrid"  # v1 controllers + an empty v2 hierarchy at root/unified
    LEGACY = "legacy"  # cgroup v1 only


_cache: dict[str, Mode] = {}


def _default_fstype(path: str) -> int:
    # Imported here: labkit._sys.fs loads ctypes, which labkit-runtime only pays for when
    # it really has to detect (not when a mode is passed in).
    from labkit._sys.fs import statfs_type

    return statfs_type(path)


def detect_mode(root: StrPath = _DEFAULT_ROOT, *, fstype: FsType | None = None) -> Mode:
    """statfs(2) on ``root`` and ``root/unified``: which cgroup layout is mounted there.

    The result is cached per root when the real statfs is used (crun caches it too).

    Raises:
        UnsupportedError: ``root`` is not a cgroup mount (no cgroupfs mounted there).
    """
    key = os.fspath(root)
    if fstype is None and key in _cache:
        return _cache[key]
    probe = fstype or _default_fstype
    try:
        magic = probe(key)
    except FileNotFoundError:
        raise errors.UnsupportedError(
            "cgroups", f"{key} does not exist", hint="mount cgroup2 there, or use the VM: labkit vm"
        ) from None
    if magic == _CGROUP2_SUPER_MAGIC:
        mode = Mode.UNIFIED
    elif magic in (_TMPFS_MAGIC, _CGROUP_SUPER_MAGIC):
        try:
            unified = probe(os.path.join(key, "unified"))
        except FileNotFoundError:
            unified = 0
        mode = Mode.HYBRID if unified == _CGROUP2_SUPER_MAGIC else Mode.LEGACY
    else:
        raise errors.UnsupportedError(
            "cgroups", f"{key} is not a cgroup mount (statfs magic {magic:#x})",
            hint="mount -t cgroup2 none /sys/fs/cgroup, or use the VM: labkit vm",
        )
    if fstype is None:
        _cache[key] = mode
    return mode


def _v1_from_mountinfo(root: StrPath, mountinfo: StrPath) -> dict[str, str]:
    # proc(5) /proc/PID/mountinfo: "... mountpoint opts ... - fstype source superopts".
    out: dict[str, str] = {}
    try:
        with open(mountinfo) as f:
            text = f.read()
    except OSError:
        return out
    prefix = os.fspath(root).rstrip("/") + "/"
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3 or rfields[0] != "cgroup":
            continue
        # Mount points escape spaces as \040; cgroup mounts never have them in practice.
        point = fields[4]
        if not point.startswith(prefix):
            continue
        for opt in rfields[2].split(","):
            if opt in _V1_NON_CONTROLLER_OPTS or opt.startswith("release_agent="):
                continue
            out.setdefault(opt, point)
    return out


def _v1_from_dirs(root: StrPath) -> dict[str, str]:
    # A fake tree (or a host whose mountinfo we cannot read): each directory is a
    # hierarchy; "cpu,cpuacct" names a co-mount, "systemd" is the named hierarchy.
    out: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return out
    for entry in entries:
        if entry.name == "unified" or not entry.is_dir(follow_symlinks=True):
            continue
        target = os.path.realpath(entry.path)
        for name in entry.name.split(","):
            key = "name=systemd" if name == "systemd" else name
            out.setdefault(key, target)
    return out


def controllers(
    root: StrPath = _DEFAULT_ROOT,
    *,
    mode: Mode | None = None,
    mountinfo: StrPath = "/proc/self/mountinfo",
) -> dict[str, Path]:
    """Controllers available under ``root``: name -> where its hierarchy is mounted.

    v1 (LEGACY, HYBRID): read from ``mountinfo`` (cgroup mounts under ``root``), falling
    back to the directories of ``root`` for fake trees.  v2: ``root/cgroup.controllers``,
    every name mapping to ``root``.
    """
    from pathlib import Path

    mode = mode or detect_mode(root)
    if mode is Mode.UNIFIED:
        try:
            with open(os.path.join(root, "cgroup.controllers")) as f:
                names = f.read().split()
        except FileNotFoundError:
            names = []
        return {n: Path(root) for n in names}
    return {n: Path(d) for n, d in _controller_dirs(root, mountinfo).items()}


def _controller_dirs(root: StrPath, mountinfo: StrPath) -> dict[str, str]:
    """controllers() for v1, as str paths (the V1Cgroup backend's start-path version)."""
    return _v1_from_mountinfo(root, mountinfo) or _v1_from_dirs(root)
