"""A container's side of networking: its networks at create, its sandbox at start, and the
teardown at exit (or at the next daemon start, when it died while no daemon ran).

At start (``setup``), for a container on bridge (or macvlan) networks:
1. a network namespace file from the pool (sandbox.py), lo up;
2. one endpoint per network, its interface created straight inside that namespace
   (eth0 on the first network, which gives the default route; eth1... on the others);
3. the embedded DNS listening on 127.0.0.11 in it when a user-defined network is among
   them (Docker's default bridge has no name resolution);
4. -p / -P published in labkit's nftables table (on the first bridge network);
5. /etc/hosts, /etc/resolv.conf and the legacy --link environment, for the bundle.
All or nothing: a failure undoes what was made.  The runtime then joins the namespace
by path (``NetPlan.netns``).  ``host`` uses the daemon's namespace, ``none`` a fresh one
the runtime makes (lo only), ``container:X`` the namespace of X, which must run.

At exit (``teardown``): DNS stops answering there, the ports go, the links are deleted and
the addresses return to IPAM, then the namespace file is unmounted -- all before the API
answers.  What the record keeps (``rec.net``) is enough to do this after a daemon restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine.net.driver import Endpoint, EndpointSpec
from labkit.engine.net.nft import PortMapping
from labkit.engine.networks import dnsview, links
from labkit.engine.networks.portspec import parse_bindings
from labkit.engine.networks.sandbox import release
from labkit.engine.networks.service import Networks
from labkit.engine.networks.store import NetworkRecord, new_id

__all__ = ["ContainerNet", "NetPlan", "primary_mode"]

log = logging.getLogger("labkit.daemon")


class PublishFailedError(errors.LabkitError):
    """A start whose ports cannot be bound (a 500 from dockerd, not a 409)."""


@dataclass
class NetPlan:
    """What the bundle needs from networking."""

    netns: str | None = None      # a namespace to join (None: the runtime's own, or host)
    hosts: str = ""
    resolv: str = ""
    env: list[str] = field(default_factory=list)  # --link variables


def primary_mode(host: dict[str, Any]) -> str:
    return host.get("NetworkMode") or "default"


def _ep_json(ep: Endpoint) -> dict[str, Any]:
    return {"id": ep.id, "network_id": ep.network_id, "host_ifname": ep.host_ifname,
            "ifname": ep.ifname, "mac": ep.mac, "addresses": [str(a) for a in ep.addresses],
            "gateways": [str(g) for g in ep.gateways]}


def _ep_from(d: dict[str, Any]) -> Endpoint:
    return Endpoint(id=d["id"], network_id=d["network_id"], host_ifname=d["host_ifname"],
                    ifname=d["ifname"], mac=d["mac"],
                    addresses=tuple(ipaddress.ip_interface(a) for a in d["addresses"]),
                    gateways=tuple(ipaddress.ip_address(g) for g in d["gateways"]))


_RUNTIME_FIELDS = ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen",
                   "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "DNSNames")


def _settings(cfg: dict[str, Any], net: NetworkRecord, ep: Endpoint, names: list[str]
              ) -> dict[str, Any]:
    """EndpointSettings while running (api/types/network.EndpointSettings)."""
    out = dict(cfg)
    v4 = [a for a in ep.addresses if a.version == 4]
    v6 = [a for a in ep.addresses if a.version == 6]
    gw4 = [str(g) for g in ep.gateways if g.version == 4]
    gw6 = [str(g) for g in ep.gateways if g.version == 6]
    out.update({
        "NetworkID": net.id, "EndpointID": ep.id, "MacAddress": ep.mac,
        "IPAddress": str(v4[0].ip) if v4 else "", "IPPrefixLen": v4[0].network.prefixlen
        if v4 else 0, "Gateway": gw4[0] if gw4 else "",
        "GlobalIPv6Address": str(v6[0].ip) if v6 else "",
        "GlobalIPv6PrefixLen": v6[0].network.prefixlen if v6 else 0,
        "IPv6Gateway": gw6[0] if gw6 else "", "DNSNames": names or None})
    return out


def stopped_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """What a stopped container keeps of an endpoint: the request, no addresses."""
    out = {k: v for k, v in cfg.items() if k not in _RUNTIME_FIELDS}
    out["MacAddress"] = cfg.get("_RequestedMac", "")
    return out


class ContainerNet:
    """The network service as the containers service sees it."""

    def __init__(self, nets: Networks) -> None:
        self.nets = nets
        self._dns: dict[str, Any] = {}  # container id -> DNS attachment
        # container ref -> record (the containers service's store), set by bind()
        self.lookup: Callable[[str], Any] = _no_lookup

    # -- create ----------------------------------------------------------------------------
    def prepare(self, host: dict[str, Any], config: dict[str, Any],
                endpoints: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Check a create request's networking; the record's ``networks``.  Raises
        NetworkNotFoundError (404), InvalidArgumentError (Docker's conflict words)."""
        mode = primary_mode(host)
        ports = bool(host.get("PortBindings") or host.get("PublishAllPorts"))
        mac = config.get("MacAddress") or ""
        if mode.startswith("container:"):
            for key, what in (("Hostname", "hostname"), ("Dns", "dns"),
                              ("ExtraHosts", "add-host"), ("Links", "links")):
                if (config if key == "Hostname" else host).get(key):
                    raise errors.InvalidArgumentError(
                        key, f"conflicting options: {what} and the network mode")
            if mac:
                raise errors.InvalidArgumentError(
                    "MacAddress", "conflicting options: mac-address and the network mode")
            if ports:
                raise errors.InvalidArgumentError(
                    "PortBindings", "conflicting options: port publishing and the container "
                    "type network mode")
            self.lookup(mode[10:])  # 404 now when there is no such container
            return {}
        asked = mode
        if mode == "default":
            mode = "bridge" if self.nets.store.by_name("bridge") is not None else "none"
        net = self.nets.network(mode)
        if asked in endpoints and asked != net.name:  # the CLI keys it by --network's word
            endpoints = {net.name: endpoints[asked],
                         **{k: v for k, v in endpoints.items() if k != asked}}
        if net.driver == "host":
            if mac:
                raise errors.InvalidArgumentError(
                    "MacAddress", "conflicting options: mac-address and the network mode")
            if host.get("Links"):
                raise errors.InvalidArgumentError(
                    "Links", "conflicting options: host type networking can't be used with "
                    "links. This would result in undefined behavior")
            return {net.name: {"NetworkID": net.id}}
        if net.driver == "null":
            for key, what in (("Links", "links"), ("MacAddress", "mac-address")):
                if (config if key == "MacAddress" else host).get(key):
                    raise errors.InvalidArgumentError(
                        key, f"conflicting options: {what} and the none network (a container "
                        "on it has no interface but lo)")
            if any(e.endswith((":host-gateway", "=host-gateway"))
                   for e in host.get("ExtraHosts") or []):
                raise errors.InvalidArgumentError(
                    "ExtraHosts", "host-gateway: a container on network none has no gateway")
            if ports:
                raise errors.InvalidArgumentError(
                    "PortBindings", "a container on network none has no interface to "
                    "publish ports on", hint="use a bridge network")
            return {net.name: {"NetworkID": net.id}}
        for link in host.get("Links") or []:
            target = link.partition(":")[0].strip("/")
            try:
                self.lookup(target)
            except errors.NotFoundError:
                # 400, not 404: the CLI answers a 404 to create by pulling the image
                raise errors.InvalidArgumentError(
                    "Links", f"could not get container for {target}: No such container: "
                    f"{target}") from None
        if ports and net.driver != "bridge":  # moby only warns; labkit applies or refuses
            raise errors.InvalidArgumentError(
                "PortBindings", f"the {net.driver} driver does not support port mappings",
                hint="publish from a container on a bridge network")
        out: dict[str, dict[str, Any]] = {}
        for ref, cfg in {net.name: {}, **endpoints}.items():
            n = self.nets.network(ref)
            c = dict(endpoints.get(ref) or endpoints.get(n.name) or endpoints.get(n.id) or cfg)
            if n.driver in ("host", "null"):
                raise errors.InvalidArgumentError(
                    "NetworkingConfig", f"container cannot be connected to network {n.name} "
                    "and to other networks at once")
            self._check_endpoint(n, c)
            c["NetworkID"] = n.id
            out[n.name] = c
        if mac:  # API < 1.44's top-level MacAddress: the first network's endpoint
            out[net.name]["MacAddress"] = out[net.name]["_RequestedMac"] = mac
        if host.get("Links") and net.name != "bridge":
            out[net.name]["Links"] = list(host["Links"])
        return out

    @staticmethod
    def _check_endpoint(n: NetworkRecord, cfg: dict[str, Any]) -> None:
        ipam = cfg.get("IPAMConfig") or {}
        if n.name == "bridge" and (ipam.get("IPv4Address") or ipam.get("IPv6Address")):
            raise errors.InvalidArgumentError(
                "ip", "user specified IP address is supported on user defined networks only")
        if n.name == "bridge" and cfg.get("Aliases"):
            raise errors.InvalidArgumentError(
                "Aliases", "network-scoped alias is supported only for containers in user "
                "defined networks")
        cfg["_RequestedMac"] = cfg.get("MacAddress") or ""

    # -- start ---------------------------------------------------------------------------
    async def setup(self, rec: Any, hostname: str) -> NetPlan:
        """Everything networking a start needs; undone on failure (see module docstring)."""
        mode = primary_mode(rec.host_config)
        if mode.startswith("container:"):
            return await self._join(rec, mode[10:])
        names = list(rec.networks)
        nets = [self.nets.network(n) for n in names]
        host = rec.host_config
        if not nets or nets[0].driver in ("host", "null"):
            hosts = links.hosts_text(hostname, [], host, {})
            host_net = bool(nets) and nets[0].driver == "host"
            resolv = links.resolv_text(host, embedded=False, host_net=host_net).content
            return NetPlan(None, hosts, resolv)
        rec.net = {"sandbox": "", "endpoints": {}, "ports": []}
        try:
            return await self._setup_sandbox(rec, hostname, nets)
        except BaseException:
            await self.teardown(rec, save=False)
            raise

    async def _setup_sandbox(self, rec: Any, hostname: str, nets: list[NetworkRecord]
                             ) -> NetPlan:
        host = rec.host_config
        path = str(await asyncio.to_thread(self.nets.sandboxes.take))
        rec.net["sandbox"] = path
        reqs = parse_bindings(host, rec.config)
        first_bridge: tuple[NetworkRecord, Endpoint] | None = None
        for i, n in enumerate(nets):
            cfg = rec.networks[n.name]
            ipam = cfg.get("IPAMConfig") or {}
            spec = EndpointSpec(endpoint_id=new_id(), netns=path,
                                ipv4_address=ipam.get("IPv4Address") or None,
                                ipv6_address=ipam.get("IPv6Address") or None,
                                mac_address=cfg.get("_RequestedMac") or None, ifname=f"eth{i}")
            ep = await asyncio.to_thread(self.nets.attach_endpoint, n, spec, gateway=i == 0)
            rec.net["endpoints"][n.id] = _ep_json(ep)
            self._event("connect", n, rec)
            dns_names = self._dns_names(rec, n, cfg)
            rec.networks[n.name] = _settings(cfg, n, ep, dns_names)
            if n.driver == "bridge" and first_bridge is None:
                first_bridge = (n, ep)
        if reqs:
            if first_bridge is None:
                raise errors.InvalidArgumentError(
                    "PortBindings", "ports are published on bridge networks only")
            await self._publish(rec, reqs, *first_bridge)
        self._join_views(rec, nets)
        user = [n for n in nets if n.name != "bridge"]
        link_hosts, link_env, link_names = self._links(rec, nets[0])
        resolv = links.resolv_text(host, embedded=bool(user), host_net=False)
        if user:
            view = dnsview.ContainerView([self.nets.views[n.id] for n in user], link_names)
            self._dns[rec.id] = await self.nets.dns.attach(path, view, resolv.upstreams)
        primary = rec.networks[nets[0].name]
        addrs = [a for a in (primary.get("IPAddress"), primary.get("GlobalIPv6Address")) if a]
        gw = primary.get("Gateway") or None
        hosts = links.hosts_text(hostname, addrs, host, link_hosts, gateway=gw)
        return NetPlan(path, hosts, resolv.content, link_env)

    def _event(self, action: str, n: NetworkRecord, rec: Any) -> None:
        """moby logs a network connect at each start and a disconnect at each stop."""
        self.nets.bus.emit_network(action, n.id, {"name": n.name, "type": n.driver,
                                                  "container": rec.id})

    def _dns_names(self, rec: Any, n: NetworkRecord, cfg: dict[str, Any]) -> list[str]:
        if n.name == "bridge":
            return []
        return [rec.name, *(cfg.get("Aliases") or []), rec.id[:12]]

    async def _publish(self, rec: Any, reqs: list[Any], n: NetworkRecord, ep: Endpoint) -> None:
        net = self.nets.kernel_network(n)
        maps: list[PortMapping] = []
        for r in reqs:
            for a in ep.addresses:
                if r.host_ip and ipaddress.ip_address(r.host_ip).version != a.version:
                    continue
                maps.append(PortMapping(str(a.ip), r.port, r.proto, bridge=net.bridge,
                                        host_port=r.host_port, host_ip=r.host_ip))
        if not maps:
            raise errors.InvalidArgumentError("PortBindings", "no container address of the "
                                              "host address's family to publish to")
        from labkit.engine.net.nft import enable_hairpin
        await asyncio.to_thread(enable_hairpin, ep.host_ifname)
        try:
            got = await asyncio.to_thread(self.nets.publisher.publish, rec.id, maps)
        except errors.ConflictError as err:
            # dockerd fails the start with a 500 in these words (the CLI exits 125)
            raise PublishFailedError(f"driver failed programming external connectivity on "
                                     f"endpoint {rec.name} ({ep.id}): {err}") from None
        rec.net["ports"] = [{"port": m.container_port, "proto": m.proto,
                             "host_ip": m.bind_ip, "host_port": m.host_port,
                             "container_ip": m.container_ip, "bridge": m.bridge}
                            for m in got]

    def _links(self, rec: Any, primary: NetworkRecord
               ) -> tuple[list[tuple[str, str]], list[str], dict[str, list[str]]]:
        """(hosts lines, env, DNS names) of HostConfig.Links: on the default bridge the
        legacy way (hosts + env), on a user network as names only this container sees."""
        want = rec.host_config.get("Links") or []
        if not want:
            return [], [], {}
        hosts: list[tuple[str, str]] = []
        env: list[str] = []
        names: dict[str, list[str]] = {}
        for link in want:
            target_name, _, alias = link.partition(":")
            target_name = target_name.strip("/")
            alias = (alias.rsplit("/", 1)[-1] or target_name)
            try:
                t = self.lookup(target_name)
            except errors.NotFoundError:
                raise errors.InvalidArgumentError(
                    "Links", f"could not get container for {target_name}") from None
            if not t.running:
                raise errors.ConflictError(f"Cannot link to a non running container: /{t.name} "
                                           f"AS /{rec.name}/{alias}")
            ts = (t.networks or {}).get(primary.name) or {}
            ip = ts.get("IPAddress") or ""
            if not ip:
                raise errors.InvalidArgumentError(
                    "Links", f"cannot link to /{t.name}: it is not on network {primary.name}")
            if primary.name == "bridge":
                hosts.append((ip, " ".join(dict.fromkeys((alias, t.id[:12], t.name)))))
                env += links.link_env(alias, rec.name, t)
            else:
                names[alias] = [ip] + ([ts["GlobalIPv6Address"]]
                                       if ts.get("GlobalIPv6Address") else [])
        return hosts, env, names

    def _join_views(self, rec: Any, nets: list[NetworkRecord]) -> None:
        for n in nets:
            if n.name == "bridge":
                continue
            self.nets.members.setdefault(n.id, {})[rec.id] = dnsview.member(
                rec, rec.networks[n.name])
            dnsview.refresh(self.nets, n)

    def _leave_views(self, rec: Any) -> None:
        for net_id, members in list(self.nets.members.items()):
            if members.pop(rec.id, None) is not None:
                with contextlib.suppress(errors.NotFoundError):
                    dnsview.refresh(self.nets, self.nets.network(net_id))

    async def _join(self, rec: Any, ref: str) -> NetPlan:
        """--network container:X: X's namespace and files."""
        other = self.lookup(ref)
        if not other.running or not other.pid:
            raise errors.ConflictError(f"cannot join network namespace of a non running "
                                       f"container: {other.id}")
        if primary_mode(other.host_config) == "host" or "host" in (other.networks or {}):
            raise errors.InvalidArgumentError("NetworkMode", "cannot join the network of a "
                                              "container on the host network")
        path = (other.net or {}).get("sandbox") or f"/proc/{other.pid}/ns/net"
        d = Path(other.dir)
        texts = []
        for f in ("hosts", "resolv.conf"):
            try:
                texts.append((d / f).read_text())
            except OSError:
                texts.append("")
        rec.net = {"joined": other.id}
        return NetPlan(path, texts[0], texts[1])

    # -- connect / disconnect ----------------------------------------------------------
    async def connect(self, rec: Any, ref: str, cfg: dict[str, Any]) -> NetworkRecord:
        """POST /networks/{id}/connect: configured now; attached now if it runs."""
        n = self.nets.network(ref)
        mode = primary_mode(rec.host_config)
        if n.driver == "host" or mode == "host" or "host" in rec.networks:
            raise errors.InvalidArgumentError("network", "container cannot be disconnected "
                                              "from host network or connected to host network")
        if n.driver == "null" or mode == "none" or "none" in rec.networks:
            raise errors.InvalidArgumentError("network", "container cannot be connected to "
                                              "multiple networks with one of the networks in "
                                              "private (none) mode")
        if mode.startswith("container:"):
            raise errors.InvalidArgumentError("network", "container sharing network namespace "
                                              "with another container or host cannot be "
                                              "connected to any other network")
        if n.name in rec.networks:
            raise errors.ForbiddenError(f"endpoint with name {rec.name} already exists in "
                                        f"network {n.name}")
        self._check_endpoint(n, cfg)
        cfg["NetworkID"] = n.id
        if not (rec.running and (rec.net or {}).get("sandbox")):
            rec.networks[n.name] = cfg
            rec.save()
            return n
        path = rec.net["sandbox"]
        ipam = cfg.get("IPAMConfig") or {}
        spec = EndpointSpec(endpoint_id=new_id(), netns=path,
                            ipv4_address=ipam.get("IPv4Address") or None,
                            ipv6_address=ipam.get("IPv6Address") or None,
                            mac_address=cfg.get("_RequestedMac") or None,
                            ifname=f"eth{len(rec.net['endpoints'])}")
        ep = await asyncio.to_thread(self.nets.attach_endpoint, n, spec,
                                     gateway=not rec.net["endpoints"])
        rec.net["endpoints"][n.id] = _ep_json(ep)
        rec.networks[n.name] = _settings(cfg, n, ep, self._dns_names(rec, n, cfg))
        rec.save()
        self._join_views(rec, [n])
        if n.name != "bridge" and rec.id not in self._dns:
            await self._attach_dns(rec)
        elif rec.id in self._dns:
            self._dns[rec.id].resolver.view = self._view(rec)
        return n

    def _view(self, rec: Any) -> dnsview.ContainerView:
        user = []
        for name in rec.networks:
            with contextlib.suppress(errors.NotFoundError):
                n = self.nets.network(name)
                if n.name != "bridge" and n.id in self.nets.views:
                    user.append(self.nets.views[n.id])
        return dnsview.ContainerView(user, {})

    async def _attach_dns(self, rec: Any) -> None:
        """A running container's first user-defined network: DNS from now on, and its
        resolv.conf rewritten in place (the bind mount shows the same inode)."""
        resolv = links.resolv_text(rec.host_config, embedded=True, host_net=False)
        self._dns[rec.id] = await self.nets.dns.attach(rec.net["sandbox"], self._view(rec),
                                                       resolv.upstreams)
        await asyncio.to_thread(_rewrite, Path(rec.dir) / "resolv.conf", resolv.content)

    async def disconnect(self, rec: Any, ref: str, force: bool) -> NetworkRecord:
        """POST /networks/{id}/disconnect."""
        try:
            n = self.nets.network(ref)
        except errors.NotFoundError:
            if not force:
                raise
            for name, cfg in list(rec.networks.items()):  # force: a network already gone
                if cfg.get("NetworkID", "").startswith(ref) or name == ref:
                    rec.networks.pop(name)
            rec.save()
            raise
        if n.driver == "host" or "host" in rec.networks:
            raise errors.InvalidArgumentError("network", "container cannot be disconnected "
                                              "from host network or connected to host network")
        if n.name not in rec.networks:
            raise errors.ForbiddenError(f"container {rec.id} is not connected to network "
                                        f"{n.name}")
        d = (rec.net or {}).get("endpoints", {}).pop(n.id, None)
        rec.networks.pop(n.name)
        if d is not None:
            members = self.nets.members.get(n.id, {})
            if members.pop(rec.id, None) is not None:
                dnsview.refresh(self.nets, n)
            await asyncio.to_thread(self.nets.detach_endpoint, n, _ep_from(d), gone=False,
                                    netns=rec.net.get("sandbox"))
            if rec.id in self._dns:
                self._dns[rec.id].resolver.view = self._view(rec)
        rec.save()
        return n

    # -- exit ----------------------------------------------------------------------------
    async def teardown(self, rec: Any, *, save: bool = True) -> None:
        """Undo setup (idempotent; also after a daemon restart, from ``rec.net``).

        Every link is deleted before this returns (RTM_DELLINK of each veth's host end, or
        of the macvlan child in the namespace), and only then the namespace file goes.
        Unmounting first would let the kernel's netns cleanup delete the veths itself and
        spare the ~20 ms RTM_DELLINK, but that cleanup is asynchronous (seconds under
        load): `docker rm` would answer while the container's veth still hangs on the
        bridge, and the bridge's carrier would flap after the fact.  The DNS listener, the
        ports and the links are undone concurrently."""
        state = rec.net or {}
        if not state:
            return
        rec.net = {}  # taken now: a second teardown meanwhile finds nothing to undo
        self._leave_views(rec)
        path = state.get("sandbox") or ""
        shared = bool(path) and any(
            (o.net or {}).get("joined") == rec.id and o.running for o in self._others(rec))

        async def dns() -> None:
            att = self._dns.pop(rec.id, None)
            if att is not None:
                with contextlib.suppress(Exception):
                    await self.nets.dns.detach(att)

        async def ports() -> None:
            if state.get("ports"):
                try:
                    await asyncio.to_thread(self.nets.publisher.unpublish, rec.id)
                except errors.LabkitError as err:
                    log.warning("unpublish %s: %s", rec.id[:12], err)

        async def endpoint(d: dict[str, Any]) -> None:
            ep = _ep_from(d)
            try:
                n: NetworkRecord | None = self.nets.network(ep.network_id)
            except errors.NotFoundError:
                n = None
            gone = not path or not os.path.exists(path)  # (after a reboot: nothing left)
            try:
                await asyncio.to_thread(self.nets.detach_endpoint, n, ep, gone=gone,
                                        netns=path or None)
            except errors.LabkitError as err:
                log.warning("detach %s from %s: %s", rec.id[:12], ep.network_id[:12], err)
            if n is not None:
                self._event("disconnect", n, rec)

        await asyncio.gather(dns(), ports(),
                             *(endpoint(d) for d in (state.get("endpoints") or {}).values()))
        if path and not shared:
            await asyncio.to_thread(release, path)
        for name, cfg in list(rec.networks.items()):
            rec.networks[name] = stopped_settings(cfg)
        if save:
            with contextlib.suppress(OSError):
                rec.save()

    def _others(self, rec: Any) -> list[Any]:
        return [c for c in self.nets._containers() if c.id != rec.id]

    # -- daemon start --------------------------------------------------------------------
    async def adopt(self, rec: Any) -> None:
        """A container still running after a daemon restart: DNS answers again there."""
        state = rec.net or {}
        if not state.get("sandbox"):
            return
        nets = []
        for name in rec.networks:
            with contextlib.suppress(errors.NotFoundError):
                nets.append(self.nets.network(name))
        for n in nets:
            d = (state.get("endpoints") or {}).get(n.id)
            drv = (self.nets.driver(n.driver) if n.driver in ("macvlan", "ipvlan", "overlay")
                   else None)
            if d is not None and drv is not None:
                with contextlib.suppress(errors.LabkitError):
                    drv.restore_endpoint(_ep_from(d), state["sandbox"])
        self._join_views(rec, nets)
        user = [n for n in nets if n.name != "bridge"]
        if user:
            _, _, link_names = self._links_quiet(rec, nets[0])
            resolv = links.resolv_text(rec.host_config, embedded=True, host_net=False)
            view = dnsview.ContainerView([self.nets.views[n.id] for n in user], link_names)
            try:
                self._dns[rec.id] = await self.nets.dns.attach(state["sandbox"], view,
                                                               resolv.upstreams)
            except errors.LabkitError as err:
                log.warning("container %s: embedded DNS not restored: %s", rec.id[:12], err)

    def _links_quiet(self, rec: Any, primary: NetworkRecord
                     ) -> tuple[list[tuple[str, str]], list[str], dict[str, list[str]]]:
        try:
            return self._links(rec, primary)
        except errors.LabkitError:
            return [], [], {}

    async def reconcile(self, records: list[Any]) -> None:
        """After restore: ports, addresses and namespace files match the live containers."""
        live = [r for r in records if r.running and (r.net or {}).get("sandbox")]
        expected = {r.id: [PortMapping(m["container_ip"], m["port"], m["proto"],
                                       bridge=m["bridge"], host_port=m["host_port"],
                                       host_ip="" if m["host_ip"] in ("0.0.0.0", "::")
                                       else m["host_ip"])
                           for m in r.net.get("ports") or []] for r in live}
        used: dict[str, list[str]] = {n.id: [] for n in self.nets.store.all()}
        for r in live:
            for d in (r.net.get("endpoints") or {}).values():
                used.setdefault(d["network_id"], []).extend(
                    str(ipaddress.ip_interface(a).ip) for a in d["addresses"])

        def work() -> None:
            with self.nets.kernel:
                if self.nets.bridges():
                    stale = self.nets.publisher.reconcile(
                        {cid: ms for cid, ms in expected.items() if ms})
                    if stale:
                        log.info("restore: ports of %d gone containers removed", len(stale))
                self.nets.ipam.reconcile({k: v for k, v in used.items()
                                          if k in self.nets.ipam.networks()})
                gone = self.nets.sandboxes.sweep({r.net["sandbox"] for r in live})
                if gone:
                    log.info("restore: %d network namespaces no container holds released",
                             len(gone))
                self.nets.sandboxes.refill()
        await asyncio.to_thread(work)


def _rewrite(f: Path, text: str) -> None:
    """Rewrite in place: the container's bind mount holds this inode, not the name."""
    with contextlib.suppress(OSError), open(f, "r+") as fh:
        fh.truncate(0)
        fh.write(text)


def _no_lookup(ref: str) -> Any:
    raise errors.NotFoundError("container", ref)
