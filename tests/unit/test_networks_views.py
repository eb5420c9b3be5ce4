"""The network service's pure parts: records and lookup, -p parsing and the Ports views,
filters, the --link environment and /etc files, per-container DNS views."""

from __future__ import annotations

import ipaddress
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from labkit import errors
from labkit.engine.net.dns.table import Endpoint, NetworkView
from labkit.engine.networks import dnsview, links, netviews, portspec
from labkit.engine.networks.store import (
    NetworkNotFoundError,
    NetworkRecord,
    NetworkStore,
    validate_name,
)


def _rec(name: str, nid: str, **kw: object) -> NetworkRecord:
    return NetworkRecord(id=nid * 64 if len(nid) == 1 else nid, name=name, driver="bridge",
                         created=time.time(), **kw)  # type: ignore[arg-type]


def test_store_lookup_order_persistence_and_modes(tmp_path: Path) -> None:
    st = NetworkStore(tmp_path / "networks")
    a, b = _rec("web", "a"), _rec("aaaa", "b")
    st.add(a)
    st.add(b)
    assert st.get("a" * 64) is a          # full id first
    assert st.get("aaaa") is b            # then the exact name, before a's id prefix
    assert st.get("aaa") is a             # then a unique id prefix
    with pytest.raises(NetworkNotFoundError) as caught:
        st.get("nosuch")
    assert caught.value.message == "network nosuch not found"  # moby's words, 404
    with pytest.raises(errors.ConflictError, match="network with name web already exists"):
        st.add(_rec("web", "c"))
    f = tmp_path / "networks" / f"{'a' * 64}.json"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "networks").stat().st_mode) == 0o700
    again = NetworkStore(tmp_path / "networks")
    assert {r.name for r in again.all()} == {"web", "aaaa"}
    st.remove(a)
    assert not f.exists()


@pytest.mark.parametrize("bad", ["", "-x", "a/b", "a b", "x" * 129, "../etc"])
def test_names_refused(bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        validate_name(bad)


def test_port_bindings_and_publish_all() -> None:
    host = {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                             "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                             "443/tcp": [{"HostIp": "[::1]", "HostPort": "8443-8443"}]},
            "PublishAllPorts": True}
    config = {"ExposedPorts": {"80/tcp": {}, "9000/tcp": {}}}
    reqs = portspec.parse_bindings(host, config)
    assert portspec.PortRequest(80, "tcp", "", 8080) in reqs
    assert portspec.PortRequest(53, "udp", "127.0.0.1", 0) in reqs
    assert portspec.PortRequest(443, "tcp", "::1", 8443) in reqs
    assert portspec.PortRequest(9000, "tcp") in reqs  # -P: exposed and not bound already
    assert sum(r.port == 80 for r in reqs) == 1


@pytest.mark.parametrize("bindings,words", [
    ({"80/sctp": [{}]}, "sctp"),
    ({"80-81/tcp": [{}]}, "range"),
    ({"0/tcp": [{}]}, "out of range"),
    ({"80/tcp": [{"HostPort": "1-9"}]}, "range"),
    ({"80/tcp": [{"HostIp": "example.com"}]}, "invalid IP"),
    ({"80/tcp": ["8080"]}, "objects"),
])
def test_port_bindings_refused(bindings: dict, words: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=words):
        portspec.parse_bindings({"PortBindings": bindings}, {})


def test_ports_views_running_and_stopped() -> None:
    config = {"ExposedPorts": {"80/tcp": {}, "443/tcp": {}}}
    pub = [{"port": 80, "proto": "tcp", "host_ip": "0.0.0.0", "host_port": 8080}]
    assert portspec.ports_view(config, pub, True) == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": None}
    assert portspec.ports_view(config, pub, False) == {"80/tcp": None, "443/tcp": None}
    assert portspec.list_ports(config, pub, True) == [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"PrivatePort": 443, "Type": "tcp"}]


