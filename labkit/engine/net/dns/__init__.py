"""Embedded DNS of user-defined networks (Docker's 127.0.0.11), standalone.

Rooms: codec (RFC 1035 messages), table (a network's names, NetworkView), resolver (the
answers for one container, forwarding), server (127.0.0.11:53 in each container's netns,
served by the daemon's loop), redirect (Docker's random port + DNAT variant, opt-in with
DnsServer(redirect=True)), files (resolv.conf and /etc/hosts contents).

Seam for the engine (not wired into the daemon yet)::

    from labkit.engine.net import dns
    server = dns.DnsServer()                                  # once, in the daemon loop
    view = dns.NetworkView(net.name, [dns.Endpoint(name, cid, ipv4, ipv6, aliases)])
    rc = dns.resolv_conf(dns.parse_resolv_conf(host_text), embedded=True,
                         dns=opts.dns, dns_search=opts.dns_search, dns_options=opts.dns_opt)
    write(bundle/"resolv.conf", rc.content)
    write(bundle/"hosts", dns.hosts_file(hostname, [ip], [dns.parse_add_host(h) ...]))
    att = await server.attach(netns_path, view, rc.upstreams)  # after lo is up, before start
    view.update(endpoints)                                    # whenever the network changes
    await server.detach(att)                                  # container gone / disconnected
    view.set_services({"web": ["10.0.1.2"], "tasks.web": [...]}, {"10.0.1.3": "tasks.web"})
                                   # swarm networks: service records (engine.swarm.discovery)

The default bridge gets no attach() (Docker has no embedded DNS there) and
resolv_conf(..., embedded=False).
"""

from labkit.engine.net.dns.codec import FormatError
from labkit.engine.net.dns.files import (
    HostResolv,
    ResolvConf,
    hosts_file,
    parse_add_host,
    parse_resolv_conf,
    resolv_conf,
)
from labkit.engine.net.dns.resolver import Resolver, Upstream
from labkit.engine.net.dns.server import DNS_ADDRESS, Attachment, DnsServer
from labkit.engine.net.dns.table import Endpoint, NetworkView

__all__ = [
    "DNS_ADDRESS", "Attachment", "DnsServer", "Endpoint", "FormatError", "HostResolv",
    "NetworkView", "ResolvConf", "Resolver", "Upstream", "hosts_file", "parse_add_host",
    "parse_resolv_conf", "resolv_conf",
]
