"""Check the HostConfig options that shape the container's kernel view, as dockerd does at create.

Every option here is either applied by ocispec/ocihost (into config.json) or refused with
an InvalidArgumentError naming it (400); where Docker only warns (an AppArmor profile or an
SELinux label on a host with neither LSM) the warning goes into the create response's
``Warnings``.  Wording follows moby (daemon/daemon_unix.go verifyPlatformContainerSettings,
daemon/container.go verifyContainerSettings, runconfig, runc's sysctl validator).

``check(host, config)`` returns the warnings and fills in Docker's create-time defaults in
``host`` (IpcMode "private", ShmSize 64 MiB, CgroupnsMode, Masked/ReadonlyPaths), so inspect
prints what dockerd would.
"""

from __future__ import annotations

import os
import re
from typing import Any

from labkit import errors
from labkit.engine.containers.resopts import INSPECT_DEFAULTS, check_cpuset, check_resources

__all__ = [
    "DEFAULT_SHM_SIZE",
    "ULIMITS",
    "SecurityOpts",
    "check",
    "parse_security_opts",
]

DEFAULT_SHM_SIZE = 64 * 1024 * 1024  # moby config.DefaultShmSize
# go-units ulimitNameMapping: the names `--ulimit` and HostConfig.Ulimits know.
ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
           "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
# runc libcontainer/configs/validate sysctl(): what each namespace makes safe to write.
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")
UTS_SYSCTLS = ("kernel.domainname", "kernel.hostname")
_RULE_RE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")  # moby devices
_CGROUP_PARENT_RE = re.compile(r"^[A-Za-z0-9_.@:/-]+$")
_TMPFS_FLAGS = frozenset((
    "ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "sync", "async",
    "dirsync", "atime", "noatime", "diratime", "nodiratime", "relatime", "norelatime",
    "strictatime", "nostrictatime", "private", "rprivate", "shared", "rshared", "slave",
    "rslave", "unbindable", "runbindable", "defaults"))
_TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol", "huge")
_LABEL_KEYS = ("user", "role", "type", "level", "filetype")
_TMPFS_VALUE_RE = re.compile(r"^[A-Za-z0-9:._%+-]+$")  # no separators or NULs for mount(2)


def _bad(what: str, problem: str, hint: str | None = None) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(what, problem, hint)


# -- SecurityOpt ---------------------------------------------------------------------------
class SecurityOpts:
    """HostConfig.SecurityOpt parsed (moby daemon/create.go parseSecurityOpt)."""

    __slots__ = ("apparmor", "labels", "no_new_privileges", "seccomp")

    def __init__(self) -> None:
        self.no_new_privileges = False  # Docker's default: setuid binaries work
        self.seccomp: str | None = None  # None: the default profile; "unconfined"; or JSON
        self.apparmor: str | None = None
        self.labels: list[str] = []


def _go_bool(text: str) -> bool | None:
    """strconv.ParseBool."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    return None


def parse_security_opts(opts: list[str] | None) -> SecurityOpts:
    """Parse every entry; InvalidArgumentError with moby's wording for a malformed one."""
    out = SecurityOpts()
    for opt in opts or []:
        if opt == "no-new-privileges":
            out.no_new_privileges = True
            continue
        if opt == "disable":
            out.labels.append("disable")
            continue
        sep = "=" if "=" in opt else ":" if ":" in opt else ""
        if not sep:
            raise _bad("SecurityOpt", f'invalid --security-opt 1: "{opt}"')
        key, value = opt.split(sep, 1)
        if key == "label":
            out.labels.append(value)
        elif key == "apparmor":
            out.apparmor = value
        elif key == "seccomp":
            out.seccomp = value
        elif key == "no-new-privileges":
            flag = _go_bool(value)
            if flag is None:
                raise _bad("SecurityOpt", f'invalid --security-opt 2: "{opt}"')
            out.no_new_privileges = flag
        else:
            raise _bad("SecurityOpt", f'invalid --security-opt 2: "{opt}"')
    return out


