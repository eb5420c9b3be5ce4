"""Docker's IPAM for local networks: pools per network, addresses per endpoint, on disk.

What it does, as moby's default IPAM driver (libnetwork/ipams/defaultipam) does it:

* A network holds one or more pools (IPv4 and/or IPv6), each a subnet with an optional
  ip-range (dynamic allocation stays inside it; ``--ip`` may name any host address of the
  subnet, which is how users keep static addresses outside the dynamic range), a gateway
  (default: the first free address of the ip-range, else of the subnet) and auxiliary
  addresses (reserved, never handed out).
* A network given no subnet takes the first default pool that overlaps nothing in use (and
  nothing in ``avoid``, e.g. the host's routes): moby's ``localScopeDefaultNetworks``
  (libnetwork/ipamutils): 172.17/16, 172.18/16, 172.19/16, 172.20-31 as /16s, then
  192.168.0.0/16 split into /20s.  IPv6 defaults to a ULA /48 derived from a host id
  (RFC 4193 section 3.2, as moby derives one from the daemon's host id) split into /64s.
* Addresses are handed out serially (moby asks for ``com.docker.network.ipam.serial``): the
  next free address after the last one given, wrapping, so a released address is not
  reused at once by the next container.
* Refusals use Docker's words (libnetwork/ipamapi/contract.go and api/types/network):
  "Pool overlaps with other one on this address space", "Address already in use", "No
  available addresses on this pool", "requested address is out of range", "invalid subnet
  X: invalid CIDR address: X", "invalid gateway X: parent subnet Y doesn't contain this
  address", ... (validation ones under moby's head line "invalid network config:").
  Each is a typed error from labkit.errors' tree with ``http_status`` set to moby's code.

Persistence: the whole state is one JSON file (``ipam.json``, mode 0600) in a directory the
caller gives, rewritten atomically (temp file, fsync, rename(2)) after every change, so a
crash leaves the old or the new state, never half of one.  After a daemon restart the engine
calls ``reconcile({network_id: addresses its live containers hold})``: every container
address nobody holds is freed, so nothing leaks across restarts.

Not thread-safe: the engine owns one ``Ipam`` per state dir and calls it from its loop.

Seam for the engine::

    ipam = Ipam(state_dir)                                  # loads ipam.json if present
    pools = ipam.add_network(net_id, [PoolConfig(subnet="10.9.0.0/24")], ipv6=False)
    addr = ipam.allocate(net_id, owner=endpoint_id)         # or address="10.9.0.7"
    ipam.release(net_id, addr); ipam.remove_network(net_id)
    ipam.reconcile({net_id: [addresses held]})              # after a restart
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors

__all__ = [
    "DEFAULT_POOLS_V4",
    "STATE_FILE",
    "Address",
    "AddressInUseError",
    "InvalidIpamConfigError",
    "Ipam",
    "Network",
    "NoAvailableAddressError",
    "NoAvailablePoolError",
    "OutOfRangeError",
    "Pool",
    "PoolConfig",
    "PoolOverlapError",
    "default_pools_v6",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

STATE_FILE = "ipam.json"
_STATE_VERSION = 1


def _split(base: str, size: int) -> list[ipaddress.IPv4Network]:
    return list(ipaddress.IPv4Network(base).subnets(new_prefix=size))


# moby libnetwork/ipamutils/utils.go, localScopeDefaultNetworks: 31 candidate subnets.
DEFAULT_POOLS_V4: tuple[ipaddress.IPv4Network, ...] = (
    *_split("172.17.0.0/16", 16), *_split("172.18.0.0/16", 16), *_split("172.19.0.0/16", 16),
    *_split("172.20.0.0/14", 16), *_split("172.24.0.0/14", 16), *_split("172.28.0.0/14", 16),
    *_split("192.168.0.0/16", 20),
)


def default_pools_v6(host_id: str) -> Iterator[ipaddress.IPv6Network]:
    """A ULA /48 (fd00::/8 + a 40-bit global id, RFC 4193 3.2) from ``host_id``, as /64s.

    The global id is the first 40 bits of SHA-256(host_id): stable for one host, unlikely to
    collide with another's (the RFC's point), like moby's deriveULABaseNetwork."""
    gid = hashlib.sha256(host_id.encode()).digest()[:5]
    base = ipaddress.IPv6Network((b"\xfd" + gid + bytes(10), 48))
    return base.subnets(new_prefix=64)


