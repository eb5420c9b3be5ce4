"""HostConfig.Binds, HostConfig.Mounts and Config.Volumes -> mount points (no disk changes).

A mount point is a dict in the shape `docker inspect` shows under "Mounts" (Type, Name,
Source, Destination, Driver, Mode, RW, Propagation) plus the few private keys the OCI
translation needs (Anonymous, Recursive, Options, Labels, Create).  The rules and the
error words follow moby's volume/mounts/linux_parser.go; every option is either applied
(oci.py) or refused here by name.
"""

from __future__ import annotations

import os
from typing import Any

from labkit import errors
from labkit.engine.volumes.names import validate_name

__all__ = ["PRIVATE_KEYS", "from_binds", "from_mounts", "from_volumes", "parse_all", "public"]

PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
PRIVATE_KEYS = ("Anonymous", "Recursive", "Options", "Labels", "Create", "NoCopy")
_MOUNT_KEYS = {"Type", "Source", "Target", "ReadOnly", "Consistency", "BindOptions",
               "VolumeOptions", "TmpfsOptions"}
_BIND_KEYS = {"Propagation", "NonRecursive"}
_VOLUME_KEYS = {"NoCopy", "Labels", "DriverConfig"}
_TMPFS_KEYS = {"SizeBytes", "Mode"}


def _bad(what: str, problem: str, hint: str | None = None) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(what, problem, hint)


def check_target(target: Any, what: str, typ: str) -> str:
    """An absolute destination, not '/', without '..' (moby: validateAbsolute, '/')."""
    if not isinstance(target, str) or not target:
        raise _bad(what, f'invalid mount config for type "{typ}": field Target must not be '
                         "empty")
    if not target.startswith("/"):
        raise _bad(what, f'invalid mount config for type "{typ}": invalid mount path: '
                         f"'{target}' mount path must be absolute")
    if "\x00" in target or ".." in target.split("/"):
        raise _bad(what, f"invalid mount path {target!r}: '..' and NUL are not allowed")
    clean = os.path.normpath(target)
    if clean in ("/", "//"):
        raise _bad(what, f'invalid mount config for type "{typ}": invalid specification: '
                         "destination can't be '/'")
    return "/" + clean.lstrip("/")


def _volume(name: str, dest: str, rw: bool, mode: str, labels: dict[str, str] | None = None,
            nocopy: bool = False) -> dict[str, Any]:
    return {"Type": "volume", "Name": name, "Source": "", "Destination": dest,
            "Driver": "local", "Mode": mode, "RW": rw, "Propagation": "",
            "Anonymous": not name, "Labels": labels or {}, "NoCopy": nocopy}


def _bind(src: str, dest: str, rw: bool, mode: str, propagation: str, recursive: bool = True,
          create: bool = False) -> dict[str, Any]:
    return {"Type": "bind", "Source": src, "Destination": dest, "Mode": mode, "RW": rw,
            "Propagation": propagation, "Recursive": recursive, "Create": create}


def from_binds(binds: list[str]) -> list[dict[str, Any]]:
    """``-v``: ``NAME:/dst[:opts]``, ``/host:/dst[:opts]``, ``/dst`` (anonymous)."""
    out = []
    for spec in binds:
        what = f"HostConfig.Binds ({spec!r})"
        if not isinstance(spec, str) or not spec or "\x00" in spec:
            raise _bad(what, f"invalid volume specification: '{spec}'")
        parts = spec.split(":")
        if len(parts) > 3:
            raise _bad(what, f"invalid volume specification: '{spec}'")
        if len(parts) == 1:
            out.append(_volume("", check_target(parts[0], what, "volume"), True, ""))
            continue
        src, dest = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else ""
        rw, propagation = True, ""
        seen: set[str] = set()
        for word in mode.split(",") if mode else []:
            kind = "rw" if word in ("ro", "rw") else "prop" if word in PROPAGATIONS else word
            if kind in seen:
                raise _bad(what, f"invalid mode: {mode}")
            seen.add(kind)
            if word in ("ro", "rw"):
                rw = word == "rw"
            elif word in PROPAGATIONS:
                propagation = word
            elif word == "nocopy":
                continue  # applied below: no copy-up of the image's content (copyup.py)
            elif word in ("z", "Z"):
                raise _bad(what, f"mode {word!r} relabels for SELinux, which labkit does not "
                                 "use", hint="drop :z / :Z")
            else:
                raise _bad(what, f"invalid mode: {mode}")
        if src.startswith("/"):
            if "nocopy" in seen:
                raise _bad(what, f"invalid mode: {mode} (nocopy is for volumes)")
            if ".." in src.split("/"):
                raise _bad(what, f"bind source {src!r} must not contain '..'")
            out.append(_bind(os.path.normpath(src), check_target(dest, what, "bind"), rw, mode,
                             propagation or "rprivate", create=True))
        else:
            if propagation:
                raise _bad(what, f"invalid mode: {mode} (propagation is for bind mounts)")
            validate_name(src)
            out.append(_volume(src, check_target(dest, what, "volume"), rw, mode or "z",
                               nocopy="nocopy" in seen))
    return out


