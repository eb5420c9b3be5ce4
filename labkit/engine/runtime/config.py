"""Load and strictly validate a bundle's config.json before anything is touched.

Every check names the field the way the spec spells it ("linux.namespaces[2].type") so a
user can find it in their file.  Validation only reads: when it fails, nothing outside the
bundle has changed.  Unknown mount *types* are not an error (the kernel decides), unknown
namespace types, signals, rlimits and capabilities are.  See config.md, config-linux.md.
"""

from __future__ import annotations

import os

# typing costs ~1.5 ms to import; annotations are strings here (PEP 563), and mypy treats
# any name TYPE_CHECKING as true (the same trick as labkit.ns).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from labkit import errors
from labkit._sys import fastjson
from labkit._sys.consts import OCI_NS_NAMES
from labkit.engine.runtime import hooks as hookmod
from labkit.ns.spec import IdMap, NamespaceSpec

# The parent of every container's cgroup when config.json names none (as Docker uses
# /docker): created on first use and shared by all containers, so kept afterwards.
CGROUP_PARENT = "lk"

_RLIMITS = ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
            "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
            "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
            "RLIMIT_RTPRIO", "RLIMIT_RTTIME")
_PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared",
                 "unbindable", "runbindable")
_TYPES = {dict: "an object", list: "an array", str: "a string", int: "an integer",
          bool: "a boolean"}


def _bad(what: str, problem: str, hint: str | None = None) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(what, problem, hint)


def want(obj: dict[str, Any], key: str, typ: type, what: str, required: bool = False) -> Any:
    """obj[key] checked against ``typ`` (bool is not an int); None when absent and optional."""
    val = obj.get(key)
    if val is None:
        if required:
            raise _bad(f"{what}.{key}".lstrip("."), "is required")
        return None
    ok = isinstance(val, typ) and not (typ is int and isinstance(val, bool))
    if not ok:
        raise _bad(f"{what}.{key}".lstrip("."),
                   f"must be {_TYPES.get(typ, typ.__name__)}, not {type(val).__name__}")
    return val


def _strs(obj: dict[str, Any], key: str, what: str) -> list[str]:
    val = want(obj, key, list, what) or []
    for i, s in enumerate(val):
        if not isinstance(s, str):
            raise _bad(f"{what}.{key}[{i}]", f"must be a string, not {type(s).__name__}")
    return val


class Config:
    """A validated config.json plus what the runtime derives from it (read-only by convention)."""

    __slots__ = ("bundle", "cgroup_name", "namespaces", "raw", "rootfs", "terminal")

    def __init__(self, raw: dict[str, Any], bundle: str, rootfs: str, namespaces: NamespaceSpec,
                 cgroup_name: str, terminal: bool) -> None:
        self.raw = raw
        self.bundle = bundle
        self.rootfs = rootfs
        self.namespaces = namespaces
        self.cgroup_name = cgroup_name
        self.terminal = terminal

    @property
    def process(self) -> dict[str, Any]:
        p: dict[str, Any] = self.raw["process"]
        return p

    @property
    def linux(self) -> dict[str, Any]:
        return self.raw.get("linux") or {}

    @property
    def hooks(self) -> dict[str, Any]:
        h: dict[str, Any] = self.raw.get("hooks") or {}
        return h


def load(bundle: str, container_id: str) -> Config:
    """Read and validate ``bundle``/config.json.

    Raises NotFoundError (no config.json), InvalidArgumentError naming the bad field.
    """
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise errors.NotFoundError("config.json", path, hint="run `labkit-runtime spec` in the bundle") from None
    # fastjson, not json: json pulls in re and costs ~4 ms on every start.
    raw = fastjson.loads(data, what=path)  # InvalidArgumentError "PATH: not valid JSON: ..."
    return validate(raw, bundle, container_id)


