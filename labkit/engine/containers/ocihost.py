"""The HostConfig options that shape the container's kernel view -> config.json (moby oci_linux.go).

``apply`` finishes the spec ``ocispec.translate`` built: security options (no_new_privs,
seccomp), privileged mode, devices and device cgroup rules, ulimits, sysctls, the pid/ipc/
uts/cgroup namespaces (new, the host's, or another container's by /proc/PID/ns path),
/dev/shm, tmpfs mounts, oom_score_adj, masked and read-only paths, the cgroup parent and
supplementary groups.  hostopts.py has already refused what cannot be applied, so this only
maps.  I/O is limited to stat(2) of host device nodes (``device_nodes``), as dockerd does at
start; joining another container needs its pid, asked of ``peer``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

from labkit import errors
from labkit.engine.containers.hostopts import parse_security_opts

__all__ = ["Peer", "apply", "device_nodes", "store_peer"]

# peer(ref, kind) -> pid of the running container ``ref`` whose ``kind`` namespace
# ("pid" or "ipc") is joined; raises ConflictError/NotFoundError as dockerd would.
Peer = Callable[[str, str], int]
# moby oci/devices_linux.go: directories under /dev that hold no devices to pass on.
_SKIP_DIRS = ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev")


def store_peer(store: Any, running: bool) -> Peer:
    """A Peer over the engine's ContainerStore.  ``running`` (start): the container must run,
    and an IPC donor must be shareable (moby getIpcContainer/getPidContainer); otherwise
    (create) it need only exist.  Errors are 400s: a 404 would make the CLI pull an image."""
    def peer(ref: str, kind: str) -> int:
        what = f"{kind.upper()} mode"
        try:
            rec = store.get(ref)
        except errors.NotFoundError:
            raise errors.InvalidArgumentError(what, f"joining {kind.upper()} of container "
                                                    f"{ref}: No such container: {ref}") from None
        if not running:
            return 0
        if rec.status != "running" or not rec.pid:
            raise errors.InvalidArgumentError(
                what, f"cannot join {kind.upper()} of a non running container: {ref}")
        if kind == "ipc" and rec.host_config.get("IpcMode") != "shareable":
            raise errors.InvalidArgumentError(
                what, "non-shareable IPC (hint: use IpcMode:shareable for the donor container)")
        return int(rec.pid)
    return peer


def device_nodes(path: str) -> list[tuple[str, str, int, int, int, int, int]]:
    """(relative path, type, major, minor, mode, uid, gid) of the node at ``path``, or of
    every node below it when it is a directory (moby devicesFromPath).

    Raises InvalidArgumentError naming ``path`` when it is neither.
    """
    try:
        st = os.stat(path)
    except OSError as err:
        raise errors.InvalidArgumentError(
            "HostConfig.Devices", f"error gathering device information while adding custom "
                                  f"device \"{path}\": {err.strerror}") from None
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
        return [("", kind, os.major(st.st_rdev), os.minor(st.st_rdev),
                 stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)]
    if not stat.S_ISDIR(st.st_mode):
        raise errors.InvalidArgumentError(
            "HostConfig.Devices", f"error gathering device information while adding custom "
                                  f"device \"{path}\": not a device node")
    out = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if root != "/dev" or d not in _SKIP_DIRS)
        for name in sorted(files):
            full = os.path.join(root, name)
            if full == "/dev/console":
                continue
            try:
                st = os.lstat(full)
            except OSError:
                continue  # gone meanwhile (udev)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append((os.path.relpath(full, path),
                            "c" if stat.S_ISCHR(st.st_mode) else "b", os.major(st.st_rdev),
                            os.minor(st.st_rdev), stat.S_IMODE(st.st_mode), st.st_uid,
                            st.st_gid))
    return out


def _devices(spec: dict[str, Any], host: dict[str, Any]) -> None:
    linux = spec["linux"]
    rules = linux["resources"].setdefault("devices", [])
    devs = linux.setdefault("devices", [])
    if host.get("Privileged"):
        for rel, kind, major, minor, mode, uid, gid in device_nodes("/dev"):
            devs.append({"path": "/dev/" + rel, "type": kind, "major": major, "minor": minor,
                         "fileMode": mode, "uid": uid, "gid": gid})
        rules.append({"allow": True, "access": "rwm"})
    for m in host.get("Devices") or []:
        src = m["PathOnHost"]
        dst = m.get("PathInContainer") or src
        perms = m.get("CgroupPermissions") or "rwm"
        for rel, kind, major, minor, mode, uid, gid in device_nodes(src):
            devs.append({"path": os.path.join(dst, rel) if rel else dst, "type": kind,
                         "major": major, "minor": minor, "fileMode": mode, "uid": uid,
                         "gid": gid})
            rules.append({"allow": True, "type": kind, "major": major, "minor": minor,
                          "access": perms})
    for rule in host.get("DeviceCgroupRules") or []:
        kind, nums, access = rule.split(" ")
        major, minor = nums.split(":")
        ent: dict[str, Any] = {"allow": True, "type": kind, "access": access}
        if major != "*":
            ent["major"] = int(major)
        if minor != "*":
            ent["minor"] = int(minor)
        rules.append(ent)
    if not devs:
        linux.pop("devices")


def _namespaces(spec: dict[str, Any], host: dict[str, Any], peer: Peer | None) -> None:
    def ns(kind: str, mode: str) -> dict[str, str] | None:
        if mode == "host":
            return None
        if mode.startswith("container:"):
            if peer is None:
                raise errors.InvalidArgumentError(
                    f"HostConfig.{kind.capitalize()}Mode", "joining another container's "
                                                           "namespace needs the engine")
            return {"type": kind, "path": f"/proc/{peer(mode[10:], kind)}/ns/{kind}"}
        return {"type": kind}
    linux = spec["linux"]
    # (a record from before CgroupnsMode was stored keeps the cgroup namespace default)
    mine = ("pid", "ipc", "uts", "cgroup") if "CgroupnsMode" in host else ("pid", "ipc", "uts")
    keep = [n for n in linux["namespaces"] if n["type"] not in mine]
    wanted = [ns("pid", host.get("PidMode") or ""), ns("ipc", host.get("IpcMode") or ""),
              ns("uts", host.get("UTSMode") or "")]
    if host.get("CgroupnsMode") == "private":
        wanted.append({"type": "cgroup"})
    linux["namespaces"] = [n for n in wanted if n] + keep
    if host.get("UTSMode") == "host":
        spec.pop("hostname", None)  # the host's own name: nothing to set
        spec.pop("domainname", None)


def _shm(spec: dict[str, Any], host: dict[str, Any], peer: Peer | None) -> None:
    ipc = host.get("IpcMode") or "private"
    mounts = [m for m in spec["mounts"] if m["destination"] != "/dev/shm"]
    if ipc == "host":
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                       "options": ["rbind", "rprivate"]})
    elif ipc != "none":
        # (container:NAME too: the donor's /dev/shm lives in its own mount namespace, which
        # mount(2) cannot bind from; hostopts warns that only the IPC namespace is shared)
        size = host.get("ShmSize") or 64 * 1024 * 1024
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={size}"]})
    spec["mounts"] = mounts


def _tmpfs(spec: dict[str, Any], host: dict[str, Any]) -> None:
    tmpfs = host.get("Tmpfs") or {}
    if not tmpfs:
        return
    dests = {os.path.normpath(d) for d in tmpfs}
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] not in dests]
    for dest, opts in sorted(tmpfs.items()):
        # moby: noexec,nosuid,nodev first; the user's words after them win (exec, dev...)
        words = ["noexec", "nosuid", "nodev", *filter(None, (opts or "").split(","))]
        spec["mounts"].append({"destination": os.path.normpath(dest), "type": "tmpfs",
                               "source": "tmpfs", "options": words})


def _groups(names: list[str], lookup: Callable[[str], str | None]) -> list[int]:
    table = [ln.split(":") for ln in (lookup("/etc/group") or "").splitlines()
             if ln and not ln.startswith("#")]
    out = []
    for name in names:
        row = next((r for r in table if len(r) > 2 and r[0] == name), None)
        if row is not None and row[2].isdigit():
            out.append(int(row[2]))
        elif name.isdigit():
            out.append(int(name))
        else:
            raise errors.InvalidArgumentError(
                "HostConfig.GroupAdd", f"Unable to find group {name}: no matching entries "
                                       "in group file")
    return out


def apply(spec: dict[str, Any], cid: str, host: dict[str, Any],
          lookup: Callable[[str], str | None], peer: Peer | None = None) -> None:
    """Apply ``host``'s kernel-view options to ``spec`` (built by ocispec.translate)."""
    from labkit.engine.containers.seccompconv import parse_profile, to_oci
    proc, linux = spec["process"], spec["linux"]
    sec = parse_security_opts(host.get("SecurityOpt"))
    proc["noNewPrivileges"] = sec.no_new_privileges
    privileged = bool(host.get("Privileged"))
    if privileged or sec.seccomp == "unconfined":
        linux.pop("seccomp", None)
    elif sec.seccomp:
        linux["seccomp"] = to_oci(parse_profile(sec.seccomp), proc["capabilities"]["bounding"])
    if privileged:  # moby: /sys and the cgroup fs writable
        for m in spec["mounts"]:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m.get("options", []) if o != "ro"]
    _devices(spec, host)
    limits = {u["Name"]: u for u in host.get("Ulimits") or []}
    rl = [r for r in proc.get("rlimits") or [] if r["type"][7:].lower() not in limits]
    for name, u in sorted(limits.items()):
        # -1 is "unlimited" (go-units); labkit-runtime's setrlimit(2) reads -1 as RLIM_INFINITY
        soft, hard = u.get("Soft", 0), u.get("Hard", 0)
        rl.append({"type": f"RLIMIT_{name.upper()}", "soft": soft, "hard": hard})
    proc["rlimits"] = rl
    if host.get("Sysctls"):
        linux["sysctl"] = dict(host["Sysctls"])
    _namespaces(spec, host, peer)
    _shm(spec, host, peer)
    _tmpfs(spec, host)
    proc["oomScoreAdj"] = host.get("OomScoreAdj") or 0
    for key, oci in (("MaskedPaths", "maskedPaths"), ("ReadonlyPaths", "readonlyPaths")):
        if key in host:  # (records from before these were kept: the runtime's defaults)
            linux[oci] = list(host[key] or [])
    parent = (host.get("CgroupParent") or "").strip("/")
    if parent:
        linux["cgroupsPath"] = f"{parent}/{cid}"
    if host.get("GroupAdd"):
        proc["user"]["additionalGids"] = _groups(host["GroupAdd"], lookup)
