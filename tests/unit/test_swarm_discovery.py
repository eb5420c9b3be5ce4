"""Discovery from the assignment snapshot, without a kernel: the VIP rules per task, the
DNS service records per network, the ingress plan, the nft scripts they render, the
NetworkView's service records, and what apply() asks of the kernel (recorded)."""

from __future__ import annotations

import ipaddress
import os
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from labkit import errors
from labkit.engine.net import ingress, vip
from labkit.engine.net.dns.table import Endpoint, NetworkView
from labkit.engine.networks import dnsview
from labkit.engine.swarm import discovery

NET_A, NET_B, ING = "neta" * 6 + "x", "netb" * 6 + "x", "ingr" * 6 + "x"


def _net(nid: str, name: str, vni: int, ingress_: bool = False) -> dict[str, Any]:
    return {"ID": nid, "Name": name, "VNI": vni, "Subnet": "10.0.1.0/24",
            "Gateway": "10.0.1.1", "Encrypted": False, "MTU": None, "Attachable": False,
            "Internal": False, "Ingress": ingress_, "Labels": {}, "Options": {}}


def _task(tid: str, *nets: str) -> dict[str, Any]:
    return {"ID": tid, "NetworksAttachments": [
        {"Network": {"ID": n}, "Addresses": ["10.0.1.9/24"]} for n in nets]}


def snapshot() -> dict[str, Any]:
    return {
        "node_id": "n1",
        "tasks": [_task("t1", NET_A, ING), _task("t2", NET_B), _task("t3")],
        "networks": {NET_A: _net(NET_A, "front", 4097), NET_B: _net(NET_B, "back", 4098),
                     ING: _net(ING, "ingress", 4096, True)},
        "attachments": {ING: "10.0.0.5/24"},
        "services": [
            {"ID": "s1", "Name": "web", "Mode": "vip",
             "Aliases": {NET_A: ["www", "Bad Name!"]},
             "VIPs": {NET_A: "10.0.1.2/24", ING: "10.0.0.2"},
             "Tasks": {NET_A: ["10.0.1.3", "10.0.1.4/24"], ING: ["10.0.0.7"]}},
            {"ID": "s2", "Name": "db", "Mode": "dnsrr", "Aliases": {},
             "VIPs": {}, "Tasks": {NET_A: ["10.0.1.5", "10.0.1.6"], NET_B: ["10.0.2.5"]}},
            {"ID": "s3", "Name": "idle", "Mode": "vip", "Aliases": {},
             "VIPs": {NET_A: "10.0.1.20", NET_B: "10.0.2.20"}, "Tasks": {}},
        ],
        "ingress": [
            {"Protocol": "tcp", "PublishedPort": 8080, "TargetPort": 80, "ServiceID": "s1",
             "Backends": ["10.0.0.7", "10.0.0.8"]},
            {"Protocol": "udp", "PublishedPort": 5353, "TargetPort": 53, "ServiceID": "s2",
             "Backends": []},
        ],
        "data_port": 4789,
    }


# -- pure computations ---------------------------------------------------------------------

def test_vip_rules_per_task_cover_the_services_on_its_networks_but_not_ingress() -> None:
    rules = discovery.vip_rules(snapshot())
    assert rules["t1"] == [vip.VipRule("10.0.1.2", ("10.0.1.3", "10.0.1.4")),
                           vip.VipRule("10.0.1.20", ())]
    assert rules["t2"] == [vip.VipRule("10.0.2.20", ())]   # dnsrr "db" has no VIP
    assert rules["t3"] == []