def _lsm_enabled(name: str) -> bool:
    if name == "apparmor":
        try:
            with open("/sys/module/apparmor/parameters/enabled") as f:
                return f.read().strip() == "Y"
        except OSError:
            return False
    return os.path.exists("/sys/fs/selinux/enforce")


def _check_security(host: dict[str, Any], warnings: list[str]) -> None:
    sec = parse_security_opts(host.get("SecurityOpt"))
    if sec.seccomp not in (None, "unconfined"):
        from labkit.engine.containers.seccompconv import parse_profile
        parse_profile(sec.seccomp)  # 400 now, not a failed start later
        if host.get("Privileged"):
            warnings.append("labkit: a privileged container runs without seccomp (as with "
                            "Docker): the seccomp profile in SecurityOpt is not applied")
    for lab in sec.labels:
        key, _, value = lab.partition(":")
        if lab not in ("disable", "nested") and (key not in _LABEL_KEYS or not value):
            raise _bad("SecurityOpt", f'Bad label option "{lab}", valid options \'disable\' or '
                                      "'user, role, level, type, filetype' followed by ':' "
                                      "and a value")
    if any(lab != "disable" for lab in sec.labels):
        if _lsm_enabled("selinux"):
            raise _bad("SecurityOpt", "SELinux labels are not applied by labkit-runtime",
                       hint="drop the label= security option")
        warnings.append("labkit: SELinux is not enabled on this host: the label security "
                        "options have no effect")
    if sec.apparmor is not None and sec.apparmor != "unconfined":
        if _lsm_enabled("apparmor"):
            raise _bad("SecurityOpt", f"AppArmor profile {sec.apparmor!r}: labkit-runtime "
                                      "does not load AppArmor profiles",
                       hint="use apparmor=unconfined or drop the option")
        warnings.append(f"labkit: AppArmor is not enabled on this host: profile "
                        f"{sec.apparmor!r} has no effect")


# -- namespaces ----------------------------------------------------------------------------
def _mode(host: dict[str, Any], key: str, what: str, allowed: tuple[str, ...],
          container_ok: bool) -> str:
    mode = host.get(key) or ""
    kind, sep, ref = mode.partition(":")
    if container_ok and kind == "container" and sep and ref:
        return mode
    if mode not in allowed:
        raise _bad(what, f"invalid {what}: {mode}")
    return mode


def _check_namespaces(host: dict[str, Any], config: dict[str, Any], cgroup_v2: bool,
                      warnings: list[str]) -> None:
    _mode(host, "PidMode", "PID mode", ("", "host"), True)
    ipc = _mode(host, "IpcMode", "IPC mode",
                ("", "none", "private", "shareable", "host"), True)
    host["IpcMode"] = ipc or "private"  # moby default-ipc-mode
    if ipc.startswith("container:"):
        warnings.append(f"labkit: IpcMode {ipc} shares the IPC namespace (System V IPC, POSIX "
                        "message queues) but not /dev/shm: the container gets its own")
    uts = _mode(host, "UTSMode", "UTS mode", ("", "host"), False)
    if uts == "host" and config.get("Hostname"):
        raise _bad("UTS mode", "conflicting options: hostname and the UTS mode")
    userns = host.get("UsernsMode") or ""
    if userns not in ("", "host"):
        if userns == "private":
            raise _bad("UsernsMode", "labkit does not remap users (no userns-remap): a "
                                     "private user namespace cannot be given",
                       hint="drop --userns, or use UsernsMode host")
        raise _bad("user namespace mode", f"invalid user namespace mode: {userns}")
    cgns = host.get("CgroupnsMode") or ""
    if cgns not in ("", "host", "private"):
        raise _bad("cgroup namespace mode", f"invalid cgroup namespace mode: {cgns}")
    host["CgroupnsMode"] = cgns or ("private" if cgroup_v2 else "host")  # moby's defaults


