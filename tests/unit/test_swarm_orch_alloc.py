"""Addresses (tasks, VIPs, node ingress addresses) and the overlay's network keys."""

from __future__ import annotations

import base64
import ipaddress
import sys
from pathlib import Path
from typing import Any

from labkit.engine.swarm.store import CLUSTER, NODES, SERVICES

# the shared World lives next to this file (pytest's importlib mode puts no test dir on
# sys.path, and tests/fakes belongs to the lead)
sys.path.insert(0, str(Path(__file__).parent))
from test_swarm_orch_world import World, ts


def _addresses(w: World) -> list[str]:
    """Every address held in the store: tasks', VIPs, nodes'."""
    out = [a for t in w.tasks() for att in t["NetworksAttachments"] for a in att["Addresses"]]
    for key, (obj, _) in w.store.data.items():
        if key.startswith(SERVICES):
            out += [v["Addr"] for v in obj.get("Endpoint", {}).get("VirtualIPs") or []]
    return out + list(w.attach().values())


def _ingress_id(w: World) -> str:
    return next(o["Id"] for k, (o, _) in w.store.data.items()
                if k.startswith("/lk/swarm/networks/") and o["Ingress"])


def test_addresses_are_unique_and_skip_network_gateway_broadcast() -> None:
    w = World(nodes=3)
    back = w.add_network("back", "10.0.1.0/24")
    a = w.add_service("a", replicas=3, template={"Networks": [{"Target": back}]})
    b = w.add_service("b", replicas=2, template={"Networks": [{"Target": "back"}]},
                      EndpointSpec={"Ports": [{"Protocol": "tcp", "TargetPort": 80,
                                               "PublishedPort": 8080}]})
    w.settle()
    held = _addresses(w)
    assert len(held) == len(set(held))
    assert len(held) == 3 + 2 * 2 + 1 + 2 + 3   # tasks, VIPs (a: 1, b: 2), nodes
    for cidr in held:
        iface = ipaddress.IPv4Interface(cidr)
        assert iface.network.prefixlen == 24
        assert iface.ip not in (iface.network.network_address, iface.network.broadcast_address,
                                iface.network.network_address + 1)
    ingress = _ingress_id(w)
    for t in w.tasks(a):
        assert [att["Network"]["ID"] for att in t["NetworksAttachments"]] == [back]
        assert "_VNI" not in t["NetworksAttachments"][0]["Network"]
    for t in w.tasks(b):   # ingress first, as Docker attaches it
        assert [att["Network"]["ID"] for att in t["NetworksAttachments"]] == [ingress, back]
    vips = {v["NetworkID"] for v in w.service(b)["Endpoint"]["VirtualIPs"]}
    assert vips == {ingress, back}
    assert [v["NetworkID"] for v in w.service(a)["Endpoint"]["VirtualIPs"]] == [back]


def test_addresses_are_released_with_their_tasks_and_services() -> None:
    w = World(nodes=1)
    back = w.add_network("back", "10.0.1.0/24")
    a = w.add_service("a", replicas=3, template={"Networks": [{"Target": back}]})
    w.converge()
    a_addrs = {x for t in w.tasks(a) for x in t["NetworksAttachments"][0]["Addresses"]}
    a_addrs.add(w.service(a)["Endpoint"]["VirtualIPs"][0]["Addr"])
    svc, version = w.store.data[SERVICES + a]
    w._do(w.store.cas(SERVICES + a, {**svc, "_Deleted": True}, version))
    w.converge()
    assert w.tasks(a) == [] and SERVICES + a not in w.store.data
    b = w.add_service("b", replicas=3, template={"Networks": [{"Target": back}]})
    w.settle()
    b_addrs = {x for t in w.tasks(b) for x in t["NetworksAttachments"][0]["Addresses"]}
    b_addrs.add(w.service(b)["Endpoint"]["VirtualIPs"][0]["Addr"])
    assert b_addrs == a_addrs   # the same lowest free addresses, handed out again


def test_dnsrr_has_no_vip_and_a_dropped_network_frees_its_vip() -> None:
    w = World(nodes=1)
    n1 = w.add_network("n1", "10.0.1.0/24")
    n2 = w.add_network("n2", "10.0.2.0/24")
    rr = w.add_service("rr", template={"Networks": [{"Target": n1}]},
                       EndpointSpec={"Mode": "dnsrr"})
    v = w.add_service("v", template={"Networks": [{"Target": n1}, {"Target": n2}]})
    w.settle()
    assert not w.service(rr)["Endpoint"].get("VirtualIPs")
    assert len(w.tasks(rr)[0]["NetworksAttachments"]) == 1
    assert [x["NetworkID"] for x in w.service(v)["Endpoint"]["VirtualIPs"]] == [n1, n2]

    def drop(spec: dict[str, Any]) -> None:
        spec["TaskTemplate"]["Networks"] = [{"Target": n2}]
    w.update_service(v, drop)
    w.converge()
    assert [x["NetworkID"] for x in w.service(v)["Endpoint"]["VirtualIPs"]] == [n2]
    assert [a["Network"]["ID"] for t in w.running(v) for a in t["NetworksAttachments"]] == [n2]


