"""Docker's ``overlay`` network driver on one node: a VXLAN link and a bridge per swarm network.

Per network (VNI ``N``), in the node's network namespace (the daemon's own; a swarm lab
node is a daemon in a namespace of its own):

* bridge ``lkovN``: the containers' veths hang on it, no address (except the node's own
  address on the ingress network, ``set_node_address``), a MAC of its own;
* VXLAN ``lkvxN`` (Documentation/networking/vxlan.rst, RFC 7348): ``id N``, ``local`` = the
  node's underlay address, ``dstport`` = the swarm's data path port, ``nolearning``, port of
  ``lkovN``.  Which peer a frame goes to is told, never learnt: per peer node the all-zero
  MAC entry ``00:00:00:00:00:00 dst PEER`` (``bridge fdb append``; broadcasts, ARP and
  unknown unicast are copied to every peer: head-end replication), and per remote container
  address an entry for its MAC (Docker's 02:42 + the IPv4 address, so the MAC follows from
  the address and peers need not send MACs) straight to its node.

MTU: VXLAN adds 50 bytes to every frame the bridge sends out (outer IPv4 20 + UDP 8 + VXLAN
header 8 + the inner Ethernet header 14; RFC 7348 section 5), so the network's MTU is the
underlay link's MTU - 50, unless ``com.docker.network.driver.mtu`` says otherwise; the
encrypted overlay takes the ESP overhead off too (``overlay_mtu``).  Bridge, VXLAN link
and every container end get the same MTU, so nothing is fragmented on the way.

Containers: a veth pair like the bridge driver's (labkit.engine.net.bridge.attach), with the
address the swarm's allocator gave the task (never one picked here: two nodes would pick the
same), the derived MAC, no default route (an overlay is not a way out; Docker adds
docker_gwbridge for that), and no port publishing or masquerade.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from labkit import errors
from labkit.engine.net import bridge as br
from labkit.engine.net import xfrm
from labkit.engine.net.driver import Endpoint, EndpointSpec, Network, NetworkDriver, NetworkSpec
from labkit.engine.net.ipam import Pool

__all__ = [
    "OPT_ENCRYPTED",
    "OPT_MTU",
    "OPT_VNI",
    "VXLAN_OVERHEAD",
    "OverlayDriver",
    "Peer",
    "bridge_name",
    "overlay_mtu",
    "parse_peers",
    "underlay_mtu",
    "vxlan_name",
]

OPT_VNI = "com.docker.network.driver.overlay.vxlanid_list"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_ENCRYPTED = "encrypted"
VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 (RFC 7348 5.)
ZERO_MAC = "00:00:00:00:00:00"
NUD_PERMANENT = 0x80  # include/uapi/linux/neighbour.h
NTF_SELF = 0x02
IFF_UP = 0x1
MAX_VNI = (1 << 24) - 1  # a 24-bit field (RFC 7348 5.)

Address = ipaddress.IPv4Address


def bridge_name(vni: int) -> str:
    return f"lkov{_vni(vni)}"


def vxlan_name(vni: int) -> str:
    return f"lkvx{_vni(vni)}"


def _vni(vni: object) -> int:
    if isinstance(vni, bool) or not isinstance(vni, int) or not 1 <= vni <= MAX_VNI:
        raise errors.InvalidArgumentError("VNI", f"{vni!r} is not a VXLAN id (1..{MAX_VNI})")
    return vni


def _ipv4(value: object, what: str) -> Address:
    try:
        return ipaddress.IPv4Address(value if isinstance(value, str) else "-")
    except ValueError:
        raise errors.InvalidArgumentError(what, f"{value!r} is not an IPv4 address") from None


def overlay_mtu(underlay: int, *, encrypted: bool) -> int:
    """The largest inner packet that crosses an underlay of MTU ``underlay`` unfragmented.

    Plain: underlay - 50 (see VXLAN_OVERHEAD).  Encrypted, ESP in transport mode wraps the
    VXLAN UDP datagram (RFC 4303 2.; AES-GCM per RFC 4106): after the outer IPv4 header
    come the ESP header (SPI 4 + sequence number 4), the explicit IV (8, RFC 4106 3.1),
    then the datagram, padding, pad length (1) and next header (1), then the ICV (16 with
    ICV 128).  The padding aligns datagram + 2 to 4 bytes (RFC 4303 2.4; GCM's block size
    is 1, so the kernel's esp4 pads to 4).  So ``20 + 8 + 8 + align4(D + 2) + 16 <= U`` with
    ``D = 8 + 8 + 14 + inner`` (UDP, VXLAN, inner Ethernet): inner = floor4(U - 52) - 32,
    i.e. 1416 on a 1500 underlay (34 bytes less than plain, 37 at worst for other sizes)."""
    if encrypted:
        return (underlay - 52) // 4 * 4 - 32
    return underlay - VXLAN_OVERHEAD


def _index(ipr: IPRoute, name: str) -> int | None:
    try:
        return int(ipr.link("get", ifname=name)[0]["index"])
    except NetlinkError as err:
        if err.code == errno.ENODEV:
            return None
        raise


def underlay_mtu(local_addr: str) -> int:
    """The MTU of the link that holds ``local_addr`` in this namespace (NotFoundError when
    no link does: VXLAN's ``local`` must be one of the node's own addresses)."""
    addr = str(_ipv4(local_addr, "local address"))
    with IPRoute() as ipr:
        for a in ipr.get_addr(family=2):
            if a.get_attr("IFA_LOCAL") == addr or a.get_attr("IFA_ADDRESS") == addr:
                link = ipr.get_links(a["index"])[0]
                return int(link.get_attr("IFLA_MTU"))
    raise errors.NotFoundError("underlay address", addr,
                               hint="the node's data path address must be on one of its links")


@dataclass(frozen=True)
class Peer:
    """Another node with endpoints on a network: its underlay address and their addresses."""

    node: str
    addr: Address
    ips: tuple[Address, ...] = ()


def parse_peers(peers: object, subnet: ipaddress.IPv4Network | None = None) -> list[Peer]:
    """The snapshot's ``[{"node", "addr", "ips"}]`` checked (InvalidArgumentError naming
    the bad entry); ``ips`` outside ``subnet`` are refused (they could steer another
    network's traffic)."""
    if not isinstance(peers, list):
        raise errors.InvalidArgumentError("peers", "must be a list of objects")
    out: list[Peer] = []
    for i, p in enumerate(peers):
        if not isinstance(p, dict):
            raise errors.InvalidArgumentError(f"peers[{i}]", "must be an object")
        node = p.get("node", "")
        if not isinstance(node, str):
            raise errors.InvalidArgumentError(f"peers[{i}].node", "must be a string")
        addr = _ipv4(p.get("addr"), f"peers[{i}].addr")
        ips_in = p.get("ips") or []
        if not isinstance(ips_in, list):
            raise errors.InvalidArgumentError(f"peers[{i}].ips", "must be a list")
        ips = []
        for ip in ips_in:
            a = _ipv4(ip.split("/")[0] if isinstance(ip, str) else ip, f"peers[{i}].ips")
            if subnet is not None and a not in subnet:
                raise errors.InvalidArgumentError(f"peers[{i}].ips",
                                                  f"{a} is not in the network's subnet {subnet}")
            ips.append(a)
        out.append(Peer(node, addr, tuple(ips)))
    return out


# --- kernel objects -------------------------------------------------------------------

def _nlerr(err: NetlinkError, op: str, target: str) -> errors.LabkitError:
    if err.code == errno.EEXIST:
        return errors.AlreadyExistsError("link", target)
    return errors.from_errno(err.code, op, target=target)


def _vxlan_matches(ipr: IPRoute, idx: int, vni: int, local: str, port: int) -> bool:
    link = ipr.get_links(idx)[0]
    info = link.get_attr("IFLA_LINKINFO")
    if info is None or info.get_attr("IFLA_INFO_KIND") != "vxlan":
        return False
    data = info.get_attr("IFLA_INFO_DATA")
    return bool(data is not None and data.get_attr("IFLA_VXLAN_ID") == vni
                and data.get_attr("IFLA_VXLAN_LOCAL") == local
                and data.get_attr("IFLA_VXLAN_PORT") == port)


def ensure_links(vni: int, local_addr: str, data_port: int, mtu: int) -> None:
    """Bridge and VXLAN link of ``vni`` made, or adopted when they are there already (a
    daemon restart); a VXLAN link with another local address or port is made again."""
    bname, vname = bridge_name(vni), vxlan_name(vni)
    local = str(_ipv4(local_addr, "local address"))
    with IPRoute() as ipr:
        made: list[int] = []
        try:
            b = _index(ipr, bname)
            if b is None:
                try:
                    ipr.link("add", ifname=bname, kind="bridge", address=br.mac_for(None),
                             mtu=mtu)
                except NetlinkError as err:
                    raise _nlerr(err, "RTM_NEWLINK", bname) from err
                b = _index(ipr, bname)
                assert b is not None
                made.append(b)
                _no_ipv6(bname)
            else:
                ipr.link("set", index=b, mtu=mtu)
            v = _index(ipr, vname)
            if v is not None and not _vxlan_matches(ipr, v, vni, local, data_port):
                ipr.link("del", index=v)
                v = None
            if v is None:
                try:
                    ipr.link("add", ifname=vname, kind="vxlan", vxlan_id=vni,
                             vxlan_local=local, vxlan_port=data_port, vxlan_learning=0,
                             mtu=mtu)
                except NetlinkError as err:
                    raise _nlerr(err, "RTM_NEWLINK", vname) from err
                v = _index(ipr, vname)
                assert v is not None
                made.append(v)
                _no_ipv6(vname)
            ipr.link("set", index=v, master=b, mtu=mtu, state="up")
            ipr.link("set", index=b, state="up")
        except BaseException:
            for idx in reversed(made):
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", index=idx)
            raise


def _no_ipv6(ifname: str) -> None:
    # No IPv6 link-local address on the overlay links: the kernel would otherwise send
    # router solicitations and DAD probes over VXLAN to every peer (ip-sysctl.rst
    # disable_ipv6).  /proc/sys/net is the calling thread's namespace.
    with contextlib.suppress(OSError), \
            open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
        f.write("1")


def delete_links(vni: int) -> None:
    """VXLAN link then bridge (ConflictError while a container's veth is still on it)."""
    with IPRoute() as ipr:
        b = _index(ipr, bridge_name(vni))
        v = _index(ipr, vxlan_name(vni))
        if b is not None:
            ports = [p.get_attr("IFLA_IFNAME") for p in ipr.get_links()
                     if p.get_attr("IFLA_MASTER") == b and p["index"] != v]
            if ports:
                raise errors.ConflictError(f"bridge {bridge_name(vni)} still has ports: "
                                           f"{', '.join(ports)}")
        for idx in (v, b):
            if idx is not None:
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", index=idx)


def _fdb_entries(ipr: IPRoute, vx: int) -> set[tuple[str, str]]:
    out = set()
    for e in ipr.fdb("dump", ifindex=vx):
        if e["ifindex"] != vx:
            continue
        mac, dst = e.get_attr("NDA_LLADDR"), e.get_attr("NDA_DST")
        if mac and dst:
            out.add((mac.lower(), dst))
    return out


def set_fdb(vni: int, peers: Sequence[Peer]) -> None:
    """Make the VXLAN link's forwarding entries exactly: per peer the all-zero MAC (flood)
    and one entry per remote address's MAC.  New entries go in before stale ones go, so a
    peer that stays never loses its entries."""
    want: set[tuple[str, str]] = set()
    for p in peers:
        want.add((ZERO_MAC, str(p.addr)))
        for ip in p.ips:
            want.add((br.mac_for(ip), str(p.addr)))
    with IPRoute() as ipr:
        vx = _index(ipr, vxlan_name(vni))
        if vx is None:
            raise errors.NotFoundError("vxlan link", vxlan_name(vni))
        have = _fdb_entries(ipr, vx)
        for mac, dst in sorted(want - have):
            # NLM_F_APPEND for the all-zero MAC (several destinations: `bridge fdb
            # append`); a unicast MAC has one destination, replaced if it moved node
            cmd = "append" if mac == ZERO_MAC else "replace"
            try:
                ipr.fdb(cmd, ifindex=vx, lladdr=mac, dst=dst, state=NUD_PERMANENT,
                        flags=NTF_SELF)
            except NetlinkError as err:
                raise errors.from_errno(err.code, "RTM_NEWNEIGH", target=f"{mac} dst {dst}"
                                        ) from err
        for mac, dst in sorted(have - want):
            with contextlib.suppress(NetlinkError):
                ipr.fdb("del", ifindex=vx, lladdr=mac, dst=dst, flags=NTF_SELF)


def set_bridge_address(vni: int, cidr: str | None) -> None:
    """The node's own address on the network's bridge (ingress), replacing any other;
    the bridge's MAC becomes the one derived from it, so peers' per-MAC entries find it."""
    iface = None
    if cidr is not None:
        try:
            iface = ipaddress.IPv4Interface(cidr)
        except ValueError:
            raise errors.InvalidArgumentError("address", f"{cidr!r} is not an IPv4 "
                                              "address/prefix") from None
    with IPRoute() as ipr:
        b = _index(ipr, bridge_name(vni))
        if b is None:
            raise errors.NotFoundError("bridge", bridge_name(vni))
        have = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=b,
                                                                                 family=2)]
        for addr, plen in have:
            if iface is None or (addr, plen) != (str(iface.ip), iface.network.prefixlen):
                ipr.addr("del", index=b, address=addr, prefixlen=plen)
        if iface is not None:
            ipr.link("set", index=b, address=br.mac_for(iface.ip))
            if (str(iface.ip), iface.network.prefixlen) not in have:
                ipr.addr("add", index=b, address=str(iface.ip),
                         prefixlen=iface.network.prefixlen)