# --- typed errors, carrying Docker's words as their message ----------------------------

class InvalidIpamConfigError(errors.InvalidArgumentError):
    """A subnet, gateway, ip-range or aux address that does not parse or does not fit."""

    http_status = 400

    def __init__(self, what: str, problem: str, hint: str | None = None) -> None:
        super().__init__(what, problem, hint)
        self.args = (problem,)  # the message is Docker's sentence, unprefixed


class OutOfRangeError(InvalidIpamConfigError):
    """``--ip`` outside every subnet of the network (ipamapi.ErrIPOutOfRange)."""


class PoolOverlapError(errors.ForbiddenError):
    """ipamapi.ErrPoolOverlap (a Forbidden error in moby: 403)."""

    http_status = 403


class AddressInUseError(errors.ConflictError):
    """ipamapi.ErrIPAlreadyAllocated (403)."""

    http_status = 403


class NoAvailableAddressError(errors.ConflictError):
    """ipamapi.ErrNoAvailableIPs (an Unavailable error: 503)."""

    http_status = 503


class NoAvailablePoolError(errors.ConflictError):
    """No default pool is free (moby's ipamapi.ErrNoMoreSubnets family, 503)."""

    http_status = 503


# --- model ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolConfig:
    """One IPAM config entry as the API carries it (all strings, all optional)."""

    subnet: str | None = None
    gateway: str | None = None
    ip_range: str | None = None
    aux_addresses: Mapping[str, str] = field(default_factory=dict)
    family: int | None = None  # 4 or 6; only needed when subnet is None


@dataclass
class Pool:
    """One allocated pool: ``allocated`` maps address -> owner (endpoint id)."""

    subnet: Network
    gateway: Address
    ip_range: Network | None = None
    aux_addresses: dict[str, Address] = field(default_factory=dict)
    allocated: dict[Address, str] = field(default_factory=dict)
    last: Address | None = None
    configured: bool = False  # the user gave the subnet (--ip is allowed only then)

    @property
    def family(self) -> int:
        return self.subnet.version

    def reserved(self) -> set[Address]:
        return {self.gateway, *self.aux_addresses.values()}

    def _to_json(self) -> dict[str, Any]:
        return {"subnet": str(self.subnet), "gateway": str(self.gateway),
                "ip_range": str(self.ip_range) if self.ip_range else None,
                "aux_addresses": {k: str(v) for k, v in self.aux_addresses.items()},
                "allocated": {str(a): o for a, o in self.allocated.items()},
                "last": str(self.last) if self.last else None, "configured": self.configured}

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> Pool:
        ip = ipaddress.ip_address
        return cls(subnet=ipaddress.ip_network(d["subnet"]), gateway=ip(d["gateway"]),
                   ip_range=ipaddress.ip_network(d["ip_range"]) if d.get("ip_range") else None,
                   aux_addresses={k: ip(v) for k, v in d.get("aux_addresses", {}).items()},
                   allocated={ip(a): str(o) for a, o in d.get("allocated", {}).items()},
                   last=ip(d["last"]) if d.get("last") else None,
                   configured=bool(d.get("configured", False)))


def _hosts_bounds(net: Network) -> tuple[int, int]:
    """First and last assignable address of ``net`` as integers.

    IPv4 loses the network and broadcast addresses except on /31 and /32 (RFC 3021); IPv6
    loses the Subnet-Router anycast address (RFC 4291 2.6.1), the first one."""
    lo, hi = int(net.network_address), int(net.broadcast_address)
    if net.version == 4 and net.prefixlen >= 31:
        return lo, hi
    return lo + 1, (hi - 1 if net.version == 4 else hi)