def test_a_full_subnet_or_a_missing_network_leaves_the_task_new_with_the_reason() -> None:
    w = World(nodes=1)
    small = w.add_network("small", "10.0.9.0/29")   # .1 gateway, .2-.6 usable: 5
    sid = w.add_service("s", replicas=5, template={"Networks": [{"Target": small}]})
    w.settle()
    states = sorted(t["Status"]["State"] for t in w.tasks(sid))
    assert states == ["assigned"] * 4 + ["new"]    # the VIP took one address
    (stuck,) = w.tasks(sid, state="new")
    assert stuck["Status"]["Err"] == ("could not allocate an address on network small: "
                                      "no addresses left in its subnet")
    lost = w.add_service("lost", template={"Networks": [{"Target": "nope"}]})
    w.settle()
    assert w.tasks(lost)[0]["Status"]["Err"] == "network nope not found"


def test_every_node_gets_an_ingress_address_released_when_it_leaves() -> None:
    w = World(nodes=3)
    w.settle()
    ingress = _ingress_id(w)
    got = w.attach()
    assert sorted(got) == [f"node{i}/{ingress}" for i in (1, 2, 3)]
    assert len(set(got.values())) == 3
    assert all(a.startswith("10.0.0.") and a.endswith("/24") for a in got.values())
    w.edit_node("node2", Availability="drain")
    w.add_node("node4")
    del w.store.data[NODES + "node3"]
    w.settle()
    after = w.attach()
    assert sorted(after) == [f"node{i}/{ingress}" for i in (1, 2, 4)]
    assert after[f"node1/{ingress}"] == got[f"node1/{ingress}"]   # stable
    assert after[f"node4/{ingress}"] == got[f"node3/{ingress}"]   # node3's, reused


def test_network_keys_appear_with_an_encrypted_network_and_rotate() -> None:
    w = World(nodes=1)
    w.settle()
    assert "_NetworkKeys" not in w.store.data[CLUSTER][0]
    w.store.data[CLUSTER][0]["Spec"]["_KeyRotationS"] = 60
    w.add_network("secure", "10.0.5.0/24", options={"encrypted": ""})
    w.settle()
    (first,) = w.store.data[CLUSTER][0]["_NetworkKeys"]
    assert first["Tag"] == 1 and len(base64.b64decode(first["Key"])) == 20
    w.t += 30
    w.settle()
    assert w.store.data[CLUSTER][0]["_NetworkKeys"] == [first]
    tags = []
    for _ in range(4):
        w.t += 61
        w.settle()   # due: the new key is only accepted, the old one still sends
        keys = w.store.data[CLUSTER][0]["_NetworkKeys"]
        tags.append([k["Tag"] for k in keys])
        w.t += 6
        w.settle()   # staged long enough: the new key becomes primary
        keys = w.store.data[CLUSTER][0]["_NetworkKeys"]
        tags.append([k["Tag"] for k in keys])
    assert tags == [[1, 2], [2, 1], [2, 1, 3], [3, 2, 1], [3, 2, 1, 4], [4, 3, 2],
                    [4, 3, 2, 5], [5, 4, 3]]
    assert len({k["Key"] for k in keys}) == 3


def test_a_standalone_attachment_gets_an_address_on_its_node_and_goes_when_detached() -> None:
    w = World(nodes=2)
    net = w.add_network("shared", "10.0.3.0/24", options={})
    task = {"ID": "att1", "CreatedAt": "2026-01-01T00:00:00.000000000Z", "Labels": {},
            "Spec": {"Networks": [{"Target": net}]}, "ServiceID": "", "Slot": 0,
            "NodeID": "node2", "DesiredState": "running", "NetworksAttachments": [],
            "Status": {"State": "new", "Message": "created"},
            "_Attachment": {"ContainerID": "c" * 64, "Aliases": ["web"]}}
    w._do(w.store.create("/lk/swarm/tasks/att1", task))
    w.settle()
    (got,) = w.tasks()
    assert got["Status"]["State"] == "assigned" and got["NodeID"] == "node2"
    assert got["NetworksAttachments"][0]["Addresses"] == ["10.0.3.2/24"]
    got["DesiredState"] = "shutdown"
    w._do(w.store.put("/lk/swarm/tasks/att1", got))
    w.run()
    w.settle()
    assert w.tasks() == []


def test_an_attachment_may_ask_for_its_address() -> None:
    w = World(nodes=1)
    net = w.add_network("shared", "10.0.3.0/24")

    def attachment(tid: str, ip: str) -> None:
        w._do(w.store.create(f"/lk/swarm/tasks/{tid}", {
            "ID": tid, "CreatedAt": ts(w.t), "Labels": {}, "ServiceID": "", "Slot": 0,
            "NodeID": "node1", "DesiredState": "running", "NetworksAttachments": [],
            "Spec": {"Networks": [{"Target": net, "Addresses": [ip]}]},
            "Status": {"State": "new", "Message": "created"},
            "_Attachment": {"ContainerID": tid, "Aliases": []}}))

    attachment("a1", "10.0.3.77")
    w.settle()
    attachment("a2", "10.0.3.77")
    w.settle()
    got = {t["ID"]: t for t in w.tasks()}
    assert got["a1"]["NetworksAttachments"][0]["Addresses"] == ["10.0.3.77/24"]
    assert got["a2"]["Status"]["State"] == "new"
    assert got["a2"]["Status"]["Err"] == ("could not allocate an address on network shared: "
                                          "address 10.0.3.77 is in use or outside the subnet")
