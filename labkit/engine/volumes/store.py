"""The local volume driver: LABKIT_ROOT/volumes/NAME/_data and a metadata file beside it.

One VolumeStore per daemon owns every volume's directory and metadata.  Who uses a volume
is asked of the container records (``users``), so no reference count can go stale; while a
container is being created its volumes are *held* (``resolve`` .. ``release``), so a
concurrent rm or prune cannot take a volume between its creation on first use and the
container's record appearing.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine import paths
from labkit.engine.volumes.names import anonymous_name, validate_name

__all__ = ["VolumeNotFoundError", "VolumeStore", "dir_size"]

DRIVER = "local"
META = "opts.json"
DATA_MODE = 0o755  # _data: a non-root container user must reach it (as Docker's)
ANON_LABEL = "com.docker.volume.anonymous"  # Docker 23+ marks them so
_FILTERS = ("name", "label", "dangling", "driver")
Filters = dict[str, list[str]]  # (spelled before VolumeStore.list shadows the builtin)
Strs = list[str]
Vols = list[dict[str, Any]]


class VolumeNotFoundError(errors.NotFoundError):
    """moby's wording: ``get NAME: no such volume``."""

    def __init__(self, name: str) -> None:
        super().__init__("volume", name)
        self.message = f"get {name}: no such volume"


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def dir_size(path: Path) -> int:
    """Bytes used by the files below ``path`` (symlinks not followed), as moby's UsageData."""
    total = 0
    for top, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(top, f)).st_size
            except OSError:
                continue
    return total


def _labels(labels: Any, what: str = "Labels") -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise errors.InvalidArgumentError(what, "must be an object of strings")
    return dict(labels)


def check_driver(driver: Any, opts: Any) -> None:
    """Only the local driver, and no driver options: labkit's local driver does not mount
    a device (type=/device=/o=), so each option is refused by name rather than ignored."""
    if driver not in (None, "", DRIVER):
        raise errors.InvalidArgumentError(
            "Driver", f"volume driver {driver!r} is not offered by labkit",
            hint="only the \"local\" driver")
    if opts is None:
        return
    if not isinstance(opts, dict):
        raise errors.InvalidArgumentError("DriverOpts", "must be an object of strings")
    for key in sorted(opts):
        raise errors.InvalidArgumentError(
            "DriverOpts", f"local driver option {key!r} is not applied by labkit (it keeps "
                          "volumes as plain directories; no device is mounted)",
            hint="create the volume without --opt")


