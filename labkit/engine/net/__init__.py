"""labkit's container networking: links, namespaces' plumbing, and (later) bridges, DNS, overlay.

Each link type lives in its own module and talks rtnetlink(7) through pyroute2:
``labkit.engine.net.ipvlan`` (ipvlan and macvlan).

Packet filtering and NAT live in labkit's own nftables table (``table inet labkit``):
``labkit.engine.net.nft`` (port publishing, hairpin, masquerade, bridge isolation,
--internal; the Publisher seam) and ``labkit.engine.net.hostports`` (host-port
reservations in Docker's words, -P's ephemeral allocator).
"""
