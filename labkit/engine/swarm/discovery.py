"""Service discovery and load balancing on a node, from its assignment snapshot.

The dispatcher sends every node a snapshot (SWARM13.md, "The assignment snapshot"): its
tasks, the swarm networks they use, and for every service with an endpoint on those
networks its VIP per network, its aliases and its running tasks' addresses, plus every
ingress-mode published port with its backends.  This module turns that into:

- per task container: the VipRules of every vip-mode service on any network the task is
  attached to (labkit.engine.net.vip, nft table ``lk-vip`` in the container's netns);
- per swarm network: the embedded DNS's service records, as libnetwork's
  addServiceBinding makes them: NAME and each alias -> the VIP (vip mode) or every
  running task's address (dnsrr, rotated per answer); ``tasks.NAME`` and ``tasks.ALIAS``
  -> every running task's address; PTR of a task address -> ``tasks.NAME.NETWORK`` for
  remote tasks (a local task answers with its container name, from its own endpoint);
- the ingress routing mesh: every published port with its backends, programmed in the
  node's own namespace (labkit.engine.net.ingress, table ``lk-ingress``).

The ingress network itself carries no discovery (as in Docker: "ingress" is for the mesh
only), so no VIP rules or records are made for it.

The computations are pure functions of the snapshot (unit-tested); ``apply`` does the
kernel work.  It blocks (one nft process per changed table), so the agent calls
``await apply_async(...)`` or runs ``apply`` in a worker thread; a table whose rules did
not change is not rewritten (that would restart its round-robin counter and cost a
process per task per snapshot).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit import errors
from labkit.engine.net.dns.table import valid_name
from labkit.engine.net.ingress import IngressPort, clear_ingress, program_ingress, render_ingress
from labkit.engine.net.vip import VipRule, program_vips, render_vips
from labkit.engine.networks import dnsview

__all__ = ["NetRecords", "apply", "apply_async", "dns_records", "ingress_bridge",
           "ingress_plan", "ingress_ports", "task_networks", "vip_rules"]

log = logging.getLogger("labkit.swarm")


@dataclass(frozen=True)
class NetRecords:
    """One swarm network's service records for the embedded DNS."""

    network_id: str
    name: str
    records: dict[str, list[str]] = field(default_factory=dict)
    reverse: dict[str, str] = field(default_factory=dict)


def _bare(addr: Any) -> str:
    """'10.0.1.3/24' or '10.0.1.3' -> '10.0.1.3' ('' for anything not a string)."""
    return addr.split("/", 1)[0] if isinstance(addr, str) else ""


def _addrs(values: Any) -> list[str]:
    if not isinstance(values, list):
        return []
    return [a for a in (_bare(v) for v in values) if a]


def _discoverable(snapshot: Mapping[str, Any]) -> set[str]:
    """The swarm networks of the snapshot that carry discovery (all but ingress)."""
    nets = snapshot.get("networks") or {}
    return {nid for nid, info in nets.items()
            if isinstance(info, dict) and not info.get("Ingress")}