def test_dns_records_vip_dnsrr_tasks_aliases_and_reverse() -> None:
    recs = discovery.dns_records(snapshot())
    assert set(recs) == {NET_A, NET_B}               # ingress carries no discovery
    a = recs[NET_A]
    assert a.name == "front"
    assert a.records["web"] == ["10.0.1.2"]
    assert a.records["www"] == ["10.0.1.2"]
    assert a.records["tasks.web"] == ["10.0.1.3", "10.0.1.4"]
    assert a.records["tasks.www"] == ["10.0.1.3", "10.0.1.4"]
    assert "bad name!" not in a.records and "tasks.bad name!" not in a.records
    assert a.records["db"] == ["10.0.1.5", "10.0.1.6"]      # dnsrr: the tasks
    assert a.records["tasks.db"] == ["10.0.1.5", "10.0.1.6"]
    assert a.records["idle"] == ["10.0.1.20"] and a.records["tasks.idle"] == []
    assert a.reverse["10.0.1.3"] == "tasks.web" and a.reverse["10.0.1.2"] == "web"
    b = recs[NET_B]
    assert b.records == {"db": ["10.0.2.5"], "tasks.db": ["10.0.2.5"],
                         "idle": ["10.0.2.20"], "tasks.idle": []}


def test_vip_mode_without_a_vip_yet_answers_with_the_tasks() -> None:
    s = snapshot()
    s["services"][0]["VIPs"] = {}
    assert discovery.dns_records(s)[NET_A].records["web"] == ["10.0.1.3", "10.0.1.4"]
    assert discovery.vip_rules(s)["t1"] == [vip.VipRule("10.0.1.20", ())]


def test_ingress_plan() -> None:
    bridge, addr, ports = discovery.ingress_plan(snapshot()) or ("", "", [])
    assert (bridge, addr) == ("lkov4096", "10.0.0.5")
    assert ports == [ingress.IngressPort("tcp", 8080, 80, ("10.0.0.7", "10.0.0.8")),
                     ingress.IngressPort("udp", 5353, 53, ())]
    s = snapshot()
    s["attachments"] = {}
    assert discovery.ingress_plan(s) is None          # no address on ingress: no mesh
    s = snapshot()
    s["ingress"] = []
    assert discovery.ingress_plan(s) is None
    s = snapshot()
    s["networks"][ING]["VNI"] = "4096"
    with pytest.raises(errors.InvalidArgumentError, match="VNI"):
        discovery.ingress_plan(s)


def test_malformed_snapshot_parts_are_skipped_not_fatal() -> None:
    s: dict[str, Any] = {"tasks": [None, {"ID": 5}, _task("t9", NET_A)],
                         "networks": {NET_A: _net(NET_A, "front", 4097), "x": "junk"},
                         "services": ["junk", {"Name": None}, {"Name": "ok", "Tasks": "junk"}],
                         "ingress": ["junk", {"PublishedPort": "80", "TargetPort": 1}]}
    assert discovery.vip_rules(s) == {"t9": []}
    assert discovery.dns_records(s)[NET_A].records == {}
    assert discovery.ingress_ports(s) == []


# -- rendering -------------------------------------------------------------------------------

def test_render_vips_one_transaction_replacing_the_table() -> None:
    script = vip.render_vips([vip.VipRule("10.0.1.2", ("10.0.1.3", "10.0.1.4", "10.0.1.3")),
                              vip.VipRule("10.0.1.20", ())])
    lines = script.splitlines()
    assert lines[:2] == ["table ip lk-vip {}", "delete table ip lk-vip"]
    assert ("  ip daddr 10.0.1.2 dnat ip to numgen inc mod 2 map "
            "{ 0 : 10.0.1.3, 1 : 10.0.1.4 }") in lines
    assert "  ip daddr 10.0.1.20 meta l4proto tcp reject with tcp reset" in lines
    assert "  ip daddr 10.0.1.20 reject" in lines
    assert vip.render_vips([]) == "table ip lk-vip {}\ndelete table ip lk-vip\n"


@pytest.mark.parametrize("rule, msg", [
    (vip.VipRule("10.0.1.2; flush ruleset", ()), "not an IP address"),
    (vip.VipRule("fd00::2", ()), "not an IPv4"),
    (vip.VipRule("10.0.1.2", ("10.0.1.3 }",)), "backend"),
])
def test_render_vips_refuses_bad_input(rule: vip.VipRule, msg: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=msg):
        vip.render_vips([rule])