def validate(raw: Any, bundle: str, container_id: str) -> Config:
    """Check ``raw`` (parsed config.json) field by field; see load()."""
    if not isinstance(raw, dict):
        raise _bad("config.json", "must be a JSON object")
    want(raw, "ociVersion", str, "", required=True)
    root = want(raw, "root", dict, "", required=True)
    rpath = want(root, "path", str, "root", required=True)
    want(root, "readonly", bool, "root")
    rootfs = os.path.normpath(os.path.join(bundle, rpath))
    if not os.path.isdir(rootfs):
        raise _bad("root.path", f"rootfs {rootfs} does not exist or is not a directory",
                   hint="put the root filesystem there (labkit.engine.images.busybox.build_rootfs)")
    process = want(raw, "process", dict, "", required=True)
    _process(process)
    want(raw, "hostname", str, "")
    want(raw, "domainname", str, "")
    mounts = want(raw, "mounts", list, "") or []
    for i, m in enumerate(mounts):
        w = f"mounts[{i}]"
        if not isinstance(m, dict):
            raise _bad(w, "must be an object")
        dest = want(m, "destination", str, w, required=True)
        if not dest.startswith("/"):
            raise _bad(f"{w}.destination", f"{dest!r} must be an absolute path")
        want(m, "type", str, w)
        want(m, "source", str, w)
        _strs(m, "options", w)
    hookmod.validate(raw.get("hooks"))
    linux = want(raw, "linux", dict, "") or {}
    ns = _namespaces(raw, linux)
    cgpath = want(linux, "cgroupsPath", str, "linux") or f"{CGROUP_PARENT}/{container_id}"
    for key in ("maskedPaths", "readonlyPaths"):
        _strs(linux, key, "linux")
    prop = want(linux, "rootfsPropagation", str, "linux")
    if prop and prop not in _PROPAGATIONS:
        raise _bad("linux.rootfsPropagation", f"unknown propagation {prop!r}",
                   hint=f"one of {', '.join(_PROPAGATIONS)}")
    sysctl = want(linux, "sysctl", dict, "linux") or {}
    for k, v in sysctl.items():
        if not isinstance(v, str):
            raise _bad(f"linux.sysctl.{k}", "must be a string")
    want(linux, "resources", dict, "linux")
    for i, dev in enumerate(want(linux, "devices", list, "linux") or []):
        w = f"linux.devices[{i}]"
        if not isinstance(dev, dict):
            raise _bad(w, "must be an object")
        want(dev, "path", str, w, required=True)
        if want(dev, "type", str, w, required=True) not in ("c", "b", "u", "p"):
            raise _bad(f"{w}.type", f"unknown device type {dev['type']!r}")
        for key in ("major", "minor", "fileMode", "uid", "gid"):
            want(dev, key, int, w)
    seccomp = want(linux, "seccomp", dict, "linux")
    if seccomp is not None:
        want(seccomp, "defaultAction", str, "linux.seccomp", required=True)
    return Config(raw, bundle, rootfs, ns, cgpath.lstrip("/"),
                  bool(process.get("terminal", False)))


def _process(p: dict[str, Any]) -> None:
    w = "process"
    args = _strs(p, "args", w)
    if not args:
        raise _bad("process.args", "must name a program to run (a non-empty array)")
    _strs(p, "env", w)
    cwd = want(p, "cwd", str, w, required=True)
    if not cwd.startswith("/"):
        raise _bad("process.cwd", f"{cwd!r} must be an absolute path")
    want(p, "terminal", bool, w)
    want(p, "noNewPrivileges", bool, w)
    want(p, "oomScoreAdj", int, w)
    # process.apparmorProfile and process.selinuxLabel are accepted and ignored: this host
    # enforces neither LSM for containers, and labkit's isolation is namespaces, cgroups,
    # capabilities and seccomp (runc applies them only when the LSM is enabled, too).
    want(p, "apparmorProfile", str, w)
    want(p, "selinuxLabel", str, w)
    user = want(p, "user", dict, w) or {}
    for key in ("uid", "gid", "umask"):
        v = want(user, key, int, "process.user")
        if v is not None and v < 0:
            raise _bad(f"process.user.{key}", "must not be negative")
    for i, g in enumerate(want(user, "additionalGids", list, "process.user") or []):
        if not isinstance(g, int) or isinstance(g, bool) or g < 0:
            raise _bad(f"process.user.additionalGids[{i}]", "must be a non-negative integer")
    caps = want(p, "capabilities", dict, w) or {}
    from labkit._sys.caps import mask
    for key in ("bounding", "effective", "inheritable", "permitted", "ambient"):
        mask(_strs(caps, key, "process.capabilities"), f"process.capabilities.{key}")
    for i, rl in enumerate(want(p, "rlimits", list, w) or []):
        rw = f"process.rlimits[{i}]"
        if not isinstance(rl, dict):
            raise _bad(rw, "must be an object")
        typ = want(rl, "type", str, rw, required=True)
        if typ not in _RLIMITS:
            raise _bad(f"{rw}.type", f"unknown rlimit {typ!r}", hint="see getrlimit(2)")
        soft = want(rl, "soft", int, rw, required=True)
        hard = want(rl, "hard", int, rw, required=True)
        if soft > hard:
            raise _bad(rw, f"soft limit {soft} is above hard limit {hard}")


