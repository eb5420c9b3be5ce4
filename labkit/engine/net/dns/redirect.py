"""Docker's way to 127.0.0.11:53: listen on random ports, DNAT to them in the container's netns.

libnetwork's resolver binds 127.0.0.11:0 (UDP and TCP) and installs iptables DNAT rules in
the container's netns that send 127.0.0.11:53 to those ports, so port 53 stays free for
whatever the container runs (a dnsmasq binding 0.0.0.0:53 would otherwise get EADDRINUSE
against our 127.0.0.11:53).  labkit does the same with one nftables table of its own,
``ip lkdns``, in the container's netns only (never the host's): a nat chain on the output
hook (locally generated packets, nft(8) "NAT" section); conntrack rewrites the replies'
source port back to 53 by itself, so no SNAT rule is needed.

The ruleset goes to ``nft -f -`` run through nsenter(1) --net (a separate process: the
nft binary, not the python3-nftables binding, which is not in the venv).  Costs one
process per attach (a few ms), which is why DnsServer makes it optional.
"""

from __future__ import annotations

import shutil
import subprocess

from labkit import errors

__all__ = ["TABLE", "install", "remove"]

TABLE = "lkdns"


def _nft(netns_path: str, script: str, what: str) -> None:
    nsenter, nft = shutil.which("nsenter"), shutil.which("nft")
    if nsenter is None or nft is None:
        raise errors.UnsupportedError(
            "DNS redirect", "nft or nsenter not found", hint="apt-get install nftables util-linux")
    proc = subprocess.run([nsenter, f"--net={netns_path}", nft, "-f", "-"], input=script,
                          capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise errors.InvalidStateError(what, f"nft in {netns_path} failed: {proc.stderr.strip()}")


def install(netns_path: str, address: str, udp_port: int, tcp_port: int) -> None:
    """DNAT ``address``:53 to the given ports inside the netns (replacing an older table)."""
    for p in (udp_port, tcp_port):
        if not 0 < p < 65536:
            raise errors.InvalidArgumentError("DNS redirect port", str(p))
    script = (
        f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"   # idempotent replace
        f"table ip {TABLE} {{\n chain out {{\n"
        "  type nat hook output priority -100; policy accept;\n"
        f"  ip daddr {address} udp dport 53 dnat to {address}:{udp_port}\n"
        f"  ip daddr {address} tcp dport 53 dnat to {address}:{tcp_port}\n"
        " }\n}\n")
    _nft(netns_path, script, "DNS redirect")


def remove(netns_path: str) -> None:
    """Delete the table; nothing to do if it (or the netns) is gone already."""
    script = f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"
    try:
        _nft(netns_path, script, "DNS redirect")
    except errors.InvalidStateError:
        pass  # the netns vanished with its container: the table went with it
