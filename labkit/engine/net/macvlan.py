"""Docker's ``macvlan`` and ``ipvlan`` network drivers: containers straight on a parent link.

No bridge, no NAT: each container gets a child link of the network's parent interface
(labkit.engine.net.lowerdev makes it directly inside the container's namespace) and an
address of the network's subnet, so it sits on the parent's L2 segment like another host.

macvlan (drivers/net/macvlan.c) gives every child its own MAC -- Docker's 02:42 + the IPv4
address (moby netutils.GenerateMACFromIP), or ``--mac-address`` -- and registers an
rx_handler on the parent that hands each received frame to the child owning its
destination MAC.  Modes (``-o macvlan_mode``, include/uapi/linux/if_link.h): ``bridge``
(default: children reach each other inside the kernel), ``private`` (they never do),
``vepa`` (child-to-child frames go out to the switch, which must hairpin them back) and
``passthru`` (one child takes over the parent).  Because frames need a MAC each, the
parent's NIC must accept several unicast MACs (its filter or promiscuous mode).

**The host cannot reach its own macvlan children.**  A frame the host sends out the parent
goes down the parent's transmit path to the wire; the macvlan rx_handler sits only on the
parent's *receive* path (macvlan_handle_frame in drivers/net/macvlan.c), and a switch does
not send a frame back out of the port it came in on, so the child never sees it (nor does
the host see the child's frames: they leave through the parent's transmit path too).
Other machines on the segment reach the children fine.  The usual workaround is a macvlan
link of the host's own on the same parent, in bridge mode, holding the host's address for
that segment (``ip link add mac0 link eth0 type macvlan mode bridge``): host and children
are then siblings on one macvlan port, and bridge mode switches between them in
macvlan_queue_xmit (moby's libnetwork/docs/macvlan.md and Docker's macvlan driver docs say
the same).  tests/privileged/test_net_macvlan.py shows both.

ipvlan (Documentation/networking/ipvlan.rst) shares the parent's MAC among all children
and tells them apart by IP address, so the parent needs no promiscuous mode and a switch
port that admits one MAC still works -- hence ``--mac-address`` is refused, as by moby
("ipvlan interfaces do not support custom mac address assignment").  ``-o ipvlan_mode``:
``l2`` (default: the children answer ARP/ND on the segment; default route via the
gateway), ``l3`` (the parent routes: no broadcast or multicast reaches the children, the
container gets an on-link ``default dev eth0`` route as moby sets it, and the other hosts
need a route to the subnet via the parent host) and ``l3s`` (l3 passing through netfilter,
the conntrack-aware variant).  ``-o ipvlan_flag``: ``bridge`` (default), ``private``,
``vepa`` (IFLA_IPVLAN_FLAGS, the same meanings as macvlan's modes).  This host's kernel has
no ipvlan (no CONFIG_IPVLAN): IpvlanDriver.create_network refuses with UnsupportedError
pointing at the test VM, where tests/vm/test_vm_macvlan.py runs it.

Options (``docker network create -d macvlan -o KEY=VALUE``), each applied or refused:
``parent`` (an existing link; ``eth0.10`` makes and later removes an 802.1q sub-interface
as moby does; none: a dead-end parent of the driver's own, and the network is internal, as
current moby makes it), ``macvlan_mode`` / ``ipvlan_mode`` / ``ipvlan_flag``.  Any other key is refused
by name (InvalidArgumentError); ``encrypted`` with the reason (only overlay encrypts).
Several macvlan networks may share a parent (current moby) unless one is ``passthru``; an
ipvlan parent serves one network; their subnets never overlap (the shared IPAM refuses:
"Pool overlaps with other one on this address space").

State: the networks and the endpoints' namespaces live in the driver object; after a
daemon restart the engine calls ``restore_network`` for each network and
``restore_endpoint`` for each live endpoint (detach needs the container's namespace: there
is no host-side end to delete, unlike a veth).  Links the driver made are recognised by
their IFLA_IFALIAS, so deleting after a restart removes only labkit's own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from labkit import errors
from labkit.engine.net import lowerdev as ld
from labkit.engine.net.bridge import _check_mac, mac_for
from labkit.engine.net.driver import (
    Endpoint,
    EndpointSpec,
    Network,
    NetworkDriver,
    NetworkSpec,
    check_driver,
)
from labkit.engine.net.ipam import Address, Ipam
from labkit.engine.net.ipvlan import _check_name

__all__ = [
    "IPVLAN_FLAGS",
    "IPVLAN_MODES",
    "MACVLAN_MODES",
    "IpvlanDriver",
    "MacvlanDriver",
    "Options",
    "parse_options",
]

# include/uapi/linux/if_link.h: enum macvlan_mode, enum ipvlan_mode, IPVLAN_F_*
MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}
IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}
IPVLAN_FLAGS = {"bridge": 0, "private": 1, "vepa": 2}
_KNOWN = {"macvlan": ("parent", "macvlan_mode"),
          "ipvlan": ("parent", "ipvlan_mode", "ipvlan_flag")}
VM_PATH = ("make test-vm (labkit's qemu VM, whose Debian kernel has ipvlan; "
           "tests/vm/test_vm_ipvlan.py and tests/vm/test_vm_macvlan.py run there)")

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True)
class Options:
    """``-o`` options after validation, with Docker's defaults filled in."""

    kind: str
    parent: str  # "" when none was given
    mode: str
    flag: str = "bridge"

    def data(self) -> dict[str, int]:
        if self.kind == "macvlan":
            return {"IFLA_MACVLAN_MODE": MACVLAN_MODES[self.mode]}
        return {"IFLA_IPVLAN_MODE": IPVLAN_MODES[self.mode],
                "IFLA_IPVLAN_FLAGS": IPVLAN_FLAGS[self.flag]}


