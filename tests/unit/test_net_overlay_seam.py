"""The Networks side of swarm networks without a kernel: NetInfo checks, records of Scope
swarm (stored and read back), Docker's inspect shape and the scope filter, and the local
API's refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labkit import errors
from labkit.engine.net import overlay as ov
from labkit.engine.networks import netviews
from labkit.engine.networks.service import Networks, _swarm_info
from labkit.engine.networks.store import NetworkRecord, NetworkStore

NID = "0123456789abcdefghijklmno"
INFO: dict[str, Any] = {"ID": NID, "Name": "web", "VNI": 4097, "Subnet": "10.0.1.0/24",
                        "Gateway": "10.0.1.1", "Encrypted": True, "MTU": 1400,
                        "Attachable": False, "Internal": False, "Ingress": False,
                        "Labels": {}, "Options": {"encrypted": ""}}


class _Bus:
    def emit_network(self, *a: Any) -> None:
        pass


def test_swarm_info() -> None:
    nid, vni, subnet, gw, opts = _swarm_info(INFO)
    assert (nid, vni, str(subnet), str(gw)) == (NID, 4097, "10.0.1.0/24", "10.0.1.1")
    assert opts == {ov.OPT_VNI: "4097", ov.OPT_ENCRYPTED: "", ov.OPT_MTU: "1400"}
    assert ov.OPT_ENCRYPTED not in _swarm_info({**INFO, "Encrypted": False})[4]
    for bad in ({"ID": "../../etc"}, {"ID": "a" * 64}, {"VNI": 0}, {"VNI": "4097"},
                {"VNI": True}, {"Subnet": "fd00::/64"}, {"Subnet": None},
                {"Gateway": "10.0.2.1"}, {"Encrypted": "yes"}, {"MTU": "1400"},
                {"Options": {"a": 1}}):
        with pytest.raises(errors.InvalidArgumentError):
            _swarm_info({**INFO, **bad})
    with pytest.raises(errors.InvalidArgumentError):
        _swarm_info("x")


def _rec() -> NetworkRecord:
    _, _, _, _, opts = _swarm_info(INFO)
    return NetworkRecord(id=NID, name="web", driver="overlay", created=0.0,
                         ipam=[{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}],
                         options=opts, scope="swarm",
                         swarm={"VNI": 4097, "Ingress": True, "LocalAddr": "192.168.5.1",
                                "DataPort": 4789})


def test_store_keeps_swarm_records(tmp_path: Path) -> None:
    st = NetworkStore(tmp_path)
    st.add(_rec())
    again = NetworkStore(tmp_path)
    rec = again.by_id(NID)
    assert rec is not None and rec.scope == "swarm" and rec.swarm["VNI"] == 4097
    assert again.get("web").id == NID and again.by_id("web") is None


def test_inspect_shape() -> None:
    rec = _rec()
    peers = [{"Name": "me", "IP": "192.168.5.1"}, {"Name": "n2", "IP": "192.168.5.2"}]
    view = netviews.network_json(rec, None, [], peers)
    assert view["Scope"] == "swarm" and view["Driver"] == "overlay" and view["Ingress"]
    assert view["Options"][ov.OPT_VNI] == "4097" and view["Peers"] == peers
    assert view["IPAM"]["Config"] == [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]
    assert "Peers" not in netviews.network_json(rec, None, [])
    assert netviews.matches(rec, {"scope": ["swarm"]}, False)
    assert not netviews.matches(rec, {"scope": ["local"]}, False)


def test_local_api_refusals(tmp_path: Path) -> None:
    nets = Networks(_Bus(), default_bridge=False, root=tmp_path)
    with pytest.raises(errors.ForbiddenError):
        nets.create({"Name": "x", "Driver": "overlay"})
    nets.store.add(_rec())
    with pytest.raises(errors.ForbiddenError, match="swarm network"):
        nets.remove("web")
    assert nets.prune({}) == [] and nets.store.by_id(NID) is not None
    assert [r.id for r in nets.swarm_networks()] == [NID]
    with pytest.raises(errors.ConflictError):
        nets.create({"Name": "web"})
    with pytest.raises(errors.NotFoundError):
        nets.set_overlay_peers("nope", [])
    with pytest.raises(errors.InvalidArgumentError):
        nets.set_node_address(NID, "10.0.2.5/24")  # not the network's subnet
    with pytest.raises(errors.InvalidArgumentError):
        nets.set_overlay_keys([{"Key": "AAAA", "Tag": 1}], [])
    nets.set_overlay_keys([], [])  # nothing materialized, nothing asked: a no-op
    nets.drop_swarm("nothere0000000000000000000")  # absent: nothing to do
