"""Checks of notebook 01's exercises: run the learner's code against a fresh lk netns / box."""

from __future__ import annotations

import os
import socket

from labkit.lab.exercises import Namespace, defined, exercise, fail, need
from labkit.ns.rtnl import off_loop

IFF_UP = 0x1  # include/uapi/linux/if.h


@off_loop
def lo_state(path: str) -> tuple[bool, list[str]]:
    """(is lo UP, its IPv4 addresses) inside the network namespace at ``path`` (pyroute2)."""
    from pyroute2 import IPRoute

    from labkit.ns.netns import netns

    with netns(path), IPRoute() as ipr:
        (link,) = ipr.get_links(ifname="lo")
        addrs = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET,
                                                                index=link["index"])]
        return bool(link["flags"] & IFF_UP), addrs


@exercise("01.lo_up")
def lo_up(ns: Namespace) -> str:
    from labkit.ns.netns import create_netns, remove_netns

    fn = defined(ns, "bring_up_lo")
    name = f"lk-ex-lo-{os.getpid()}"
    mine = os.stat("/proc/thread-self/ns/net").st_ino
    path = str(create_netns(name))
    try:
        before = lo_state(path)
        need(before == (False, []), f"a new netns should start with lo down; it is {before}")
        fn(path)
        up, addrs = lo_state(path)
    finally:
        remove_netns(name)
    need(up, "lo is still DOWN in the namespace: set its IFF_UP flag there "
             "(ip link set lo up, run inside the namespace at the path you were given)")
    need("127.0.0.1" in addrs, f"lo is UP but has {addrs or 'no IPv4 address'}; the kernel "
                               "gives it 127.0.0.1 when it comes up inside the namespace")
    need(os.stat("/proc/thread-self/ns/net").st_ino == mine,
         "your function left this notebook's thread in another network namespace")
    return "lo is UP with 127.0.0.1 in a fresh namespace, and nothing else changed"


@exercise("01.box_spec")
def box_spec(ns: Namespace) -> str:
    from labkit.ns import NamespaceSpec, run

    fn = defined(ns, "box_spec")
    spec = fn("lk-ex-box")
    if not isinstance(spec, NamespaceSpec):
        fail(f"box_spec returned {type(spec).__name__}; return a labkit.ns.NamespaceSpec")
    need("user" not in spec.new, "leave the user namespace out: this box keeps real root")
    out = run(spec, ["sh", "-c", "echo $$; hostname; sed 1,2d /proc/net/dev | cut -d: -f1"]).stdout.split()
    need(out[:1] == ["1"], f"the shell's pid inside is {out[:1]}, not 1: ask for a new pid "
                           "namespace")
    need(out[1:2] == ["lk-ex-box"], f"the hostname inside is {out[1:2]}: ask for a new uts "
                                    "namespace and set hostname= to the name you are given")
    need(out[2:] == ["lo"], f"the box sees the interfaces {out[2:]}: a new net namespace "
                            "has only lo")
    return "the shell is pid 1, named lk-ex-box, and sees only lo"
