"""labkit.engine.net.nft / hostports without root: rule text, validation, conflicts, allocator.

Sockets are bound on 127.0.0.1 only; nft itself is replaced by a recorder."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit import errors
from labkit.engine.net import hostports, nft
from labkit.engine.net.nft import Bridge, PortMapping, Publisher


def test_example_ruleset_lines() -> None:
    text = nft.example_ruleset()
    lines = text.splitlines()
    assert lines[0] == "add table inet labkit"
    assert "add rule inet labkit prerouting fib daddr type local jump publish-dnat" in lines
    assert "add rule inet labkit output fib daddr type local jump publish-dnat" in lines
    assert ('add rule inet labkit publish-dnat meta nfproto ipv4 tcp dport 8080 '
            'dnat ip to 172.18.0.2:80 comment "lk:c0ffee"') in lines
    assert ('add rule inet labkit publish-dnat ip daddr 127.0.0.1 udp dport 5353 '
            'dnat ip to 172.18.0.2:53 comment "lk:c0ffee"') in lines
    assert ('add rule inet labkit publish-fwd oifname "lk0" ip daddr 172.18.0.2 tcp dport 80 '
            'ct status dnat accept comment "lk:c0ffee"') in lines
    # every statement names labkit's table and nothing else
    assert all(" inet labkit" in line for line in lines)


def test_mapping_ipv6() -> None:
    dnat, fwd = nft.render_mapping("ab", PortMapping("fd00::2", 80, "tcp", "lk0", 8080))
    assert "meta nfproto ipv6 tcp dport 8080 dnat ip6 to [fd00::2]:80" in dnat
    assert 'oifname "lk0" ip6 daddr fd00::2 tcp dport 80 ct status dnat accept' in fwd
    dnat, _ = nft.render_mapping("ab", PortMapping("fd00::2", 80, "udp", "lk0", 8080, "fd00::1"))
    assert "ip6 daddr fd00::1 udp dport 8080 dnat ip6 to [fd00::2]:80" in dnat


def test_bridges_plain_and_internal() -> None:
    lines = nft.render_bridges([Bridge("lk0", ("172.18.0.0/16",)),
                                Bridge("lki", ("10.9.0.0/24",), internal=True)])
    assert lines[:4] == ["flush chain inet labkit isolation", "flush chain inet labkit bridges-in",
                         "flush chain inet labkit bridges-nat",
                         "flush set inet labkit bridge_names"]
    assert 'add element inet labkit bridge_names { "lk0", "lki" }' in lines
    body = "\n".join(lines)
    assert ('isolation iifname "lk0" oifname != "lk0" oifname @bridge_names drop') in body
    assert 'isolation iifname "lki" oifname != "lki" drop' in body
    assert 'isolation oifname "lki" iifname != "lki" drop' in body
    assert 'ip saddr 172.18.0.0/16 oifname != "lk0" masquerade' in body
    assert 'ip saddr 10.9.0.0/24 oifname != "lki" masquerade' not in body  # internal: no egress
    assert 'oifname "lki" ip saddr 10.9.0.0/24 ct status dnat masquerade' in body
    # no bridges: everything flushed, no empty element statement
    assert nft.render_bridges([]) == lines[:4]


@pytest.mark.parametrize("cid", ['ab" accept comment "x', "AB12", "", "g1", "a" * 65])
def test_bad_container_id_refused(cid: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="container id"):
        nft.render_mapping(cid, PortMapping("10.0.0.2", 80, "tcp", "lk0", 8080))


@pytest.mark.parametrize("m,what", [
    (PortMapping("10.0.0.2", 80, "tcp", 'lk0" drop', 8080), "bridge name"),
    (PortMapping("10.0.0.2", 80, "tcp", "lk-name-too-long", 8080), "bridge name"),
    (PortMapping("10.0.0.2", 80, "sctp", "lk0", 8080), "protocol"),
    (PortMapping("10.0.0.2", 0, "tcp", "lk0", 8080), "container port"),
    (PortMapping("10.0.0.2", 80, "tcp", "lk0", 70000), "host port"),
    (PortMapping("10.0.0.2", 80, "tcp", "lk0", 0), "host port"),
    (PortMapping("10.0.0.300", 80, "tcp", "lk0", 8080), "container ip"),
    (PortMapping("10.0.0.2", 80, "tcp", "lk0", 8080, "::1"), "host ip"),
    (PortMapping("10.0.0.2", 80, "tcp", "lk0", 8080, "localhost"), "host ip"),
])
def test_bad_mapping_refused(m: PortMapping, what: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=what):
        nft.render_mapping("ab", m)


def test_bad_subnet_and_bridge_refused() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="subnet"):
        nft.render_bridges([Bridge("lk0", ("10.0.0.1/33",))])
    with pytest.raises(errors.InvalidArgumentError, match="bridge name"):
        nft.render_bridges([Bridge("lk 0", ("10.0.0.0/24",))])


def test_overlaps() -> None:
    a = PortMapping("10.0.0.2", 80, "tcp", "lk0", 8080)
    assert nft._overlaps(a, PortMapping("10.0.0.3", 81, "tcp", "lk0", 8080, "127.0.0.1"))
    assert not nft._overlaps(a, PortMapping("10.0.0.3", 80, "udp", "lk0", 8080))
    assert not nft._overlaps(a, PortMapping("fd00::3", 80, "tcp", "lk0", 8080))
    assert not nft._overlaps(PortMapping("10.0.0.2", 80, "tcp", "lk0", 8080, "127.0.0.1"),
                             PortMapping("10.0.0.2", 80, "tcp", "lk0", 8080, "127.0.0.2"))


def test_bind_error_in_dockers_words() -> None:
    err = hostports.bind_error("0.0.0.0", 8080, "tcp", "already published by labkit")
    assert str(err) == "Bind for 0.0.0.0:8080 failed: port is already allocated"
    assert isinstance(err, errors.ConflictError)
    assert str(hostports.bind_error("::", 80, "tcp", "x")).startswith("Bind for [::]:80 failed")


@pytest.fixture
def busy_port() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def test_reserve_conflicts_with_a_bound_port(busy_port: int) -> None:
    with pytest.raises(errors.ConflictError,
                       match=rf"^Bind for 127\.0\.0\.1:{busy_port} failed: port is already"):
        hostports.reserve("127.0.0.1", busy_port, "tcp")
    # udp is another port space
    hostports.reserve("127.0.0.1", busy_port, "udp").close()
    with pytest.raises(errors.InvalidArgumentError, match="not an address of this host"):
        hostports.reserve("192.0.2.1", busy_port, "tcp")


def test_reservation_blocks_others_until_closed() -> None:
    res = hostports.reserve("127.0.0.1", 0, "tcp")
    port = res.sock.getsockname()[1]
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        with pytest.raises(OSError):  # even a SO_REUSEADDR server cannot take it
            other.bind(("127.0.0.1", port))
        res.close()
        other.bind(("127.0.0.1", port))
    finally:
        other.close()


def test_allocator_skips_taken_and_busy_and_says_when_full(busy_port: int) -> None:
    alloc = hostports.PortAllocator((busy_port, busy_port))
    with pytest.raises(errors.ConflictError, match=f"no free tcp host port in {busy_port}"):
        alloc.allocate("127.0.0.1", "tcp", set())  # busy on the host
    res = alloc.allocate("127.0.0.1", "udp", set())
    assert res.host_port == busy_port
    res.close()
    with pytest.raises(errors.ConflictError):
        alloc.allocate("127.0.0.1", "udp", {busy_port})  # taken by labkit


def test_local_port_range_falls_back_to_dockers(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    lo, hi = hostports.local_port_range()
    assert 0 < lo <= hi <= 65535
    bad = tmp_path / "range"
    bad.write_text("garbage\n")
    monkeypatch.setattr(hostports, "_RANGE_FILE", str(bad))
    assert hostports.local_port_range() == hostports.DOCKER_RANGE == (49153, 65535)
    bad.write_text("40000\t40010\n")
    assert hostports.local_port_range() == (40000, 40010)


class _Recorder(Publisher):
    """A Publisher whose nft is a list: the table 'exists', scripts are recorded."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__(port_range=(1, 1))
        self.scripts: list[str] = []
        self.fail = fail

    def _nft(self, args: list[str], stdin: str | None, what: str) -> str:
        if self.fail:
            raise nft.NftError(what, "Error: simulated")
        self.scripts.append(stdin or "")
        return ""

    def _objects(self) -> list[dict[str, Any]] | None:
        return []


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def test_publish_all_or_nothing_on_conflict() -> None:
    pub = _Recorder()
    p1, p2 = _free_port(), _free_port()
    m1 = PortMapping("10.0.0.2", 80, "tcp", "lk0", p1, "127.0.0.1")
    pub.publish("aa", [m1])
    assert len(pub.scripts) == 1 and 'comment "lk:aa"' in pub.scripts[0]
    with pytest.raises(errors.ConflictError, match=f"Bind for 127.0.0.1:{p1} failed"):
        pub.publish("bb", [PortMapping("10.0.0.3", 80, "tcp", "lk0", p2, "127.0.0.1"),
                           PortMapping("10.0.0.3", 81, "tcp", "lk0", p1, "127.0.0.1")])
    assert len(pub.scripts) == 1  # nothing applied for bb
    hostports.reserve("127.0.0.1", p2, "tcp").close()  # bb's first port was released
    with pytest.raises(errors.ConflictError, match="already has published ports"):
        pub.publish("aa", [])
    pub.release()
    hostports.reserve("127.0.0.1", p1, "tcp").close()


