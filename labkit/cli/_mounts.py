"""`labkit run/create -v/--volume` and `--mount`, mapped as the Docker CLI maps them:
``-v`` strings go to HostConfig.Binds unchanged (the daemon parses them, volumes/spec.py);
``--mount`` CSV is parsed here into HostConfig.Mounts objects (docker/cli opts/mount.go).
"""

from __future__ import annotations

import argparse
import csv
from typing import Any

from labkit import errors

__all__ = ["VALUE_OPTS", "add_flags", "apply", "parse_mount"]

VALUE_OPTS = {"-v", "--volume", "--mount"}
_TRUE, _FALSE = ("1", "true", "t"), ("0", "false", "f")


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--volume", action="append", default=[],
                   help="bind mount a volume: [NAME|HOST-DIR:]CONTAINER-DIR[:ro|rw|z...]")
    p.add_argument("--mount", action="append", default=[],
                   help="attach a filesystem mount: type=volume|bind|tmpfs,source=...,target=...")


def _bool(key: str, value: str | None) -> bool:
    if value is None:
        return True
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise errors.InvalidArgumentError("--mount", f"invalid value for {key}: {value!r}")


def _size(value: str) -> int:
    from labkit.cli._create import parse_memory

    return parse_memory(value)


def parse_mount(spec: str) -> dict[str, Any]:
    """One ``--mount`` value -> a HostConfig.Mounts object; unknown keys are refused by name."""
    fields = next(csv.reader([spec]), [])
    m: dict[str, Any] = {"Type": "volume"}
    vol: dict[str, Any] = {}
    bind: dict[str, Any] = {}
    tmpfs: dict[str, Any] = {}
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        val = value if eq else None
        if key in ("readonly", "ro"):
            m["ReadOnly"] = _bool(key, val)
            continue
        if key == "volume-nocopy":
            vol["NoCopy"] = _bool(key, val)
            continue
        if val is None:
            raise errors.InvalidArgumentError("--mount", f"invalid field {field!r}: must be a "
                                              "key=value pair")
        if key == "type":
            m["Type"] = val
        elif key in ("source", "src"):
            m["Source"] = val
        elif key in ("target", "dst", "destination"):
            m["Target"] = val
        elif key == "bind-propagation":
            bind["Propagation"] = val
        elif key == "volume-driver":
            vol.setdefault("DriverConfig", {})["Name"] = val
        elif key in ("volume-label", "volume-opt"):
            k, eq2, v = val.partition("=")
            if not eq2:
                raise errors.InvalidArgumentError("--mount", f"{key}: {val!r} is not key=value")
            if key == "volume-label":
                vol.setdefault("Labels", {})[k] = v
            else:
                vol.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "tmpfs-size":
            tmpfs["SizeBytes"] = _size(val)
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(val, 8)
            except ValueError:
                raise errors.InvalidArgumentError(
                    "--mount", f"tmpfs-mode {val!r} is not an octal mode") from None
        else:
            raise errors.InvalidArgumentError("--mount", f"unexpected key {key!r} in {field!r}",
                                              hint="type, source, target, readonly, "
                                              "bind-propagation, volume-*, tmpfs-size, "
                                              "tmpfs-mode")
    if "Target" not in m:
        raise errors.InvalidArgumentError("--mount", f"{spec!r}: target is required")
    for opts, key, typ in ((vol, "VolumeOptions", "volume"), (bind, "BindOptions", "bind"),
                           (tmpfs, "TmpfsOptions", "tmpfs")):
        if opts:
            if m["Type"] != typ:
                raise errors.InvalidArgumentError(
                    "--mount", f"{key} given for a {m['Type']} mount: {spec!r}")
            m[key] = opts
    return m


def apply(args: argparse.Namespace, host: dict[str, Any]) -> None:
    if args.volume:
        host["Binds"] = list(args.volume)
    if args.mount:
        host["Mounts"] = [parse_mount(s) for s in args.mount]
