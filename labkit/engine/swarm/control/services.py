"""Services: create, update (with ?version and ?rollback=previous), remove, list, inspect
(moby daemon/cluster/services.go over swarmkit manager/controlapi/service.go).

The control API writes the service object only; the leader's orchestrator (H2) turns it
into tasks.  Names and ingress published ports are reservations in the store
(``names/services/<name>``, ``names/ports/<proto>/<port>``): a create-if-absent, so two
managers cannot both take one.  A deleted service is marked ``_Deleted`` for the
orchestrator to shut its tasks down and delete it; its name and ports are free at once.
"""

from __future__ import annotations

import copy
from typing import Any

from labkit import errors
from labkit.engine.swarm import ca, objects
from labkit.engine.swarm.control import networks as nets
from labkit.engine.swarm.control import secrets as sec
from labkit.engine.swarm.control.common import (
    Obj,
    Store,
    check_filters,
    find,
    labels_match,
    not_found,
)
from labkit.engine.swarm.control.defaults import insert_defaults
from labkit.engine.swarm.control.svcspec import check_service_spec
from labkit.engine.swarm.store import NAMES, SERVICES

__all__ = ["SERVICE_FILTERS", "create", "get", "inspect", "list_", "remove", "update"]

SERVICE_FILTERS = ("id", "label", "mode", "name")
PORT_RANGE = range(30000, 32768)   # swarmkit allocator dynamicPortStart..dynamicPortEnd


def _name_key(name: str) -> str:
    return f"{NAMES}services/{name.lower()}"


def _port_key(proto: str, port: int) -> str:
    return f"{NAMES}ports/{proto}/{port}"


async def _resolve(store: Store, spec: Obj) -> None:
    """Networks[].Target (name, id or prefix) -> the swarm network's id; secret and config
    references -> the existing object's id and name (they must exist)."""
    task = spec["TaskTemplate"]
    seen = set()
    for att in task.get("Networks") or []:
        try:
            net, _ = await nets.find_network(store, att["Target"])
        except errors.NotFoundError:
            raise not_found("network", att["Target"]) from None
        if net.get("Ingress"):  # moby daemon/cluster/services.go
            raise errors.InvalidArgumentError(
                "TaskTemplate.Networks", "Service cannot be explicitly attached to the ingress "
                f"network \"{net['Name']}\"")
        if net["Id"] in seen:
            raise errors.InvalidArgumentError("TaskTemplate.Networks",
                                              f"duplicate network attachment {att['Target']}")
        seen.add(net["Id"])
        att["Target"] = net["Id"]
    c = task["ContainerSpec"]
    for kind, one in (("Secrets", "secret"), ("Configs", "config")):
        cap = one.capitalize()
        for ref in c.get(kind) or []:
            want = ref.get(f"{cap}ID") or ref.get(f"{cap}Name")
            try:
                item, _ = await sec.get(store, one, want)
            except errors.NotFoundError:
                raise errors.InvalidArgumentError(
                    one, f"rpc error: code = InvalidArgument desc = {one} reference is "
                         f"invalid: {one} {want} not found") from None
            ref[f"{cap}ID"], ref[f"{cap}Name"] = item["ID"], item["Spec"]["Name"]


async def _take_port(store: Store, svc_id: str, proto: str, port: int) -> None:
    try:
        await store.create(_port_key(proto, port), {"ID": svc_id})
    except errors.AlreadyExistsError:
        got = await store.get(_port_key(proto, port))
        holder = got[0]["ID"] if got else "?"
        other = await store.get(SERVICES + holder)
        name = other[0]["Spec"]["Name"] if other else holder
        # swarmkit allocator/portallocator.go's words
        raise errors.InvalidArgumentError(
            "port", f"rpc error: code = InvalidArgument desc = port '{port}' is already in use "
                    f"by service '{name}' ({holder}) as an ingress port") from None


