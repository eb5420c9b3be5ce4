"""labkit.engine.net.ipam: Docker's IPAM rules, its words, and its state on disk."""

from __future__ import annotations

import ipaddress
import json
import os
import stat
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.net import ipam as I
from labkit.engine.net.ipam import Ipam, PoolConfig


def test_default_pools_are_mobys() -> None:
    pools = [str(p) for p in I.DEFAULT_POOLS_V4]
    assert len(pools) == 31
    assert pools[:3] == ["172.17.0.0/16", "172.18.0.0/16", "172.19.0.0/16"]
    assert pools[14] == "172.31.0.0/16"
    assert pools[15] == "192.168.0.0/20" and pools[-1] == "192.168.240.0/20"


def test_default_network_then_next_pools(tmp_path: Path) -> None:
    m = Ipam(tmp_path)
    (p,) = m.add_network("bridge")
    assert (str(p.subnet), str(p.gateway)) == ("172.17.0.0/16", "172.17.0.1")
    (q,) = m.add_network("n2")
    assert str(q.subnet) == "172.18.0.0/16"
    (r,) = m.add_network("n3", avoid=["172.19.0.0/24"])  # a host route
    assert str(r.subnet) == "172.20.0.0/16"


def test_gateway_defaults_and_ip_range(tmp_path: Path) -> None:
    m = Ipam(tmp_path)
    (p,) = m.add_network("n", [PoolConfig(subnet="10.1.0.0/16", ip_range="10.1.5.0/24")])
    assert str(p.gateway) == "10.1.5.1"  # moby takes the gateway out of the range
    a = m.allocate("n", "c1")
    assert str(a) == "10.1.5.2"
    # --ip may name an address of the subnet outside the dynamic range
    assert str(m.allocate("n", "c2", address="10.1.9.9")) == "10.1.9.9"


def test_serial_allocation_and_release(tmp_path: Path) -> None:
    m = Ipam(tmp_path)
    m.add_network("n", [PoolConfig(subnet="10.2.0.0/29", gateway="10.2.0.6",
                                   aux_addresses={"r": "10.2.0.2"})])
    got = [str(m.allocate("n", f"c{i}")) for i in range(3)]
    assert got == ["10.2.0.1", "10.2.0.3", "10.2.0.4"]  # aux .2 and gateway .6 skipped
    m.release("n", "10.2.0.1")
    assert str(m.allocate("n", "c3")) == "10.2.0.5"  # serial: not the one just freed
    assert str(m.allocate("n", "c4")) == "10.2.0.1"  # then wraps around
    with pytest.raises(I.NoAvailableAddressError, match="^No available addresses on this pool$"):
        m.allocate("n", "c5")
    with pytest.raises(errors.NotFoundError):
        m.release("n", "10.2.0.6")  # the gateway is reserved, not allocated


def test_refusals_in_dockers_words(tmp_path: Path) -> None:
    m = Ipam(tmp_path)
    m.add_network("a", [PoolConfig(subnet="10.3.0.0/16")])
    with pytest.raises(I.PoolOverlapError,
                       match="^Pool overlaps with other one on this address space$") as ei:
        m.add_network("b", [PoolConfig(subnet="10.3.4.0/24")])
    assert ei.value.http_status == 403 and isinstance(ei.value, errors.ForbiddenError)
    cases = [
        (PoolConfig(subnet="10.4.0.0/33"), "invalid subnet 10.4.0.0/33: invalid CIDR address"),
        (PoolConfig(subnet="nonsense"), "invalid subnet nonsense: invalid CIDR address"),
        (PoolConfig(subnet="10.4.0.1/24"), "invalid subnet 10.4.0.1/24: it should be 10.4.0.0/24"),
        (PoolConfig(subnet="10.4.0.0/24", gateway="10.5.0.1"),
         "invalid gateway 10.5.0.1: parent subnet 10.4.0.0/24 doesn't contain this address"),
        (PoolConfig(subnet="10.4.0.0/24", gateway="fd00::1"),
         "invalid gateway fd00::1: parent subnet is an IPv4 block"),
        (PoolConfig(subnet="10.4.0.0/24", ip_range="10.4.1.0/25"),
         "invalid ip-range 10.4.1.0/25: parent subnet 10.4.0.0/24 doesn't contain ip-range"),
        (PoolConfig(subnet="10.4.0.0/24", ip_range="10.4.0.0/16"),
         "invalid ip-range 10.4.0.0/16: CIDR block is bigger than its parent subnet"),
        (PoolConfig(subnet="10.4.0.0/24", ip_range="10.4.0.1/25"),
         "invalid ip-range 10.4.0.1/25: it should be 10.4.0.0/25"),
        (PoolConfig(subnet="10.4.0.0/24", aux_addresses={"x": "10.9.9.9"}),
         "invalid auxiliary address x: parent subnet 10.4.0.0/24 doesn't contain this address"),
        (PoolConfig(gateway="10.4.0.1"), "user specified IP address is supported only"),
    ]
    for cfg, words in cases:
        with pytest.raises(I.InvalidIpamConfigError) as ei2:
            m.add_network("b", [cfg])
        msg = str(ei2.value)
        head = "invalid network config:\n" if cfg.subnet else ""
        assert msg.startswith(head + words), (cfg, msg)
        assert isinstance(ei2.value, errors.InvalidArgumentError)
    assert set(m.networks()) == {"a"}  # nothing half-made
    with pytest.raises(errors.AlreadyExistsError):
        m.add_network("a")