def parse_options(kind: str, options: Mapping[str, str]) -> Options:
    """Validate ``-o`` options in moby's words; unknown keys refused by name."""
    known = _KNOWN[kind]
    unknown = sorted(set(options) - set(known))
    if unknown:
        hint = ("encryption is an overlay (swarm) network feature; macvlan and ipvlan traffic "
                "is the parent link's own" if "encrypted" in unknown
                else f"the {kind} driver's options: {', '.join(known)}")
        raise errors.InvalidArgumentError(
            "options", f"the {kind} driver does not support option(s) {', '.join(unknown)}",
            hint=hint)
    parent = options.get("parent", "")
    if parent == "lo":
        raise errors.InvalidArgumentError("parent", "loopback interface is not a valid "
                                          f"{kind} parent link")
    if parent:
        _check_name("parent", parent)
        if "." in parent:
            ld.parse_vlan(parent)  # syntax only: refused before anything is made
    if kind == "macvlan":
        mode = options.get("macvlan_mode") or "bridge"
        if mode not in MACVLAN_MODES:
            raise errors.InvalidArgumentError(
                "macvlan_mode", f"requested macvlan mode '{mode}' is not valid, 'bridge' mode "
                "is the macvlan driver default")
        return Options(kind, parent, mode)
    mode = options.get("ipvlan_mode") or "l2"
    if mode not in IPVLAN_MODES:
        raise errors.InvalidArgumentError(
            "ipvlan_mode", f"requested ipvlan mode '{mode}' is not valid, 'l2' mode is the "
            "ipvlan driver default")
    flag = options.get("ipvlan_flag") or "bridge"
    if flag not in IPVLAN_FLAGS:
        raise errors.InvalidArgumentError(
            "ipvlan_flag", f"requested ipvlan flag '{flag}' is not valid, 'bridge' is the "
            "ipvlan driver default")
    return Options(kind, parent, mode, flag)


@dataclass(frozen=True)
class _Net:
    parent: str
    opts: Options