def _obj(value: Any, keys: set[str], what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(what, "must be an object")
    for k in value:
        if k not in keys:
            raise _bad(what, f"option {k!r} is not applied by labkit",
                       hint=f"it takes {', '.join(sorted(keys))}")
    return value


def _one_mount(m: Any, i: int) -> dict[str, Any]:
    what = f"HostConfig.Mounts[{i}]"
    m = _obj(m, _MOUNT_KEYS, what)
    typ = m.get("Type")
    if typ not in ("volume", "bind", "tmpfs"):
        raise _bad(what, f"mount type {typ!r} is not offered by labkit",
                   hint="volume, bind or tmpfs")
    dest = check_target(m.get("Target"), what, typ)
    src = m.get("Source") or ""
    if not isinstance(src, str):
        raise _bad(what, "Source must be a string")
    rw = not m.get("ReadOnly")
    if m.get("Consistency") not in (None, "", "default", "consistent"):
        raise _bad(what, f"consistency {m['Consistency']!r} is not applied by labkit")
    for key, allowed in (("BindOptions", "bind"), ("VolumeOptions", "volume"),
                         ("TmpfsOptions", "tmpfs")):
        if m.get(key) and typ != allowed:
            raise _bad(what, f'invalid mount config for type "{typ}": field {key} must not '
                             "be specified")
    if typ == "bind":
        opts = _obj(m.get("BindOptions"), _BIND_KEYS, f"{what}.BindOptions")
        if not src:
            raise _bad(what, 'invalid mount config for type "bind": field Source must not be '
                             "empty")
        if not src.startswith("/") or ".." in src.split("/") or "\x00" in src:
            raise _bad(what, f'invalid mount config for type "bind": invalid mount path: '
                             f"'{src}' mount path must be absolute")
        if not os.path.exists(src):  # the Mounts API never creates a bind source
            raise _bad(what, f'invalid mount config for type "bind": bind source path does '
                             f"not exist: {src}")
        prop = opts.get("Propagation") or "rprivate"
        if prop not in PROPAGATIONS:
            raise _bad(what, f"invalid propagation mode: {prop}")
        return _bind(os.path.normpath(src), dest, rw, "", prop,
                     recursive=not opts.get("NonRecursive"))
    if typ == "volume":
        opts = _obj(m.get("VolumeOptions"), _VOLUME_KEYS, f"{what}.VolumeOptions")
        driver = _obj(opts.get("DriverConfig"), {"Name", "Options"},
                      f"{what}.VolumeOptions.DriverConfig")
        from labkit.engine.volumes.store import _labels, check_driver
        check_driver(driver.get("Name"), driver.get("Options") or None)
        if src:
            validate_name(src)
        return _volume(src, dest, rw, "", _labels(opts.get("Labels"),
                                                  f"{what}.VolumeOptions.Labels"),
                       nocopy=bool(opts.get("NoCopy")))
    if src:
        raise _bad(what, 'invalid mount config for type "tmpfs": field Source must not be '
                         "specified")
    opts = _obj(m.get("TmpfsOptions"), _TMPFS_KEYS, f"{what}.TmpfsOptions")
    words = []
    size, mode = opts.get("SizeBytes"), opts.get("Mode")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad(what, f"invalid tmpfs size {size!r}")
        if size:
            words.append(f"size={size}")
    if mode is not None:
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
            raise _bad(what, f"invalid tmpfs mode {mode!r}")
        words.append(f"mode={mode:o}")
    return {"Type": "tmpfs", "Source": "", "Destination": dest, "Mode": "", "RW": rw,
            "Propagation": "", "Options": words}


def from_mounts(mounts: list[Any]) -> list[dict[str, Any]]:
    """``--mount``: HostConfig.Mounts objects (moby api/types/mount.Mount)."""
    return [_one_mount(m, i) for i, m in enumerate(mounts)]


def from_volumes(volumes: Any, taken: set[str]) -> list[dict[str, Any]]:
    """Config.Volumes (the image's or the request's ``{"/path": {}}``): an anonymous volume
    for each path that no bind or mount already covers."""
    if not volumes:
        return []
    if not isinstance(volumes, dict):
        raise _bad("Volumes", "must be an object whose keys are paths")
    out = []
    for path in sorted(volumes):
        dest = check_target(path, "Volumes", "volume")
        if dest not in taken:
            taken.add(dest)
            out.append(_volume("", dest, True, ""))
    return out


def parse_all(host: dict[str, Any], volumes: Any) -> list[dict[str, Any]]:
    """Every mount point of a create request; 400 on a duplicate destination."""
    points = from_binds(list(host.get("Binds") or [])) + from_mounts(list(host.get("Mounts")
                                                                          or []))
    taken: set[str] = set()
    for p in points:
        if p["Destination"] in taken:
            raise _bad("HostConfig", f"Duplicate mount point: {p['Destination']}")
        taken.add(p["Destination"])
    for dest in host.get("Tmpfs") or {}:
        if os.path.normpath(dest) in taken:
            raise _bad("HostConfig.Tmpfs", f"Duplicate mount point: {os.path.normpath(dest)}")
    return points + from_volumes(volumes, taken)


def public(point: dict[str, Any]) -> dict[str, Any]:
    """The mount point as `docker inspect` shows it."""
    return {k: v for k, v in point.items() if k not in PRIVATE_KEYS}
