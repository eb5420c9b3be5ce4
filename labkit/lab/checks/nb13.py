"""Checks of notebook 13 (overlay networks): read m1's VXLAN forwarding table."""

from __future__ import annotations

from labkit import errors
from labkit.lab.exercises import Namespace, defined, exercise, fail, need
from labkit.lab.overlay_demo import OverlayLab, mac_of

SERVICE, NETWORK = "pinger", "lk-net"  # the notebook's global service and its network


@exercise("13.fdb_entry")
def fdb_entry(ns: Namespace) -> str:
    """``b_mac`` must be the MAC of the task on w1 (02:42 + its overlay address) and
    ``b_vtep`` the underlay address m1's VXLAN link sends that MAC's frames to (the FDB
    entry for it), which is w1's own address."""
    demo = defined(ns, "demo", "the OverlayLab (the set-up cell's `demo`)")
    mac = defined(ns, "b_mac", "a MAC address string")
    vtep = defined(ns, "b_vtep", "an IPv4 address string")
    need(isinstance(demo, OverlayLab), f"demo should be the set-up cell's OverlayLab, not "
         f"{type(demo).__name__}")
    need(isinstance(mac, str) and isinstance(vtep, str),
         f"b_mac and b_vtep are strings like '02:42:0a:00:01:03' and '10.216.0.3', not "
         f"{mac!r} and {vtep!r}")
    try:
        _, b = demo.pair(SERVICE)
        b_ip = demo.ip_of(b, NETWORK)
        fdb = demo.fdb(NETWORK)
    except errors.LabkitError as err:
        fail(f"the lab is not as the notebook left it: {err}")
    want_mac = mac_of(b_ip)
    need(mac.lower() == want_mac, f"{mac!r} is not the MAC of the task on w1: its overlay "
         f"address is {b_ip}; the MAC is 02:42 followed by the four bytes of it in hex")
    rows = fdb[(fdb.node == "m1") & (fdb.mac == want_mac)] if len(fdb) else fdb
    if not len(rows):
        fail(f"m1's FDB has no entry for {want_mac} (look at demo.fdb('{NETWORK}'))")
    dst = str(rows.iloc[0]["dst"])
    w1 = demo.lab.node("w1").addr
    if vtep == b_ip:
        fail(f"{vtep} is the task's overlay address; the FDB names the *node* to send the "
             "encapsulated frame to: an underlay address")
    need(vtep == dst, f"{vtep!r} is not where m1 sends frames for {want_mac}: read the 'dst' "
         f"of that row in m1's FDB")
    need(dst == w1, f"m1 sends {want_mac} to {dst}, not to w1 ({w1}): a stale FDB entry")
    return (f"m1 wraps frames for {want_mac} ({b_ip}) in UDP to {dst}:4789, w1's underlay "
            "address: the FDB maps an overlay MAC to the node that has it")
