"""Which address a node advertises to the swarm (Docker's --advertise-addr rules)."""

from __future__ import annotations

import ipaddress

import psutil

from labkit import errors
from labkit.engine.swarm.rpc.client import split_addr
from labkit.engine.swarm.state import JOIN_PORT

__all__ = ["advertise_ip"]


def advertise_ip(advertise: str, listen_ip: str) -> str:
    """The IP this node tells the others, as Docker picks it: --advertise-addr (an IP, an
    IP:port or an interface name), else the listen IP, else this network namespace's one
    global address (labkit's own lk* links, its bridges and veths, do not count)."""
    cand = advertise.strip()
    if cand:
        host, _ = split_addr(cand, JOIN_PORT) if ":" in cand.rstrip("]") else (cand, 0)
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            addrs = psutil.net_if_addrs().get(host)
            if not addrs:
                raise errors.InvalidArgumentError(
                    "advertise address", f"{cand!r} is neither an IP address nor an interface")
            v4 = [a.address for a in addrs if a.family.name == "AF_INET"]
            if not v4:
                raise errors.InvalidArgumentError(
                    "advertise address", f"interface {host} has no IPv4 address")
            return v4[0]
    if listen_ip not in ("0.0.0.0", "::", ""):
        return listen_ip
    found = [(name, a.address) for name, addrs in psutil.net_if_addrs().items()
             if name != "lo" and not name.startswith("lk")
             for a in addrs if a.family.name == "AF_INET"]
    if not found:
        raise errors.InvalidArgumentError(
            "advertise address", "could not find the system's IP address - specify one with "
            "--advertise-addr")
    if len({a for _, a in found}) > 1:
        names = " and ".join(sorted({n for n, _ in found}))
        raise errors.InvalidArgumentError(
            "advertise address", "could not choose an IP address to advertise since this "
            f"system has multiple addresses on different interfaces ({names}) - specify one "
            "with --advertise-addr")
    return found[0][1]
