"""A task container's files from the ServiceSpec: Mounts, and the targets of secret and
config references (moby api/types/mount, swarm/secret.go, config.go; swarmkit
controlapi validateMounts, validateSecretRefsSpec).  Targets are checked so that the
executor never writes outside the task's secrets tmpfs or climbs out of the container's
root with "..".
"""

from __future__ import annotations

from labkit import errors
from labkit.engine.swarm.control.common import Obj, obj, text, uint, unknown

__all__ = ["check_file_ref", "check_mount", "check_targets"]


def check_mount(m: Obj, w: str) -> None:
    unknown(m, w, ("Type", "Source", "Target", "ReadOnly", "BindOptions", "VolumeOptions",
                   "TmpfsOptions", "Consistency"))
    kind = text(m, "Type", w) or "volume"
    if kind not in ("bind", "volume", "tmpfs"):
        raise errors.InvalidArgumentError(f"{w}.Type", f"mount type {kind!r} is not supported "
                                          "(bind, volume, tmpfs)")
    target = text(m, "Target", w)
    if not target.startswith("/"):
        raise errors.InvalidArgumentError(f"{w}.Target", f"{w}.Target must be an absolute path")
    if text(m, "Consistency", w) not in ("", "default", "consistent"):
        raise errors.InvalidArgumentError(f"{w}.Consistency", "only the default consistency "
                                          "exists on Linux")
    if kind == "bind" and not text(m, "Source", w).startswith("/"):
        raise errors.InvalidArgumentError(f"{w}.Source", "a bind mount's Source must be an "
                                          "absolute host path")
    if kind == "tmpfs" and text(m, "Source", w):
        raise errors.InvalidArgumentError(f"{w}.Source", "a tmpfs mount takes no Source")
    opts = {"bind": ("BindOptions", ("Propagation",)),
            "volume": ("VolumeOptions", ("NoCopy", "Labels", "DriverConfig")),
            "tmpfs": ("TmpfsOptions", ("SizeBytes", "Mode"))}
    for k, (key, fields) in opts.items():
        if m.get(key) is None:
            continue
        if k != kind:
            raise errors.InvalidArgumentError(f"{w}.{key}", f"{key} goes with mount type {k}")
        unknown(obj(m[key], f"{w}.{key}"), f"{w}.{key}", fields)
    vo = obj(m.get("VolumeOptions"), f"{w}.VolumeOptions")
    driver = obj(vo.get("DriverConfig"), f"{w}.VolumeOptions.DriverConfig")
    if text(driver, "Name", f"{w}.VolumeOptions.DriverConfig") not in ("", "local"):
        raise errors.InvalidArgumentError(f"{w}.VolumeOptions.DriverConfig.Name",
                                          "labkit has the local volume driver only")


def check_file_ref(r: Obj, w: str, kind: str) -> Obj:
    """A SecretReference / ConfigReference: its target file must stay inside the task's
    secrets tmpfs (secrets: a plain name under /run/secrets; configs: any path, no "..")."""
    one = kind[:-1]
    unknown(r, w, ("File", f"{one}ID", f"{one}Name"), ("Runtime",))
    if not text(r, f"{one}ID", w) and not text(r, f"{one}Name", w):
        raise errors.InvalidArgumentError(w, f"{w}: a {one.lower()} reference needs "
                                          f"{one}ID or {one}Name")
    f = obj(r.get("File"), f"{w}.File")
    unknown(f, f"{w}.File", ("Name", "UID", "GID", "Mode"))
    target = text(f, "Name", f"{w}.File")
    if not target:
        raise errors.InvalidArgumentError(f"{w}.File.Name", f"malformed {one.lower()} "
                                          "reference: File.Name is required")
    # the executor writes a secret to /run/secrets/<File.Name> (SWARM13.md): a plain file
    # name; a config to File.Name itself when absolute: any path that does not climb
    parts = target.split("/")
    if kind == "Secrets" and (len(parts) > 1 or target in (".", "..")):
        raise errors.InvalidArgumentError(f"{w}.File.Name", f"{target!r}: a secret's target "
                                          "is a file name in /run/secrets (no '/')")
    if ".." in parts or "\0" in target:
        raise errors.InvalidArgumentError(f"{w}.File.Name", f"{target!r}: the target must "
                                          "not leave the task's root ('..')")
    for key in ("UID", "GID"):
        v = f.get(key)
        if v is not None and (not isinstance(v, str) or not v.isdigit()):
            raise errors.InvalidArgumentError(f"{w}.File.{key}", f"{key} must be a numeric id")
    uint(f, "Mode", f"{w}.File", 0o7777)
    r["File"] = f
    return r


def check_targets(c: Obj) -> None:
    seen: dict[str, str] = {}
    for kind in ("Secrets", "Configs"):
        one = kind[:-1]
        for r in c.get(kind) or []:
            target = r["File"]["Name"]
            ref = r.get(f"{one}Name") or r.get(f"{one}ID")
            if target in seen:  # swarmkit validateSecretRefsSpec's text
                raise errors.InvalidArgumentError(
                    f"TaskTemplate.ContainerSpec.{kind}",
                    f"{one.lower()} references '{seen[target]}' and '{ref}' have a "
                    f"conflicting target: '{target}'")
            seen[target] = str(ref)