def test_ls_filters() -> None:
    r = _rec("front", "d", labels={"tier": "web"})
    assert netviews.matches(r, {"name": ["fro"]}, used=False)
    assert not netviews.matches(r, {"driver": ["macvlan"]}, used=False)
    assert netviews.matches(r, {"label": ["tier=web"]}, used=False)
    assert not netviews.matches(r, {"label": ["tier=db"]}, used=False)
    assert netviews.matches(r, {"type": ["custom"]}, used=False)
    assert netviews.matches(r, {"dangling": ["true"]}, used=False)
    assert not netviews.matches(r, {"dangling": ["true"]}, used=True)
    with pytest.raises(errors.InvalidArgumentError):
        netviews.matches(r, {"type": ["weird"]}, used=False)
    assert netviews.labels_match({"a": "1"}, {"label!": ["a"]}) is False
    assert netviews.until_of({}) == float("inf")
    assert netviews.until_of({"until": ["10"]}) == 10.0
    assert netviews.until_of({"until": ["1h"]}) < time.time() - 3500
    with pytest.raises(errors.InvalidArgumentError, match="until"):
        netviews.until_of({"until": ["soon"]})


def test_link_env_and_hosts() -> None:
    target = SimpleNamespace(
        id="f" * 64, name="db", config={"ExposedPorts": {"6379/tcp": {}, "53/udp": {}},
                                        "Env": ["PATH=/bin", "PASSWORD=x", "HOME=/root"]},
        networks={"bridge": {"IPAddress": "172.17.0.5"}})
    env = links.link_env("my-cache", "web", target)
    assert "MY_CACHE_NAME=/web/my-cache" in env
    assert env[1] == "MY_CACHE_PORT=udp://172.17.0.5:53"  # the lowest port first
    assert "MY_CACHE_PORT_6379_TCP=tcp://172.17.0.5:6379" in env
    assert "MY_CACHE_PORT_6379_TCP_ADDR=172.17.0.5" in env
    assert "MY_CACHE_ENV_PASSWORD=x" in env
    assert not [e for e in env if "_ENV_PATH" in e or "_ENV_HOME" in e]
    hosts = links.hosts_text("abc", ["172.17.0.2"], {"ExtraHosts": ["gw:host-gateway"]},
                             [("172.17.0.5", "my-cache ffffffffffff db")], gateway="172.17.0.1")
    assert "172.17.0.1\tgw\n" in hosts and "172.17.0.5\tmy-cache ffffffffffff db\n" in hosts
    assert hosts.endswith("172.17.0.2\tabc\n")


def test_container_view_unions_networks_and_links() -> None:
    ip = ipaddress.ip_address
    a = NetworkView("front", [Endpoint("web", "1" * 64, ipv4=ip("10.0.0.2"))])
    b = NetworkView("back", [Endpoint("db", "2" * 64, ipv4=ip("10.1.0.2"), aliases=("sql",))])
    v = dnsview.ContainerView([a, b], {"cache": ["10.1.0.9"]})
    assert v.lookup("web", 4) == [ip("10.0.0.2")]
    assert v.lookup("SQL.", 4) == [ip("10.1.0.2")] and v.knows("db.back")
    assert v.lookup("cache", 4) == [ip("10.1.0.9")] and v.lookup("cache", 6) == []
    assert v.lookup("nosuch", 4) is None and v.reverse(ip("10.1.0.2")) == "db.back"


def test_member_drops_names_dns_cannot_carry() -> None:
    rec = SimpleNamespace(name="web-", id="3" * 64)
    ep = dnsview.member(rec, {"IPAddress": "10.0.0.9", "Aliases": ["ok", "bad-"]})
    view = NetworkView("n", [ep])  # would raise on "web-" or "bad-"
    assert view.lookup("ok", 4) and view.lookup("333333333333", 4)
    assert view.lookup("web-", 4) is None
