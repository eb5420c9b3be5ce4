"""The container records in memory and on disk; names and IDs resolved as Docker does.

Resolution order (moby daemon.GetContainer): a full ID, then an exact name (with or without
the leading '/'), then a unique ID prefix.  An ambiguous prefix is an InvalidArgumentError
("multiple IDs found with provided prefix"), nothing found a NotFoundError("container", ...),
which the daemon turns into 404 "No such container: X".

State owned here, and changed only here: the records by ID, the names, and one lock per
container that serializes its lifecycle moves (start, exit, restart, removal).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from pathlib import Path

from labkit import errors
from labkit.engine import paths
from labkit.engine.containers.record import ContainerRecord

log = logging.getLogger("labkit.daemon")

__all__ = ["ContainerStore", "name_conflict"]

# Docker's name generator, shortened (moby pkg/namesgenerator): adjective_scientist.
_LEFT = ("admiring", "bold", "brave", "clever", "eager", "focused", "gifted", "happy", "jolly",
         "keen", "lucid", "modest", "nifty", "quirky", "serene", "sharp", "tender", "vibrant")
_RIGHT = ("babbage", "curie", "darwin", "einstein", "euler", "feynman", "hopper", "kepler",
          "lovelace", "meitner", "newton", "noether", "pasteur", "ritchie", "thompson", "turing")


def name_conflict(name: str, owner: str) -> errors.ConflictError:
    """Docker's exact 409 text for a name already in use (docker-api.md section 5)."""
    return errors.ConflictError(
        f'Conflict. The container name "/{name}" is already in use by container "{owner}". '
        "You have to remove (or rename) that container to be able to reuse that name.")


class ContainerStore:
    """All container records; the one place that maps names and prefixes to IDs."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else paths.containers_dir()
        self.by_id: dict[str, ContainerRecord] = {}
        self.names: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # id -> where its unreadable record was moved (load_all); the daemon reports these
        self.unreadable: dict[str, str] = {}

    def load_all(self, keep: frozenset[str] = frozenset()) -> list[ContainerRecord]:
        """Read every record from disk (daemon start).

        A directory with no record is a create that died before writing it, and is removed,
        unless ``keep`` names it (the supervisor still has a task of that id) or a record
        was moved aside there before.  An unreadable record is moved aside (renamed
        ``config.v2.json.unreadable-<unix time>``, its bytes kept for whoever repairs it),
        logged, and listed in ``unreadable``; the directory stays, since a running task
        may still use its bundle and log."""
        self.root.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        for d in sorted(self.root.iterdir()):
            if not d.is_dir():
                continue
            record = d / "config.v2.json"
            aside = sorted(d.glob(f"{record.name}.unreadable-*"))
            if not record.exists():
                if aside:
                    self.unreadable[d.name] = str(aside[-1])
                elif d.name not in keep:
                    shutil.rmtree(d, ignore_errors=True)  # a create that died before its record
                continue
            try:
                rec = ContainerRecord.load(d)
            except errors.LabkitError as err:
                self.unreadable[d.name] = self._move_aside(record, err)
                continue
            self.by_id[rec.id] = rec
            self.names[rec.name] = rec.id
        return list(self.by_id.values())

    @staticmethod
    def _move_aside(record: Path, err: errors.LabkitError) -> str:
        moved = record.with_name(f"{record.name}.unreadable-{int(time.time())}")
        try:
            os.rename(record, moved)
        except OSError as exc:
            log.error("container record %s is unreadable (%s) and could not be moved aside: %s",
                      record, err, exc)
            return str(record)
        log.error("container record %s is unreadable (%s): moved aside to %s", record, err,
                  moved.name)
        return str(moved)

    def reserve(self, rec: ContainerRecord) -> None:
        """Claim rec.name for rec.id; ConflictError with Docker's text when taken."""
        owner = self.names.get(rec.name)
        if owner is not None and owner != rec.id:
            raise name_conflict(rec.name, owner)
        self.names[rec.name] = rec.id

    def add(self, rec: ContainerRecord) -> None:
        self.reserve(rec)
        self.by_id[rec.id] = rec

    def lock(self, rec: ContainerRecord) -> asyncio.Lock:
        """The lock held around each of ``rec``'s lifecycle moves."""
        return self._locks.setdefault(rec.id, asyncio.Lock())

    def known(self, rec: ContainerRecord) -> bool:
        """Whether ``rec`` is still a container here (not removed meanwhile)."""
        return self.by_id.get(rec.id) is rec

    def discard(self, rec: ContainerRecord) -> None:
        """Forget rec (its directory is the caller's to remove)."""
        self._locks.pop(rec.id, None)
        self.by_id.pop(rec.id, None)
        if self.names.get(rec.name) == rec.id:
            del self.names[rec.name]

    def rename(self, rec: ContainerRecord, new: str) -> None:
        owner = self.names.get(new)
        if owner is not None and owner != rec.id:
            raise name_conflict(new, owner)
        self.names.pop(rec.name, None)
        rec.name = new
        self.names[new] = rec.id

    def get(self, ref: str) -> ContainerRecord:
        """Resolve an ID, a name ('/x' or 'x') or a unique ID prefix."""
        if ref in self.by_id:
            return self.by_id[ref]
        cid = self.names.get(ref.lstrip("/"))
        if cid is not None and cid in self.by_id:
            return self.by_id[cid]
        if ref:
            found = [r for i, r in self.by_id.items() if i.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise errors.InvalidArgumentError(
                    "container", f"multiple IDs found with provided prefix: {ref}")
        raise errors.NotFoundError("container", ref)

    def generate_name(self, cid: str) -> str:
        """A free adjective_scientist name, derived from the ID so it is reproducible."""
        n = int(cid[:8], 16)
        for i in range(len(_LEFT) * len(_RIGHT)):
            k = (n + i) % (len(_LEFT) * len(_RIGHT))
            name = f"{_LEFT[k // len(_RIGHT)]}_{_RIGHT[k % len(_RIGHT)]}"
            if name not in self.names:
                return name
        return f"lk_{cid[:12]}"

    def all(self) -> list[ContainerRecord]:
        """Records, newest first (the order `docker ps` prints)."""
        return sorted(self.by_id.values(), key=lambda r: r.created, reverse=True)
