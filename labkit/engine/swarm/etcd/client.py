"""An async etcd v3 client over etcd's JSON gRPC gateway, with mutual TLS (aiohttp).

etcd serves every v3 RPC also as ``POST /v3/<service>/<method>`` with a JSON body on its
client port (etcd 3.4: /v3/, /v3beta/ deprecated; etcd's "gRPC gateway" doc).  The JSON is
protobuf's mapping, with three things to know: ``bytes`` fields (keys, values) are base64;
int64/uint64 fields come back as JSON *strings*; fields at their zero value are omitted
(``"succeeded": false`` is absent, a fresh key has no ``lease``).  Errors come back as a
non-200 status with ``{"error": <etcd message>, "code": <gRPC code>}``.

No etcd Python library is used: python-etcd3 and aioetcd3 are unmaintained (no release
for years, pinned to old grpcio/protobuf), and the gateway needs nothing but HTTPS.

Endpoints are tried in turn, the last one that answered first.  A request that surely did
not reach Raft (connection refused, "no leader") moves on to the next endpoint, passes
repeat with a short backoff until ``timeout``; then ``QuorumError``.  A write that was sent
but not answered is never re-sent elsewhere (a compare-and-swap could be applied twice):
it raises ``QuorumError(outcome_unknown=True)`` at once.  Every request carries the gRPC
metadata ``hasleader: true`` (header ``Grpc-Metadata-Hasleader``, mapped by the gateway),
so a member without a leader answers "etcdserver: no leader" at once instead of holding
the request until its own request timeout (etcd v3rpc/interceptor.go).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from labkit import errors
from labkit.engine.swarm.etcd.errors import EtcdError, QuorumError, StoreAuthError

__all__ = ["KV", "EtcdClient", "Member", "MemberAdded", "Status", "TxnResult", "WatchEvent",
           "cmp_mod", "op_delete", "op_get", "op_put", "prefix_end"]

Key = str | bytes
Json = dict[str, Any]

# etcd messages that mean "this member cannot serve a write now": another member may, or a
# majority is gone (etcdserver/api/v3rpc/rpctypes/error.go).  None of them applied anything.
_NOT_APPLIED = ("no leader", "raft proposal dropped", "not capable", "leader changed",
                "too many requests", "stopped")
# Unavailable too, but a refusal to reconfigure that retrying elsewhere will not change:
# etcd's strict reconfig check wants the leader connected to every member for 5 s
# (etcdserver/server.go mayAddMember, mayRemoveMember; HealthInterval).
_RECONFIG_REFUSED = ("unhealthy cluster", "not enough started members")
# gRPC codes (google.golang.org/grpc/codes): Unavailable is what a member without quorum says.
_UNAVAILABLE, _INVALID_ARGUMENT, _NOT_FOUND, _ALREADY_EXISTS = 14, 3, 5, 6
_FAILED_PRECONDITION, _OUT_OF_RANGE = 9, 11


@dataclass(frozen=True)
class KV:
    """One key as etcd keeps it; ``mod_revision`` is what a compare-and-swap compares."""

    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int
    version: int
    lease: int


@dataclass(frozen=True)
class Member:
    """A cluster member; ``name`` is "" until a member added by member_add has started."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool


@dataclass(frozen=True)
class MemberAdded:
    """member_add's answer: the new member and the cluster's members, itself included."""

    member: Member
    members: tuple[Member, ...]

    def initial_cluster(self, new_name: str) -> dict[str, str]:
        """The --initial-cluster the new member must start with (name -> peer URL)."""
        out = {m.name: m.peer_urls[0] for m in self.members
               if m.id != self.member.id and m.name and m.peer_urls}
        out[new_name] = self.member.peer_urls[0]
        return out


@dataclass(frozen=True)
class Status:
    """maintenance/status of ONE member: who it is and whom it follows."""

    endpoint: str
    member_id: int
    leader_id: int
    raft_term: int
    raft_index: int
    db_size: int
    version: str


@dataclass(frozen=True)
class WatchEvent:
    """One change seen by a watch: "PUT" or "DELETE" (a deleted key's kv has no value,
    its mod_revision is the deletion's revision)."""

    type: str
    kv: KV


@dataclass(frozen=True)
class TxnResult:
    """A transaction's outcome: which branch ran, the store's revision, raw responses."""

    succeeded: bool
    revision: int
    responses: list[Json]


