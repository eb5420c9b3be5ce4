"""labkit's container networking: IPAM, the bridge driver, and the links beside it.

Modules (each talks rtnetlink(7) through pyroute2, inside whatever "host" network namespace
the daemon runs in):

* ``ipam``: Docker's local IPAM -- pools per network (subnet, gateway, ip-range, aux
  addresses), moby's default pools, serial address allocation, Docker's refusal words as
  typed errors, state in one atomic 0600 JSON file and ``reconcile()`` after a restart.
* ``bridge``: the bridge driver's kernel side -- a Linux bridge with the gateway(s), a veth
  pair per endpoint whose container end is created directly in the container's netns.
* ``driver``: the typed seam the engine calls (below).
* ``ipvlan``: ipvlan and macvlan links (used by the doctor, later by those drivers).
* ``macvlan``: Docker's macvlan and ipvlan drivers (MacvlanDriver, IpvlanDriver: the same
  NetworkDriver seam, ``-o parent/macvlan_mode/ipvlan_mode/ipvlan_flag``); ``lowerdev``:
  their kernel side (parent links, children made inside the container's netns).

The seam for the engine (labkit.engine.net.driver)::

    from labkit.engine.net.driver import BridgeDriver, NetworkSpec, EndpointSpec, check_driver
    from labkit.engine.net.ipam import Ipam, PoolConfig

    check_driver(name)                       # NotFoundError / UnsupportedError (ipvlan here)
    drv = BridgeDriver(Ipam(state_dir), host_netns=None)
    net = drv.create_network(NetworkSpec(id=..., name="mynet",
                                         ipam=[PoolConfig(subnet="10.9.0.0/24")]))
    ep = drv.attach(net, EndpointSpec(endpoint_id=..., netns="/proc/PID/ns/net",
                                      ipv4_address=None, mac_address=None))
    drv.detach(net, ep)                      # netns_gone=True: skip the ~20 ms RTM_DELLINK
    drv.delete_network(net)
    # after a daemon restart:
    net = drv.restore_network(spec)          # bridge kept (live-restore) or made again
    drv.reconcile({net.id: [addresses live containers hold]})

``NetworkDriver`` (a Protocol) is create_network / restore_network / delete_network /
attach / detach, each all-or-nothing; ``Network`` and ``Endpoint`` are frozen dataclasses
holding what inspect shows (bridge, pools with subnet/gateway/ip-range, MAC, addresses, gateways).  Errors come
from labkit.errors' tree; the IPAM ones carry moby's HTTP status in ``http_status``.

Packet filtering and NAT live in labkit's own nftables table (``table inet labkit``):
``labkit.engine.net.nft`` (port publishing, hairpin, masquerade, bridge isolation,
--internal; the Publisher seam) and ``labkit.engine.net.hostports`` (host-port
reservations in Docker's words, -P's ephemeral allocator).
"""