def _services(snapshot: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [s for s in snapshot.get("services") or [] if isinstance(s, dict)]


def task_networks(task: Mapping[str, Any]) -> list[str]:
    """The network ids a task is attached to (NetworksAttachments[].Network.ID)."""
    out = []
    for att in task.get("NetworksAttachments") or []:
        net = att.get("Network") if isinstance(att, dict) else None
        nid = (net.get("ID") or net.get("Id")) if isinstance(net, dict) else None
        if isinstance(nid, str) and nid:
            out.append(nid)
    return out


def vip_rules(snapshot: Mapping[str, Any]) -> dict[str, list[VipRule]]:
    """Task id -> the VIP rules for its container: every vip-mode service with a VIP on
    a (non-ingress) network the task is attached to, balanced over the service's running
    tasks on that network; sorted by VIP so equal snapshots give equal tables."""
    usable = _discoverable(snapshot)
    per_net: dict[str, list[VipRule]] = {}
    for svc in _services(snapshot):
        if svc.get("Mode", "vip") != "vip":
            continue
        tasks = svc.get("Tasks") or {}
        for nid, vip in (svc.get("VIPs") or {}).items():
            if nid in usable and _bare(vip):
                per_net.setdefault(nid, []).append(
                    VipRule(_bare(vip), tuple(_addrs(tasks.get(nid)))))
    out: dict[str, list[VipRule]] = {}
    for task in snapshot.get("tasks") or []:
        if not isinstance(task, dict) or not isinstance(task.get("ID"), str):
            continue
        rules: dict[str, VipRule] = {}
        for nid in task_networks(task):
            for r in per_net.get(nid, []):
                rules.setdefault(r.vip, r)
        out[task["ID"]] = [rules[v] for v in sorted(rules)]
    return out


def _add(records: dict[str, list[str]], name: str, addrs: Iterable[str]) -> None:
    if not valid_name(name):
        log.warning("service record %r skipped: not a valid DNS name", name)
        return
    got = records.setdefault(name.lower(), [])
    got.extend(a for a in addrs if a not in got)


def dns_records(snapshot: Mapping[str, Any]) -> dict[str, NetRecords]:
    """Network id -> its service records (every non-ingress network of the snapshot,
    empty when no service is on it, so stale records get cleared)."""
    nets = snapshot.get("networks") or {}
    usable = _discoverable(snapshot)
    out = {nid: NetRecords(nid, str(nets[nid].get("Name") or nid)) for nid in usable}
    for svc in _services(snapshot):
        name = svc.get("Name")
        if not isinstance(name, str) or not name:
            continue
        vip_mode = svc.get("Mode", "vip") == "vip"
        aliases = svc.get("Aliases") or {}
        vips = svc.get("VIPs") or {}
        tasks = svc.get("Tasks") or {}
        on = set(vips) | set(tasks) | set(aliases)
        for nid in sorted(on & usable):
            rec = out[nid]
            names = [name, *[a for a in aliases.get(nid) or [] if isinstance(a, str)]]
            addrs = _addrs(tasks.get(nid))
            vip = _bare(vips.get(nid)) if vip_mode else ""
            for n in names:
                _add(rec.records, f"tasks.{n}", addrs)
                # vip mode with no VIP allocated yet: the tasks answer (libnetwork's
                # fallback to DNS round-robin when len(vip) == 0)
                _add(rec.records, n, [vip] if vip else addrs)
            for a in addrs:
                if valid_name(f"tasks.{name}"):
                    rec.reverse.setdefault(a, f"tasks.{name}")
            if vip and valid_name(name):
                rec.reverse.setdefault(vip, name)
    return out


def ingress_bridge(info: Mapping[str, Any]) -> str:
    """The bridge of a swarm network on a node: ``lkov<VNI>`` (SWARM13.md, H4's overlay)."""
    vni = info.get("VNI")
    if not isinstance(vni, int) or isinstance(vni, bool) or not 0 < vni < 1 << 24:
        raise errors.InvalidArgumentError("VNI", f"{vni!r} is not a VXLAN id (1-16777215)")
    return f"lkov{vni}"


def ingress_ports(snapshot: Mapping[str, Any]) -> list[IngressPort]:
    """The published ports this node answers on, sorted; the first of two entries for
    one port/protocol wins (the managers' port reservation makes them unique)."""
    seen: dict[tuple[str, int], IngressPort] = {}
    for p in snapshot.get("ingress") or []:
        if not isinstance(p, dict):
            continue
        proto = str(p.get("Protocol") or "tcp").lower()
        pub, target = p.get("PublishedPort"), p.get("TargetPort")
        if not isinstance(pub, int) or not isinstance(target, int):
            continue
        seen.setdefault((proto, pub), IngressPort(proto, pub, target,
                                                  tuple(_addrs(p.get("Backends")))))
    return [seen[k] for k in sorted(seen)]


def ingress_plan(snapshot: Mapping[str, Any]) -> tuple[str, str, list[IngressPort]] | None:
    """(bridge, node ingress address, ports) when this node serves the mesh, else None
    (no ingress network materialized here, no address on it, or no published port)."""
    ports = ingress_ports(snapshot)
    for nid, info in (snapshot.get("networks") or {}).items():
        if isinstance(info, dict) and info.get("Ingress"):
            addr = _bare((snapshot.get("attachments") or {}).get(nid))
            if addr and ports:
                return ingress_bridge(info), addr, ports
    return None


# -- applying ---------------------------------------------------------------------------

_lock = threading.Lock()
# what each table holds now, as last written: (netns path, device, inode) -> script
_written: dict[tuple[str, int, int], str] = {}
_NODE = "<ingress>"


def _key(path: str, tag: str = "") -> tuple[str, int, int]:
    st = os.stat(path)  # a new namespace at a reused path is a new table
    return (tag or path, st.st_dev, st.st_ino)


def _node_key() -> tuple[str, int, int]:
    # the namespace this thread runs in: the node's (one entry per node namespace, should
    # several nodes share a process)
    return _key("/proc/thread-self/ns/net", _NODE)


def apply(engine: Any, snapshot: Mapping[str, Any], netns_of: Mapping[str, str]) -> None:
    """Program DNS records, each task container's VIPs and the ingress mesh for
    ``snapshot``; ``netns_of``: task id -> its container's netns path (tasks without a
    container yet are left out).  Blocking (nft processes): call it from a worker thread,
    or ``await apply_async(...)``.  A failure in one place is logged and the rest is
    still applied; the next snapshot tries again."""
    with _lock:
        _apply_dns(engine.networks, snapshot)
        rules = vip_rules(snapshot)
        live = set()
        for tid, path in sorted(netns_of.items()):
            try:
                key = _key(path)
                live.add(key)
                mine = rules.get(tid, [])
                script = render_vips(mine)
                if _written.get(key) != script:
                    _written.pop(key, None)
                    program_vips(path, mine)
                    _written[key] = script
            except (errors.LabkitError, OSError) as err:
                log.warning("task %s: VIPs not programmed: %s", tid, err)
        for key in [k for k in _written if k[0] != _NODE and k not in live]:
            del _written[key]
        _apply_ingress(engine, snapshot)


async def apply_async(engine: Any, snapshot: Mapping[str, Any],
                      netns_of: Mapping[str, str]) -> None:
    """``apply`` in a worker thread, for the agent's event loop."""
    await asyncio.to_thread(apply, engine, snapshot, dict(netns_of))


def _apply_dns(nets: Any, snapshot: Mapping[str, Any]) -> None:
    recs = dns_records(snapshot)
    for nid, r in recs.items():
        try:
            dnsview.set_service_records(nets, nid, r.name, r.records, r.reverse)
        except errors.LabkitError as err:
            log.warning("network %s: service records not set: %s", r.name, err)
    for nid in dnsview.service_networks(nets):
        if nid not in recs:  # the node no longer has that network: its records go
            view = nets.views.get(nid)
            if view is not None:
                view.set_services({})


def _apply_ingress(engine: Any, snapshot: Mapping[str, Any]) -> None:
    try:
        plan = ingress_plan(snapshot)
        script = render_ingress(*plan) if plan else ""
    except errors.LabkitError as err:
        log.warning("ingress routing mesh not programmed: %s", err)
        return
    node = _node_key()
    if _written.get(node) == script:
        return
    _written.pop(node, None)
    kernel = getattr(engine.networks, "kernel", None) or threading.RLock()
    try:
        with kernel:  # the node's namespace: serialised with the engine's other changes
            if plan is None:
                clear_ingress()
            else:
                program_ingress(*plan)
    except (errors.LabkitError, OSError) as err:
        log.warning("ingress routing mesh not programmed: %s", err)
        return
    _written[node] = script
