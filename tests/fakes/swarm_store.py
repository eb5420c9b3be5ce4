"""An in-memory stand-in for labkit.engine.swarm.store.ClusterStore, for unit tests.

Same methods, same errors, same versioning: every write bumps one store-wide revision and
an object's version is the revision of its last write (etcd's mod_revision), so
compare-and-swap conflicts behave as on etcd.  Values are deep-copied in and out, as the
real store's JSON round trip does.  ``alive_nodes`` stands for the lease-backed alive keys.
"""

from __future__ import annotations

import copy
from typing import Any

from labkit import errors
from labkit.engine.swarm.store import ALIVE, PREFIX

Obj = dict[str, Any]


class MemoryStore:
    """ClusterStore's interface over a dict."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[Obj, int]] = {}
        self.revision = 1
        self.alive_nodes: set[str] = set()

    def _write(self, key: str, obj: Obj) -> None:
        self.revision += 1
        self.data[key] = (copy.deepcopy(obj), self.revision)

    async def get(self, key: str) -> tuple[Obj, int] | None:
        got = self.data.get(key)
        return None if got is None else (copy.deepcopy(got[0]), got[1])

    async def must_get(self, key: str, what: str) -> tuple[Obj, int]:
        got = await self.get(key)
        if got is None:
            raise errors.NotFoundError(what, key.removeprefix(PREFIX))
        return got

    async def create(self, key: str, obj: Obj) -> None:
        if key in self.data:
            raise errors.AlreadyExistsError("swarm object", key.removeprefix(PREFIX))
        self._write(key, obj)

    async def put(self, key: str, obj: Obj, lease: int = 0) -> None:
        self._write(key, obj)

    async def cas(self, key: str, obj: Obj, version: int) -> None:
        current = self.data.get(key)
        if (current[1] if current else 0) != version:
            raise errors.ConflictError("update out of sequence")
        self._write(key, obj)

    async def list(self, prefix: str) -> list[tuple[Obj, int]]:
        return [(copy.deepcopy(o), v) for k, (o, v) in sorted(self.data.items())
                if k.startswith(prefix)]

    async def delete(self, key: str) -> bool:
        if key not in self.data:
            return False
        self.revision += 1
        del self.data[key]
        return True

    async def mark_alive(self, node_id: str, ttl_s: int) -> None:
        self.alive_nodes.add(node_id)

    async def mark_down(self, node_id: str) -> None:
        self.alive_nodes.discard(node_id)

    async def alive(self) -> set[str]:
        return set(self.alive_nodes)

    def keys(self, prefix: str = ALIVE[:0]) -> list[str]:
        """Every key under ``prefix`` (test helper)."""
        return sorted(k for k in self.data if k.startswith(prefix))
