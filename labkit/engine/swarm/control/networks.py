"""Swarm-scoped (overlay) networks: create, list, inspect, remove (moby daemon/cluster/
networks.go over swarmkit manager/controlapi/network.go).

Every network gets a subnet and a VXLAN id (VNI) held by a reservation in the store
(``subnets/<cidr>``, ``vnis/<n>``: create-if-absent, so two managers cannot hand out the same
one), and a name reservation.  A subnet that overlaps another swarm network's is refused,
naming both.  The ingress network (routing mesh) is made by the leader through
``create_network(store, body, ingress=True)``: name "ingress", VNI 4096, the pool's first
subnet.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from labkit import errors
from labkit.engine.swarm import ca, objects
from labkit.engine.swarm.control.common import (
    Obj,
    Store,
    check_filters,
    find,
    labels_match,
    name_key,
    obj,
    strmap,
    text,
    unknown,
)
from labkit.engine.swarm.store import CLUSTER, NETWORKS, SERVICES, SUBNETS, TASKS, VNIS

__all__ = ["INGRESS_VNI", "NETWORK_FILTERS", "create_network", "find_network", "list_networks",
           "remove_network", "render_network"]

INGRESS_VNI = 4096
FIRST_VNI = 4097
MAX_VNI = (1 << 24) - 1
NETWORK_FILTERS = ("driver", "id", "label", "name", "scope", "type", "dangling")
_BODY = ("Name", "CheckDuplicate", "Driver", "Scope", "EnableIPv6", "IPAM", "Internal",
         "Attachable", "Ingress", "ConfigOnly", "ConfigFrom", "Options", "Labels")
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_OPTIONS = ("encrypted", "com.docker.network.driver.mtu")
_TERMINAL = ("complete", "shutdown", "failed", "rejected", "orphaned")


def _subnet_key(net: ipaddress.IPv4Network) -> str:
    return SUBNETS + str(net).replace("/", "_")


async def _pool(store: Store) -> tuple[list[ipaddress.IPv4Network], int]:
    got = await store.get(CLUSTER)
    cluster = got[0] if got else {}
    pools = [ipaddress.IPv4Network(p) for p in cluster.get("DefaultAddrPool") or
             ["10.0.0.0/8"]]
    return pools, int(cluster.get("SubnetSize") or 24)


def _check_body(body: Any, ingress: bool) -> tuple[Obj, list[Obj], dict[str, str]]:
    d = obj(body, "request body")
    unknown(d, "", _BODY)
    driver = text(d, "Driver", "") or "overlay"
    if driver != "overlay":
        raise errors.InvalidArgumentError("Driver", f"swarm networks use the overlay driver, "
                                          f"not {driver!r}")
    if text(d, "Scope", "") not in ("", "swarm"):
        raise errors.InvalidArgumentError("Scope", "an overlay network is swarm-scoped")
    for key in ("EnableIPv6", "ConfigOnly"):
        if d.get(key):
            raise errors.InvalidArgumentError(key, f"{key} is not supported on labkit's "
                                              "overlay networks")
    if obj(d.get("ConfigFrom"), "ConfigFrom").get("Network"):
        raise errors.InvalidArgumentError("ConfigFrom", "config-only networks are not offered")
    if d.get("Ingress") and not ingress:
        raise errors.InvalidArgumentError("Ingress", "the swarm makes its ingress network "
                                          "itself (labkit has no custom ingress networks)")
    for key in ("Internal", "Attachable", "CheckDuplicate"):
        if d.get(key) is not None and not isinstance(d[key], bool):
            raise errors.InvalidArgumentError(key, f"{key} must be true or false")
    options = strmap(d.get("Options"), "Options")
    for key, value in options.items():
        if key not in _OPTIONS:
            raise errors.InvalidArgumentError(
                "Options", f"the overlay driver does not support option {key!r} (labkit "
                           f"applies {', '.join(_OPTIONS)})")
        if key == "com.docker.network.driver.mtu" and not (
                value.isdigit() and 576 <= int(value) <= 9000):
            raise errors.InvalidArgumentError(key, f"invalid MTU {value!r} (576-9000)")
    ipam = obj(d.get("IPAM"), "IPAM")
    unknown(ipam, "IPAM", ("Driver", "Options", "Config"))
    if (text(ipam, "Driver", "IPAM") or "default") != "default":
        raise errors.InvalidArgumentError("IPAM.Driver", "labkit has Docker's default IPAM only")
    if strmap(ipam.get("Options"), "IPAM.Options"):
        raise errors.InvalidArgumentError("IPAM.Options", "the default IPAM driver takes no "
                                          "options")
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or len(configs) > 1:
        raise errors.InvalidArgumentError("IPAM.Config", "one IPv4 subnet per overlay network")
    out = []
    for c in configs:
        c = obj(c, "IPAM.Config[0]")
        unknown(c, "IPAM.Config[0]", ("Subnet", "Gateway"), ("IPRange", "AuxiliaryAddresses"))
        out.append(c)
    return d, out, options


def _subnet(config: Obj) -> tuple[ipaddress.IPv4Network | None, str]:
    sub, gw = text(config, "Subnet", "IPAM.Config[0]"), text(config, "Gateway",
                                                               "IPAM.Config[0]")
    if not sub:
        if gw:
            raise errors.InvalidArgumentError("IPAM.Config[0].Gateway", "a gateway needs a "
                                              "subnet")
        return None, ""
    try:
        net = ipaddress.ip_network(sub, strict=True)
    except ValueError as err:
        raise errors.InvalidArgumentError("IPAM.Config[0].Subnet", f"invalid subnet {sub!r}: "
                                          f"{err}") from None
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 29:
        raise errors.InvalidArgumentError("IPAM.Config[0].Subnet", f"subnet {sub}: an IPv4 "
                                          "subnet of /29 or larger is required")
    if gw:
        try:
            g = ipaddress.IPv4Address(gw)
        except ValueError:
            raise errors.InvalidArgumentError("IPAM.Config[0].Gateway", f"invalid gateway "
                                              f"{gw!r}") from None
        if g not in net or g in (net.network_address, net.broadcast_address):
            raise errors.InvalidArgumentError("IPAM.Config[0].Gateway", f"gateway {gw} is not "
                                              f"a host address of {sub}")
    return net, gw


async def _reserve_subnet(store: Store, net_id: str, name: str,
                          want: ipaddress.IPv4Network | None,
                          ingress: bool = False) -> ipaddress.IPv4Network:
    """The subnet asked for, or the first free one of the cluster's pool; refused when it
    overlaps a swarm network's.  Its reservation key makes the same subnet atomic.  The
    pool's first subnet is kept for the ingress network (Docker's 10.0.0.0/24), which the
    leader may make only after a user network exists."""
    taken = []
    for n, _ in await store.list(NETWORKS):
        for c in (n.get("IPAM") or {}).get("Config") or []:
            taken.append((ipaddress.IPv4Network(c["Subnet"]), n["Name"]))
    if want is not None:
        for other, owner in taken:
            if want.overlaps(other):
                raise errors.ConflictError(
                    f"subnet {want} of network {name} overlaps with subnet {other} of "
                    f"network {owner}")
        try:
            await store.create(_subnet_key(want), {"Network": net_id})
        except errors.AlreadyExistsError:
            raise errors.ConflictError(f"subnet {want} of network {name} is already in use "
                                       "by another swarm network") from None
        return want
    pools, size = await _pool(store)
    first = next(pools[0].subnets(new_prefix=max(size, pools[0].prefixlen)))
    for pool in pools:
        for cand in pool.subnets(new_prefix=max(size, pool.prefixlen)):
            if (cand == first and not ingress) or any(cand.overlaps(o) for o, _ in taken):
                continue
            try:
                await store.create(_subnet_key(cand), {"Network": net_id})
            except errors.AlreadyExistsError:
                continue
            return cand
    raise errors.ConflictError(f"no free subnet left in the address pool "
                               f"{', '.join(map(str, pools))} for network {name}")


async def _reserve_vni(store: Store, net_id: str, ingress: bool) -> int:
    if ingress:
        await store.create(VNIS + str(INGRESS_VNI), {"Network": net_id})
        return INGRESS_VNI
    used = {int(k["_VNI"]) for k, _ in await store.list(NETWORKS) if "_VNI" in k}
    # VNIs are handed out going up from the last one given, wrapping at the top, so a
    # network made right after another's removal never gets its VNI: nodes may still hold
    # the old network's VXLAN device (lkvx<VNI>) while its last containers stop
    got = await store.get(VNIS + "last")
    last = int(got[0].get("VNI", FIRST_VNI - 1)) if got else FIRST_VNI - 1
    span = MAX_VNI - FIRST_VNI + 1
    for step in range(1, span + 1):
        vni = FIRST_VNI + (last - FIRST_VNI + step) % span
        if vni in used:
            continue
        try:
            await store.create(VNIS + str(vni), {"Network": net_id})
        except errors.AlreadyExistsError:
            continue
        await store.put(VNIS + "last", {"VNI": vni})
        return vni
    raise errors.ConflictError("no free VXLAN id left")


async def create_network(store: Store, body: Any, *, ingress: bool = False) -> Obj:
    """POST /networks/create with Driver overlay on a manager: the stored network (Docker's
    network JSON plus ``_VNI``).  ``ingress``: the routing mesh's network (the leader's)."""
    d, configs, options = _check_body(body, ingress)
    name = text(d, "Name", "") or ("ingress" if ingress else "")
    if not _NAME.fullmatch(name) or len(name) > 255:  # moby's network name rule
        raise errors.InvalidArgumentError("Name", f"invalid network name {name!r}: letters, "
                                          "digits and [_.-], starting with a letter or digit")
    if name == "ingress" and not ingress:
        raise errors.ConflictError("network with name ingress already exists (the name is "
                                   "kept for the swarm's routing-mesh network)")
    want, gw = _subnet(configs[0]) if configs else (None, "")
    net_id = ca.new_id()
    try:
        await store.create(name_key("networks", name), {"ID": net_id})
    except errors.AlreadyExistsError:
        raise errors.ConflictError(f"network with name {name} already exists") from None
    held = [name_key("networks", name)]
    try:
        subnet = await _reserve_subnet(store, net_id, name, want, ingress)
        held.append(_subnet_key(subnet))
        vni = await _reserve_vni(store, net_id, ingress)
        held.append(VNIS + str(vni))
        gateway = gw or str(next(subnet.hosts()))
        net: Obj = {
            "Name": name, "Id": net_id, "Created": objects.now(), "Scope": "swarm",
            "Driver": "overlay", "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None,
                     "Config": [{"Subnet": str(subnet), "Gateway": gateway}]},
            "Internal": bool(d.get("Internal")), "Attachable": bool(d.get("Attachable")),
            "Ingress": ingress, "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": None,
            "Options": {"com.docker.network.driver.overlay.vxlanid_list": str(vni), **options},
            "Labels": strmap(d.get("Labels"), "Labels"), "_VNI": vni}
        await store.create(NETWORKS + net_id, net)
        held.append(NETWORKS + net_id)
        # two managers creating overlapping (not equal) subnets at once both pass the check
        # above; each looks again once its own object is written, and steps back on any
        # overlap (both may fail then, never both succeed)
        for n, _ in await store.list(NETWORKS):
            for c in (n.get("IPAM") or {}).get("Config") or []:
                other = ipaddress.IPv4Network(c["Subnet"])
                if n["Id"] != net_id and other.overlaps(subnet):
                    raise errors.ConflictError(
                        f"subnet {subnet} of network {name} overlaps with subnet {other} of "
                        f"network {n['Name']}")
    except BaseException:
        for key in held:
            await store.delete(key)
        raise
    return net


def render_network(net: Obj) -> Obj:
    """The Engine API's shape (labkit's private keys dropped)."""
    return {k: v for k, v in net.items() if not k.startswith("_")}


async def find_network(store: Store, ref: str) -> tuple[Obj, int]:
    return await find(store, NETWORKS, ref, "network", lambda n: str(n.get("Name")))


async def list_networks(store: Store, filters: dict[str, list[str]]) -> list[Obj]:
    """Swarm networks passing Docker's network ls filters (moby daemon/network/filter.go)."""
    check_filters(filters, NETWORK_FILTERS)
    out = []
    for n, _ in await store.list(NETWORKS):
        if _matches(n, filters):
            out.append(render_network(n))
    return out


