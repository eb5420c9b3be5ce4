"""The typed seam between the engine and its network drivers (see the package docstring).

``NetworkDriver`` is what the engine calls; ``BridgeDriver`` implements it with
labkit.engine.net.ipam (addresses) and labkit.engine.net.bridge (links).  ``check_driver``
refuses drivers this kernel cannot run (ipvlan here) before anything is made.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from labkit import errors
from labkit._sys import features
from labkit.engine.net import bridge as br
from labkit.engine.net import ipvlan
from labkit.engine.net.ipam import Address, Ipam, Pool, PoolConfig

__all__ = [
    "BRIDGE_OPTIONS",
    "BridgeDriver",
    "Endpoint",
    "EndpointSpec",
    "Network",
    "NetworkDriver",
    "NetworkSpec",
    "check_driver",
]

# Docker's bridge driver options that BridgeDriver applies (libnetwork/drivers/bridge
# labels); any other option is refused by name, never accepted and ignored.
OPT_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
BRIDGE_OPTIONS = frozenset({OPT_NAME, OPT_MTU})
KNOWN_DRIVERS = frozenset({"bridge", "host", "none", "macvlan", "ipvlan"})


@dataclass(frozen=True)
class NetworkSpec:
    """``docker network create`` as the engine parsed it."""

    id: str  # 64 hex, the engine's network id
    name: str
    driver: str = "bridge"
    ipam: Sequence[PoolConfig] = ()
    ipv4: bool = True
    ipv6: bool = False
    internal: bool = False
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Network:
    """A network the driver made: what inspect shows and what attach needs."""

    id: str
    name: str
    driver: str
    bridge: str
    pools: tuple[Pool, ...]
    internal: bool
    mtu: int | None = None


@dataclass(frozen=True)
class EndpointSpec:
    """One container's attachment request (``run --network``, ``network connect``)."""

    endpoint_id: str  # 64 hex
    netns: str  # the container's netns: /run/netns name or a path (/proc/PID/ns/net)
    ipv4_address: str | None = None  # --ip
    ipv6_address: str | None = None  # --ip6
    mac_address: str | None = None  # --mac-address
    ifname: str = "eth0"  # eth1, ... for further networks


@dataclass(frozen=True)
class Endpoint:
    id: str
    network_id: str
    host_ifname: str
    ifname: str
    mac: str
    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]
    gateways: tuple[Address, ...]


class NetworkDriver(Protocol):
    """What the engine calls.  Every call is all-or-nothing: on error nothing is left."""

    name: str

    def create_network(self, spec: NetworkSpec) -> Network: ...

    def restore_network(self, spec: NetworkSpec) -> Network: ...

    def delete_network(self, network: Network) -> None: ...

    def attach(self, network: Network, spec: EndpointSpec) -> Endpoint: ...

    def detach(self, network: Network, endpoint: Endpoint, *,
               netns_gone: bool = False) -> None: ...


def check_driver(name: str, *, netns: str | None = None) -> None:
    """Refuse a driver before anything is made.

    Unknown names: NotFoundError (Docker: 'plugin "X" not found', 404).  ipvlan on a kernel
    without it: UnsupportedError pointing at the test VM -- the cheap /sys guess first, and
    when it cannot tell, ipvlan.py's real probe (an ipvlan over a throwaway veth, removed
    again) in ``netns``."""
    if name not in KNOWN_DRIVERS:
        err = errors.NotFoundError("plugin", f'"{name}"', hint="drivers: "
                                   + ", ".join(sorted(KNOWN_DRIVERS)))
        err.message = f'plugin "{name}" not found'  # type: ignore[attr-defined]
        raise err
    if name != "ipvlan":
        return
    builtin = features.link_kind_builtin("ipvlan")
    if builtin is True:
        return
    if builtin is False:
        raise errors.UnsupportedError("ipvlan", "the kernel has no ipvlan link type "
                                      "(CONFIG_IPVLAN)", hint=ipvlan.VM_HINT)
    _probe_ipvlan(netns)


