"""labkit's container networking: links, namespaces' plumbing, and (later) bridges, DNS, overlay.

Each link type lives in its own module and talks rtnetlink(7) through pyroute2:
``labkit.engine.net.ipvlan`` (ipvlan and macvlan).
"""