def test_publish_releases_ports_when_nft_fails() -> None:
    pub = _Recorder(fail=True)
    p = _free_port()
    with pytest.raises(nft.NftError, match="simulated"):
        pub.publish("aa", [PortMapping("10.0.0.2", 80, "tcp", "lk0", p, "127.0.0.1")])
    assert pub.published() == {}
    hostports.reserve("127.0.0.1", p, "tcp").close()


def test_publish_validates_before_anything() -> None:
    pub = _Recorder()
    with pytest.raises(errors.InvalidArgumentError):
        pub.publish("aa", [PortMapping("10.0.0.2", 80, "tcp", "lk0", 8080, "127.0.0.1"),
                           PortMapping("10.0.0.2", 80, "icmp", "lk0", 8081, "127.0.0.1")])
    with pytest.raises(errors.InvalidArgumentError, match="host port"):
        pub.reconcile({"aa": [PortMapping("10.0.0.2", 80, "tcp", "lk0", 0)]})
    assert pub.scripts == []


def test_publish_on_internal_bridge_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pub = _Recorder()
    monkeypatch.setattr(pub, "_route_localnet", lambda name, *, write: None)
    pub.set_bridges([Bridge("lki", ("10.9.0.0/24",), internal=True), Bridge("lk0", ())])
    applied = len(pub.scripts)
    with pytest.raises(errors.InvalidArgumentError, match="lki is an --internal network"):
        pub.publish("aa", [PortMapping("10.9.0.2", 80, "tcp", "lki", 8080, "127.0.0.1")])
    assert len(pub.scripts) == applied and pub.published() == {}
