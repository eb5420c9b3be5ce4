"""A container's root filesystem as an open directory fd, running or not (docker cp, export).

moby mounts the container's rootfs for every filesystem operation (daemon.Mount in
containerfs_linux.go) and unmounts it afterwards.  labkit's supervisor mounts the overlay at
``bundle/rootfs`` only while the task exists, so:

* a running (or paused) container: its live mount is opened as is.  If the task ends while
  we read, the supervisor's lazy unmount leaves our fd working (umount2(2) MNT_DETACH);
* any other state: the same overlay (image layers + the container's upper dir) is mounted at
  a private directory inside the container's 0700 directory for the operation, under the
  container's lock so that a concurrent start waits (two overlays on one upper/work pair are
  undefined behaviour, overlayfs.rst "Sharing and copying layers"), then lazily unmounted.

Paths inside are resolved with labkit._sys.inroot (openat2 RESOLVE_IN_ROOT): the
container's own symlinks never lead to the host.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.engine.containers.record import ContainerRecord

__all__ = ["RootView", "container_lock", "emit", "open_root"]


@dataclass(frozen=True, slots=True)
class RootView:
    """An open directory fd of the container's ``/`` and the host path it is reached at."""

    fd: int
    path: str


def container_lock(eng: Any, rec: ContainerRecord) -> Any:
    """The container's lifecycle lock (start and removal take it too; the store owns it)."""
    return eng.store.lock(rec)


def emit(eng: Any, action: str, rec: ContainerRecord, **extra: str) -> None:
    """A container event on the engine's bus (docker events)."""
    eng.bus.emit(action, rec.id, rec.image, rec.name, rec.config.get("Labels"), **extra)


def _mount_private(eng: Any, rec: ContainerRecord) -> str:
    from labkit.engine.images.overlay import mount_overlay
    image = eng.images.for_container(rec.image_id)
    d = Path(rec.dir)
    for sub in ("upper", "work", ".lk-view"):
        (d / sub).mkdir(mode=0o700, exist_ok=True)
    target = d / ".lk-view"
    if os.path.ismount(target):  # left by a daemon that died mid-copy: never stack on it
        _unmount(str(target))
        target.mkdir(mode=0o700, exist_ok=True)
    mount_overlay(list(reversed(image.layers)), d / "upper", d / "work", target)
    return str(target)


def _unmount(path: str) -> None:
    from labkit.engine.images.overlay import unmount
    unmount(path, detach=True)
    with contextlib.suppress(OSError):
        os.rmdir(path)


@contextlib.asynccontextmanager
async def open_root(eng: Any, rec: ContainerRecord) -> AsyncIterator[RootView]:
    """Yield the container's root as a RootView for the duration of the block."""
    live = rec.bundle / "rootfs"
    if rec.status in ("running", "paused") and os.path.ismount(live):
        fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield RootView(fd, str(live))
        finally:
            os.close(fd)
        return
    async with container_lock(eng, rec):
        import asyncio
        path = await asyncio.to_thread(_mount_private, eng, rec)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                yield RootView(fd, path)
            finally:
                os.close(fd)
        finally:
            await asyncio.to_thread(_unmount, path)