class _ChildDriver:
    """What macvlan and ipvlan share; ``name`` is the link kind."""

    name = ""

    def __init__(self, ipam: Ipam, *, host_netns: str | None = None) -> None:
        self.ipam = ipam
        self.host_netns = host_netns
        self._nets: dict[str, _Net] = {}
        self._eps: dict[str, str] = {}  # endpoint id -> the container's netns

    # --- hooks the subclasses fill in

    def _check_kernel(self) -> None:
        """Refuse before anything is made when the kernel lacks the link type."""

    def _check_sharing(self, spec: NetworkSpec, opts: Options, parent: str) -> None:
        raise NotImplementedError

    # --- networks

    def _parse(self, spec: NetworkSpec) -> tuple[Options, str, bool]:
        if spec.driver != self.name:
            raise errors.InvalidArgumentError("driver", f"{spec.driver!r} is not {self.name}")
        opts = parse_options(self.name, spec.options)
        parent = opts.parent or ld.dummy_name(self.name, spec.id)
        # moby's parseNetworkOptions: "With no parent interface, the network is internal"
        # (the dead-end parent leads nowhere)
        return opts, parent, spec.internal or not opts.parent

    def _network(self, spec: NetworkSpec, parent: str, internal: bool) -> Network:
        return Network(id=spec.id, name=spec.name, driver=self.name, bridge=parent,
                       pools=tuple(self.ipam.pools(spec.id)), internal=internal)

    def create_network(self, spec: NetworkSpec) -> Network:
        """Options, the kernel check, parent sharing, IPAM pools, then the parent link
        (made if it is the driver's own or a dotted sub-interface).  All or nothing."""
        opts, parent, internal = self._parse(spec)
        self._check_kernel()
        self._check_sharing(spec, opts, parent)
        self.ipam.add_network(spec.id, spec.ipam, ipv4=spec.ipv4, ipv6=spec.ipv6)
        try:
            ld.ensure_parent(parent, kind=self.name, dummy=ld.dummy_name(self.name, spec.id),
                             host_netns=self.host_netns)
        except BaseException:
            self.ipam.remove_network(spec.id)
            raise
        self._nets[spec.id] = _Net(parent, opts)
        return self._network(spec, parent, internal)

    def restore_network(self, spec: NetworkSpec) -> Network:
        """After a daemon restart: re-register ``spec`` from the IPAM state, its parent made
        again if it is the driver's own and gone (a reboot).  A user's parent that is gone
        is not an error here: attach says so.  NotFoundError when IPAM never had it."""
        opts, parent, internal = self._parse(spec)
        self.ipam.pools(spec.id)
        self._check_kernel()
        if not opts.parent or "." in opts.parent:
            try:
                ld.ensure_parent(parent, kind=self.name,
                                 dummy=ld.dummy_name(self.name, spec.id),
                                 host_netns=self.host_netns)
            except ld.ParentNotFoundError:
                if not opts.parent:
                    raise
                # the base of a dotted parent is gone: attach reports it, in moby's words
        self._nets[spec.id] = _Net(parent, opts)
        return self._network(spec, parent, internal)

    def delete_network(self, network: Network) -> None:
        """Refused while an endpoint is attached; then the parent if the driver made it
        and no other network of this driver uses it; then the pools."""
        held = [str(a) for p in self.ipam.pools(network.id) for a in p.allocated]
        if held:
            raise errors.ConflictError(f"error while removing network: network {network.name} "
                                       f"id {network.id} has active endpoints")
        parent = network.bridge
        if not any(n.parent == parent for i, n in self._nets.items() if i != network.id):
            ld.release_parent(parent, kind=self.name, host_netns=self.host_netns)
        self.ipam.remove_network(network.id)
        self._nets.pop(network.id, None)

    # --- endpoints

    def _allocate(self, network: Network, spec: EndpointSpec,
                  taken: list[Address]) -> tuple[list[Interface], list[Address]]:
        ifaces: list[Interface] = []
        gws: list[Address] = []
        for fam, want in ((4, spec.ipv4_address), (6, spec.ipv6_address)):
            pools = [p for p in self.ipam.pools(network.id) if p.family == fam]
            if not pools:
                if want is not None:
                    raise errors.InvalidArgumentError(
                        "ip" if fam == 4 else "ip6", f"network {network.name} has no IPv{fam} "
                        "subnet")
                continue
            if want is not None and not any(p.configured for p in pools):
                raise errors.InvalidArgumentError(  # moby's daemon, before IPAM
                    "ip" if fam == 4 else "ip6", "user specified IP address is supported only "
                    "when connecting to networks with user configured subnets")
            a = self.ipam.allocate(network.id, spec.endpoint_id, address=want, family=fam)
            taken.append(a)
            pool = next(p for p in pools if a in p.subnet)
            ifaces.append(ipaddress.ip_interface(f"{a}/{pool.subnet.prefixlen}"))
            gws.append(pool.gateway)
        return ifaces, gws

    def _mac(self, spec: EndpointSpec, opts: Options, ifaces: list[Interface]) -> str | None:
        raise NotImplementedError

    def _check_attach(self, network: Network, opts: Options) -> None:
        """Refuse an endpoint the kernel would refuse less clearly."""

    def attach(self, network: Network, spec: EndpointSpec) -> Endpoint:
        """Addresses from IPAM, then the child link made inside ``spec.netns`` with them
        and its routes: default via the gateway (macvlan, ipvlan l2), on-link default
        (ipvlan l3/l3s), none on an internal network.  All or nothing."""
        net = self._nets.get(network.id)
        if net is None:
            raise errors.NotFoundError(f"{self.name} network", network.id,
                                       hint="create_network or restore_network first")
        self._check_attach(network, net.opts)
        taken: list[Address] = []
        try:
            ifaces, gws = self._allocate(network, spec, taken)
            mac = self._mac(spec, net.opts, ifaces)
            l3 = net.opts.kind == "ipvlan" and net.opts.mode != "l2"
            gateways = [] if network.internal or l3 else gws
            dev_routes = [i.version for i in ifaces] if l3 and not network.internal else []
            child = ld.add_child(self.name, net.parent, spec.netns, spec.ifname,
                                 data=net.opts.data(), endpoint_id=spec.endpoint_id,
                                 addresses=ifaces, gateways=gateways, dev_routes=dev_routes,
                                 mac=mac, host_netns=self.host_netns)
        except BaseException:
            for a in taken:
                self.ipam.release(network.id, a)
            raise
        self._eps[spec.endpoint_id] = spec.netns
        return Endpoint(id=spec.endpoint_id, network_id=network.id, host_ifname="",
                        ifname=child.ifname, mac=child.mac, addresses=child.addresses,
                        gateways=tuple(gateways))

    def restore_endpoint(self, endpoint: Endpoint, netns: str) -> None:
        """After a daemon restart: where a live endpoint's link is (detach needs it)."""
        self._eps[endpoint.id] = netns

    def detach(self, network: Network, endpoint: Endpoint, *, netns_gone: bool = False,
               netns: str | None = None) -> None:
        """Delete the child link (if still there and still ours), then free the addresses.

        ``netns_gone=True``: the container's namespace is gone and the kernel deleted the
        child with it (default_device_exit_batch unregisters every device that has
        rtnl_link_ops), so nothing is sent.  ``netns`` overrides what attach() or
        restore_endpoint() recorded; with neither, InvalidArgumentError and nothing freed."""
        where = netns or self._eps.get(endpoint.id)
        if not netns_gone:
            if where is None:
                raise errors.InvalidArgumentError(
                    "netns", f"the {self.name} driver does not know where endpoint "
                    f"{endpoint.id[:12]} lives", hint="restore_endpoint(endpoint, netns) after "
                    "a daemon restart, or detach(..., netns=...)")
            ld.del_child(where, endpoint.ifname, endpoint_id=endpoint.id)
        self._eps.pop(endpoint.id, None)
        for iface in endpoint.addresses:
            try:
                self.ipam.release(network.id, iface.ip)
            except errors.NotFoundError:
                pass  # reconcile() freed it after a restart

    def reconcile(self, used: Mapping[str, Iterable[str | Address]]) -> None:
        """After a daemon restart: free every address no live container holds."""
        self.ipam.reconcile(used)