def test_specific_address_errors(tmp_path: Path) -> None:
    m = Ipam(tmp_path)
    m.add_network("n", [PoolConfig(subnet="10.6.0.0/24")])
    m.allocate("n", "c1", address="10.6.0.10")
    with pytest.raises(I.AddressInUseError, match="^Address already in use$"):
        m.allocate("n", "c2", address="10.6.0.10")
    with pytest.raises(I.AddressInUseError):
        m.allocate("n", "c2", address="10.6.0.1")  # the gateway
    for bad in ("10.7.0.1", "10.6.0.255", "10.6.0.0"):
        with pytest.raises(I.OutOfRangeError, match=bad.replace(".", r"\.")):
            m.allocate("n", "c2", address=bad)  # (the address named, as dockerd names it)
    with pytest.raises(errors.NotFoundError):
        m.allocate("nope", "c")


def test_ipv6(tmp_path: Path) -> None:
    m = Ipam(tmp_path, host_id="host-a")
    pools = m.add_network("n", [PoolConfig(subnet="fd00:1::/64")], ipv6=True)
    assert sorted(p.family for p in pools) == [4, 6]
    six = next(p for p in pools if p.family == 6)
    assert str(six.gateway) == "fd00:1::1"
    assert str(m.allocate("n", "c", family=6)) == "fd00:1::2"
    assert str(m.allocate("n", "c", address="fd00:1::abcd")) == "fd00:1::abcd"
    d = m.add_network("d", ipv6=True)
    dsix = next(p for p in d if p.family == 6)
    assert dsix.subnet.prefixlen == 64 and dsix.subnet.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    assert dsix.subnet == next(I.default_pools_v6("host-a"))
    with pytest.raises(I.InvalidIpamConfigError, match="IPv6 has not been enabled for this network"):
        m.add_network("x", [PoolConfig(subnet="fd00:2::/64")])
    with pytest.raises(I.PoolOverlapError):
        m.add_network("y", [PoolConfig(subnet="fd00:1::/48")], ipv6=True)


def test_state_persisted_0600_and_reloaded(tmp_path: Path) -> None:
    m = Ipam(tmp_path / "st")
    m.add_network("n", [PoolConfig(subnet="10.8.0.0/24", ip_range="10.8.0.128/25")])
    m.allocate("n", "c1")
    f = tmp_path / "st" / I.STATE_FILE
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert not [p for p in f.parent.iterdir() if p.name.endswith(".tmp")]
    json.loads(f.read_text())
    m2 = Ipam(tmp_path / "st")
    (p,) = m2.pools("n")
    assert str(p.ip_range) == "10.8.0.128/25" and list(p.allocated.values()) == ["c1"]
    assert str(m2.allocate("n", "c2")) == "10.8.0.131"  # cursor survived too
    with pytest.raises(I.PoolOverlapError):
        m2.add_network("o", [PoolConfig(subnet="10.8.0.0/16")])


def test_reconcile_frees_what_nobody_holds(tmp_path: Path) -> None:
    m = Ipam(tmp_path)
    m.add_network("n", [PoolConfig(subnet="10.9.0.0/24")])
    m.add_network("o", [PoolConfig(subnet="10.10.0.0/24")])
    a, b = m.allocate("n", "c1"), m.allocate("n", "c2")
    c = m.allocate("o", "c3")
    m2 = Ipam(tmp_path)  # "after a daemon restart"
    freed = m2.reconcile({"n": [str(a), "10.9.0.77"]})
    assert sorted(freed) == sorted([("n", b), ("o", c)])
    assert set(map(str, m2.pools("n")[0].allocated)) == {str(a), "10.9.0.77"}
    assert str(m2.pools("n")[0].gateway) == "10.9.0.1"  # reserved ones stay
    assert Ipam(tmp_path).pools("o")[0].allocated == {}
    with pytest.raises(errors.ConflictError, match="active endpoints"):
        m2.remove_network("n")
    m2.release("n", a)
    m2.release("n", "10.9.0.77")
    m2.remove_network("n")
    m2.add_network("n2", [PoolConfig(subnet="10.9.0.0/16")])  # the pool is free again


def test_bad_state_version_refused(tmp_path: Path) -> None:
    (tmp_path / I.STATE_FILE).write_text('{"version": 99, "networks": {}}')
    with pytest.raises(errors.UnsupportedError):
        Ipam(tmp_path)


def test_configured_flag_persists(tmp_path: Path) -> None:
    m = Ipam(tmp_path)
    (user,) = m.add_network("u", [PoolConfig(subnet="10.11.0.0/24")])
    (dflt,) = m.add_network("d")
    assert user.configured and not dflt.configured
    m2 = Ipam(tmp_path)
    assert m2.pools("u")[0].configured and not m2.pools("d")[0].configured
