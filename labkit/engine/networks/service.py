"""The daemon's networks: `docker network create / ls / inspect / rm / prune`, the drivers
behind them, and what every container start and exit asks of them (endpoints.py).

One ``Networks`` per daemon owns: the records (store.py), Docker's local IPAM and the
drivers (labkit.engine.net: bridge; macvlan/ipvlan where present), labkit's nftables
table (net.nft.Publisher: publishing, isolation, masquerade), the embedded DNS server
(net.dns) and the namespace files (sandbox.py).  Every change to kernel or IPAM state runs
in a worker thread under one lock (``kernel``), so the event loop never waits on netlink
or nft and no two changes interleave (the IPAM state is one file).

Swarm networks are never created here from the API: the swarm's agent materializes the
ones its node's tasks use (``ensure_swarm``, driver ``overlay``, Scope "swarm", the record
id = the swarm network's id), keeps their VXLAN peers and the network keys in step
(``set_overlay_peers``, ``set_overlay_keys``), gives the node its address on the ingress
network (``set_node_address``) and drops them when no task needs them (``drop_swarm``).

The predefined networks, as dockerd has them: ``bridge`` (the default network, a Linux
bridge ``lk0``; daemon.json ``"bridge": "none"`` turns it off, as dockerd's ``-b none``,
and then a container's default network is ``none``), ``host`` and ``none``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine.net import bridge as br
from labkit.engine.net.driver import (
    BRIDGE_OPTIONS,
    Endpoint,
    EndpointSpec,
    Network,
    NetworkSpec,
    check_driver,
)
from labkit.engine.net.ipam import Ipam, PoolConfig
from labkit.engine.networks import netviews
from labkit.engine.networks.sandbox import Sandboxes
from labkit.engine.networks.store import (
    SWARM_ID,
    NetworkRecord,
    NetworkStore,
    new_id,
    validate_name,
)

__all__ = ["Networks"]

log = logging.getLogger("labkit.daemon")

_CREATE_KEYS = frozenset({"Name", "CheckDuplicate", "Driver", "Scope", "Internal", "Attachable",
                          "Ingress", "IPAM", "EnableIPv4", "EnableIPv6", "Options", "Labels",
                          "ConfigOnly", "ConfigFrom"})
_LS_FILTERS = frozenset({"driver", "id", "label", "name", "scope", "type", "dangling"})
_PRUNE_FILTERS = frozenset({"until", "label", "label!"})
DEFAULT_BRIDGE_OPTIONS = {  # what dockerd shows for docker0, and what labkit applies
    "com.docker.network.bridge.default_bridge": "true",
    "com.docker.network.bridge.enable_icc": "true",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
    "com.docker.network.bridge.name": br.DEFAULT_BRIDGE,
}


def _bool(v: Any, what: str) -> bool:
    if v is None:
        return False
    if not isinstance(v, bool):
        raise errors.InvalidArgumentError(what, "must be a boolean")
    return v


def _strmap(v: Any, what: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str)
                                          for k, x in v.items()):
        raise errors.InvalidArgumentError(what, "must be an object of strings")
    return dict(v)


def _host_routes() -> list[str]:
    """Subnets routed in the daemon's namespace: a default pool must not overlap them
    (moby's ipamutils checks the host's routes the same way)."""
    from pyroute2 import IPRoute
    out = []
    with IPRoute() as ipr:
        for r in ipr.get_routes(family=2, table=254):
            dst, plen = r.get_attr("RTA_DST"), r["dst_len"]
            if dst and plen:
                out.append(f"{dst}/{plen}")
    return out


def _drop_stale_bridge(name: str) -> None:
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return
        link = ipr.get_links(found[0])[0]
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        ports = [x for x in ipr.get_links() if x.get_attr("IFLA_MASTER") == found[0]]
        if kind != "bridge" or ports:
            raise errors.ConflictError(
                f"link {name} exists and is not an empty bridge: labkit will not take it over",
                hint=f"remove it (ip link del {name}) or run with daemon.json "
                '"bridge": "none"')
        ipr.link("del", index=found[0])


def _swarm_info(info: Any) -> tuple[str, int, Any, Any, dict[str, str]]:
    """A snapshot NetInfo checked: id, VNI, subnet, gateway and the record's Options
    (the user's, plus the VXLAN id, "encrypted" and the MTU as Docker shows them)."""
    import ipaddress

    from labkit.engine.net import overlay
    if not isinstance(info, dict):
        raise errors.InvalidArgumentError("network", "must be an object (NetInfo)")
    nid = info.get("ID")
    if not isinstance(nid, str) or not SWARM_ID.match(nid):
        raise errors.InvalidArgumentError("ID", f"{nid!r} is not a swarm network id")
    vni = info.get("VNI")
    if isinstance(vni, bool) or not isinstance(vni, int) or not 1 <= vni <= overlay.MAX_VNI:
        raise errors.InvalidArgumentError("VNI", f"{vni!r} is not a VXLAN id")
    try:
        subnet = ipaddress.IPv4Network(info.get("Subnet"))
        gw = ipaddress.IPv4Address(info.get("Gateway") or subnet.network_address + 1)
    except (ValueError, TypeError):
        raise errors.InvalidArgumentError("Subnet", f"{info.get('Subnet')!r}/"
                                          f"{info.get('Gateway')!r} is not an IPv4 subnet "
                                          "and gateway") from None
    if gw not in subnet:
        raise errors.InvalidArgumentError("Gateway", f"{gw} is not in {subnet}")
    opts = _strmap(info.get("Options"), "Options")
    opts[overlay.OPT_VNI] = str(vni)
    encrypted = _bool(info.get("Encrypted"), "Encrypted")
    if encrypted:
        opts[overlay.OPT_ENCRYPTED] = opts.get(overlay.OPT_ENCRYPTED, "")
    else:
        opts.pop(overlay.OPT_ENCRYPTED, None)
    mtu = info.get("MTU")
    if mtu is not None:
        if isinstance(mtu, bool) or not isinstance(mtu, int):
            raise errors.InvalidArgumentError("MTU", f"{mtu!r} is not an MTU")
        opts[overlay.OPT_MTU] = str(mtu)
    return nid, vni, subnet, gw, opts


def _created(info: dict[str, Any]) -> float:
    """The swarm network's creation time (RFC 3339), else now."""
    import datetime as dt
    raw = info.get("Created")
    if isinstance(raw, str) and raw:
        try:
            return dt.datetime.fromisoformat(raw).timestamp()
        except ValueError:
            pass
    return NetworkStore.now()


class Networks:
    """The networks of one daemon (see the module docstring)."""

    def __init__(self, bus: Any, *, default_bridge: bool = True, root: Path | None = None,
                 sandboxes: Sandboxes | None = None) -> None:
        self.bus = bus
        self.store = NetworkStore(root)
        self.ipam = Ipam(self.store.dir)
        self.ipam.avoid_always = _host_routes
        self.kernel = threading.RLock()
        self.default_bridge = default_bridge
        self._sandboxes = sandboxes
        self.live: dict[str, Network] = {}  # network id -> the driver's Network
        self._publisher: Any = None
        self._dns: Any = None
        # network id -> container id -> its DNS endpoint (views are rebuilt from these)
        self.members: dict[str, dict[str, Any]] = {}
        self.views: dict[str, Any] = {}
        self._containers: Callable[[], Iterable[Any]] = list
        self._drivers: dict[str, Any] = {}
        for name, driver in (("host", "host"), ("none", "null")):
            if self.store.by_name(name) is None:
                self.store.add(NetworkRecord(new_id(), name, driver, self.store.now()))

    # -- wiring ------------------------------------------------------------------------
    def bind(self, containers: Callable[[], Iterable[Any]]) -> None:
        """The container records (who is attached where): asked, never cached."""
        self._containers = containers

    @property
    def sandboxes(self) -> Sandboxes:
        if self._sandboxes is None:
            self._sandboxes = Sandboxes()
        return self._sandboxes

    @property
    def publisher(self) -> Any:
        if self._publisher is None:
            from labkit.engine.net.nft import Publisher
            self._publisher = Publisher()
        return self._publisher

    @property
    def dns(self) -> Any:
        if self._dns is None:
            from labkit.engine.net.dns.server import DnsServer
            self._dns = DnsServer()
        return self._dns

    def driver(self, name: str) -> Any:
        """The one driver object per kind (macvlan/ipvlan remember their endpoints)."""
        drv = self._drivers.get(name)
        if drv is not None:
            return drv
        if name == "bridge":
            from labkit.engine.net.driver import BridgeDriver
            drv = BridgeDriver(self.ipam)
        elif name == "overlay":
            from labkit.engine.net.overlay import OverlayDriver
            drv = OverlayDriver()
        elif name in ("macvlan", "ipvlan"):
            from labkit.engine.net import macvlan
            drv = (macvlan.MacvlanDriver if name == "macvlan" else macvlan.IpvlanDriver)(
                self.ipam)
        else:
            raise errors.NotFoundError("network driver", name)
        self._drivers[name] = drv
        return drv

    # -- records <-> driver specs --------------------------------------------------------
    @staticmethod
    def spec_of(rec: NetworkRecord) -> NetworkSpec:
        pools = [PoolConfig(subnet=c.get("Subnet") or None, gateway=c.get("Gateway") or None,
                            ip_range=c.get("IPRange") or None,
                            aux_addresses=dict(c.get("AuxiliaryAddresses") or {}))
                 for c in rec.ipam]
        opts = {} if rec.name == "bridge" else dict(rec.options)
        if rec.driver == "overlay":  # the driver's own options; the rest is the user's
            from labkit.engine.net import overlay
            opts = {k: v for k, v in opts.items()
                    if k in (overlay.OPT_VNI, overlay.OPT_MTU, overlay.OPT_ENCRYPTED)}
        return NetworkSpec(id=rec.id, name=rec.name, driver=rec.driver, ipam=pools,
                           ipv4=rec.ipv4, ipv6=rec.ipv6, internal=rec.internal, options=opts)

    def network(self, ref: str) -> NetworkRecord:
        return self.store.get(ref)

    def kernel_network(self, rec: NetworkRecord) -> Network:
        try:
            return self.live[rec.id]
        except KeyError:
            raise errors.UnsupportedError(f"network {rec.name}", "its driver could not be "
                                          "restored at daemon start (see the daemon log)"
                                          ) from None

    # -- daemon start / stop -------------------------------------------------------------
    def start(self) -> None:
        """Daemon start (a worker thread): predefined networks, drivers' kernel state made
        again or adopted (live-restore), labkit's nft table in step."""
        with self.kernel:
            brec = self.store.by_name("bridge")
            if brec is not None and not self.default_bridge:
                self._drop_default(brec)
            for rec in self.store.all():
                if rec.driver in ("host", "null"):
                    continue
                if rec.scope == "swarm":
                    self._restore_swarm(rec)
                    continue
                try:
                    self.live[rec.id] = self.driver(rec.driver).restore_network(
                        self.spec_of(rec))
                except errors.NotFoundError:
                    # IPAM never had it (a crash between record and pools): made afresh
                    self.live[rec.id] = self.driver(rec.driver).create_network(
                        self.spec_of(rec))
                except errors.LabkitError as err:
                    log.warning("network %s (%s) not restored: %s", rec.name, rec.driver, err)
            if self.default_bridge and self.store.by_name("bridge") is None:
                try:
                    self._create_default()
                except errors.LabkitError as err:
                    # the daemon still serves: containers default to "none" (said in the
                    # log and by `docker network ls`, which shows no bridge network)
                    log.error("default bridge network not made: %s", err)
                    self.default_bridge = False
            if self.bridges():
                self._forwarding()
                self.publisher.ensure()
                self.sync_bridges()

    def _restore_swarm(self, rec: NetworkRecord) -> None:
        """Daemon start: a swarm network's links made again or adopted (its containers
        may still run: live-restore); peers and keys come again from the agent."""
        drv = self.driver("overlay")
        try:
            drv.configure(rec.swarm.get("LocalAddr", ""), rec.swarm.get("DataPort", 4789))
            self.live[rec.id] = drv.restore_network(self.spec_of(rec))
            if rec.swarm.get("NodeAddress"):
                from labkit.engine.net import overlay
                overlay.set_bridge_address(drv.vni_of(rec.id), rec.swarm["NodeAddress"])
        except errors.LabkitError as err:
            log.warning("swarm network %s not restored: %s", rec.name, err)

    def _create_default(self) -> None:
        rec = NetworkRecord(new_id(), "bridge", "bridge", self.store.now(),
                            options=dict(DEFAULT_BRIDGE_OPTIONS))
        try:
            net = self.driver("bridge").create_network(self.spec_of(rec))
        except errors.AlreadyExistsError:
            # an lk0 no record of ours names (state dir wiped, an older install): taken
            # over only when it is an empty bridge, never someone's link with ports on it
            _drop_stale_bridge(br.DEFAULT_BRIDGE)
            net = self.driver("bridge").create_network(self.spec_of(rec))
        rec.ipam = [{"Subnet": str(p.subnet), "Gateway": str(p.gateway)} for p in net.pools]
        self.store.add(rec)
        self.live[rec.id] = net

    def _drop_default(self, rec: NetworkRecord) -> None:
        """daemon.json ``"bridge": "none"``: the default bridge goes (once unused)."""
        with contextlib.suppress(errors.LabkitError):
            net = self.driver("bridge").restore_network(self.spec_of(rec))
            self.driver("bridge").delete_network(net)
            self.store.remove(rec)

    @staticmethod
    def _forwarding() -> None:
        # The host routes between its bridges and out (ip-sysctl.rst ip_forward); Docker
        # sets the same when it makes its first bridge.  In the daemon's own namespace.
        for path in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
            with contextlib.suppress(OSError):
                if Path(path).read_text().strip() != "1":
                    Path(path).write_text("1")

    def bridges(self) -> list[Network]:
        return [n for n in self.live.values() if n.driver == "bridge"]

    def sync_bridges(self) -> None:
        """Isolation and masquerade for exactly the bridges that exist (call under kernel)."""
        from labkit.engine.net.nft import Bridge
        bridges = [Bridge(n.bridge, tuple(str(p.subnet) for p in n.pools), internal=n.internal)
                   for n in self.bridges()]
        if bridges or self._publisher is not None:
            self.publisher.set_bridges(bridges)

    async def close(self) -> None:
        """Daemon stop: containers keep their networks (live-restore)."""
        if self._dns is not None:
            await self._dns.close()
        if self._publisher is not None:
            self._publisher.release()
        if self._sandboxes is not None:
            self._sandboxes.close()

    # -- create --------------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> tuple[NetworkRecord, str]:
        """POST /networks/create: the record, and Docker's Warning (or "")."""
        unknown = sorted(set(body) - _CREATE_KEYS)
        if unknown:
            raise errors.InvalidArgumentError("request body", f"network create: unknown "
                                              f"field(s) {', '.join(unknown)}")
        name = validate_name(body.get("Name"))
        driver = body.get("Driver") or "bridge"
        if not isinstance(driver, str):
            raise errors.InvalidArgumentError("Driver", "must be a string")
        if body.get("Scope") not in (None, "", "local"):
            raise errors.InvalidArgumentError("Scope", f"scope {body['Scope']!r} is not "
                                              "supported: labkit's networks are local")
        for key in ("Ingress", "ConfigOnly"):
            if body.get(key):
                raise errors.UnsupportedError(key, "swarm networks come with labkit's swarm")
        if body.get("ConfigFrom"):
            raise errors.UnsupportedError("ConfigFrom", "config-only networks are not offered")
        if driver == "overlay":
            raise errors.ForbiddenError(
                "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm "
                "join\" to connect this node to swarm and try again.")
        if driver in ("host", "null", "none"):
            raise errors.ForbiddenError(f'only one instance of "{driver}" network is allowed')
        check_driver(driver)
        if self.store.by_name(name) is not None:
            raise errors.ConflictError(f"network with name {name} already exists")
        ipam = body.get("IPAM") or {}
        if not isinstance(ipam, dict):
            raise errors.InvalidArgumentError("IPAM", "must be an object")
        if (ipam.get("Driver") or "default") != "default":
            raise errors.NotFoundError("IPAM driver", ipam["Driver"],
                                       hint="labkit has Docker's default IPAM only")
        if ipam.get("Options"):
            raise errors.InvalidArgumentError("IPAM.Options", "the default IPAM driver takes "
                                              f"no options ({', '.join(ipam['Options'])})")
        configs = ipam.get("Config") or []
        if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
            raise errors.InvalidArgumentError("IPAM.Config", "must be a list of objects")
        for c in configs:
            extra = set(c) - {"Subnet", "Gateway", "IPRange", "AuxiliaryAddresses"}
            if extra:
                raise errors.InvalidArgumentError("IPAM.Config", f"unknown field(s) "
                                                  f"{', '.join(sorted(extra))}")
        options = _strmap(body.get("Options"), "Options")
        if driver == "bridge":
            unknown = sorted(set(options) - BRIDGE_OPTIONS - set(DEFAULT_BRIDGE_OPTIONS))
            if unknown:  # the driver refuses too; said here in Docker's shape, before IPAM
                raise errors.InvalidArgumentError(
                    "Options", f"the bridge driver does not support option(s) "
                    f"{', '.join(unknown)}",
                    hint="encryption is an overlay (swarm) network feature"
                    if "encrypted" in unknown else None)
            for k in set(DEFAULT_BRIDGE_OPTIONS) - BRIDGE_OPTIONS:
                if k in options and options[k] != DEFAULT_BRIDGE_OPTIONS[k]:
                    raise errors.InvalidArgumentError(
                        k, f"labkit's bridges always have {k}={DEFAULT_BRIDGE_OPTIONS[k]}")
                if k.endswith("default_bridge") and k in options:
                    raise errors.ForbiddenError("only the daemon makes the default bridge")
        rec = NetworkRecord(
            id=new_id(), name=name, driver=driver, created=self.store.now(),
            ipam=[{k: v for k, v in c.items() if v} for c in configs],
            ipv4=body.get("EnableIPv4", True) is not False,
            ipv6=_bool(body.get("EnableIPv6"), "EnableIPv6"),
            internal=_bool(body.get("Internal"), "Internal"),
            attachable=_bool(body.get("Attachable"), "Attachable"),
            options=options, labels=_strmap(body.get("Labels"), "Labels"))
        spec = self.spec_of(rec)
        if driver == "bridge":  # the kept options (icc, masquerade) are the driver's default
            spec = NetworkSpec(**{**spec.__dict__, "options": {
                k: v for k, v in options.items() if k in BRIDGE_OPTIONS}})
        with self.kernel:
            if self.store.by_name(name) is not None:  # (checked again under the lock)
                raise errors.ConflictError(f"network with name {name} already exists")
            net = self.driver(driver).create_network(spec)
            try:
                self.store.add(rec)
                if driver == "bridge":
                    self._forwarding()
                    self.live[rec.id] = net
                    self.sync_bridges()
                else:
                    self.live[rec.id] = net
            except BaseException:
                self.live.pop(rec.id, None)
                self.store.remove(rec)
                with contextlib.suppress(errors.LabkitError):
                    self.driver(driver).delete_network(net)
                raise
        self.bus.emit_network("create", rec.id, {"name": rec.name, "type": rec.driver})
        return rec, ""

    # -- inspect / ls --------------------------------------------------------------------
    def attached(self, rec: NetworkRecord) -> list[Any]:
        """Container records whose sandbox is on ``rec`` now (running ones)."""
        return [c for c in self._containers()
                if rec.name in (c.networks or {}) and c.networks[rec.name].get("EndpointID")]

    def users(self, rec: NetworkRecord) -> list[Any]:
        """Container records configured on ``rec`` (running or not)."""
        return [c for c in self._containers() if rec.name in (c.networks or {})]

    def inspect(self, ref: str) -> dict[str, Any]:
        rec = self.network(ref)
        return netviews.network_json(rec, self.live.get(rec.id), self.attached(rec),
                                     self._peers_view(rec))

    def ls(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        bad = sorted(set(filters) - _LS_FILTERS)
        if bad:
            raise errors.InvalidArgumentError("filters", f"invalid filter '{bad[0]}'")
        out = []
        for rec in self.store.all():
            if not netviews.matches(rec, filters, bool(self.users(rec))):
                continue
            out.append(netviews.network_json(rec, self.live.get(rec.id), [],
                                             self._peers_view(rec)))
        return out

    # -- rm / prune ----------------------------------------------------------------------
    def remove(self, ref: str) -> None:
        rec = self.network(ref)
        if rec.predefined:
            raise errors.ForbiddenError(f"{rec.name} is a pre-defined network and cannot be "
                                        "removed")
        if rec.scope == "swarm":
            raise errors.ForbiddenError(f"network {rec.name} is a swarm network: remove it on "
                                        "a manager (the node drops it when no task uses it)")
        users = self.attached(rec)
        if users:
            raise errors.ForbiddenError(
                f"error while removing network: network {rec.name} id {rec.id} has active "
                "endpoints")
        with self.kernel:
            net = self.live.get(rec.id)
            if net is not None:
                self.driver(rec.driver).delete_network(net)
            else:
                with contextlib.suppress(errors.NotFoundError):
                    self.ipam.remove_network(rec.id)
            self.live.pop(rec.id, None)
            self.store.remove(rec)
            # a stopped container configured on it keeps naming it: its next start fails
            # with "network X not found", as with dockerd (not a silent change of network)
            if rec.driver == "bridge":
                self.sync_bridges()
        self.members.pop(rec.id, None)
        self.views.pop(rec.id, None)
        self.bus.emit_network("destroy", rec.id, {"name": rec.name, "type": rec.driver})

    def prune(self, filters: dict[str, list[str]]) -> list[str]:
        bad = sorted(set(filters) - _PRUNE_FILTERS)
        if bad:
            raise errors.InvalidArgumentError("filters", f"invalid filter '{bad[0]}'")
        until = netviews.until_of(filters)
        gone = []
        for rec in self.store.all():
            if rec.predefined or rec.scope == "swarm" or self.users(rec) \
                    or rec.created > until:
                continue
            if not netviews.labels_match(rec.labels, filters):
                continue
            try:
                self.remove(rec.id)
            except errors.LabkitError as err:
                log.warning("prune network %s: %s", rec.name, err)
                continue
            gone.append(rec.name)
        return gone

    # -- swarm networks (the agent's seam) --------------------------------------------
    def swarm_networks(self) -> list[NetworkRecord]:
        """The swarm networks materialized on this node."""
        return [r for r in self.store.all() if r.scope == "swarm"]

    def _swarm_rec(self, net_id: str) -> NetworkRecord:
        rec = self.store.by_id(net_id) if isinstance(net_id, str) else None
        if rec is None or rec.scope != "swarm":
            raise errors.NotFoundError("swarm network", str(net_id),
                                       hint="ensure_swarm() materializes it first")
        return rec

    def _peers_view(self, rec: NetworkRecord) -> list[dict[str, str]] | None:
        if rec.scope != "swarm" or rec.id not in self.live:
            return None
        import os
        drv = self.driver("overlay")
        me = [{"Name": os.uname().nodename, "IP": str(drv.local_addr)}]
        try:
            peers = drv.peers(rec.id)
        except errors.NotFoundError:
            # dropped at this moment by the agent (drop_swarm, in a worker thread): a
            # listing never fails because something went away while it was being made
            return None
        return me + [{"Name": p.node, "IP": str(p.addr)} for p in peers]

    def ensure_swarm(self, info: dict[str, Any], local_addr: str, data_port: int
                     ) -> NetworkRecord:
        """Materialize swarm network ``info`` (the snapshot's NetInfo) on this node:
        its record (id = the swarm network's id, Scope "swarm", driver overlay) and its
        bridge + VXLAN link.  Idempotent: again with the same info, nothing changes; a
        new name, labels or options are taken over.  ``local_addr``/``data_port``: the
        node's underlay address and the swarm's VXLAN port (a change makes every swarm
        network's VXLAN link again).  Raises InvalidArgumentError (bad info),
        ConflictError (the name is a local network's, or the VNI/subnet changed)."""
        from labkit.engine.net import overlay
        nid, vni, subnet, gw, opts = _swarm_info(info)
        name = validate_name(info.get("Name"))
        labels = _strmap(info.get("Labels"), "Labels")
        with self.kernel:
            drv = self.driver("overlay")
            if drv.configure(local_addr, data_port):
                for other in self.swarm_networks():
                    if other.id != nid and other.id in self.live:
                        other.swarm.update(LocalAddr=drv.local_addr, DataPort=drv.data_port)
                        self.store.save(other)
                        self.live[other.id] = drv.restore_network(self.spec_of(other))
                if drv.keys:
                    drv.set_keys(drv.keys, drv.key_peers)
            clash = self.store.by_name(name)
            if clash is not None and clash.id != nid:
                raise errors.ConflictError(f"network with name {name} already exists "
                                           f"({clash.scope} network {clash.id})")
            rec = self.store.by_id(nid)
            swarm = {"VNI": vni, "Encrypted": overlay.OPT_ENCRYPTED in opts,
                     "MTU": info.get("MTU"), "Ingress": _bool(info.get("Ingress"), "Ingress"),
                     "LocalAddr": drv.local_addr, "DataPort": drv.data_port}
            fresh = rec is None
            if rec is not None:
                if rec.scope != "swarm":
                    raise errors.ConflictError(f"network {nid} is a local network")
                if rec.swarm.get("VNI") != vni or rec.ipam[:1] != [
                        {"Subnet": str(subnet), "Gateway": str(gw)}]:
                    raise errors.ConflictError(
                        f"swarm network {name} changed its VXLAN id or subnet: drop_swarm() "
                        "it first")
                swarm["NodeAddress"] = rec.swarm.get("NodeAddress")
                rec.name, rec.labels, rec.options = name, labels, opts
                rec.internal = _bool(info.get("Internal"), "Internal")
                rec.attachable = _bool(info.get("Attachable"), "Attachable")
                rec.swarm = swarm
            else:
                rec = NetworkRecord(
                    id=nid, name=name, driver="overlay", created=_created(info),
                    ipam=[{"Subnet": str(subnet), "Gateway": str(gw)}],
                    internal=_bool(info.get("Internal"), "Internal"),
                    attachable=_bool(info.get("Attachable"), "Attachable"),
                    options=opts, labels=labels, scope="swarm", swarm=swarm)
            net = drv.create_network(self.spec_of(rec))  # made, or adopted as it is
            try:
                if fresh:
                    self.store.add(rec)
                else:
                    self.store.save(rec)
                self.live[rec.id] = net
            except BaseException:
                if fresh:
                    self.live.pop(rec.id, None)
                    with contextlib.suppress(errors.LabkitError):
                        drv.delete_network(net)
                raise
        if fresh:
            self.bus.emit_network("create", rec.id, {"name": rec.name, "type": "overlay"})
        return rec

    def set_overlay_peers(self, net_id: str, peers: list[dict[str, Any]]) -> None:
        """Replace the VXLAN peers of swarm network ``net_id``: ``[{"node", "addr",
        "ips"}]``, every OTHER node with endpoints on it (this node's own address is
        ignored if listed)."""
        import ipaddress

        from labkit.engine.net import overlay
        rec = self._swarm_rec(net_id)
        subnet = ipaddress.IPv4Network(rec.ipam[0]["Subnet"])
        parsed = overlay.parse_peers(peers, subnet)
        with self.kernel:
            drv = self.driver("overlay")
            drv.set_peers(rec.id, [p for p in parsed if str(p.addr) != drv.local_addr])

    def set_overlay_keys(self, keys: list[dict[str, Any]], peers: list[str]) -> None:
        """The swarm's network keys (``[{"Key": b64, "Tag"}]``, first = primary) and the
        underlay addresses of every node this one shares an encrypted network with: ESP
        SAs and policies made to match, without a gap across a key change."""
        from labkit.engine.net import xfrm
        parsed = xfrm.parse_keys(keys)
        if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
            raise errors.InvalidArgumentError("peers", "must be a list of IPv4 addresses")
        with self.kernel:
            drv = self.driver("overlay")
            if drv.local_addr is None:
                if parsed or peers:
                    raise errors.InvalidArgumentError(
                        "keys", "no swarm network is materialized on this node yet",
                        hint="ensure_swarm() first: it tells the node its underlay address")
                return
            drv.set_keys(parsed, peers)

    def set_node_address(self, net_id: str, cidr: str | None) -> None:
        """This node's own address on swarm network ``net_id`` (the ingress network's
        "10.0.0.5/24"), on its bridge; None removes it."""
        import ipaddress

        from labkit.engine.net import overlay
        rec = self._swarm_rec(net_id)
        if cidr is not None:
            try:
                iface = ipaddress.IPv4Interface(cidr)
            except ValueError:
                raise errors.InvalidArgumentError("address", f"{cidr!r} is not an IPv4 "
                                                  "address/prefix") from None
            if iface.network != ipaddress.IPv4Network(rec.ipam[0]["Subnet"]):
                raise errors.InvalidArgumentError(
                    "address", f"{cidr} is not in network {rec.name}'s subnet "
                    f"{rec.ipam[0]['Subnet']}")
        with self.kernel:
            drv = self.driver("overlay")
            overlay.set_bridge_address(drv.vni_of(rec.id), cidr)
            rec.swarm["NodeAddress"] = cidr
            self.store.save(rec)

    def drop_swarm(self, net_id: str) -> None:
        """Swarm network ``net_id`` no longer needed here: its links and record go
        (ConflictError while a container is attached; nothing to do if absent).  With
        the last swarm network go the ESP SAs and policies too."""
        rec = self.store.by_id(net_id) if isinstance(net_id, str) else None
        if rec is None:
            return
        if rec.scope != "swarm":
            raise errors.InvalidArgumentError("network", f"{rec.name} is a local network")
        users = self.attached(rec)
        if users:
            raise errors.ConflictError(
                f"swarm network {rec.name} still has endpoints: "
                + ", ".join(c.name for c in users))
        with self.kernel:
            drv = self.driver("overlay")
            net = self.live.get(rec.id)
            if net is not None:
                drv.delete_network(net)
            else:
                from labkit.engine.net import overlay
                with contextlib.suppress(errors.NotFoundError):
                    overlay.delete_links(int(rec.swarm.get("VNI", 0)))
            self.live.pop(rec.id, None)
            self.store.remove(rec)
            if not self.swarm_networks():
                drv.clear_keys()
        self.members.pop(rec.id, None)
        self.views.pop(rec.id, None)
        self.bus.emit_network("destroy", rec.id, {"name": rec.name, "type": "overlay"})

    # -- used by endpoints.py ------------------------------------------------------------
    def attach_endpoint(self, rec: NetworkRecord, spec: EndpointSpec, *, gateway: bool
                        ) -> Endpoint:
        """One endpoint, in a worker thread (the caller holds nothing)."""
        net = self.kernel_network(rec)
        if not gateway and not net.internal:
            # a second network gives no default route: the first one's stays (Docker's
            # gateway is the endpoint of highest priority, then the first by name)
            from dataclasses import replace
            net = replace(net, internal=True)
        with self.kernel:
            return self.driver(rec.driver).attach(net, spec)  # type: ignore[no-any-return]

    def detach_endpoint(self, rec: NetworkRecord | None, ep: Endpoint, *, gone: bool,
                        netns: str | None = None) -> None:
        """``netns``: where the container's end lives (macvlan/ipvlan have no host end to
        delete, and after a daemon restart they must be told)."""
        with self.kernel:
            if rec is None or rec.id not in self.live:  # its network went: addresses only
                for iface in ep.addresses:
                    with contextlib.suppress(errors.LabkitError):
                        self.ipam.release(ep.network_id, iface.ip)
                return
            drv = self.driver(rec.driver)
            if rec.driver == "bridge":
                drv.detach(self.live[rec.id], ep, netns_gone=gone)
            else:
                drv.detach(self.live[rec.id], ep, netns_gone=gone, netns=netns)