async def _ports(store: Store, svc_id: str, spec: Obj, old: list[Obj]) -> tuple[list[Obj],
                                                                                list[str]]:
    """Endpoint.Ports with every ingress PublishedPort filled and reserved; returns the
    ports and the keys newly taken (to give back if the write fails).  A port asked as 0
    keeps the one it was given before (swarmkit's allocator does the same on update)."""
    ports, taken = [], []
    held = {(p["Protocol"], p["PublishedPort"]) for p in old
            if p.get("PublishMode") == "ingress"}
    given = {(p["Protocol"], p["TargetPort"]): p["PublishedPort"] for p in old
             if p.get("PublishMode") == "ingress" and p.get("_Dynamic")}
    try:
        for p in (spec.get("EndpointSpec") or {}).get("Ports") or []:
            p = dict(p)
            if p["PublishMode"] == "ingress":
                if not p["PublishedPort"]:
                    again = given.get((p["Protocol"], p["TargetPort"]))
                    if again is not None and (p["Protocol"], again) in held:
                        p["PublishedPort"], p["_Dynamic"] = again, True
                    else:
                        p["PublishedPort"], p["_Dynamic"] = await _dynamic(
                            store, svc_id, p["Protocol"]), True
                        taken.append(_port_key(p["Protocol"], p["PublishedPort"]))
                elif (p["Protocol"], p["PublishedPort"]) not in held:
                    await _take_port(store, svc_id, p["Protocol"], p["PublishedPort"])
                    taken.append(_port_key(p["Protocol"], p["PublishedPort"]))
            ports.append(p)
    except BaseException:
        for key in taken:
            await store.delete(key)
        raise
    return ports, taken


async def _dynamic(store: Store, svc_id: str, proto: str) -> int:
    for port in PORT_RANGE:
        try:
            await store.create(_port_key(proto, port), {"ID": svc_id})
        except errors.AlreadyExistsError:
            continue
        return port
    raise errors.ConflictError("rpc error: code = ResourceExhausted desc = no free ports "
                               "left in the dynamic range 30000-32767")


def _endpoint_ports(ports: list[Obj]) -> list[Obj]:
    """The public Endpoint.Ports (labkit's _Dynamic mark dropped)."""
    return [{k: v for k, v in p.items() if not k.startswith("_")} for p in ports]


async def _free_ports(store: Store, ports: list[Obj], keep: list[Obj] | None = None) -> None:
    still = {(p["Protocol"], p["PublishedPort"]) for p in keep or []
             if p.get("PublishMode") == "ingress"}
    for p in ports:
        if p.get("PublishMode") == "ingress" and (p["Protocol"], p["PublishedPort"]) not in still:
            await store.delete(_port_key(p["Protocol"], p["PublishedPort"]))


async def create(store: Store, body: Any) -> Obj:
    """POST /services/create: {"ID", "Warnings"}."""
    spec = check_service_spec(body)
    await _resolve(store, spec)
    svc_id, t, name = ca.new_id(), objects.now(), spec["Name"]
    try:
        await store.create(_name_key(name), {"ID": svc_id})
    except errors.AlreadyExistsError:
        raise errors.ConflictError(f"rpc error: code = AlreadyExists desc = service {name} "
                                   "already exists") from None
    try:
        ports, _ = await _ports(store, svc_id, spec, [])
        try:
            svc: Obj = {"ID": svc_id, "CreatedAt": t, "UpdatedAt": t, "Spec": spec,
                        "Endpoint": _endpoint(spec, ports), "_Ports": ports, "_SpecVersion": 1}
            await store.create(SERVICES + svc_id, svc)
        except BaseException:
            await _free_ports(store, ports)
            raise
    except BaseException:
        await store.delete(_name_key(name))
        raise
    return {"ID": svc_id, "Warnings": None}


def _endpoint(spec: Obj, ports: list[Obj], old: Obj | None = None) -> Obj:
    """Endpoint: Spec, Ports; VirtualIPs are the leader's (kept across updates)."""
    out: Obj = {"Spec": copy.deepcopy(spec.get("EndpointSpec") or {"Mode": "vip"})}
    if ports:
        out["Ports"] = _endpoint_ports(ports)
    if old and old.get("VirtualIPs"):
        out["VirtualIPs"] = old["VirtualIPs"]
    return out


async def get(store: Store, ref: str) -> tuple[Obj, int]:
    """A live (not deleted) service by id, name or unique id prefix."""
    svc, version = await find(store, SERVICES, ref, "service", _live_name)
    if svc.get("_Deleted"):
        raise not_found("service", ref)
    return svc, version


def _live_name(s: Obj) -> str:
    return "" if s.get("_Deleted") else str(s["Spec"]["Name"])


