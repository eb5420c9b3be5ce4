"""The cluster store: JSON objects in etcd under /lk/swarm/, each sealed with the data key.

etcd holds only ciphertext (seal.DataKey, AES-256-GCM, the etcd key as associated data, so
a value copied under another key fails to open).  An object's Version.Index is its key's
etcd mod_revision, and every update is a compare-and-swap on it: two managers that update
the same object at once cannot both win (etcd's Txn, "compare mod_revision").
"""

from __future__ import annotations

import json
from typing import Any

from labkit import errors
from labkit.engine.swarm.etcd.client import EtcdClient
from labkit.engine.swarm.seal import DataKey

__all__ = ["ALIVE", "ATTACH", "CLUSTER", "CONFIGS", "NAMES", "NETWORKS", "NODES", "SECRETS",
           "SERVICES", "SUBNETS", "TASKS", "VNIS", "ClusterStore"]

PREFIX = "/lk/swarm/"
CLUSTER = PREFIX + "cluster"
NODES = PREFIX + "nodes/"
ALIVE = PREFIX + "alive/"
# issue 13: the objects of services and tasks (Docker's shapes, see objects.py)
SERVICES = PREFIX + "services/"   # services/<id>
TASKS = PREFIX + "tasks/"         # tasks/<id>
NETWORKS = PREFIX + "networks/"   # networks/<id>: swarm-scoped (overlay) networks
SECRETS = PREFIX + "secrets/"     # secrets/<id>: the data sealed like every value
CONFIGS = PREFIX + "configs/"     # configs/<id>
# reservations, each taken with a create-if-absent (etcd's "version = 0" compare): two
# managers that create at once cannot both get a name, a subnet or a VNI
NAMES = PREFIX + "names/"         # names/<kind>/<name> -> {"ID": id}
SUBNETS = PREFIX + "subnets/"     # subnets/<cidr with _ for />  -> {"Network": id}
VNIS = PREFIX + "vnis/"           # vnis/<n> -> {"Network": id}
ATTACH = PREFIX + "attach/"       # attach/<node id>/<network id> -> the node's own address

Obj = dict[str, Any]


class ClusterStore:
    """Sealed, versioned objects over an EtcdClient."""

    def __init__(self, client: EtcdClient, dek: DataKey) -> None:
        self.client = client
        self.dek = dek

    def _seal(self, key: str, obj: Obj) -> bytes:
        return self.dek.seal(json.dumps(obj, sort_keys=True).encode(), key.encode())

    def _open(self, key: str, blob: bytes) -> Obj:
        obj: Obj = json.loads(self.dek.open(blob, key.encode()))
        return obj

    async def get(self, key: str) -> tuple[Obj, int] | None:
        kv = await self.client.get(key)
        if kv is None:
            return None
        return self._open(key, kv.value), kv.mod_revision

    async def must_get(self, key: str, what: str) -> tuple[Obj, int]:
        got = await self.get(key)
        if got is None:
            raise errors.NotFoundError(what, key.removeprefix(PREFIX))
        return got

    async def create(self, key: str, obj: Obj) -> None:
        if not await self.client.put_if(key, self._seal(key, obj), 0):
            raise errors.AlreadyExistsError("swarm object", key.removeprefix(PREFIX))

    async def put(self, key: str, obj: Obj, lease: int = 0) -> None:
        await self.client.put(key, self._seal(key, obj), lease=lease)

    async def cas(self, key: str, obj: Obj, version: int) -> None:
        """Write ``obj`` if the key is still at ``version``; ConflictError otherwise (the
        Docker CLI's "update out of sequence")."""
        if not await self.client.put_if(key, self._seal(key, obj), version):
            raise errors.ConflictError("update out of sequence")

    async def list(self, prefix: str) -> list[tuple[Obj, int]]:
        return [(self._open(kv.key.decode(), kv.value), kv.mod_revision)
                for kv in await self.client.range_prefix(prefix)]

    async def delete(self, key: str) -> bool:
        return await self.client.delete(key)

    # --- liveness: a key per node that lives as long as its lease (3 heartbeats)
    async def mark_alive(self, node_id: str, ttl_s: int) -> None:
        lease = await self.client.lease_grant(ttl_s)
        await self.client.put(ALIVE + node_id, b"1", lease=lease)

    async def mark_down(self, node_id: str) -> None:
        await self.client.delete(ALIVE + node_id)

    async def alive(self) -> set[str]:
        return {kv.key.decode().removeprefix(ALIVE)
                for kv in await self.client.range_prefix(ALIVE)}
