"""EtcdClient against a tiny fake of etcd's JSON gateway (plain HTTP on loopback): the wire
encoding, error mapping and endpoint failover; MemberConfig's validation and flags."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from labkit import errors
from labkit.engine.swarm.etcd import EtcdClient, EtcdMember, MemberConfig, QuorumError
from labkit.engine.swarm.etcd.client import prefix_end


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


class Fake:
    """One fake member: records (path, body); answers with ``reply(path, body)``."""

    def __init__(self, reply: Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]]) -> None:
        self.reply = reply
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.headers: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append((request.path, body))
        self.headers.append(request.headers.get("Grpc-Metadata-Hasleader", ""))
        status, data = self.reply(request.path, body)
        return web.json_response(data, status=status)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(fakes: list[Fake], test: Callable[[list[str]], Awaitable[None]], dead: int = 0) -> None:
    """Serve ``fakes`` on loopback, then run ``test`` with their URLs (``dead`` refused first)."""
    async def main() -> None:
        runners, urls = [], [f"http://127.0.0.1:{_free_port()}" for _ in range(dead)]
        try:
            for f in fakes:
                app = web.Application()
                app.router.add_post("/{tail:.*}", f.handle)
                runner = web.AppRunner(app)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                runners.append(runner)
                port = runner.addresses[0][1]
                urls.append(f"http://127.0.0.1:{port}")
            await test(urls)
        finally:
            for r in runners:
                await r.cleanup()
    asyncio.run(main())


def client(urls: list[str], timeout: float = 1.0) -> EtcdClient:
    return EtcdClient(urls, None, None, None, timeout=timeout)


def test_prefix_end() -> None:
    assert prefix_end("/lk/") == b"/lk0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


def test_encoding_of_kv_and_txn() -> None:
    def reply(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == "/v3/kv/range":
            # int64 as strings, zero fields (lease) omitted, as the gateway does
            return 200, {"header": {"revision": "9"}, "kvs": [
                {"key": b64(b"/k"), "value": b64(b"\x00v"), "create_revision": "3",
                 "mod_revision": "7", "version": "2"}], "count": "1"}
        if path == "/v3/kv/put":
            return 200, {"header": {"revision": "10"}}
        return 200, {"header": {"revision": "10"}}  # txn: "succeeded" omitted = false

    fake = Fake(reply)

    async def test(urls: list[str]) -> None:
        async with client(urls) as c:
            kv = await c.get("/k")
            assert kv is not None
            assert (kv.value, kv.mod_revision, kv.create_revision, kv.version, kv.lease) == (
                b"\x00v", 7, 3, 2, 0)
            assert await c.put(b"/k", b"\xffx", lease=5) == 10
            assert await c.put_if("/k", b"y", 0) is False
            await c.range_prefix("/lk/")
    run([fake], test)
    paths = [p for p, _ in fake.seen]
    assert paths == ["/v3/kv/range", "/v3/kv/put", "/v3/kv/txn", "/v3/kv/range"]
    assert fake.seen[1][1] == {"key": b64(b"/k"), "value": b64(b"\xffx"), "lease": "5"}
    assert fake.seen[2][1]["compare"] == [{"key": b64(b"/k"), "target": "MOD",
                                          "result": "EQUAL", "mod_revision": "0"}]
    assert fake.seen[3][1]["range_end"] == b64(b"/lk0")
    assert set(fake.headers) == {"true"}  # hasleader asked for on every call


def test_error_mapping() -> None:
    answers = {"/v3/cluster/member/remove": (404, {"error": "etcdserver: member not found",
                                                    "code": 5}),
               "/v3/kv/put": (503, {"error": "etcdserver: request timed out", "code": 14}),
               "/v3/kv/range": (400, {"error": "etcdserver: request is too large", "code": 3})}
    fake = Fake(lambda path, body: answers[path])

    async def test(urls: list[str]) -> None:
        async with client(urls) as c:
            with pytest.raises(errors.NotFoundError, match="member not found"):
                await c.member_remove(12)
            with pytest.raises(errors.InvalidArgumentError, match="too large"):
                await c.get("/k")
            # a timed-out write is not re-sent elsewhere: its outcome is unknown
            with pytest.raises(QuorumError, match="request timed out") as info:
                await c.put("/k", b"v")
            assert info.value.outcome_unknown
    run([fake], test)
    assert [p for p, _ in fake.seen].count("/v3/kv/put") == 1


def test_no_leader_everywhere_is_quorum_error() -> None:
    fakes = [Fake(lambda p, b: (503, {"error": "etcdserver: no leader", "code": 14}))
             for _ in range(2)]

    async def test(urls: list[str]) -> None:
        async with client(urls, timeout=0.3) as c:
            with pytest.raises(QuorumError, match="no quorum: 2 of 3 managers") as info:
                await c.put("/k", b"v")
            assert "no leader" in str(info.value) and not info.value.outcome_unknown
    run(fakes, test, dead=1)
    assert all(f.seen for f in fakes)


def test_failover_order_last_good_first() -> None:
    fakes = [Fake(lambda p, b: (200, {"header": {"revision": "1"}})) for _ in range(2)]

    async def test(urls: list[str]) -> None:
        async with client(urls) as c:
            await c.put("/a", b"1")  # the dead endpoint refuses, the first fake answers
            await c.put("/b", b"2")  # straight to the first fake: it answered last
    run(fakes, test, dead=1)
    assert [len(f.seen) for f in fakes] == [2, 0]


def _config(**kw: Any) -> MemberConfig:
    base: dict[str, Any] = {
        "name": "m1", "data_dir": Path("/tmp/lk-none/etcd"), "advertise_ip": "10.0.0.1",
        "cert_file": Path("/tmp/c"), "key_file": Path("/tmp/k"), "ca_file": Path("/tmp/ca"),
        "initial_cluster": {"m1": "https://10.0.0.1:2380"}, "state": "new", "cluster_token": "tok",
        "log_file": Path("/tmp/lk-none/etcd.log")}
    base.update(kw)
    return MemberConfig(**base)


def test_member_config_flags_and_validation() -> None:
    cfg = _config()
    cfg.validate()
    flags = cfg.flags()
    assert "--listen-client-urls=https://10.0.0.1:2379,https://127.0.0.1:2379" in flags
    assert "--client-cert-auth=true" in flags and "--peer-client-cert-auth=true" in flags
    assert "--initial-cluster=m1=https://10.0.0.1:2380" in flags
    assert not any("allowed-hostname" in f for f in flags)
    assert [f for f in _config(allowed_hostname="swarm-manager").flags()
            if "allowed-hostname" in f] == ["--peer-cert-allowed-hostname=swarm-manager"]
    for bad in ({"election_ms": 400}, {"name": "a,b"}, {"advertise_ip": "10.0.0.300"},
                {"initial_cluster": {"m1": "https://10.0.0.2:2380"}},
                {"cluster_token": "x=y"}, {"data_dir": Path("rel")}):
        with pytest.raises(errors.InvalidArgumentError):
            _config(**bad).validate()


def test_missing_etcd_binary_is_unsupported() -> None:
    member = EtcdMember(_config(), etcd_bin="/nonexistent/etcd")
    with pytest.raises(errors.UnsupportedError) as info:
        member.start()
    assert info.value.hint == "apt-get install etcd-server" and not member.running