def _b(key: Key) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _enc(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _dec(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: Key) -> bytes:
    """The range_end that selects every key starting with ``prefix`` (clientv3 GetPrefixRangeEnd):
    the prefix with its last byte below 0xff incremented; b"\\0" (all keys) if there is none."""
    p = bytearray(_b(prefix))
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"


def cmp_mod(key: Key, mod_revision: int) -> Json:
    """A txn compare: ``key``'s mod_revision equals ``mod_revision`` (0: the key is absent,
    as etcd compares a missing key against a zero KeyValue, mvcc/apply.go applyCompare)."""
    return {"key": _enc(_b(key)), "target": "MOD", "result": "EQUAL",
            "mod_revision": str(mod_revision)}


def op_put(key: Key, value: bytes, lease: int = 0) -> Json:
    """A txn operation: put."""
    return {"request_put": {"key": _enc(_b(key)), "value": _enc(value), "lease": str(lease)}}


def op_delete(key: Key) -> Json:
    """A txn operation: delete one key."""
    return {"request_delete_range": {"key": _enc(_b(key))}}


def op_get(key: Key) -> Json:
    """A txn operation: get one key."""
    return {"request_range": {"key": _enc(_b(key))}}


def _kv(d: Json) -> KV:
    return KV(key=_dec(d.get("key")), value=_dec(d.get("value")),
              mod_revision=int(d.get("mod_revision", 0)),
              create_revision=int(d.get("create_revision", 0)),
              version=int(d.get("version", 0)), lease=int(d.get("lease", 0)))


def _member(d: Json) -> Member:
    return Member(id=int(d.get("ID", 0)), name=str(d.get("name", "")),
                  peer_urls=tuple(d.get("peerURLs", ())),
                  client_urls=tuple(d.get("clientURLs", ())),
                  is_learner=bool(d.get("isLearner", False)))


def _revision(data: Json) -> int:
    return int(data.get("header", {}).get("revision", 0))


def _map_error(message: str, code: int) -> errors.LabkitError:
    """etcd's error text/code -> the labkit class the daemon maps to an HTTP status."""
    low = message.lower()
    if "member not found" in low:
        return errors.NotFoundError("etcd member", message)
    if "lease not found" in low:
        return errors.NotFoundError("etcd lease", message)
    if "already exist" in low:
        return errors.AlreadyExistsError("etcd member", message)
    if "space exceeded" in low:
        return errors.ConflictError(f"cluster store: {message}",
                                    hint="the store hit --quota-backend-bytes: delete and defragment")
    if "compacted" in low or code in (_FAILED_PRECONDITION, _OUT_OF_RANGE):
        return errors.ConflictError(f"cluster store: {message}")
    if "too large" in low or code == _INVALID_ARGUMENT:
        return errors.InvalidArgumentError("cluster store request", message)
    return EtcdError(message, code)


class EtcdClient:
    """An async etcd v3 client (mutual TLS, endpoint failover), one aiohttp session.

    ``endpoints`` are client URLs (``https://10.0.0.2:2379``); ``ca_file`` is the swarm root
    CA, ``cert_file``/``key_file`` a node certificate of that CA; ``timeout`` bounds one call
    in seconds, failover included.  Use ``async with EtcdClient(...) as c:`` or ``close()``.
    ``ca_file=None`` speaks plain HTTP (unit tests against a fake gateway only).
    The session is made lazily in the running event loop, so construct it anywhere.
    """

    def __init__(self, endpoints: Sequence[str], ca_file: Path | None, cert_file: Path | None,
                 key_file: Path | None, timeout: float = 2.0) -> None:
        if not endpoints:
            raise errors.InvalidArgumentError("endpoints", "at least one etcd client URL is needed")
        for ep in endpoints:
            if not ep.startswith(("https://", "http://")):
                raise errors.InvalidArgumentError("endpoint", f"{ep!r} is not an http(s) URL")
        if timeout <= 0:
            raise errors.InvalidArgumentError("timeout", f"{timeout} is not a positive number")
        self.endpoints = [ep.rstrip("/") for ep in endpoints]
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if ca_file is not None:
            # check_hostname stays on: member certificates carry their IPs as SANs (SWARM12.md).
            self._ssl = ssl.create_default_context(cafile=str(ca_file))
            # TLS 1.2 at most: there a member's refusal of our certificate fails the
            # handshake (an alert before the server's Finished, RFC 5246 7.4.6), which we
            # can name.  In TLS 1.3 the client's handshake ends before the server has
            # checked its certificate (RFC 8446 4.4.2); the refusal then arrives as a reset
            # of the first request, which looks like a member that crashed.
            self._ssl.maximum_version = ssl.TLSVersion.TLSv1_2
            if cert_file is not None and key_file is not None:
                self._ssl.load_cert_chain(str(cert_file), str(key_file))
        self._good = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False),
                headers={"Grpc-Metadata-Hasleader": "true"})
        return self._session

    def _order(self) -> list[int]:
        n = len(self.endpoints)
        return [(self._good + i) % n for i in range(n)]

    async def _post(self, url: str, body: Json, timeout: float) -> tuple[int, Json]:
        # a connect that times out is told apart (ConnectionTimeoutError): nothing was sent
        limit = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 1.0))
        async with self._sess().post(url, json=body, timeout=limit) as resp:
            text = await resp.text()
            try:
                data = json.loads(text) if text else {}
            except ValueError:
                data = {"error": text.strip()[:200], "code": 2}
            # a streamed RPC (lease keepalive) answers {"result": {...}} or {"error": {...}}
            if isinstance(data, dict) and "result" in data and resp.status == 200:
                data = data["result"]
            elif isinstance(data, dict) and isinstance(data.get("error"), dict):
                data = data["error"]
                if "message" in data and "error" not in data:
                    data["error"] = data["message"]
            return resp.status, data if isinstance(data, dict) else {}

    async def _call(self, path: str, body: Json, *, write: bool,
                    endpoint: str | None = None) -> Json:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        order = [endpoint.rstrip("/")] if endpoint else [self.endpoints[i] for i in self._order()]
        reached: set[str] = set()
        tls: tuple[str, str] | None = None
        last = "no endpoint was tried"
        said: str | None = None  # etcd's own word beats a connection error in the message
        delay = 0.05
        while True:
            refused = 0  # endpoints of this pass that refused TLS: retrying will not help
            for ep in order:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    status, data = await self._post(ep + path, body, remaining)
                except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as err:
                    tls, last, refused = (ep, str(err)), f"{ep}: {err}", refused + 1
                    continue
                except aiohttp.ClientConnectorError as err:
                    last = f"{ep}: {err.os_error or err}"
                    continue
                except aiohttp.ConnectionTimeoutError:
                    last = f"{ep}: no connection in time"
                    continue
                except (TimeoutError, aiohttp.ClientError) as err:
                    what = "no answer in time" if isinstance(err, TimeoutError) else str(err)
                    if _ssl_cause(err):
                        # a TLS alert after the handshake (a refusal that TLS 1.3 would
                        # send this way, should a server cap us there): not a lost quorum
                        tls, last, refused = (ep, what), f"{ep}: {what}", refused + 1
                        continue
                    reached.add(ep)  # connected, then no (whole) answer
                    if write:
                        raise QuorumError(len(reached), len(order), f"{ep}: {what}",
                                          outcome_unknown=True) from err
                    last = f"{ep}: {what}"
                    continue
                reached.add(ep)
                if status == 200:
                    if endpoint is None:
                        self._good = self.endpoints.index(ep)
                    return data
                message = str(data.get("error") or data.get("message") or f"HTTP {status}")
                code = data.get("code", 2)
                code = code if isinstance(code, int) else 2  # gRPC Unknown
                if "request timed out" in message:
                    # the proposal may still commit (etcd: "possibly due to previous leader
                    # failure"): a write is not re-sent
                    if write:
                        raise QuorumError(len(reached), len(order), f"{ep}: {message}",
                                          outcome_unknown=True)
                    last = f"{ep}: {message}"
                    continue
                if any(s in message for s in _RECONFIG_REFUSED):
                    raise errors.ConflictError(
                        f"cluster store: {message}",
                        hint="a membership change needs every member connected for 5 s "
                             "and a quorum that survives it: retry when the cluster is healthy")
                if code == _UNAVAILABLE or any(s in message for s in _NOT_APPLIED):
                    said = last = f"{ep}: {message}"
                    continue
                raise _map_error(message, code)
            if tls is not None and refused == len(order):
                raise StoreAuthError(*tls)
            if endpoint is not None or loop.time() + delay >= deadline:
                break  # one named member: one try, its caller asks the others
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.4)
        if tls is not None and not reached:
            raise StoreAuthError(*tls)
        raise QuorumError(len(reached), len(order), said or last)

    # -- KV ---------------------------------------------------------------------------

    async def get(self, key: Key, *, serializable: bool = False) -> KV | None:
        """The key, or None.  Linearizable (needs a quorum) unless ``serializable``."""
        data = await self._call("/v3/kv/range", {"key": _enc(_b(key)),
                                                 "serializable": serializable}, write=False)
        kvs = data.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    async def range_prefix(self, prefix: Key, *, serializable: bool = False) -> list[KV]:
        """Every key under ``prefix``, sorted by key."""
        data = await self._call("/v3/kv/range", {
            "key": _enc(_b(prefix)), "range_end": _enc(prefix_end(prefix)),
            "serializable": serializable}, write=False)
        return [_kv(d) for d in data.get("kvs") or []]

    async def put(self, key: Key, value: bytes, lease: int = 0) -> int:
        """Set ``key``; returns the store's revision after the put (the key's mod_revision)."""
        body: Json = {"key": _enc(_b(key)), "value": _enc(value)}
        if lease:
            body["lease"] = str(lease)
        return _revision(await self._call("/v3/kv/put", body, write=True))

    async def delete(self, key: Key) -> bool:
        """Delete ``key``; True if it existed."""
        data = await self._call("/v3/kv/deleterange", {"key": _enc(_b(key))}, write=True)
        return int(data.get("deleted", 0)) > 0

    async def txn(self, compare: list[Json], success: list[Json],
                  failure: list[Json] | None = None) -> TxnResult:
        """etcd's Txn: if every ``compare`` holds, run ``success``, else ``failure``
        (build them with cmp_mod, op_put, op_delete, op_get)."""
        data = await self._call("/v3/kv/txn", {"compare": compare, "success": success,
                                               "failure": failure or []}, write=True)
        return TxnResult(succeeded=bool(data.get("succeeded", False)),
                         revision=_revision(data), responses=list(data.get("responses") or []))

    async def put_if(self, key: Key, value: bytes, mod_revision: int, lease: int = 0) -> bool:
        """Compare-and-swap: put only if ``key``'s mod_revision is ``mod_revision``
        (0: only if the key does not exist).  False if someone else changed it."""
        if mod_revision < 0:
            raise errors.InvalidArgumentError("mod_revision", f"{mod_revision} is negative")
        res = await self.txn([cmp_mod(key, mod_revision)], [op_put(key, value, lease)])
        return res.succeeded

    async def delete_if(self, key: Key, mod_revision: int) -> bool:
        """Delete only if ``key``'s mod_revision is ``mod_revision``; False otherwise."""
        if mod_revision <= 0:
            raise errors.InvalidArgumentError("mod_revision", f"{mod_revision} is not positive")
        res = await self.txn([cmp_mod(key, mod_revision)], [op_delete(key)])
        return res.succeeded

    # -- leases -----------------------------------------------------------------------

    async def lease_grant(self, ttl_s: int) -> int:
        """A new lease of ``ttl_s`` seconds; returns its id."""
        if ttl_s <= 0:
            raise errors.InvalidArgumentError("ttl", f"{ttl_s} is not a positive number of seconds")
        data = await self._call("/v3/lease/grant", {"TTL": str(ttl_s)}, write=True)
        return int(data.get("ID", 0))

    async def lease_keepalive(self, lease_id: int) -> int:
        """Refresh a lease; returns its TTL again.  NotFoundError if it has expired."""
        data = await self._call("/v3/lease/keepalive", {"ID": str(lease_id)}, write=True)
        ttl = int(data.get("TTL", 0))
        if ttl <= 0:
            raise errors.NotFoundError("etcd lease", str(lease_id), hint="it expired: grant a new one")
        return ttl

    async def lease_revoke(self, lease_id: int) -> None:
        """Revoke a lease; the keys attached to it are deleted."""
        await self._call("/v3/lease/revoke", {"ID": str(lease_id)}, write=True)

    # -- cluster ----------------------------------------------------------------------

    async def member_list(self) -> list[Member]:
        """The cluster's members (as the answering member knows them)."""
        data = await self._call("/v3/cluster/member/list", {}, write=False)
        return [_member(d) for d in data.get("members") or []]

    async def member_add(self, peer_url: str, *, learner: bool = False) -> MemberAdded:
        """Announce a member before it starts (it then starts with state "existing")."""
        if not peer_url.startswith("https://"):
            raise errors.InvalidArgumentError("peer URL", f"{peer_url!r} is not an https URL")
        data = await self._call("/v3/cluster/member/add",
                                {"peerURLs": [peer_url], "isLearner": learner}, write=True)
        return MemberAdded(member=_member(data.get("member") or {}),
                           members=tuple(_member(d) for d in data.get("members") or []))

    async def member_promote(self, member_id: int) -> None:
        """Make a learner a voting member; etcd refuses until the learner's log has caught
        up with the leader's (a ConflictError then: try again)."""
        await self._call("/v3/cluster/member/promote", {"ID": str(member_id)}, write=True)

    async def member_remove(self, member_id: int) -> None:
        """Remove a member from the cluster (its process must be stopped by its owner)."""
        await self._call("/v3/cluster/member/remove", {"ID": str(member_id)}, write=True)

    async def status(self, endpoint: str) -> Status:
        """maintenance/status of the member at ``endpoint`` only (no failover)."""
        data = await self._call("/v3/maintenance/status", {}, write=False, endpoint=endpoint)
        return Status(endpoint=endpoint,
                      member_id=int(data.get("header", {}).get("member_id", 0)),
                      leader_id=int(data.get("leader", 0)),
                      raft_term=int(data.get("raftTerm", 0)),
                      raft_index=int(data.get("raftIndex", 0)),
                      db_size=int(data.get("dbSize", 0)), version=str(data.get("version", "")))

    async def health(self, endpoint: str) -> bool:
        """GET /health of one member: true when it has a leader and a quorum read succeeds."""
        try:
            async with self._sess().get(endpoint.rstrip("/") + "/health",
                                        timeout=aiohttp.ClientTimeout(total=self.timeout)) as r:
                data = await r.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return False
        return r.status == 200 and isinstance(data, dict) and data.get("health") == "true"

    async def watch_prefix(self, prefix: Key, start_revision: int = 0) -> AsyncIterator[WatchEvent]:
        """Every change under ``prefix`` from ``start_revision`` on (0: from now), as the
        gateway streams them (one JSON object per line, ``{"result": WatchResponse}``).

        One endpoint, no reconnection: when the stream ends (the member went away) this
        raises QuorumError; watch again from the last revision seen + 1.  A revision that
        was compacted away raises ConflictError.
        """
        create: Json = {"key": _enc(_b(prefix)), "range_end": _enc(prefix_end(prefix))}
        if start_revision:
            create["start_revision"] = str(start_revision)
        last = "no endpoint was tried"
        for i in self._order():
            ep = self.endpoints[i]
            limit = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout)
            try:
                resp = await self._sess().post(ep + "/v3/watch", json={"create_request": create},
                                               timeout=limit)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as err:
                last = f"{ep}: {err}"
                continue
            async with resp:
                if resp.status != 200:
                    raise EtcdError((await resp.text()).strip()[:200])
                try:
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        msg = json.loads(line)
                        if "error" in msg:
                            err_body = msg["error"]
                            raise EtcdError(str(err_body.get("message", err_body))
                                            if isinstance(err_body, dict) else str(err_body))
                        result = msg.get("result", {})
                        if int(result.get("compact_revision", 0)):
                            raise errors.ConflictError(
                                f"cluster store: watch from revision {start_revision} "
                                f"is compacted (now {result['compact_revision']})")
                        for ev in result.get("events") or []:
                            yield WatchEvent(type=str(ev.get("type", "PUT")),
                                             kv=_kv(ev.get("kv") or {}))
                except (aiohttp.ClientError, TimeoutError) as err:
                    last = f"{ep}: {err}"
            raise QuorumError(0, len(self.endpoints), f"watch ended: {last}")
        raise QuorumError(0, len(self.endpoints), last)

    async def leader(self) -> Member | None:
        """The leader as the first member that has one sees it; None during an election."""
        for i in self._order():
            try:
                st = await self.status(self.endpoints[i])
            except (QuorumError, StoreAuthError, EtcdError):
                continue
            if st.leader_id:
                for m in await self.member_list():
                    if m.id == st.leader_id:
                        return m
        return None


def _ssl_cause(err: BaseException) -> bool:
    seen: BaseException | None = err
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
