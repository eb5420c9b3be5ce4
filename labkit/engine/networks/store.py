"""The daemon's networks: one record per network, found by id, name or id prefix.

Each record is ``networks_dir()/<id>.json`` (0600, written atomically): what `docker
network create` asked for (driver, IPAM config, options, labels, flags), never what the
kernel holds -- the driver makes that again from the record at daemon start.  The three
predefined networks (``bridge``, ``host``, ``none``) get records too, so every network
has a stable id that `network ls` and `inspect` show, as dockerd's do.

Lookup follows moby's daemon.GetNetworkByID / GetNetworkByName order: the full id, then
the exact name, then a unique id prefix; several networks matching a prefix is an error
naming them, not a guess.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine import paths

__all__ = ["PREDEFINED", "SWARM_ID", "NetworkNotFoundError", "NetworkRecord", "NetworkStore", "new_id",
           "validate_name"]

PREDEFINED = ("bridge", "host", "none")
# moby's network names: what a name may be (daemon/network.go validNetworkName uses the
# container-name rule); a name is also a link name and a DNS-visible label, so no slash.
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# a local network's id (64 hex), or a swarm network's (the managers' 25 base36 digits)
_ID = re.compile(r"^(?:[0-9a-f]{64}|[0-9a-z]{25})$")
SWARM_ID = re.compile(r"^[0-9a-z]{25}$")


class NetworkNotFoundError(errors.NotFoundError):
    """moby's words: ``network NAME not found`` (404)."""

    def __init__(self, name: str, hint: str | None = None) -> None:
        super().__init__("network", name, hint)
        self.message = f"network {name} not found"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.name, self.hint))


def new_id() -> str:
    return secrets.token_hex(32)


def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise errors.InvalidArgumentError("Name", "network name is missing" if not name
                                          else "network name must be a string")
    if len(name) > 128 or not _NAME.match(name):
        raise errors.InvalidArgumentError(
            "Name", f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are "
            "allowed")
    return name


@dataclass(slots=True)
class NetworkRecord:
    """`docker network create` as accepted (the request, not the kernel state)."""

    id: str
    name: str
    driver: str
    created: float
    ipam: list[dict[str, Any]] = field(default_factory=list)  # Subnet/Gateway/IPRange/Aux
    ipam_driver: str = "default"
    ipam_options: dict[str, str] = field(default_factory=dict)
    ipv4: bool = True
    ipv6: bool = False
    internal: bool = False
    attachable: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    # "swarm": a swarm network materialized on this node (Networks.ensure_swarm); then
    # ``swarm`` holds what the node needs to make it again: VNI, Encrypted, MTU, Ingress,
    # LocalAddr, DataPort, NodeAddress (never key material)
    scope: str = "local"
    swarm: dict[str, Any] = field(default_factory=dict)

    @property
    def predefined(self) -> bool:
        return self.name in PREDEFINED and self.driver in ("bridge", "host", "null")

    def save(self, d: Path) -> None:
        paths.write_secret(d / f"{self.id}.json", json.dumps(asdict(self)).encode())


class NetworkStore:
    """Every network record of this daemon; thread-safe."""

    def __init__(self, root: Path | None = None) -> None:
        self.dir = paths.make_dir(root or paths.networks_dir(), paths.PRIVATE_DIR_MODE)
        self._lock = threading.RLock()
        self._by_id: dict[str, NetworkRecord] = {}
        for f in sorted(self.dir.glob("*.json")):
            if not _ID.match(f.stem):
                continue  # (the IPAM state lives beside the records)
            try:
                rec = NetworkRecord(**json.loads(f.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # unreadable: left on disk for its owner, not served
            self._by_id[rec.id] = rec

    def all(self) -> list[NetworkRecord]:
        with self._lock:
            return sorted(self._by_id.values(), key=lambda r: r.created)

    def by_id(self, ident: str) -> NetworkRecord | None:
        """Exactly this id (no name, no prefix): what the swarm's agent refers to."""
        with self._lock:
            return self._by_id.get(ident)

    def by_name(self, name: str) -> NetworkRecord | None:
        with self._lock:
            return next((r for r in self._by_id.values() if r.name == name), None)

    def get(self, ref: str) -> NetworkRecord:
        """By full id, exact name, then unique id prefix; NetworkNotFoundError otherwise."""
        if not isinstance(ref, str) or not ref:
            raise NetworkNotFoundError(str(ref))
        with self._lock:
            if ref in self._by_id:
                return self._by_id[ref]
            named = self.by_name(ref)
            if named is not None:
                return named
            hits = [r for r in self._by_id.values() if r.id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:  # moby: "network X is ambiguous (N matches found based on ID prefix)"
            raise errors.InvalidArgumentError(
                "network", f"network {ref} is ambiguous ({len(hits)} matches found based on "
                "ID prefix)")
        raise NetworkNotFoundError(ref)

    def save(self, rec: NetworkRecord) -> None:
        """Write a changed record (a swarm network's name, labels or node address)."""
        with self._lock:
            rec.save(self.dir)
            self._by_id[rec.id] = rec

    def add(self, rec: NetworkRecord) -> None:
        with self._lock:
            if self.by_name(rec.name) is not None:
                raise errors.ConflictError(f"network with name {rec.name} already exists")
            rec.save(self.dir)
            self._by_id[rec.id] = rec

    def remove(self, rec: NetworkRecord) -> None:
        with self._lock:
            (self.dir / f"{rec.id}.json").unlink(missing_ok=True)
            self._by_id.pop(rec.id, None)

    @staticmethod
    def now() -> float:
        return time.time()