# --- the driver -----------------------------------------------------------------------

@dataclass
class _Net:
    vni: int
    encrypted: bool
    subnet: ipaddress.IPv4Network
    mtu: int
    peers: list[Peer] = field(default_factory=list)
    # address -> endpoint id: the node's own check that two local containers do not get
    # the same address (the swarm's allocator is the authority; this is not persisted)
    held: dict[Address, str] = field(default_factory=dict)


def parse_spec(spec: NetworkSpec) -> tuple[int, bool, int | None, ipaddress.IPv4Network,
                                           Address]:
    """VNI, encryption, MTU option, subnet and gateway of an overlay ``spec``."""
    if spec.driver != "overlay":
        raise errors.InvalidArgumentError("driver", f"{spec.driver!r} is not overlay")
    unknown = sorted(set(spec.options) - {OPT_VNI, OPT_MTU, OPT_ENCRYPTED})
    if unknown:
        raise errors.InvalidArgumentError(
            "options", f"the overlay driver does not support option(s) {', '.join(unknown)}")
    raw = spec.options.get(OPT_VNI, "")
    try:
        vni = _vni(int(raw.split(",")[0]))
    except ValueError:
        raise errors.InvalidArgumentError(OPT_VNI, f"{raw!r} is not a VXLAN id") from None
    mtu: int | None = None
    if spec.options.get(OPT_MTU):
        try:
            mtu = int(spec.options[OPT_MTU])
        except ValueError:
            mtu = -1
        if not 68 <= mtu <= 65535:  # IPv4's minimum (RFC 791) .. the netdev maximum
            raise errors.InvalidArgumentError(OPT_MTU, f"{spec.options[OPT_MTU]!r} is not "
                                              "an MTU between 68 and 65535")
    if len(spec.ipam) != 1 or not spec.ipam[0].subnet:
        raise errors.InvalidArgumentError("IPAM", "a swarm network has exactly one IPv4 "
                                          "subnet, given by the managers")
    try:
        subnet = ipaddress.IPv4Network(spec.ipam[0].subnet)
    except ValueError:
        raise errors.InvalidArgumentError("Subnet", f"{spec.ipam[0].subnet!r} is not an IPv4 "
                                          "subnet") from None
    gw = _ipv4(spec.ipam[0].gateway or str(subnet.network_address + 1), "Gateway")
    if gw not in subnet:
        raise errors.InvalidArgumentError("Gateway", f"{gw} is not in {subnet}")
    return vni, OPT_ENCRYPTED in spec.options, mtu, subnet, gw