def test_render_vips_refuses_a_vip_twice() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="two rules"):
        vip.render_vips([vip.VipRule("10.0.1.2", ()), vip.VipRule("10.0.1.2", ("10.0.1.3",))])


def test_render_ingress() -> None:
    script = ingress.render_ingress("lkov4096", "10.0.0.5", [
        ingress.IngressPort("tcp", 8080, 80, ("10.0.0.7", "10.0.0.8")),
        ingress.IngressPort("udp", 5353, 53, ()), ingress.IngressPort("tcp", 9000, 90, ())])
    lines = [x.strip() for x in script.splitlines()]
    assert lines[:2] == ["table ip lk-ingress {}", "delete table ip lk-ingress"]
    assert ("tcp dport 8080 dnat ip to numgen inc mod 2 map "
            "{ 0 : 10.0.0.7 . 80, 1 : 10.0.0.8 . 80 }") in lines
    assert 'oifname "lkov4096" ct status dnat snat ip to 10.0.0.5' in lines
    assert "fib daddr type local udp dport 5353 reject" in lines
    assert "fib daddr type local tcp dport 9000 reject with tcp reset" in lines
    assert lines.count("fib daddr type local jump publish") == 2
    assert 'iifname "lkov4096" ip saddr 127.0.0.0/8 drop' in lines


@pytest.mark.parametrize("args, msg", [
    (("lk ov", "10.0.0.5", []), "ingress bridge"),
    (("lkov1", "10.0.0.5/24", []), "node ingress address"),
    (("lkov1", "10.0.0.5", [ingress.IngressPort("sctp", 1, 1)]), "protocol"),
    (("lkov1", "10.0.0.5", [ingress.IngressPort("tcp", 0, 1)]), "published port"),
    (("lkov1", "10.0.0.5", [ingress.IngressPort("tcp", 1, 70000)]), "target port"),
    (("lkov1", "10.0.0.5", [ingress.IngressPort("tcp", 1, 1), ingress.IngressPort("tcp", 1, 2)]),
     "twice"),
    (("lkov1", "10.0.0.5", [ingress.IngressPort("tcp", 1, 1, ("x",))]), "backend"),
])
def test_render_ingress_refuses_bad_input(args: Any, msg: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=msg):
        ingress.render_ingress(*args)


# -- the DNS view ----------------------------------------------------------------------------

ip = ipaddress.ip_address


def test_service_records_win_over_container_names_and_rotate() -> None:
    view = NetworkView("front", [Endpoint("web.1.abc", "c" * 64, ip("10.0.1.3"), None,
                                          ("web",))])
    assert view.lookup("web", 4) == [ip("10.0.1.3")]           # local alias only, so far
    view.set_services({"web": ["10.0.1.2"], "tasks.web": ["10.0.1.3", "10.0.1.4"],
                       "db": ["10.0.1.5", "10.0.1.6", "10.0.1.7"]},
                      {"10.0.1.4": "tasks.web", "10.0.1.3": "tasks.web"})
    assert view.lookup("web", 4) == [ip("10.0.1.2")]
    assert view.lookup("WEB.front.", 4) == [ip("10.0.1.2")]
    assert view.lookup("web", 6) == []
    answers = [view.lookup("db", 4) for _ in range(3)]
    assert [a[0] for a in answers if a] == [ip("10.0.1.5"), ip("10.0.1.6"), ip("10.0.1.7")]
    assert view.lookup("web.1.abc", 4) == [ip("10.0.1.3")]     # container names still
    assert view.reverse(ip("10.0.1.3")) == "web.1.abc.front"   # a local container first
    assert view.reverse(ip("10.0.1.4")) == "tasks.web.front"   # a remote task
    view.update([])                                             # members change: records stay
    assert view.lookup("tasks.web", 4) == [ip("10.0.1.3"), ip("10.0.1.4")]
    view.set_services({})
    assert not view.knows("web") and view.reverse(ip("10.0.1.4")) is None