class VolumeStore:
    """Create, inspect, list, remove and prune local volumes (Docker's volume service)."""

    def __init__(self, root: Path | None = None,
                 users: Callable[[str], Strs] | None = None) -> None:
        self.root = root or paths.root() / "volumes"
        self.users: Callable[[str], Strs] = users or (lambda _name: [])
        self._lock = threading.RLock()
        self._held: dict[str, int] = {}
        # Docker's volume events (create, destroy): (action, volume name, attributes); the
        # daemon wires its event bus here, which may be called from a worker thread
        self.on_event: Callable[[str, str, dict[str, str]], object] = lambda _a, _n, _at: None

    # -- paths -----------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        # validate_name admits no '/' and no '.'/'..': the result is always one entry of root
        return self.root / validate_name(name)

    def mountpoint(self, name: str) -> Path:
        return self._dir(name) / "_data"

    # -- queries ---------------------------------------------------------------------------
    def _meta(self, name: str) -> dict[str, Any] | None:
        d = self._dir(name)
        try:
            if d.is_symlink() or not (d / "_data").is_dir() or (d / "_data").is_symlink():
                return None
            meta = json.loads((d / META).read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def exists(self, name: str) -> bool:
        return self._meta(name) is not None

    def get(self, name: str) -> dict[str, Any]:
        """Docker's Volume object; VolumeNotFoundError (404) when there is none."""
        try:
            meta = self._meta(name)
        except errors.InvalidArgumentError:
            meta = None
        if meta is None:
            raise VolumeNotFoundError(name)
        return {"CreatedAt": meta.get("CreatedAt", ""), "Driver": DRIVER,
                "Labels": meta.get("Labels") or {}, "Mountpoint": str(self.mountpoint(name)),
                "Name": name, "Options": meta.get("Options") or {}, "Scope": "local"}

    def names(self) -> Strs:
        try:
            entries = sorted(p.name for p in self.root.iterdir())
        except FileNotFoundError:
            return []
        out = []
        for n in entries:
            try:
                if self._meta(n) is not None:
                    out.append(n)
            except errors.InvalidArgumentError:
                continue  # a stray file that is not a volume name
        return out

    def list(self, filters: Filters | None = None) -> Vols:
        """Volumes matching Docker's filters: name (substring), label (KEY or KEY=VALUE),
        dangling (true/false: not used by any container), driver."""
        filters = filters or {}
        for key in filters:
            if key not in _FILTERS:
                raise errors.InvalidArgumentError("filters", f"invalid filter '{key}'")
        out = []
        for n in self.names():
            try:
                vol = self.get(n)
            except errors.NotFoundError:
                continue
            if self._matches(vol, filters):
                out.append(vol)
        return out

    def _matches(self, vol: dict[str, Any], filters: Filters) -> bool:
        if filters.get("name") and not any(w in vol["Name"] for w in filters["name"]):
            return False
        if filters.get("driver") and vol["Driver"] not in filters["driver"]:
            return False
        for want in filters.get("label") or []:
            key, eq, value = want.partition("=")
            if key not in vol["Labels"] or (eq and vol["Labels"][key] != value):
                return False
        for want in filters.get("dangling") or []:
            if want.lower() not in ("true", "false", "1", "0"):
                raise errors.InvalidArgumentError(
                    "filters", f"invalid filter 'dangling={want}'")
            dangling = want.lower() in ("true", "1")
            if dangling == self.in_use(vol["Name"]):
                return False
        return True

    def in_use(self, name: str) -> bool:
        return bool(self.users(name)) or self._held.get(name, 0) > 0

    # -- changes ---------------------------------------------------------------------------
    def create(self, name: str | None = None, driver: Any = None, opts: Any = None,
               labels: Any = None) -> dict[str, Any]:
        """Create a volume (a 64-hex name when ``name`` is empty).  As Docker's: creating a
        name that exists returns the existing volume, unchanged."""
        check_driver(driver, opts)
        labels = _labels(labels)
        name = validate_name(name) if name else anonymous_name()
        with self._lock:
            if self.exists(name):
                return self.get(name)
            paths.make_dir(self.root, paths.PRIVATE_DIR_MODE)
            d = self._dir(name)
            if d.is_symlink() or (d.exists() and not d.is_dir()):
                raise errors.ConflictError(f"create {name}: {d} exists and is not a volume")
            paths.make_dir(d, paths.PRIVATE_DIR_MODE)
            data = d / "_data"
            if data.is_symlink():
                raise errors.ConflictError(f"create {name}: {data} is a symlink")
            data.mkdir(mode=DATA_MODE, exist_ok=True)
            os.chmod(data, DATA_MODE)  # umask-proof
            meta = {"Name": name, "CreatedAt": _rfc3339(time.time()), "Labels": labels,
                    "Options": {}}
            paths.write_secret(d / META, json.dumps(meta).encode())
        self.on_event("create", name, {"driver": DRIVER})  # moby: only a new volume
        return self.get(name)

    def release(self, points: Vols) -> None:
        """End the hold that ``resolve`` took on these mount points' volumes (the container
        record now names them, or its creation failed)."""
        with self._lock:
            for p in points:
                n = p.get("Name") if p.get("Type") == "volume" else None
                if n and self._held.get(n):
                    self._held[n] -= 1
                    if not self._held[n]:
                        del self._held[n]

    def remove(self, name: str, force: bool = False) -> None:
        """Remove a volume and its data.  In use (by any container, running or not): 409
        with moby's words.  ``force`` (docker volume rm -f): a missing volume is no error."""
        with self._lock:
            try:
                self.get(name)
            except errors.NotFoundError:
                if force:
                    return
                raise
            refs = sorted(self.users(name))
            if refs or self._held.get(name):
                tail = f" - [{', '.join(refs)}]" if refs else ""
                raise errors.ConflictError(f"remove {name}: volume is in use{tail}")
            d = self._dir(name)
            # the metadata goes first: a crash half way leaves no volume that looks whole
            (d / META).unlink(missing_ok=True)
            shutil.rmtree(d)  # rmtree never follows symlinks (it unlinks them)
        self.on_event("destroy", name, {"driver": DRIVER})

    def prune(self, filters: Filters | None = None) -> dict[str, Any]:
        """Remove every unused volume matching ``filters`` (label, label!)."""
        filters = filters or {}
        for key in filters:
            if key not in ("label", "label!"):
                raise errors.InvalidArgumentError("filters", f"invalid filter '{key}'")
        deleted, reclaimed = [], 0
        for vol in self.list({"label": filters.get("label") or []}):
            if any(self._label_hit(vol, w) for w in filters.get("label!") or []):
                continue
            size = dir_size(self.mountpoint(vol["Name"]))
            try:
                self.remove(vol["Name"])
            except (errors.ConflictError, errors.NotFoundError):
                continue  # in use, or gone meanwhile
            deleted.append(vol["Name"])
            reclaimed += size
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    @staticmethod
    def _label_hit(vol: dict[str, Any], want: str) -> bool:
        key, eq, value = want.partition("=")
        return key in vol["Labels"] and (not eq or vol["Labels"][key] == value)

    def usage(self) -> Vols:
        """/system/df "Volumes": each volume with UsageData (Size in bytes, RefCount)."""
        out = []
        for vol in self.list():
            vol["UsageData"] = {"Size": dir_size(self.mountpoint(vol["Name"])),
                                "RefCount": len(self.users(vol["Name"]))}
            out.append(vol)
        return out

    def resolve(self, points: Vols) -> Vols:
        """Give each mount point its host source, and hold its volume (``release`` ends
        the hold once the container's record names it).  Named volumes are created on
        first use (with the mount's labels), anonymous ones get a new 64-hex volume, a
        missing ``-v`` bind source is made (0755, as Docker does).  On failure, the anonymous volumes made
        here are removed again: nothing is left half-done."""
        out: Vols = []
        made: Strs = []
        try:
            for p in points:
                p = dict(p)
                if p["Type"] == "volume":
                    anon = not p.get("Name")
                    labels = p.get("Labels") or {}
                    if anon:
                        labels = {**labels, ANON_LABEL: ""}
                    with self._lock:  # made and held at once: no rm or prune between
                        vol = self.create(p.get("Name") or None, labels=labels)
                        self._held[vol["Name"]] = self._held.get(vol["Name"], 0) + 1
                    if anon:
                        made.append(vol["Name"])
                    p["Name"], p["Source"] = vol["Name"], vol["Mountpoint"]
                elif p["Type"] == "bind" and p.get("Create") and not os.path.lexists(p["Source"]):
                    os.makedirs(p["Source"], mode=DATA_MODE, exist_ok=True)
                out.append(p)
        except BaseException:
            self.release(out)
            for n in made:
                self.remove(n, force=True)
            raise
        return out

    def remove_anonymous(self, points: Vols) -> None:
        """`docker rm -v` / `--rm`: remove the container's anonymous volumes (named ones
        stay); one still in use elsewhere is kept, as Docker does."""
        for p in points:
            if p.get("Type") == "volume" and p.get("Anonymous") and p.get("Name"):
                try:
                    self.remove(p["Name"])
                except (errors.ConflictError, errors.NotFoundError):
                    continue

    def populate(self, name: str, src_fd: int) -> bool:
        """Copy the directory ``src_fd`` (the image's content at a mount point) into volume
        ``name`` if the volume is still empty (Docker's copy-up); True when copied.  Under
        the store's lock: two containers created at once with one new volume copy once."""
        from labkit.engine.volumes.copyup import copy_tree, is_empty
        with self._lock:
            data = self.mountpoint(name)
            if not is_empty(str(data)):
                return False
            dst = os.open(data, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                copy_tree(src_fd, dst)
            finally:
                os.close(dst)
            return True