def _cfg_err(what: str, sentence: str) -> InvalidIpamConfigError:
    # moby's daemon (validateIpamConfig) joins its findings under this head line.
    return InvalidIpamConfigError(what, f"invalid network config:\n{sentence}")


def _parse_subnet(s: str, what: str = "subnet") -> Network:
    try:
        net = ipaddress.ip_network(s, strict=False)
    except ValueError:
        raise _cfg_err(what, f"invalid {what} {s}: invalid CIDR address: {s}") from None
    if "/" not in s:
        raise _cfg_err(what, f"invalid {what} {s}: invalid CIDR address: {s}")
    if ipaddress.ip_interface(s).ip != net.network_address:
        raise _cfg_err(what, f"invalid {what} {s}: it should be {net}")
    return net


def _parse_addr(s: str, what: str, label: str, subnet: Network) -> Address:
    """``label`` is what moby names in the message: the address, or an aux address's key."""
    try:
        a = ipaddress.ip_address(s)
    except ValueError:
        raise _cfg_err(what, f"invalid {what} {label}: ParseAddr({s!r}): unable to parse "
                       "IP") from None
    if a.version != subnet.version:
        raise _cfg_err(what, f"invalid {what} {label}: parent subnet is an "
                       f"IPv{subnet.version} block")
    if a not in subnet:
        raise _cfg_err(what, f"invalid {what} {label}: parent subnet {subnet} doesn't "
                       "contain this address")
    return a


def _overlaps(a: Network, b: Network) -> bool:
    return a.version == b.version and a.overlaps(b)