# -- devices, limits, mounts ------------------------------------------------------------
def _check_devices(host: dict[str, Any]) -> None:
    for i, dev in enumerate(host.get("Devices") or []):
        w = f"HostConfig.Devices[{i}]"
        if not isinstance(dev, dict):
            raise _bad(w, "must be an object {PathOnHost, PathInContainer, CgroupPermissions}")
        for key in ("PathOnHost", "PathInContainer", "CgroupPermissions"):
            if not isinstance(dev.get(key) or "", str):
                raise _bad(f"{w}.{key}", "must be a string")
        src = dev.get("PathOnHost") or ""
        dst = dev.get("PathInContainer") or src
        perms = dev.get("CgroupPermissions") or "rwm"
        if not src.startswith("/") or not dst.startswith("/"):
            raise _bad(w, f"device paths must be absolute: {src!r} -> {dst!r}")
        if ".." in dst.split("/"):
            raise _bad(f"{w}.PathInContainer", f"{dst!r} must not contain '..'")
        if set(perms) - set("rwm") or len(set(perms)) != len(perms):
            raise _bad(f"{w}.CgroupPermissions", f"invalid device mode: {perms}")
    for rule in host.get("DeviceCgroupRules") or []:
        if not _RULE_RE.match(rule):
            raise _bad("DeviceCgroupRules", f"invalid device cgroup format '{rule}'")


def _check_ulimits(host: dict[str, Any]) -> None:
    seen = set()
    for i, ul in enumerate(host.get("Ulimits") or []):
        w = f"HostConfig.Ulimits[{i}]"
        if not isinstance(ul, dict):
            raise _bad(w, "must be an object {Name, Soft, Hard}")
        name = ul.get("Name")
        if name not in ULIMITS:
            raise _bad(w, f"invalid ulimit type: {name}")
        if name in seen:
            raise _bad(w, f"ulimit {name} given twice")
        seen.add(name)
        soft, hard = ul.get("Soft", 0), ul.get("Hard", 0)
        for v in (soft, hard):
            if isinstance(v, bool) or not isinstance(v, int) or not -1 <= v < 2**63:
                raise _bad(w, f"ulimit {name}: limits must be integers >= -1 (-1: unlimited)")
        if hard == -1 or (soft != -1 and soft <= hard):
            continue
        raise _bad(w, f"ulimit soft limit must be less than or equal to hard limit: "
                      f"{soft} > {hard}")


def _check_sysctls(host: dict[str, Any]) -> None:
    for key, value in (host.get("Sysctls") or {}).items():
        if "\0" in value:
            raise _bad("Sysctls", f"sysctl {key!r}: the value holds a NUL byte")
        parts = key.split(".")
        if not key or "/" in key or "" in parts:
            raise _bad("Sysctls", f"invalid sysctl name {key!r}")
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if host.get("IpcMode") == "host":
                raise _bad("Sysctls", f"sysctl {key!r} is not allowed in the hosts ipc namespace")
        elif key.startswith("net."):
            if host.get("NetworkMode") == "host":
                raise _bad("Sysctls", f"sysctl {key!r} not allowed in host network namespace")
        elif key in UTS_SYSCTLS:
            if host.get("UTSMode") == "host":
                raise _bad("Sysctls", f"sysctl {key!r} is not allowed in the hosts uts namespace")
        else:
            raise _bad("Sysctls", f"sysctl {key!r} is not in a separate kernel namespace",
                       hint="only ipc (kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*), "
                            "net.* and kernel.hostname/domainname are namespaced")


def _check_tmpfs(host: dict[str, Any]) -> None:
    for dest, opts in (host.get("Tmpfs") or {}).items():
        if not dest.startswith("/"):
            raise _bad("Tmpfs", f'invalid mount config for type "tmpfs": invalid mount path: '
                                f"'{dest}' mount path must be absolute")
        if os.path.normpath(dest) in ("/", "//"):
            raise _bad("Tmpfs", "invalid mount config for type \"tmpfs\": destination can't "
                                "be '/'")
        if ".." in dest.split("/"):
            raise _bad("Tmpfs", f"{dest!r} must not contain '..'")
        for word in filter(None, (opts or "").split(",")):
            key, eq, _ = word.partition("=")
            value = word.partition("=")[2]
            if not (word in _TMPFS_FLAGS or (eq and key in _TMPFS_DATA
                                             and _TMPFS_VALUE_RE.match(value))):
                raise _bad("Tmpfs", f"invalid tmpfs option {word!r} for {dest}",
                           hint="tmpfs takes size=, mode=, uid=, gid=, nr_inodes= and "
                                "mount flags (ro, noexec, ...)")


