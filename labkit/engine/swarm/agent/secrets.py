"""Secrets and configs of a task: files in a tmpfs of the task's own, bind-mounted read-only.

Docker on Linux keeps a task's secrets in memory only (a tmpfs, never the disk) and removes
them with the task's container (issue 13; moby daemon/container_operations_unix.go
setupSecretDir).  Here: a tmpfs per task at $LABKIT_RUN/swarm/tasks/<task id>, 0700, capped
in size, one file per reference with the UID/GID/Mode the service asked for, bind-mounted
read-only at /run/secrets/<File.Name> (configs at their target, default /<config name>).
Only task containers get these mounts: the executor is their only writer.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

from labkit import errors
from labkit._sys import syscalls
from labkit.engine import paths

__all__ = ["materialize", "remove", "task_dir"]

Obj = dict[str, Any]
MNT_DETACH = 2
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
_ID = re.compile(r"[a-z0-9]{1,64}")
MIN_SIZE = 1 << 20


def task_dir(task_id: str) -> Path:
    """The task's private secret dir (the id checked: it becomes a path)."""
    if not _ID.fullmatch(task_id):
        raise errors.InvalidArgumentError("task id", f"{task_id!r} is not a task id")
    return paths.run() / "swarm" / "tasks" / task_id


def _target(name: str, default_dir: str, what: str) -> str:
    """Where a file goes in the container: relative names under ``default_dir``."""
    if not name or "\0" in name or ".." in name.split("/"):
        raise errors.InvalidArgumentError(what, f"invalid target {name!r}")
    return name if name.startswith("/") else f"{default_dir}/{name}"


def _mode(v: Any, default: int) -> int:
    try:
        return int(v) & 0o7777 if v is not None else default
    except (TypeError, ValueError):
        return default


def _files(task: Obj, snap: Obj) -> list[tuple[str, bytes, Obj]]:
    """(target in the container, data, File spec) of every secret and config reference."""
    cs = (task.get("Spec") or {}).get("ContainerSpec") or {}
    out: list[tuple[str, bytes, Obj]] = []
    for kind, key, idkey, base in (("secret", "Secrets", "SecretID", "/run/secrets"),
                                   ("config", "Configs", "ConfigID", "")):
        have = snap.get(key.lower()) or {}
        for ref in cs.get(key) or []:
            f = ref.get("File") or {}
            obj = have.get(ref.get(idkey))
            if obj is None:
                raise errors.NotFoundError(kind, str(ref.get(f"{kind.capitalize()}Name")
                                                     or ref.get(idkey)))
            name = f.get("Name") or ref.get(f"{kind.capitalize()}Name") or obj["Name"]
            data = base64.b64decode(obj.get("Data") or "")
            out.append((_target(str(name), base, f"{kind} target"), data, f))
    return out


def materialize(task: Obj, snap: Obj) -> list[Obj]:
    """Write the task's secrets and configs; the Mounts (HostConfig.Mounts) to add."""
    files = _files(task, snap)
    if not files:
        return []
    d = task_dir(task["ID"])
    remove(task["ID"])
    paths.make_dir(d.parent, paths.PRIVATE_DIR_MODE)
    d.mkdir(mode=0o700)
    size = max(MIN_SIZE, 2 * sum(len(b) for _, b, _ in files) + 64 * 1024)
    syscalls.mount("tmpfs", str(d), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   f"mode=0700,size={size}")
    mounts: list[Obj] = []
    for i, (target, data, f) in enumerate(files):
        src = d / f"{i:03d}"
        mode = _mode(f.get("Mode"), 0o444)
        fd = os.open(src, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
            os.fchown(fd, int(f.get("UID") or 0), int(f.get("GID") or 0))
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        mounts.append({"Type": "bind", "Source": str(src), "Target": target,
                       "ReadOnly": True})
    return mounts


def remove(task_id: str) -> None:
    """Unmount and delete the task's secret dir (nothing there: nothing to do)."""
    d = task_dir(task_id)
    if not d.exists():
        return
    with contextlib.suppress(OSError, errors.LabkitError):
        syscalls.umount2(str(d), MNT_DETACH)
    shutil.rmtree(d, ignore_errors=True)