class Ipam:
    """Pools and addresses of every local network, persisted in ``state_dir/ipam.json``."""

    def __init__(self, state_dir: str | os.PathLike[str], *,
                 default_pools_v4: Sequence[ipaddress.IPv4Network] = DEFAULT_POOLS_V4,
                 host_id: str = "labkit") -> None:
        self._dir = Path(state_dir)
        self._path = self._dir / STATE_FILE
        self._v4 = tuple(default_pools_v4)
        self._host_id = host_id
        self._nets: dict[str, list[Pool]] = {}
        # subnets that default pools must also avoid, asked at each add_network (the
        # daemon passes the routes of its namespace, as moby checks the host's routes)
        self.avoid_always: Callable[[], Iterable[str]] | None = None
        if self._path.exists():
            self._load()

    # --- persistence

    def _load(self) -> None:
        raw = json.loads(self._path.read_text())
        if raw.get("version") != _STATE_VERSION:
            raise errors.UnsupportedError("ipam state", f"version {raw.get('version')!r} "
                                          f"in {self._path}", hint="remove the file to reset")
        self._nets = {n: [Pool._from_json(p) for p in ps] for n, ps in raw["networks"].items()}

    def _save(self, sync: bool = True) -> None:
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = json.dumps({"version": _STATE_VERSION, "networks": {
            n: [p._to_json() for p in ps] for n, ps in self._nets.items()}}, indent=1).encode()
        tmp = self._path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        # O_NOFOLLOW|O_EXCL-free O_TRUNC on our own temp name; 0600 set by open(2), not later.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if sync:  # rename(2) is atomic, but only durable data survives a crash
                    f.flush()
                    os.fsync(f.fileno())
            os.rename(tmp, self._path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # --- pools

    def networks(self) -> dict[str, list[Pool]]:
        """Every network's pools (the live objects: do not mutate)."""
        return dict(self._nets)

    def pools(self, network_id: str) -> list[Pool]:
        try:
            return list(self._nets[network_id])
        except KeyError:
            raise errors.NotFoundError("network", network_id) from None

    def _in_use(self) -> Iterator[Network]:
        for ps in self._nets.values():
            for p in ps:
                yield p.subnet

    def _build(self, cfg: PoolConfig, taken: list[Network]) -> Pool:
        if cfg.subnet is None:
            if cfg.gateway or cfg.ip_range or cfg.aux_addresses:
                raise InvalidIpamConfigError(
                    "subnet", "user specified IP address is supported only when connecting to "
                    "networks with user configured subnets")
            subnet = self._pick_default(cfg.family or 4, taken)
        else:
            subnet = _parse_subnet(cfg.subnet)
            if cfg.family is not None and cfg.family != subnet.version:
                raise _cfg_err("subnet", f"invalid subnet {subnet}: expected an IPv{cfg.family} "
                               "subnet")
            if any(_overlaps(subnet, t) for t in taken):
                raise PoolOverlapError("Pool overlaps with other one on this address space")
        ip_range: Network | None = None
        if cfg.ip_range:
            ip_range = _parse_subnet(cfg.ip_range, "ip-range")
            r = cfg.ip_range
            if ip_range.version != subnet.version:
                raise _cfg_err("ip-range", f"invalid ip-range {r}: parent subnet is an "
                               f"IPv{subnet.version} block")
            if ip_range.prefixlen < subnet.prefixlen:
                raise _cfg_err("ip-range", f"invalid ip-range {r}: CIDR block is bigger than "
                               f"its parent subnet {subnet}")
            if not _overlaps(ip_range, subnet):
                raise _cfg_err("ip-range", f"invalid ip-range {r}: parent subnet {subnet} "
                               "doesn't contain ip-range")
        aux = {k: _parse_addr(v, "auxiliary address", k, subnet)
               for k, v in cfg.aux_addresses.items()}
        if cfg.gateway:
            gw = _parse_addr(cfg.gateway, "gateway", cfg.gateway, subnet)
        else:
            lo, hi = _hosts_bounds(ip_range or subnet)
            lo = max(lo, _hosts_bounds(subnet)[0])
            free = next((a for a in range(lo, hi + 1)
                         if ipaddress.ip_address(a) not in aux.values()), None)
            if free is None:
                raise NoAvailableAddressError("No available addresses on this pool")
            gw = ipaddress.ip_address(free) if subnet.version == 4 else ipaddress.IPv6Address(free)
        return Pool(subnet=subnet, gateway=gw, ip_range=ip_range, aux_addresses=aux,
                    configured=cfg.subnet is not None)

    def _pick_default(self, family: int, taken: list[Network]) -> Network:
        cands: Iterable[Network] = self._v4 if family == 4 else default_pools_v6(self._host_id)
        for c in cands:
            if not any(_overlaps(c, t) for t in taken):
                return c
        raise NoAvailablePoolError(
            f"could not find an available, non-overlapping IPv{family} address pool among the "
            "defaults to assign to the network")

    def add_network(self, network_id: str, configs: Sequence[PoolConfig] = (), *,
                    ipv4: bool = True, ipv6: bool = False,
                    avoid: Iterable[str | Network] = ()) -> list[Pool]:
        """Give ``network_id`` its pools: the configs given, plus a default pool per enabled
        family that has none.  All or nothing: on any error no pool was taken.

        ``avoid``: subnets defaults must not overlap (the host's routes; moby checks them).
        Raises AlreadyExistsError, InvalidIpamConfigError, PoolOverlapError,
        NoAvailablePoolError."""
        if network_id in self._nets:
            raise errors.AlreadyExistsError("network", network_id)
        taken = list(self._in_use())
        extra = list(self.avoid_always()) if self.avoid_always is not None else []
        avoided = [ipaddress.ip_network(a, strict=False) if isinstance(a, str) else a
                   for a in (*avoid, *extra)]
        new: list[Pool] = []
        for cfg in configs:
            p = self._build(cfg, taken + ([] if cfg.subnet else avoided))
            if p.family == 6 and not ipv6:
                raise InvalidIpamConfigError(
                    "subnet", "IPv6 has not been enabled for this network, but an IPv6 subnet "
                    "has been provided")
            new.append(p)
            taken.append(p.subnet)
        for fam, on in ((4, ipv4), (6, ipv6)):
            if on and not any(p.family == fam for p in new):
                p = self._build(PoolConfig(family=fam), taken + avoided)
                new.append(p)
                taken.append(p.subnet)
        self._nets[network_id] = new
        self._save()
        return list(new)

    def remove_network(self, network_id: str) -> None:
        """Free the network's pools.  Raises NotFoundError, or ConflictError while a
        container still holds one of its addresses."""
        pools = self.pools(network_id)
        held = [str(a) for p in pools for a in p.allocated]
        if held:
            raise errors.ConflictError(f"network {network_id} has active endpoints "
                                       f"({', '.join(held)})")
        del self._nets[network_id]
        self._save()

    # --- addresses

    def allocate(self, network_id: str, owner: str, *, address: str | None = None,
                 family: int = 4) -> Address:
        """Give ``owner`` ``address`` (``--ip``/``--ip6``) or the next free one of ``family``.

        Raises NotFoundError, OutOfRangeError, AddressInUseError, NoAvailableAddressError."""
        pools = self.pools(network_id)
        if address is not None:
            try:
                want = ipaddress.ip_address(address)
            except ValueError:
                raise InvalidIpamConfigError("ip", f"invalid IP address {address!r}") from None
            pool = next((p for p in pools if want in p.subnet), None)
            if pool is None:
                raise OutOfRangeError("ip", "no configured subnet or ip-range contain the IP "
                                      f"address {want}")
            lo, hi = _hosts_bounds(pool.subnet)
            if not lo <= int(want) <= hi:
                raise OutOfRangeError("ip", f"requested address {want} is out of range")
            if want in pool.allocated or want in pool.reserved():
                raise AddressInUseError("Address already in use")
            got = want
        else:
            cands = [p for p in pools if p.family == family]
            if not cands:
                raise InvalidIpamConfigError(
                    "network", f"network {network_id} has no IPv{family} pool")
            found = next(((p, a) for p in cands if (a := self._next_free(p)) is not None), None)
            if found is None:
                raise NoAvailableAddressError("No available addresses on this pool")
            pool, got = found
        pool.allocated[got] = owner
        pool.last = got
        # No fsync for an address: after a machine crash no container runs, and after a
        # daemon crash the page cache has it; reconcile() rebuilds them from the containers.
        self._save(sync=False)
        return got

    @staticmethod
    def _next_free(pool: Pool) -> Address | None:
        lo, hi = _hosts_bounds(pool.ip_range or pool.subnet)
        slo, shi = _hosts_bounds(pool.subnet)
        lo, hi = max(lo, slo), min(hi, shi)
        size = hi - lo + 1
        busy = {int(a) for a in (*pool.allocated, *pool.reserved())}
        if size <= 0 or sum(1 for b in busy if lo <= b <= hi) >= size:
            return None
        start = int(pool.last) + 1 if pool.last is not None else lo
        if not lo <= start <= hi:
            start = lo
        # At most len(busy)+1 steps: the free one is found before every busy one is passed.
        cur = start
        while cur in busy:
            cur = lo if cur >= hi else cur + 1
        return ipaddress.ip_address(cur) if pool.family == 4 else ipaddress.IPv6Address(cur)

    def release(self, network_id: str, address: str | Address) -> None:
        """Free one container address.  Raises NotFoundError if it was not allocated."""
        a = ipaddress.ip_address(address)
        for p in self.pools(network_id):
            if a in p.allocated:
                del p.allocated[a]
                self._save(sync=False)
                return
        raise errors.NotFoundError("allocated address", f"{a} on network {network_id}")

    def reconcile(self, used: Mapping[str, Iterable[str | Address]]) -> list[tuple[str, Address]]:
        """After a restart: keep only the addresses live containers hold, per network.

        Every container address not listed in ``used`` is freed (networks absent from
        ``used`` lose all theirs); a listed address the state had lost is taken back for the
        owner "restored".  Returns the (network_id, address) pairs freed."""
        freed: list[tuple[str, Address]] = []
        for nid, pools in self._nets.items():
            held = {ipaddress.ip_address(a) for a in used.get(nid, ())}
            for p in pools:
                for a in list(p.allocated):
                    if a not in held:
                        del p.allocated[a]
                        freed.append((nid, a))
                for a in held:
                    if a in p.subnet and a not in p.allocated and a not in p.reserved():
                        p.allocated[a] = "restored"
        self._save()
        return freed