def test_set_services_refuses_bad_input_and_keeps_the_old_records() -> None:
    view = NetworkView("front")
    view.set_services({"web": ["10.0.1.2"]})
    with pytest.raises(errors.InvalidArgumentError):
        view.set_services({"web": ["10.0.1.x"]})
    with pytest.raises(errors.InvalidArgumentError):
        view.set_services({"we b": ["10.0.1.2"]})
    with pytest.raises(errors.InvalidArgumentError):
        view.set_services({}, {"10.0.1.2": "a b"})
    assert view.services() == {"web": ["10.0.1.2"]}


def test_set_service_records_makes_the_view_members_later_join() -> None:
    nets = SimpleNamespace(views={}, members={})
    v = dnsview.set_service_records(nets, NET_A, "front", {"web": ["10.0.1.2"]})
    assert nets.views[NET_A] is v and dnsview.service_networks(nets) == [NET_A]
    nets.members[NET_A] = {"c": Endpoint("web.1.x", "c" * 64, ip("10.0.1.3"))}
    dnsview.refresh(nets, SimpleNamespace(id=NET_A, name="front"))
    assert nets.views[NET_A] is v                       # the same object, records kept
    assert v.lookup("web", 4) == [ip("10.0.1.2")] and v.knows("web.1.x")


# -- apply -----------------------------------------------------------------------------------

def test_apply_programs_changes_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(discovery, "program_vips", lambda p, r: calls.append(("vip", p, r)))
    monkeypatch.setattr(discovery, "program_ingress", lambda *a: calls.append(("ing", *a)))
    monkeypatch.setattr(discovery, "clear_ingress", lambda: calls.append(("clear",)))
    monkeypatch.setattr(discovery, "_written", {})
    engine = SimpleNamespace(networks=SimpleNamespace(views={}, members={},
                                                      kernel=threading.RLock()))
    ns1, ns2 = tmp_path / "ns1", tmp_path / "ns2"
    ns1.touch()
    ns2.touch()
    s = snapshot()
    netns_of = {"t1": str(ns1), "t2": str(ns2)}
    discovery.apply(engine, s, netns_of)
    assert ("vip", str(ns1), discovery.vip_rules(s)["t1"]) in calls
    assert ("vip", str(ns2), discovery.vip_rules(s)["t2"]) in calls
    assert ("ing", "lkov4096", "10.0.0.5", discovery.ingress_ports(s)) in calls
    assert len(calls) == 3
    views = engine.networks.views
    assert views[NET_A].lookup("www", 4) == [ip("10.0.1.2")]
    calls.clear()
    discovery.apply(engine, s, netns_of)                # nothing changed: nothing run
    assert calls == []
    s["services"][0]["Tasks"][NET_A] = ["10.0.1.3"]     # a task went
    s["ingress"] = []
    s["networks"].pop(NET_B)
    discovery.apply(engine, s, netns_of)
    assert calls == [("vip", str(ns1), [vip.VipRule("10.0.1.2", ("10.0.1.3",)),
                                        vip.VipRule("10.0.1.20", ())]),
                     ("vip", str(ns2), []), ("clear",)]
    assert views[NET_B].services() == {}                # the network left: records cleared
    assert views[NET_A].lookup("tasks.web", 4) == [ip("10.0.1.3")]


def test_apply_goes_on_after_a_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                                       caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []

    def fake(path: str, rules: Any) -> None:
        if path.endswith("bad"):
            raise errors.NotFoundError("network namespace", path)
        done.append(path)
    monkeypatch.setattr(discovery, "program_vips", fake)
    monkeypatch.setattr(discovery, "program_ingress", lambda *a: done.append("ingress"))
    monkeypatch.setattr(discovery, "_written", {})
    engine = SimpleNamespace(networks=SimpleNamespace(views={}, members={}))
    (tmp_path / "bad").touch()
    (tmp_path / "good").touch()
    discovery.apply(engine, snapshot(), {"t1": str(tmp_path / "bad"),
                                         "t2": str(tmp_path / "good"),
                                         "t3": os.fspath(tmp_path / "missing")})
    assert done == [str(tmp_path / "good"), "ingress"]
    assert "t1" in caplog.text and "t3" in caplog.text
