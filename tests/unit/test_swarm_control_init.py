"""swarm init's overlay settings (issue 13): DefaultAddrPool, SubnetSize, DataPathPort are
accepted and checked; DataPathAddr only as the advertise address."""

from __future__ import annotations

from typing import Any

import pytest

from labkit import errors
from labkit.engine.swarm.spec import InitRequest


def test_defaults_are_mobys() -> None:
    req = InitRequest.from_docker({"DefaultAddrPool": None, "SubnetSize": 24,
                                   "DataPathPort": 0})
    assert (req.default_addr_pool, req.subnet_size, req.data_path_port) == (
        ("10.0.0.0/8",), 24, 4789)


def test_accepted_values() -> None:
    req = InitRequest.from_docker({"DefaultAddrPool": ["10.20.0.0/16", "172.30.0.0/16"],
                                   "SubnetSize": 26, "DataPathPort": 7789,
                                   "AdvertiseAddr": "10.1.2.3", "DataPathAddr": "10.1.2.3"})
    assert req.default_addr_pool == ("10.20.0.0/16", "172.30.0.0/16")
    assert (req.subnet_size, req.data_path_port) == (26, 7789)


@pytest.mark.parametrize(("body", "field", "text"), [
    ({"DefaultAddrPool": ["10.0.0.0/8", "10.1.0.0/16"]}, "DefaultAddrPool", "overlap"),
    ({"DefaultAddrPool": ["fd00::/48"]}, "DefaultAddrPool", "IPv4"),
    ({"DefaultAddrPool": ["10.0.0.1/8"]}, "DefaultAddrPool", "invalid address pool"),
    ({"DefaultAddrPool": ["10.0.0.0/28"]}, "DefaultAddrPool", "smaller than SubnetSize"),
    ({"DefaultAddrPool": "10.0.0.0/8"}, "DefaultAddrPool", "list"),
    ({"SubnetSize": 8}, "SubnetSize", "between 16 and 28"),
    ({"DataPathPort": 2379}, "DataPathPort", "1024 to 49151"),
    ({"DataPathPort": 50000}, "DataPathPort", "1024 to 49151"),
    ({"DataPathAddr": "10.9.9.9"}, "DataPathAddr", "advertise address"),
    ({"DataPathAddr": "10.9.9.9", "AdvertiseAddr": "10.1.2.3"}, "DataPathAddr", "advertise"),
    ({"ForceNewCluster": True}, "ForceNewCluster", "not supported"),
])
def test_refused(body: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=text) as exc:
        InitRequest.from_docker(body)
    assert exc.value.what == field


def test_node_control_accessor_raises_dockers_texts() -> None:
    import types

    from fakes.swarm_store import MemoryStore

    from labkit.engine.swarm import spec as sp
    from labkit.engine.swarm.control import Control
    from labkit.engine.swarm.node import SwarmNode

    node = SwarmNode()
    for mode, text in (("inactive", sp.MSG_NOT_MANAGER), ("locked", sp.MSG_LOCKED)):
        node.mode = mode
        with pytest.raises(errors.UnavailableError) as exc:
            node.control()
        assert exc.value.message == text
    node.mode, node.state = "active", object()  # type: ignore[assignment]
    with pytest.raises(errors.UnavailableError) as exc:
        node.control()  # a worker: no manager here
    assert exc.value.message == sp.MSG_WORKER
    store = MemoryStore()
    node.manager = types.SimpleNamespace(_store=lambda: store)  # type: ignore[assignment]
    ctl = node.control()
    assert isinstance(ctl, Control) and ctl.store is store