def _matches(n: Obj, f: dict[str, list[str]]) -> bool:
    tests: dict[str, Callable[[str], bool]] = {
        "driver": lambda v: n["Driver"] == v,
        "id": lambda v: n["Id"].startswith(v),
        "name": lambda v: v in n["Name"],
        "scope": lambda v: v == "swarm",
        "type": lambda v: v == "custom",
    }
    for key, values in f.items():
        if not values:
            continue
        if key == "label":
            if not labels_match(n.get("Labels") or {}, values):
                return False
        elif key in tests and not any(tests[key](v) for v in values):
            return False
    return True


async def remove_network(store: Store, ref: str) -> None:
    """DELETE /networks/{id} of a swarm network: refused while a service or a task uses it."""
    net, _ = await find_network(store, ref)
    nid = net["Id"]
    services = [s for s, _ in await store.list(SERVICES) if not s.get("_Deleted")]
    if net.get("Ingress"):
        for s in services:
            ports = (s["Spec"].get("EndpointSpec") or {}).get("Ports") or []
            if any(p.get("PublishMode", "ingress") == "ingress" for p in ports):
                raise errors.ConflictError(
                    "rpc error: code = FailedPrecondition desc = ingress network cannot be "
                    f"removed because service {s['ID']} depends on it")
    for s in services:
        if any(a.get("Target") == nid for a in s["Spec"]["TaskTemplate"].get("Networks") or []):
            raise errors.ConflictError(f"rpc error: code = FailedPrecondition desc = network "
                                       f"{nid} is in use by service {s['ID']}")
    # swarmkit RemoveNetwork: a task holds the network while it is desired running and not
    # past running; a removed service's tasks are the orchestrator's to stop (`stack rm`
    # removes the services and then, at once, the networks)
    live = {s["ID"] for s in services}
    for t, _ in await store.list(TASKS):
        if t.get("DesiredState") != "running" or t.get("Status", {}).get("State") in _TERMINAL:
            continue
        if t.get("ServiceID") and t["ServiceID"] not in live:
            continue
        if any(nid in (a.get("Network", {}).get("ID"), a.get("Network", {}).get("Id"))
               for a in t.get("NetworksAttachments") or []):
            raise errors.ConflictError(f"rpc error: code = FailedPrecondition desc = network "
                                       f"{nid} is in use by task {t['ID']}")
    await store.delete(NETWORKS + nid)
    for c in net["IPAM"]["Config"]:
        await store.delete(_subnet_key(ipaddress.IPv4Network(c["Subnet"])))
    if "_VNI" in net:
        await store.delete(VNIS + str(net["_VNI"]))
    await store.delete(name_key("networks", net["Name"]))
