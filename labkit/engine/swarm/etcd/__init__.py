"""The swarm's cluster store: etcd members run by manager daemons, and an async client.

* ``member``: one etcd 3.4 member process (mutual TLS, dies with its daemon, stale ones
  cleaned up on start).
* ``client``: an async etcd v3 client over etcd's JSON gRPC gateway (aiohttp, mutual TLS,
  endpoint failover; ``QuorumError`` when a majority is gone).
"""

from __future__ import annotations

from labkit.engine.swarm.etcd.client import (
    KV,
    EtcdClient,
    Member,
    MemberAdded,
    Status,
    TxnResult,
    WatchEvent,
)
from labkit.engine.swarm.etcd.errors import EtcdError, QuorumError, StoreAuthError
from labkit.engine.swarm.etcd.member import EtcdMember, MemberConfig

__all__ = ["KV", "EtcdClient", "EtcdError", "EtcdMember", "Member", "MemberAdded",
           "MemberConfig", "QuorumError", "Status", "StoreAuthError", "TxnResult", "WatchEvent"]