async def inspect(store: Store, ref: str, *, insert_defaults_: bool = False) -> Obj:
    svc, version = await get(store, ref)
    out = objects.render_service(svc, version)
    if insert_defaults_:
        out["Spec"] = insert_defaults(out["Spec"])
        if "PreviousSpec" in out:
            out["PreviousSpec"] = insert_defaults(out["PreviousSpec"])
    return out


async def list_(store: Store, filters: dict[str, list[str]]) -> list[tuple[Obj, int]]:
    """Live services passing the filters id (prefix), name (prefix), label, mode
    (replicated|global) (moby daemon/cluster/filters.go newListServicesFilters)."""
    check_filters(filters, SERVICE_FILTERS)
    for m in filters.get("mode", []):
        if m not in ("replicated", "global"):
            raise errors.InvalidArgumentError("filter", f"Invalid filter: 'mode'='{m}'")
    out = []
    for svc, version in await store.list(SERVICES):
        if svc.get("_Deleted"):
            continue
        spec = svc["Spec"]
        mode = "global" if "Global" in spec["Mode"] else "replicated"
        if filters.get("id") and not any(svc["ID"].startswith(v) for v in filters["id"]):
            continue
        if filters.get("name") and not any(spec["Name"].startswith(v)
                                           for v in filters["name"]):
            continue
        if filters.get("label") and not labels_match(spec.get("Labels") or {},
                                                     filters["label"]):
            continue
        if filters.get("mode") and mode not in filters["mode"]:
            continue
        out.append((svc, version))
    return out


async def update(store: Store, ref: str, version: int, body: Any, *,
                 rollback: bool = False) -> Obj:
    """POST /services/{id}/update?version=N[&rollback=previous]: {"Warnings"}."""
    svc, current = await get(store, ref)
    if rollback:
        if not svc.get("PreviousSpec"):
            raise errors.ConflictError(f"rpc error: code = FailedPrecondition desc = service "
                                       f"{svc['ID']} does not have a previous spec")
        spec = copy.deepcopy(svc["PreviousSpec"])
    else:
        spec = check_service_spec(body)
        await _resolve(store, spec)
    if version != current:
        raise errors.ConflictError("update out of sequence")
    old = svc["Spec"]
    if spec["Name"] != old["Name"]:
        raise errors.InvalidArgumentError("Name", "rpc error: code = Unimplemented desc = "
                                          "renaming services is not supported")
    if ("Global" in spec["Mode"]) != ("Global" in old["Mode"]):
        raise errors.InvalidArgumentError("Mode", "rpc error: code = Unimplemented desc = "
                                          "service mode change is not allowed")
    old_ports = svc.get("_Ports") or []
    ports, taken = await _ports(store, svc["ID"], spec, old_ports)
    try:
        # compared with the defaults filled in: `service update` sends back what GET
        # ?insertDefaults=true showed, which is no change of what the tasks run
        if insert_defaults(spec) != insert_defaults(old) or rollback:
            svc["PreviousSpec"], svc["Spec"] = old, spec
            svc["_SpecVersion"] = int(svc.get("_SpecVersion", 1)) + 1
            if rollback:  # swarmkit controlapi UpdateService on a manual rollback
                svc["UpdateStatus"] = {"State": "rollback_started",
                                       "StartedAt": objects.now(),
                                       "Message": "manually requested rollback"}
            else:         # the leader's updater writes the new one
                svc.pop("UpdateStatus", None)
        svc["Endpoint"] = _endpoint(spec, ports, svc.get("Endpoint"))
        svc["_Ports"] = ports
        svc["UpdatedAt"] = objects.now()
        await store.cas(SERVICES + svc["ID"], svc, current)
    except BaseException:
        for key in taken:
            await store.delete(key)
        raise
    await _free_ports(store, old_ports, keep=ports)
    return {"Warnings": None}


async def remove(store: Store, ref: str) -> None:
    """DELETE /services/{id}: marked for the orchestrator; the name and ports are free now."""
    for attempt in range(3):  # DELETE carries no version: retry a write that raced
        svc, current = await get(store, ref)
        svc["_Deleted"] = True
        svc["UpdatedAt"] = objects.now()
        try:
            await store.cas(SERVICES + svc["ID"], svc, current)
            break
        except errors.ConflictError:
            if attempt == 2:
                raise
    await store.delete(_name_key(svc["Spec"]["Name"]))
    await _free_ports(store, svc.get("_Ports") or [])