def _no_mount_namespace(raw: dict[str, Any], linux: dict[str, Any]) -> None:
    # config-linux.md: a namespace type left out is inherited from the runtime.  Without a
    # mount namespace of its own every mount would land in the host's table and outlive the
    # container, so the container is only chroot(2)ed into root.path (runc falls back to
    # chroot too), and what needs a mount is refused by name (runc refuses maskedPaths).
    needs = (("mounts", raw.get("mounts")), ("root.readonly", (raw.get("root") or {}).get("readonly")),
             ("linux.maskedPaths", linux.get("maskedPaths")),
             ("linux.readonlyPaths", linux.get("readonlyPaths")),
             ("linux.devices", linux.get("devices")),
             ("linux.rootfsPropagation", linux.get("rootfsPropagation")))
    for field, val in needs:
        if val:
            raise _bad(field, "needs a mount namespace: without one (none in linux.namespaces) "
                       "it would change the host's mounts",
                       hint='add {"type": "mount"} to linux.namespaces, or drop the field')
    bounding = ((raw.get("process") or {}).get("capabilities") or {}).get("bounding") or []
    if "CAP_SYS_CHROOT" in bounding:
        # chroot(2) NOTES: a process that may call chroot can leave a chroot (chroot into a
        # subdirectory, then walk up with ".."), and here the chroot is all there is.
        raise _bad("process.capabilities.bounding",
                   "CAP_SYS_CHROOT would let the container leave its root: without a mount "
                   "namespace (none in linux.namespaces) the root is only a chroot",
                   hint='drop CAP_SYS_CHROOT, or add {"type": "mount"} to linux.namespaces')


def own_mounts(cfg: Config) -> bool:
    """True when the container has a mount namespace (new or joined): pivot_root and mounts;
    False: a chroot in the runtime's mount namespace (see _no_mount_namespace)."""
    return "mnt" in cfg.namespaces.new or "mnt" in cfg.namespaces.join


def joined_uts_names(cfg: Config) -> tuple[str | None, str | None]:
    """(hostname, domainname) init sets itself: those of a UTS namespace joined by path
    (a new one gets them from labkit.ns.apply.child_enter)."""
    if "uts" not in cfg.namespaces.join:
        return None, None
    return cfg.raw.get("hostname") or None, cfg.raw.get("domainname") or None


def _namespaces(raw: dict[str, Any], linux: dict[str, Any]) -> NamespaceSpec:
    new: set[str] = set()
    join: dict[str, str] = {}
    for i, ent in enumerate(want(linux, "namespaces", list, "linux") or []):
        w = f"linux.namespaces[{i}]"
        if not isinstance(ent, dict):
            raise _bad(w, "must be an object")
        typ = want(ent, "type", str, w, required=True)
        kind = OCI_NS_NAMES.get(typ)
        if kind is None:
            raise _bad(f"{w}.type", f"unknown namespace type {typ!r}",
                       hint=f"one of {', '.join(OCI_NS_NAMES)}")
        if kind in new or kind in join:
            raise _bad(f"{w}.type", f"namespace type {typ!r} listed twice")
        path = want(ent, "path", str, w)
        if path:
            if not os.path.exists(path):
                raise _bad(f"{w}.path", f"{path} does not exist")
            join[kind] = path
        else:
            new.add(kind)
    if "mnt" not in new and "mnt" not in join:
        _no_mount_namespace(raw, linux)
    maps: dict[str, tuple[IdMap, ...]] = {}
    for key in ("uidMappings", "gidMappings"):
        out = []
        for i, m in enumerate(want(linux, key, list, "linux") or []):
            w = f"linux.{key}[{i}]"
            if not isinstance(m, dict):
                raise _bad(w, "must be an object")
            out.append(IdMap(want(m, "containerID", int, w, required=True),
                             want(m, "hostID", int, w, required=True),
                             want(m, "size", int, w, required=True)))
        maps[key] = tuple(out)
    if (maps["uidMappings"] or maps["gidMappings"]) and "user" not in new:
        raise _bad("linux.uidMappings", "id mappings need a new user namespace",
                   hint='add {"type": "user"} to linux.namespaces')
    hostname = raw.get("hostname")
    for key in ("hostname", "domainname"):
        if raw.get(key) and "uts" not in new and "uts" not in join:
            # crun: "hostname requires the UTS namespace"; changing the host's name is a bug.
            # In a UTS namespace joined by path, init sets it there (joined_uts_names).
            raise _bad(key, f"setting the {key} requires a new or joined UTS namespace",
                       hint='add {"type": "uts"} to linux.namespaces')
    offsets: dict[str, int] = {}
    for clock, val in (want(linux, "timeOffsets", dict, "linux") or {}).items():
        if not isinstance(val, dict):
            raise _bad(f"linux.timeOffsets.{clock}", "must be an object")
        offsets[clock] = want(val, "secs", int, f"linux.timeOffsets.{clock}") or 0
    return NamespaceSpec(
        new=frozenset(new), join=join,
        hostname=hostname or None if "uts" in new else None,
        domainname=raw.get("domainname") or None if "uts" in new else None,
        uid_map=maps["uidMappings"], gid_map=maps["gidMappings"],
        # With mappings but no CAP_SETGID over the parent ns, gid_map needs setgroups=deny;
        # as root we keep setgroups usable (additionalGids need it).
        setgroups_deny=False, time_offsets=offsets,
        # The runtime's init applies linux.rootfsPropagation itself (runc: rslave by default).
        propagation="unchanged")