def _check_paths(host: dict[str, Any]) -> None:
    from labkit.engine.runtime.spec import MASKED_PATHS, READONLY_PATHS
    for key, default in (("MaskedPaths", MASKED_PATHS), ("ReadonlyPaths", READONLY_PATHS)):
        val = host.get(key)
        if val is None:  # moby create: nil -> the default list, privileged -> none
            host[key] = None if host.get("Privileged") else list(default)
            continue
        for p in val:
            if not p.startswith("/") or ".." in p.split("/"):
                raise _bad(f"HostConfig.{key}", f"{p!r} must be an absolute path without '..'")


def _ip(text: str) -> bool:
    import ipaddress
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _check_names(host: dict[str, Any], config: dict[str, Any]) -> None:
    """Links, MAC address, /etc/hosts and resolv.conf entries."""
    if host.get("Cgroup"):
        raise _bad("HostConfig.Cgroup", "joining another container's cgroup is not offered by "
                                        "labkit", hint="use CgroupParent")
    for link in host.get("Links") or []:
        name, _, alias = link.partition(":")
        if not name.strip("/") or ":" in alias:
            raise _bad("HostConfig.Links", f"invalid link {link!r}: expected name:alias")
    for entry in host.get("ExtraHosts") or []:
        name, sep, ip = entry.partition(":")
        if ip == "host-gateway":
            continue  # the gateway of the container's first network, at start
        if not sep or not name or not _ip(ip.strip("[]")):
            raise _bad("ExtraHosts", f'invalid IP address in add-host: "{ip or entry}"')
    for ip in host.get("Dns") or []:
        if not _ip(ip):
            raise _bad("Dns", f"{ip} is not an ip address")
    for word in (host.get("DnsSearch") or []) + (host.get("DnsOptions") or []):
        if not word or any(c.isspace() for c in word):
            raise _bad("DnsSearch/DnsOptions", f"invalid resolv.conf entry {word!r}")


def check(host: dict[str, Any], config: dict[str, Any], *, cgroup_v2: bool) -> list[str]:
    """Validate ``host`` (HostConfig, already type-checked) in place; return warnings."""
    warnings: list[str] = []
    _check_security(host, warnings)
    _check_namespaces(host, config, cgroup_v2, warnings)
    shm = host.get("ShmSize") or 0
    if shm < 0:
        raise _bad("ShmSize", "SHM size can not be less than 0")
    if shm and host["IpcMode"] not in ("private", "shareable"):
        raise _bad("ShmSize", f"ShmSize sizes the container's own /dev/shm; with IpcMode "
                              f"{host['IpcMode']!r} it has none", hint="drop --shm-size")
    host["ShmSize"] = shm or DEFAULT_SHM_SIZE
    adj = host.get("OomScoreAdj") or 0
    if not -1000 <= adj <= 1000:
        raise _bad("oom score adj", f"Invalid value {adj}, range for oom score adj is "
                                    "[-1000, 1000]")
    parent = host.get("CgroupParent") or ""
    if parent and (not _CGROUP_PARENT_RE.match(parent) or ".." in parent.split("/")
                   or not parent.strip("/")):
        raise _bad("CgroupParent", f"invalid cgroup parent {parent!r}",
                   hint="a path below the cgroup root, like lk-parent or /lk/web")
    check_resources(host, cgroup_v2, warnings)
    _check_names(host, config)
    check_cpuset(host)
    _check_devices(host)
    _check_ulimits(host)
    _check_sysctls(host)
    _check_tmpfs(host)
    _check_paths(host)
    for key, value in INSPECT_DEFAULTS.items():
        if host.get(key) is None and value is not None:
            host[key] = value
        host.setdefault(key, value)
    return warnings