def _probe_ipvlan(netns: str | None) -> None:
    from pyroute2 import IPRoute

    from labkit.ns.netns import netns as enter

    def sock() -> IPRoute:
        if netns is None:
            return IPRoute()
        with enter(netns if netns.startswith("/") else f"/run/netns/{netns}"):
            return IPRoute()

    import os

    from pyroute2.netlink.exceptions import NetlinkError

    tag = f"lkpr{os.getpid() % 100000}"  # two daemons probing at once do not collide
    ipr = sock()
    try:
        try:
            ipr.link("add", ifname=f"{tag}a", kind="veth", peer=f"{tag}b")
        except NetlinkError as err:
            raise errors.from_errno(err.code, "RTM_NEWLINK", target=f"{tag}a") from err
        try:
            ipvlan.add_ipvlan(f"{tag}c", f"{tag}a", netns=netns)  # UnsupportedError here
        finally:
            for idx in ipr.link_lookup(ifname=f"{tag}a"):
                ipr.link("del", index=idx)  # takes the peer and the ipvlan with it
    finally:
        ipr.close()


class BridgeDriver:
    """Docker's ``bridge`` driver: a Linux bridge per network, a veth pair per endpoint.

    ``host_netns`` is the daemon's "host" namespace (None: the process's own)."""

    name = "bridge"

    def __init__(self, ipam: Ipam, *, host_netns: str | None = None) -> None:
        self.ipam = ipam
        self.host_netns = host_netns

    def _options(self, spec: NetworkSpec) -> tuple[str, int | None]:
        unknown = sorted(set(spec.options) - BRIDGE_OPTIONS)
        if unknown:
            hint = None
            if "encrypted" in unknown:
                hint = "encryption is an overlay (swarm) network feature"
            raise errors.InvalidArgumentError(
                "options", f"the bridge driver does not support option(s) {', '.join(unknown)}",
                hint=hint)
        name = spec.options.get(OPT_NAME) or (
            br.DEFAULT_BRIDGE if spec.name == "bridge" else br.bridge_name(spec.id))
        mtu: int | None = None
        if OPT_MTU in spec.options:
            try:
                mtu = int(spec.options[OPT_MTU])
            except ValueError:
                mtu = -1
            if not 68 <= mtu <= 65535:  # IPv4's minimum (RFC 791) .. the netdev maximum
                raise errors.InvalidArgumentError(OPT_MTU, f"{spec.options[OPT_MTU]!r} is not "
                                                  "an MTU between 68 and 65535")
        return name, mtu

    def create_network(self, spec: NetworkSpec) -> Network:
        """IPAM pools, then the bridge with every gateway on it; undone on failure."""
        if spec.driver != "bridge":
            raise errors.InvalidArgumentError("driver", f"{spec.driver!r} is not bridge")
        name, mtu = self._options(spec)
        pools = self.ipam.add_network(spec.id, spec.ipam, ipv4=spec.ipv4, ipv6=spec.ipv6)
        try:
            gws = [ipaddress.ip_interface(f"{p.gateway}/{p.subnet.prefixlen}") for p in pools]
            br.create_bridge(name, gws, mtu=mtu, host_netns=self.host_netns)
        except BaseException:
            self.ipam.remove_network(spec.id)
            raise
        return Network(id=spec.id, name=spec.name, driver="bridge", bridge=name,
                       pools=tuple(pools), internal=spec.internal, mtu=mtu)

    def restore_network(self, spec: NetworkSpec) -> Network:
        """After a daemon restart: the Network for ``spec`` from the IPAM state, its bridge
        made again if it is gone (a host reboot), left alone if it is there (live-restore:
        running containers hang off it).  Raises NotFoundError when IPAM never had it."""
        name, mtu = self._options(spec)
        pools = self.ipam.pools(spec.id)
        gws = [ipaddress.ip_interface(f"{p.gateway}/{p.subnet.prefixlen}") for p in pools]
        try:
            br.create_bridge(name, gws, mtu=mtu, host_netns=self.host_netns)
        except errors.AlreadyExistsError:
            pass
        return Network(id=spec.id, name=spec.name, driver="bridge", bridge=name,
                       pools=tuple(pools), internal=spec.internal, mtu=mtu)

    def delete_network(self, network: Network) -> None:
        """Refused (ConflictError) while an endpoint is attached; then bridge, then pools."""
        held = [str(a) for p in self.ipam.pools(network.id) for a in p.allocated]
        if held:
            raise errors.ConflictError(f"error while removing network: network {network.name} "
                                       f"id {network.id} has active endpoints")
        try:
            br.delete_bridge(network.bridge, host_netns=self.host_netns)
        except errors.NotFoundError:
            pass  # gone already (a reboot): the pools still have to go
        self.ipam.remove_network(network.id)

    def attach(self, network: Network, spec: EndpointSpec) -> Endpoint:
        """Addresses from IPAM (--ip/--ip6 or the next free), then the veth pair."""
        taken: list[Address] = []
        try:
            ifaces: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
            gws: list[Address] = []
            for fam, want in ((4, spec.ipv4_address), (6, spec.ipv6_address)):
                pools = [p for p in self.ipam.pools(network.id) if p.family == fam]
                if not pools:
                    if want is not None:
                        raise errors.InvalidArgumentError(
                            "ip" if fam == 4 else "ip6",
                            f"network {network.name} has no IPv{fam} subnet")
                    continue
                if want is not None and (network.name == "bridge"
                                         or not any(p.configured for p in pools)):
                    # moby's daemon refuses these before IPAM sees them (runconfig errors)
                    raise errors.InvalidArgumentError(
                        "ip" if fam == 4 else "ip6",
                        "user specified IP address is supported on user defined networks only"
                        if network.name == "bridge" else "user specified IP address is "
                        "supported only when connecting to networks with user configured "
                        "subnets")
                a = self.ipam.allocate(network.id, spec.endpoint_id, address=want, family=fam)
                taken.append(a)
                pool = next(p for p in pools if a in p.subnet)
                ifaces.append(ipaddress.ip_interface(f"{a}/{pool.subnet.prefixlen}"))
                if not network.internal:
                    gws.append(pool.gateway)
            att = br.attach(network.bridge, br.veth_name(spec.endpoint_id), spec.netns, ifaces,
                            gateways=gws, ifname=spec.ifname, mac=spec.mac_address,
                            mtu=network.mtu, host_netns=self.host_netns)
        except BaseException:
            for a in taken:
                self.ipam.release(network.id, a)
            raise
        return Endpoint(id=spec.endpoint_id, network_id=network.id,
                        host_ifname=att.host_ifname, ifname=att.ifname, mac=att.mac,
                        addresses=att.addresses, gateways=att.gateways)

    def detach(self, network: Network, endpoint: Endpoint, *, netns_gone: bool = False) -> None:
        """Remove the pair (if the container's death did not already) and free addresses.

        ``netns_gone=True``: the container's network namespace has no process and no bind
        mount left, so the kernel deletes the pair itself with the namespace
        (default_device_exit_batch, in the netns cleanup work) and the ~15-20 ms
        synchronous RTM_DELLINK is skipped (bench_veth measures it).  Only the engine
        knows that; passing it while something still holds the namespace leaks the pair
        until that holder lets go."""
        if not netns_gone:
            br.detach(endpoint.host_ifname, host_netns=self.host_netns)
        for iface in endpoint.addresses:
            try:
                self.ipam.release(network.id, iface.ip)
            except errors.NotFoundError:
                pass  # reconcile() freed it after a restart

    def reconcile(self, used: Mapping[str, Iterable[str | Address]]) -> None:
        """After a daemon restart: free every address no live container holds."""
        self.ipam.reconcile(used)


def _conforms(d: BridgeDriver) -> NetworkDriver:
    return d  # mypy checks here that BridgeDriver implements the protocol