class MacvlanDriver(_ChildDriver):
    """``docker network create -d macvlan``: a macvlan child per endpoint."""

    name = "macvlan"

    def _check_sharing(self, spec: NetworkSpec, opts: Options, parent: str) -> None:
        for nid, n in self._nets.items():
            if n.parent != parent or nid == spec.id:
                continue
            if opts.mode == "passthru":
                raise errors.ConflictError(f"cannot use mode passthru, macvlan network {nid} "
                                           f"is already using parent interface {parent}")
            if n.opts.mode == "passthru":
                raise errors.ConflictError(f"macvlan network {nid} is already using parent "
                                           f"interface {parent} in mode passthru")

    def _check_attach(self, network: Network, opts: Options) -> None:
        # macvlan_common_newlink: a passthru port takes exactly one child (EINVAL otherwise)
        if opts.mode == "passthru" and any(p.allocated for p in self.ipam.pools(network.id)):
            raise errors.ConflictError(
                f"macvlan network {network.name} is in mode passthru and already has its one "
                "endpoint", hint="passthru gives a single container the whole parent; use "
                "bridge mode for several")

    def _mac(self, spec: EndpointSpec, opts: Options, ifaces: list[Interface]) -> str | None:
        if opts.mode == "passthru":
            if spec.mac_address is not None:
                raise errors.InvalidArgumentError(
                    "mac-address", "a passthru macvlan child takes its parent's MAC",
                    hint="setting it would change the parent's own address")
            return None  # macvlan_common_newlink: the child inherits the parent's address
        if spec.mac_address is not None:
            return _check_mac(spec.mac_address)
        return mac_for(next((i.ip for i in ifaces if i.version == 4), None))


