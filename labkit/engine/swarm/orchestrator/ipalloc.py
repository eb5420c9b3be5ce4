"""Addresses on swarm networks: a task's, a service's VIP, a node's own ingress address.

No allocation table is kept: what is in use is read back from the objects that hold the
addresses (tasks' NetworksAttachments, services' Endpoint.VirtualIPs, attach/ entries) at
every tick, so an address is free again as soon as its holder is deleted.  The leader
is the only writer, so two holders can never be handed the same address.  Like Docker's
default IPAM, the network address, the broadcast address and the gateway are never given.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from labkit.engine.swarm import objects
from labkit.engine.swarm.orchestrator.model import Plan

__all__ = ["Pools", "allocate", "service_networks"]

Obj = dict[str, Any]


def net_id(net: Obj) -> str:
    return str(net.get("Id") or net.get("ID") or "")


class Pools:
    """Per network: its subnet and the host numbers in use."""

    def __init__(self, networks: dict[str, Obj]) -> None:
        self.subnets: dict[str, ipaddress.IPv4Network] = {}
        self.used: dict[str, set[int]] = {}
        for nid, net in networks.items():
            cfg = ((net.get("IPAM") or {}).get("Config") or [{}])[0]
            try:
                subnet = ipaddress.IPv4Network(cfg.get("Subnet", ""), strict=False)
            except ValueError:
                continue   # no usable subnet: nothing is allocated on it
            self.subnets[nid] = subnet
            reserved = {int(subnet.network_address), int(subnet.broadcast_address)}
            gw = cfg.get("Gateway") or str(subnet.network_address + 1)
            try:
                reserved.add(int(ipaddress.IPv4Address(gw.split("/")[0])))
            except ValueError:
                pass
            self.used[nid] = reserved

    def take(self, nid: str, cidr: str) -> bool:
        """Mark an address held; False when it is not in the subnet or already held."""
        if nid not in self.subnets:
            return False
        try:
            addr = ipaddress.IPv4Interface(cidr).ip
        except ValueError:
            return False
        if addr not in self.subnets[nid] or int(addr) in self.used[nid]:
            return False
        self.used[nid].add(int(addr))
        return True

    def give(self, nid: str) -> str | None:
        """The lowest free address as "a.b.c.d/prefix", or None when the pool is full."""
        subnet = self.subnets.get(nid)
        if subnet is None:
            return None
        used = self.used[nid]
        for n in range(int(subnet.network_address) + 1, int(subnet.broadcast_address)):
            if n not in used:
                used.add(n)
                return f"{ipaddress.IPv4Address(n)}/{subnet.prefixlen}"
        return None

    def put_back(self, nid: str, cidr: str) -> None:
        try:
            self.used.get(nid, set()).discard(int(ipaddress.IPv4Interface(cidr).ip))
        except ValueError:
            pass   # never held (a malformed address was not counted either)


def _resolve(plan: Plan, target: str) -> str | None:
    if target in plan.networks:
        return target
    for nid, net in plan.networks.items():
        if net.get("Name") == target:
            return nid
    return None


def has_ingress_ports(svc: Obj) -> bool:
    ports = ((svc.get("Spec") or {}).get("EndpointSpec") or {}).get("Ports") or []
    return any(p.get("PublishMode", "ingress") == "ingress" for p in ports)


def service_networks(plan: Plan, svc: Obj, template: Obj | None = None) -> tuple[list[str],
                                                                               list[str]]:
    """(network ids, unknown targets) a task of the service attaches to: the ingress
    network first when the service publishes ingress-mode ports (Docker does the same),
    then TaskTemplate.Networks in order."""
    tmpl = template if template is not None else (svc.get("Spec") or {}).get("TaskTemplate") or {}
    out: list[str] = []
    missing: list[str] = []
    ingress = plan.ingress()
    if ingress is not None and has_ingress_ports(svc):
        out.append(net_id(ingress))
    for att in tmpl.get("Networks") or (svc.get("Spec") or {}).get("Networks") or []:
        target = str(att.get("Target", ""))
        nid = _resolve(plan, target)
        if nid is None:
            missing.append(target)
        elif nid not in out:
            out.append(nid)
    return out, missing


def _held(plan: Plan) -> Pools:
    pools = Pools(plan.networks)
    for task in plan.tasks.values():
        for att in task.get("NetworksAttachments") or []:
            nid = net_id(att.get("Network") or {})
            for cidr in att.get("Addresses") or []:
                pools.take(nid, cidr)
    for svc in plan.services.values():
        for vip in (svc.get("Endpoint") or {}).get("VirtualIPs") or []:
            pools.take(vip.get("NetworkID", ""), vip.get("Addr", ""))
    for (_, nid), obj in plan.attach.items():
        pools.take(nid, obj.get("Addr", ""))
    return pools


def _vips(plan: Plan, pools: Pools, svc: Obj) -> None:
    """Endpoint.VirtualIPs: one per network in vip mode, none in dnsrr mode."""
    if svc.get("_Deleted"):
        return   # kept until the service object goes (then the addresses are free)
    spec = svc.get("Spec") or {}
    mode = (spec.get("EndpointSpec") or {}).get("Mode") or "vip"
    want = service_networks(plan, svc)[0] if mode == "vip" else []
    endpoint = svc.setdefault("Endpoint", {})
    have = {v.get("NetworkID"): v for v in endpoint.get("VirtualIPs") or []}
    out = []
    for nid in want:
        if nid not in pools.subnets:
            continue
        if nid in have and ipaddress.IPv4Interface(have[nid]["Addr"]).ip in pools.subnets[nid]:
            out.append(have[nid])
            continue
        addr = pools.give(nid)
        if addr is not None:
            out.append({"NetworkID": nid, "Addr": addr})
    for nid, vip in have.items():
        if nid not in want and nid in pools.subnets:
            pools.put_back(str(nid), vip["Addr"])
    if out or endpoint.get("VirtualIPs"):
        endpoint["VirtualIPs"] = out


def _requested(plan: Plan, task: Obj) -> dict[str, str]:
    """network id -> the address a standalone container asked for (`docker run --ip`)."""
    if task.get("_Attachment") is None:
        return {}
    out = {}
    for att in (task.get("Spec") or {}).get("Networks") or []:
        nid = _resolve(plan, str(att.get("Target", "")))
        if nid and att.get("Addresses"):
            out[nid] = str(att["Addresses"][0]).split("/")[0]
    return out


def _one(pools: Pools, nid: str, want: str | None) -> tuple[str | None, str]:
    """(address, "") or (None, why)."""
    if want is None:
        got = pools.give(nid)
        return got, "" if got else "no addresses left in its subnet"
    cidr = f"{want}/{pools.subnets[nid].prefixlen}" if nid in pools.subnets else want
    if pools.take(nid, cidr):
        return cidr, ""
    return None, f"address {want} is in use or outside the subnet"


def _task(plan: Plan, pools: Pools, task: Obj) -> None:
    """A new task gets an address on each of its networks, then is pending."""
    svc = plan.services.get(task.get("ServiceID") or "")
    if task.get("_Attachment") is not None:
        svc = {"Spec": {}}   # a standalone container's attachment: its own networks only
    if svc is None:
        return
    nets, missing = service_networks(plan, svc, task.get("Spec") or {})
    if missing:
        plan.set_status(task, "new", "created", f"network {missing[0]} not found")
        return
    wanted = _requested(plan, task)
    attachments: list[Obj] = []
    for nid in nets:
        name = plan.networks[nid].get("Name", nid)
        addr, why = _one(pools, nid, wanted.get(nid))
        if addr is None:
            for att in attachments:
                pools.put_back(net_id(att["Network"]), att["Addresses"][0])
            plan.set_status(task, "new", "created",
                            f"could not allocate an address on network {name}: {why}")
            return
        attachments.append({"Network": objects.task_network(plan.networks[nid]),
                            "Addresses": [addr]})
    task["NetworksAttachments"] = attachments
    plan.set_status(task, "pending", "pending task scheduling")


def _nodes(plan: Plan, pools: Pools) -> None:
    """attach/<node>/<ingress>: every node of the swarm gets an ingress address (the
    source of its routed-mesh traffic); entries of gone nodes or networks are released.
    Drained and down nodes keep theirs: the routing mesh answers on every node."""
    ingress = plan.ingress()
    ing = net_id(ingress) if ingress is not None else None
    for key in list(plan.attach):
        node, nid = key
        if node not in plan.nodes or nid not in plan.networks:
            pools.put_back(nid, plan.attach.pop(key).get("Addr", ""))
    if ing is None or ing not in pools.subnets:
        return
    for node in sorted(plan.nodes):
        if (node, ing) in plan.attach:
            continue
        addr = pools.give(ing)
        if addr is not None:
            plan.attach[(node, ing)] = {"Addr": addr, "NodeID": node, "NetworkID": ing}


def allocate(plan: Plan) -> None:
    """VIPs, node addresses, then new tasks' addresses (oldest first)."""
    pools = _held(plan)
    for sid in sorted(plan.services):
        _vips(plan, pools, plan.services[sid])
    _nodes(plan, pools)
    fresh = sorted((t for t in plan.tasks.values()
                    if (t.get("Status") or {}).get("State") == "new"
                    and t.get("DesiredState") == "running" and not t.get("_WaitFor")),
                   key=lambda t: (t.get("CreatedAt", ""), t.get("Slot", 0), t["ID"]))
    for task in fresh:
        _task(plan, pools, task)
