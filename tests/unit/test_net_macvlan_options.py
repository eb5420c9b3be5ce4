"""labkit.engine.net.macvlan's option parsing and refusals: pure, no kernel object made."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.net import lowerdev
from labkit.engine.net import macvlan as M
from labkit.engine.net.driver import EndpointSpec, Network, NetworkSpec
from labkit.engine.net.ipam import Ipam, PoolConfig


def test_defaults_are_dockers() -> None:
    assert M.parse_options("macvlan", {}) == M.Options("macvlan", "", "bridge")
    assert M.parse_options("ipvlan", {"parent": "eth0"}) == M.Options("ipvlan", "eth0", "l2",
                                                                      "bridge")
    assert M.parse_options("macvlan", {"macvlan_mode": ""}).mode == "bridge"


@pytest.mark.parametrize("mode,num", [("private", 1), ("vepa", 2), ("bridge", 4),
                                      ("passthru", 8)])
def test_macvlan_modes_map_to_the_kernels_numbers(mode: str, num: int) -> None:
    opts = M.parse_options("macvlan", {"macvlan_mode": mode})
    assert opts.data() == {"IFLA_MACVLAN_MODE": num}  # include/uapi/linux/if_link.h


@pytest.mark.parametrize("mode,flag,data", [("l2", "bridge", (0, 0)), ("l3", "private", (1, 1)),
                                            ("l3s", "vepa", (2, 2))])
def test_ipvlan_mode_and_flag(mode: str, flag: str, data: tuple[int, int]) -> None:
    opts = M.parse_options("ipvlan", {"ipvlan_mode": mode, "ipvlan_flag": flag})
    assert opts.data() == {"IFLA_IPVLAN_MODE": data[0], "IFLA_IPVLAN_FLAGS": data[1]}


@pytest.mark.parametrize("kind,opts,what,words", [
    ("macvlan", {"colour": "red"}, "options", "does not support option(s) colour"),
    ("macvlan", {"ipvlan_mode": "l2"}, "options", "does not support option(s) ipvlan_mode"),
    ("ipvlan", {"macvlan_mode": "bridge"}, "options", "option(s) macvlan_mode"),
    ("macvlan", {"com.docker.network.driver.mtu": "1400"}, "options",
     "com.docker.network.driver.mtu"),
    ("macvlan", {"macvlan_mode": "l2"}, "macvlan_mode",
     "requested macvlan mode 'l2' is not valid, 'bridge' mode is the macvlan driver default"),
    ("ipvlan", {"ipvlan_mode": "l4"}, "ipvlan_mode",
     "requested ipvlan mode 'l4' is not valid, 'l2' mode is the ipvlan driver default"),
    ("ipvlan", {"ipvlan_flag": "passthru"}, "ipvlan_flag",
     "requested ipvlan flag 'passthru' is not valid, 'bridge' is the ipvlan driver default"),
    ("macvlan", {"parent": "lo"}, "parent",
     "loopback interface is not a valid macvlan parent link"),
    ("ipvlan", {"parent": "lo"}, "parent", "loopback interface is not a valid ipvlan parent"),
    ("macvlan", {"parent": "eth0/x"}, "parent", "not a valid interface name"),
    ("macvlan", {"parent": "a-name-too-long0"}, "parent", "longer than 15 bytes"),
    ("macvlan", {"parent": "eth0.1.2"}, "parent",
     ("required interface name format is: name.vlan_id, ex. eth0.10 for vlan 10, instead "
      "received eth0.1.2")),
    ("macvlan", {"parent": "eth0.ten"}, "parent",
     "unable to parse a valid vlan id from: ten (ex. eth0.10 for vlan 10)"),
    ("macvlan", {"parent": "eth0.-1"}, "parent", "unable to parse a valid vlan id from: -1"),
    ("macvlan", {"parent": "eth0.0"}, "parent", "vlan id must be between 1-4094, received: 0"),
    ("ipvlan", {"parent": "eth0.4095"}, "parent", "received: 4095"),
])
def test_refusals_in_dockers_words(kind: str, opts: dict[str, str], what: str,
                                   words: str) -> None:
    with pytest.raises(errors.InvalidArgumentError) as ei:
        M.parse_options(kind, opts)
    assert ei.value.what == what and words in str(ei.value)


def test_encrypted_is_refused_with_the_reason() -> None:
    for kind in ("macvlan", "ipvlan"):
        with pytest.raises(errors.InvalidArgumentError, match="encrypted") as ei:
            M.parse_options(kind, {"encrypted": ""})
        assert "overlay" in (ei.value.hint or "")


def test_dummy_names_fit_ifnamsiz() -> None:
    assert lowerdev.dummy_name("macvlan", "0123456789abcdef") == "lkdm-0123456789"
    assert lowerdev.dummy_name("ipvlan", "0123456789abcdef") == "lkdi-0123456789"
    assert len(lowerdev.dummy_name("macvlan", "f" * 64)) == 15
    with pytest.raises(errors.InvalidArgumentError):
        lowerdev.dummy_name("macvlan", "../../etc")


def test_parse_vlan() -> None:
    assert lowerdev.parse_vlan("eth0.10") == ("eth0", 10)
    assert lowerdev.parse_vlan("lkp1.4094") == ("lkp1", 4094)


def test_parent_not_found_speaks_docker_and_pickles() -> None:
    err = lowerdev._not_found("eth9")
    assert str(err) == "-o parent interface was not found on the host: eth9"
    assert isinstance(err, errors.NotFoundError)
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and type(back) is type(err)


def _net(driver: str, internal: bool = False) -> Network:
    return Network(id="ab" * 32, name="n", driver=driver, bridge="lkx0", pools=(),
                   internal=internal)


def test_wrong_driver_and_bad_options_make_nothing(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path)
    drv = M.MacvlanDriver(ipam, host_netns="lk-never-made")
    with pytest.raises(errors.InvalidArgumentError, match="is not macvlan"):
        drv.create_network(NetworkSpec(id="ab" * 32, name="n", driver="bridge"))
    with pytest.raises(errors.InvalidArgumentError, match="colour"):
        drv.create_network(NetworkSpec(id="ab" * 32, name="n", driver="macvlan",
                                       ipam=[PoolConfig(subnet="10.9.0.0/24")],
                                       options={"colour": "red"}))
    assert ipam.networks() == {}
    assert not (tmp_path / "ipam.json").exists()


def test_attach_to_an_unknown_network_is_refused(tmp_path: Path) -> None:
    drv = M.MacvlanDriver(Ipam(tmp_path))
    with pytest.raises(errors.NotFoundError, match="macvlan network"):
        drv.attach(_net("macvlan"), EndpointSpec(endpoint_id="c1" * 32, netns="x"))


def test_ipvlan_refuses_a_mac_address() -> None:
    drv = M.IpvlanDriver(Ipam("/nonexistent-never-written"))
    opts = M.parse_options("ipvlan", {})
    with pytest.raises(errors.InvalidArgumentError,
                       match="ipvlan interfaces do not support custom mac address assignment"):
        drv._mac(EndpointSpec(endpoint_id="c1" * 32, netns="x", mac_address="02:00:00:00:00:01"),
                 opts, [])
    assert drv._mac(EndpointSpec(endpoint_id="c1" * 32, netns="x"), opts, []) is None


def test_macvlan_mac_is_dockers_rule() -> None:
    import ipaddress
    drv = M.MacvlanDriver(Ipam("/nonexistent-never-written"))
    opts = M.parse_options("macvlan", {})
    spec = EndpointSpec(endpoint_id="c1" * 32, netns="x")
    assert drv._mac(spec, opts, [ipaddress.ip_interface("10.77.0.129/24")]) == \
        "02:42:0a:4d:00:81"
    with pytest.raises(errors.InvalidArgumentError, match="mac-address"):
        drv._mac(EndpointSpec(endpoint_id="c1" * 32, netns="x", mac_address="01:00:00:00:00:01"),
                 opts, [])
    passthru = M.parse_options("macvlan", {"macvlan_mode": "passthru"})
    assert drv._mac(spec, passthru, []) is None  # the child takes the parent's MAC


def test_parent_sharing_rules(tmp_path: Path) -> None:
    mv = M.MacvlanDriver(Ipam(tmp_path))
    mv._nets["11" * 32] = M._Net("eth0", M.parse_options("macvlan", {"parent": "eth0"}))
    spec = NetworkSpec(id="22" * 32, name="b", driver="macvlan")
    mv._check_sharing(spec, M.parse_options("macvlan", {"parent": "eth0"}), "eth0")  # fine
    with pytest.raises(errors.ConflictError, match="cannot use mode passthru, macvlan network "
                       f"{'11' * 32} is already using parent interface eth0"):
        mv._check_sharing(spec, M.parse_options("macvlan", {"macvlan_mode": "passthru"}), "eth0")
    mv._nets["33" * 32] = M._Net("eth1", M.parse_options("macvlan", {"macvlan_mode": "passthru"}))
    with pytest.raises(errors.ConflictError, match="in mode passthru"):
        mv._check_sharing(spec, M.parse_options("macvlan", {}), "eth1")
    iv = M.IpvlanDriver(Ipam(tmp_path))
    iv._nets["11" * 32] = M._Net("eth0", M.parse_options("ipvlan", {"parent": "eth0"}))
    with pytest.raises(errors.ConflictError,
                       match="network lkdi-1111111111 is already using parent interface eth0"):
        iv._check_sharing(spec, M.parse_options("ipvlan", {}), "eth0")


def test_newlink_message_carries_every_option() -> None:
    """The RTM_NEWLINK bytes: decoded back with pyroute2's parser where it knows the
    attribute, and IFLA_IPVLAN_FLAGS (which it does not) found by hand."""
    import struct

    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    raw = lowerdev._newlink_msg(7, "eth0", 3, 9, "ipvlan",
                                M.parse_options("ipvlan", {"ipvlan_mode": "l3",
                                                           "ipvlan_flag": "vepa"}).data(), None)
    length, typ, flags, seq, _ = struct.unpack_from("=IHHII", raw)
    assert (length, typ, flags, seq) == (len(raw), 16, 0x605, 7)
    msg = ifinfmsg(raw)
    msg.decode()
    assert (msg["flags"], msg["change"]) == (1, 1)  # IFF_UP at creation
    assert (msg.get_attr("IFLA_IFNAME"), msg.get_attr("IFLA_LINK"),
            msg.get_attr("IFLA_NET_NS_FD")) == ("eth0", 3, 9)
    assert msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND") == "ipvlan"
    # IFLA_INFO_DATA = {IFLA_IPVLAN_MODE: 1 (l3), IFLA_IPVLAN_FLAGS: 2 (vepa)}, u16 each
    assert raw.endswith(struct.pack("=HHHxx", 6, 1, 1) + struct.pack("=HHHxx", 6, 2, 2))
    mac = lowerdev._newlink_msg(8, "eth1", 3, 9, "macvlan", {"IFLA_MACVLAN_MODE": 4},
                                "02:42:0a:4d:00:81")
    m2 = ifinfmsg(mac)
    m2.decode()
    assert m2.get_attr("IFLA_ADDRESS") == "02:42:0a:4d:00:81"
    assert m2.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA") \
        .get_attr("IFLA_MACVLAN_MODE") in (4, "bridge")