class OverlayDriver:
    """Docker's ``overlay`` driver for swarm-scoped networks (see the module docstring).

    ``configure(local_addr, data_port)`` first: the node's underlay address and the swarm's
    VXLAN port, shared by every network of the node.  Not thread-safe on its own: the
    Networks service calls it under its kernel lock."""

    name = "overlay"

    def __init__(self) -> None:
        self.local_addr: str | None = None
        self.data_port = 4789
        self._nets: dict[str, _Net] = {}
        self.keys: list[xfrm.Key] = []  # first = primary
        self.key_peers: list[str] = []
        self._lock = threading.RLock()

    def configure(self, local_addr: str, data_port: int) -> bool:
        """Set the node's underlay address and data port; True when they changed (every
        network's VXLAN link must then be made again: ``restore_network``)."""
        local = str(_ipv4(local_addr, "local address"))
        if isinstance(data_port, bool) or not isinstance(data_port, int) \
                or not 1 <= data_port <= 65535:
            raise errors.InvalidArgumentError("data path port", f"{data_port!r} is not a "
                                              "UDP port")
        changed = (local, data_port) != (self.local_addr, self.data_port)
        self.local_addr, self.data_port = local, data_port
        return changed

    def _local(self) -> str:
        if self.local_addr is None:
            raise errors.InvalidArgumentError("local address", "the overlay driver has no "
                                              "underlay address yet (configure() first)")
        return self.local_addr

    def vni_of(self, network_id: str) -> int:
        return self._get(network_id).vni

    def _get(self, network_id: str) -> _Net:
        try:
            return self._nets[network_id]
        except KeyError:
            raise errors.NotFoundError("overlay network", network_id) from None

    def encrypted_vnis(self) -> list[int]:
        return sorted(n.vni for n in self._nets.values() if n.encrypted)

    def _sync_nft(self) -> None:
        xfrm.program_vnis(self.encrypted_vnis(), self.data_port)

    # -- networks
    def create_network(self, spec: NetworkSpec) -> Network:
        """Bridge + VXLAN link (made or adopted: idempotent), the encrypted VNIs' nft
        rules in step.  All or nothing for links this call made."""
        vni, encrypted, mtu_opt, subnet, gw = parse_spec(spec)
        local = self._local()
        for nid, n in self._nets.items():
            if n.vni == vni and nid != spec.id:
                raise errors.ConflictError(f"VXLAN id {vni} is already used by network {nid}")
        if encrypted:
            xfrm.check_esp()  # refused up front, not a network whose traffic all drops
        mtu = mtu_opt or overlay_mtu(underlay_mtu(local), encrypted=encrypted)
        with self._lock:
            ensure_links(vni, local, self.data_port, mtu)
            old = self._nets.get(spec.id)
            self._nets[spec.id] = _Net(vni, encrypted, subnet, mtu,
                                       old.peers if old else [], old.held if old else {})
            try:
                if encrypted:
                    # the block policy before the marks: from the first packet on, this
                    # network's traffic goes through ESP or nowhere, keys or not
                    xfrm.ensure_block(self.data_port)
                self._sync_nft()
                if old is not None and old.peers:
                    set_fdb(vni, old.peers)
            except BaseException:
                if old is None:
                    self._nets.pop(spec.id, None)
                    with contextlib.suppress(errors.LabkitError):
                        delete_links(vni)
                raise
        pool = Pool(subnet=subnet, gateway=gw, configured=True)
        return Network(id=spec.id, name=spec.name, driver="overlay", bridge=bridge_name(vni),
                       pools=(pool,), internal=spec.internal, mtu=mtu)

    restore_network = create_network

    def delete_network(self, network: Network) -> None:
        """Refused while a local endpoint is attached; then links, nft rules."""
        n = self._nets.get(network.id)
        if n is not None and n.held:
            raise errors.ConflictError(f"error while removing network: network {network.name} "
                                       f"id {network.id} has active endpoints")
        vni = n.vni if n is not None else int(network.bridge.removeprefix("lkov"))
        delete_links(vni)
        self._nets.pop(network.id, None)
        self._sync_nft()

    def set_peers(self, network_id: str, peers: Sequence[Peer]) -> None:
        """Replace the network's peers (FDB).  A new peer of an encrypted network gets
        its SAs at once from the keys already known, so it is not blocked until the next
        ``set_keys``."""
        n = self._get(network_id)
        set_fdb(n.vni, peers)
        n.peers = list(peers)
        if n.encrypted and self.keys:
            more = {str(p.addr) for p in peers} - set(self.key_peers)
            if more:
                self.set_keys(self.keys, [*self.key_peers, *more])

    def peers(self, network_id: str) -> list[Peer]:
        return list(self._get(network_id).peers)

    def set_keys(self, keys: Sequence[xfrm.Key], peer_addrs: Iterable[str]) -> None:
        """ESP states and policies to ``peer_addrs`` for ``keys`` (first = primary)."""
        local = self._local()
        peers = sorted({str(_ipv4(p, "peer address")) for p in peer_addrs} - {local})
        xfrm.apply(local, peers, keys, self.data_port)
        self.keys, self.key_peers = list(keys), peers

    def clear_keys(self) -> None:
        """Every ESP state and policy of labkit's gone (the node left the swarm)."""
        xfrm.clear()
        self.keys, self.key_peers = [], []

    # -- endpoints
    def attach(self, network: Network, spec: EndpointSpec) -> Endpoint:
        """A veth pair on the network's bridge with the swarm-given address (required),
        the MAC derived from it, the network's MTU, no gateway."""
        n = self._get(network.id)
        if spec.ipv6_address is not None:
            raise errors.InvalidArgumentError("ip6", f"swarm network {network.name} is "
                                              "IPv4 only")
        if spec.ipv4_address is None:
            raise errors.InvalidArgumentError(
                "ip", f"an address on swarm network {network.name} is given by the swarm "
                "managers", hint="the agent passes the task's address as IPv4Address")
        ip = _ipv4(spec.ipv4_address.split("/")[0], "ip")
        if ip not in n.subnet or ip in (n.subnet.network_address, n.subnet.broadcast_address):
            raise errors.InvalidArgumentError("ip", f"{ip} is not a host address of "
                                              f"{n.subnet}")
        if ip in n.held:
            raise errors.ConflictError(f"Address already in use: {ip} on {network.name}")
        iface = ipaddress.IPv4Interface(f"{ip}/{n.subnet.prefixlen}")
        att = br.attach(network.bridge, br.veth_name(spec.endpoint_id), spec.netns, [iface],
                        gateways=(), ifname=spec.ifname, mac=spec.mac_address,
                        mtu=n.mtu)
        n.held[ip] = spec.endpoint_id
        return Endpoint(id=spec.endpoint_id, network_id=network.id,
                        host_ifname=att.host_ifname, ifname=att.ifname, mac=att.mac,
                        addresses=att.addresses, gateways=())

    def detach(self, network: Network, endpoint: Endpoint, *, netns_gone: bool = False,
               netns: str | None = None) -> None:
        if not netns_gone:
            br.detach(endpoint.host_ifname)
        n = self._nets.get(network.id)
        if n is not None:
            for iface in endpoint.addresses:
                if n.held.get(iface.ip) == endpoint.id:  # type: ignore[arg-type]
                    del n.held[iface.ip]  # type: ignore[arg-type]

    def restore_endpoint(self, endpoint: Endpoint, netns: str) -> None:
        """After a daemon restart: a live endpoint's address counts as held again."""
        n = self._nets.get(endpoint.network_id)
        if n is not None:
            for iface in endpoint.addresses:
                if isinstance(iface, ipaddress.IPv4Interface):
                    n.held[iface.ip] = endpoint.id

    def reconcile(self, used: Mapping[str, Iterable[str]]) -> None:
        """After a daemon restart: nothing persisted, nothing to free."""


def _conforms(d: OverlayDriver) -> NetworkDriver:
    return d  # mypy checks here that OverlayDriver implements the protocol