class IpvlanDriver(_ChildDriver):
    """``docker network create -d ipvlan``: an ipvlan child per endpoint, sharing the
    parent's MAC.  Where the kernel has no ipvlan, create_network raises UnsupportedError."""

    name = "ipvlan"

    def _check_kernel(self) -> None:
        try:
            check_driver("ipvlan", netns=self.host_netns)
        except errors.UnsupportedError as err:
            raise errors.UnsupportedError(
                "ipvlan", "this kernel has no ipvlan link type (CONFIG_IPVLAN), so the ipvlan "
                "network driver cannot make its links", hint=f"run it in the VM: {VM_PATH}; "
                f"{err.hint or ''}".rstrip("; ")) from err

    def _check_sharing(self, spec: NetworkSpec, opts: Options, parent: str) -> None:
        for nid, n in self._nets.items():
            if n.parent == parent and nid != spec.id:
                raise errors.ConflictError(f"network {ld.dummy_name('ipvlan', nid)} is already "
                                           f"using parent interface {parent}")

    def _mac(self, spec: EndpointSpec, opts: Options, ifaces: list[Interface]) -> str | None:
        if spec.mac_address is not None:
            raise errors.InvalidArgumentError(
                "mac-address", "ipvlan interfaces do not support custom mac address assignment",
                hint="ipvlan children share their parent's MAC (Documentation/networking/"
                "ipvlan.rst)")
        return None


def _conforms(m: MacvlanDriver, i: IpvlanDriver) -> tuple[NetworkDriver, NetworkDriver]:
    return m, i  # mypy checks here that both implement the protocol
